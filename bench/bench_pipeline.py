"""Time each stage of aipic's pipeline: generation, bias audit, C2PA signing, verification.

    python bench/bench_pipeline.py                       # tiny random-weight models on this machine's device
    python bench/bench_pipeline.py --models real --device cuda --size 512 --steps 1
    python bench/bench_pipeline.py --real-architectures --device cuda --size 512 --steps 1   # offline GPU box

Random weights of the real architectures cost exactly what real ones cost, so
`--models real` with weights present measures the hosted demo's latency.
Not part of the test suite.
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from aipic.common.images import png_bytes  # noqa: E402
from aipic.common.settings import Settings  # noqa: E402
from aipic.generation.diffusion import run_diffusion  # noqa: E402
from aipic.generation.requests import GenerationRequest  # noqa: E402
from aipic.pipeline import AipicPipeline  # noqa: E402
from aipic.pipeline.resolve import resolve_generation  # noqa: E402
from aipic.provenance.manifest import build_manifest, software_agent  # noqa: E402
from aipic.provenance.signing import sign_png  # noqa: E402
from aipic.provenance.verify import verify_bytes  # noqa: E402


def timed(fn, repeats):
    times, result = [], None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return result, times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="tiny", choices=("auto", "real", "tiny"))
    parser.add_argument("--device", default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--real-architectures", action="store_true", help="random weights of SD-Turbo / ViT-B-32 / VGG19, built offline")
    args = parser.parse_args()

    pipeline = AipicPipeline(Settings(models_mode=args.models, device=args.device, home=tempfile.mkdtemp(prefix="aipic-bench-")))
    start = time.perf_counter()
    if args.real_architectures:
        from real_architectures import install_real_architectures

        install_real_architectures(pipeline, pipeline.catalog)
    model = pipeline.models.get("text_to_image")
    auditor = pipeline.auditor
    load_s = time.perf_counter() - start
    defaults = dict(model.entry.defaults or {}) if args.real_architectures else pipeline.models.request_defaults()
    request = resolve_generation(GenerationRequest(prompt="a photo of a doctor", seed=0, steps=args.steps, width=args.size, height=args.size), defaults, pipeline.catalog.limits)
    run_diffusion(model.obj, request)  # warm-up

    generated, gen_t = timed(lambda: run_diffusion(model.obj, request), args.repeats)
    image = generated[0].image
    [audit], audit_t = timed(lambda: auditor.audit([image]), args.repeats)
    manifest = build_manifest(title="bench.png", task="text-to-image", description="bench", agent=software_agent(model.describe()), human={"prompt": request.prompt, "parameters": request.parameters()}, models=[model.describe()], outputs={"seed": 0}, audit=audit.to_dict(), ingredients=[])
    data = png_bytes(image)
    signed, sign_t = timed(lambda: sign_png(data, manifest, [], pipeline.identity), args.repeats)
    _, verify_t = timed(lambda: verify_bytes(signed, [pipeline.identity.ca_pem]), args.repeats)
    _, encode_t = timed(lambda: png_bytes(image), args.repeats)

    device = pipeline.models.device
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    label = "random-weight SD-Turbo architecture" if args.real_architectures else model.describe()["label"]
    print(f"device: {name} · models: {label} · {request.width}x{request.height}, {request.steps} steps · load {load_s:.1f} s")
    print(f"{'stage':<12}{'median ms':>12}{'min ms':>10}")
    for stage, times in [("generate", gen_t), ("audit", audit_t), ("png encode", encode_t), ("c2pa sign", sign_t), ("verify", verify_t)]:
        print(f"{stage:<12}{statistics.median(times) * 1e3:>12.1f}{min(times) * 1e3:>10.1f}")
    print(f"signed PNG: {len(signed):,} bytes (manifest adds {len(signed) - len(data):,})")


if __name__ == "__main__":
    main()
