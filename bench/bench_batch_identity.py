"""Are batched and single results bit-identical? The same seeds made in one batch and one at a time, compared.

    python bench/bench_batch_identity.py [--real-architectures --device cuda] [--batch 4] [--json out.json]

On the CPU with the tiny model this is what the tests check (within a tolerance); on a GPU, with the real
architecture in fp16 (random weights cost what real ones cost and round the same way), it answers the README's
question: bit-identical or not, and by how much the uint8 pixels differ (max and mean), also with a padded bucket.
"""

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from aipic.models.catalog import load_catalog  # noqa: E402
from aipic.common.tensors import to_uint8  # noqa: E402
from aipic.generation.diffusion import run_diffusion_batch  # noqa: E402
from aipic.generation.requests import GenerationRequest  # noqa: E402
from aipic.pipeline.resolve import resolve_generation  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-architectures", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    import torch

    device = torch.device(args.device)
    if args.real_architectures:
        from real_architectures import build_sd_turbo_architecture

        pipe = build_sd_turbo_architecture(device, torch.float16 if device.type == "cuda" else torch.float32)
        defaults = {"steps": args.steps or 1, "guidance": 0.0, "size": args.size or 512}
        model = "random-weight SD-Turbo architecture"
    else:
        from aipic.models.tiny import build_tiny_stable_diffusion

        pipe = build_tiny_stable_diffusion().to(device)
        defaults = {"steps": args.steps or 3, "guidance": 5.0, "size": args.size or 64}
        model = "tiny random-weight SD"
    limits = load_catalog().limits
    request = resolve_generation(GenerationRequest(prompt="a lighthouse keeper at dusk", seed=1234, batch=args.batch), defaults, limits)
    singles = [resolve_generation(GenerationRequest(prompt=request.prompt, seed=1234 + index), defaults, limits) for index in range(args.batch)]

    def pixels(images):
        return [to_uint8(image.pixels.unsqueeze(0))[0].astype(np.int16) for image in images]

    batched = pixels(run_diffusion_batch(pipe, [request])[0])
    alone = [pixels(run_diffusion_batch(pipe, [single])[0])[0] for single in singles]
    padded = pixels(run_diffusion_batch(pipe, [singles[0]], pad_to=max(args.batch, 2))[0])
    differences = [np.abs(a - b) for a, b in zip(batched, alone)]
    padding = np.abs(padded[0] - alone[0])
    report = {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "model": model, "size": defaults["size"], "steps": defaults["steps"], "batch": args.batch,
        "bit_identical_batched_vs_single": all(int(d.max()) == 0 for d in differences),
        "max_abs_uint8_difference": max(int(d.max()) for d in differences),
        "mean_abs_uint8_difference": float(np.mean([d.mean() for d in differences])),
        "share_of_pixels_differing": float(np.mean([(d > 0).mean() for d in differences])),
        "padded_bucket_bit_identical": int(padding.max()) == 0,
        "padded_bucket_max_abs_difference": int(padding.max()),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
