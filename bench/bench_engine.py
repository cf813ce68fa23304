"""aipic end to end vs bare diffusers, in one run, on one device, with the same model and settings.

    python bench/bench_engine.py                                    # tiny models on this machine (behaviour, not speed)
    python bench/bench_engine.py --real-architectures --device cuda --size 512 --steps 1 --json out.json
        --tiny-decoder   both decode with the TAESD architecture (aipic's `sd-turbo-fast` catalog entry)
        --compile        aipic also runs compiled (torch.compile, CUDA graphs, padded buckets warmed first)
        --through-app    the concurrent phase also goes through the Gradio app's HTTP queue (needs gradio)

Phases (each reports img/s, p50/p95 latency and peak GPU memory):
  bare_b1      bare diffusers, one image per call (fp16 on CUDA, eager, PIL output: unsigned, unaudited, unsaved)
  bare_batch   bare diffusers, max_gpu_batch images per call
  aipic_b1     aipic end to end, one request of one image at a time: generate, audit, encode, sign, write
  aipic_load   aipic end to end, N concurrent clients through the engine's queue (the app's and CLI's path)
  aipic_compiled_*  the same two with --compile
  app_load     the same load through the Gradio app's queue over HTTP (--through-app)
The engine's Prometheus figures for each aipic phase are in the JSON.  Random weights of the real architectures
cost what real ones cost.  On a machine without CUDA the figures are CPU figures and the GPU ones are pending.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from aipic.common.settings import Settings  # noqa: E402
from aipic.generation.requests import GenerationRequest  # noqa: E402
from aipic.pipeline import AipicPipeline  # noqa: E402

TARGETS = {"aipic_b1_p50_ms_max": 50.0, "aipic_load_img_s_min": 100.0, "throughput_ratio_min": 1.0}


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def percentile(values, q):
    values = sorted(values)
    if not values:
        return None
    index = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[index]


def summary(latencies, images, wall, memory=None, **extra):
    return {
        "images": images,
        "seconds": round(wall, 4),
        "img_per_s": round(images / wall, 2) if wall else None,
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p95_ms": round(1000 * percentile(latencies, 95), 2),
        "peak_gpu_mib": memory,
        **extra,
    }


def reset_memory():
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory():
    return round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None


# ---- bare diffusers ----------------------------------------------------------------------------------------


def bare_pipeline(args, device, dtype):
    if args.real_architectures:
        from real_architectures import build_sd_turbo_architecture, build_taesd_architecture

        pipe = build_sd_turbo_architecture(device, dtype)
        if args.tiny_decoder:
            pipe.vae = build_taesd_architecture(device, dtype)
        return pipe
    from aipic.models import tiny

    return tiny.build_tiny_stable_diffusion().to(device)


def bare_call(pipe, args, count, seed=0):
    generators = [torch.Generator(device=pipe.device).manual_seed(seed + i) for i in range(count)]
    with torch.inference_mode():
        return pipe(prompt=["a photo of a doctor"] * count, num_inference_steps=args.steps, guidance_scale=args.guidance,
                    width=args.size, height=args.size, generator=generators, output_type="pil").images


def bench_bare(args, device, dtype):
    pipe = bare_pipeline(args, device, dtype)
    pipe.set_progress_bar_config(disable=True)
    results = {}
    for name, count, repeats in (("bare_b1", 1, args.repeats), ("bare_batch", args.max_gpu_batch, max(3, args.repeats // 4))):
        bare_call(pipe, args, count)  # warm-up
        bare_call(pipe, args, count)
        reset_memory()
        latencies = []
        start = time.perf_counter()
        for r in range(repeats):
            sync()
            t = time.perf_counter()
            bare_call(pipe, args, count, seed=r)
            sync()
            latencies.append(time.perf_counter() - t)
        wall = time.perf_counter() - start
        results[name] = summary(latencies, count * repeats, wall, peak_memory(), batch=count)
        print(f"  {name:<22}{results[name]['p50_ms']:>10.1f} ms p50 {results[name]['img_per_s']:>9.1f} img/s", flush=True)
    del pipe
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return results


# ---- aipic -------------------------------------------------------------------------------------------------


def aipic_pipeline(args, compile_):
    settings = Settings(max_gpu_batch=args.max_gpu_batch, batch_wait_s=args.wait_ms / 1000, cpu_workers=args.cpu_workers, cpu_processes=args.cpu_processes,
                              compile=compile_, output_format=args.formats[0], buckets=tuple(args.buckets), watermark=args.watermark,
                              safety=not args.no_safety)
    pipeline = AipicPipeline(settings.replace(models_mode=args.models, device=args.device, home=tempfile.mkdtemp(prefix="aipic-bench-")))
    if args.real_architectures:
        from real_architectures import install_real_architectures

        install_real_architectures(pipeline, pipeline.catalog, tiny_decoder=args.tiny_decoder)
    return pipeline


def request(args, seed, output_format=None):
    return GenerationRequest(prompt="a photo of a doctor", seed=seed, steps=args.steps, guidance=args.guidance, width=args.size, height=args.size, output_format=output_format)


def metric_delta(before, after):
    delta = {}
    for name, values in after.items():
        if name.endswith("_mean"):
            continue
        for label, value in values.items():
            change = value - before.get(name, {}).get(label, 0)
            if change and not name.endswith("queue_depth"):
                delta.setdefault(name, {})[label] = round(change, 6)
    for name in ("aipic_stage_seconds", "aipic_batch_size"):
        counts, sums = delta.get(f"{name}_count", {}), delta.get(f"{name}_sum", {})
        delta[f"{name}_mean"] = {label: round(sums.get(label, 0) / count, 6) for label, count in counts.items() if count}
    return delta


def load(call, clients, per_client):
    """`clients` threads, each making `per_client` one-image requests back to back; returns (latencies, wall)."""
    latencies, lock, errors = [], threading.Lock(), []
    barrier = threading.Barrier(clients + 1)

    def client(index):
        barrier.wait()
        for n in range(per_client):
            t = time.perf_counter()
            try:
                call(index * 100_000 + n)
            except Exception as error:  # noqa: BLE001
                errors.append(error)
                return
            with lock:
                latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return latencies, time.perf_counter() - start


def bench_aipic(args, compile_=False, prefix="aipic"):
    pipeline = aipic_pipeline(args, compile_)
    start = time.perf_counter()
    _ = pipeline.identity  # make the signing identity before timing
    warm = pipeline.warm_up()
    for seed in range(2):
        pipeline.text_to_image(request(args, seed))  # first CPU-pool and signer use
    results = {f"{prefix}_warm_up_s": round(time.perf_counter() - start, 1), f"{prefix}_cpu_processes": pipeline.workers.processes}
    metrics = pipeline.engine.metrics

    for number, output_format in enumerate(args.formats):
        name = prefix if number == 0 else f"{prefix}_{output_format}"  # the first format is the deployment default
        before = metrics.snapshot()
        reset_memory()
        latencies = []
        t0 = time.perf_counter()
        for r in range(args.repeats):
            t = time.perf_counter()
            pipeline.text_to_image(request(args, 1000 + r, output_format))
            latencies.append(time.perf_counter() - t)
        results[f"{name}_b1"] = summary(latencies, args.repeats, time.perf_counter() - t0, peak_memory(), format=output_format, metrics=metric_delta(before, metrics.snapshot()))
        print(f"  {name + '_b1':<22}{results[name + '_b1']['p50_ms']:>10.1f} ms p50 {results[name + '_b1']['img_per_s']:>9.1f} img/s", flush=True)

        before = metrics.snapshot()
        reset_memory()
        latencies, wall = load(lambda seed, fmt=output_format: pipeline.text_to_image(request(args, seed, fmt)), args.concurrency, args.per_client)
        results[f"{name}_load"] = summary(latencies, len(latencies), wall, peak_memory(), clients=args.concurrency, format=output_format, metrics=metric_delta(before, metrics.snapshot()))
        print(f"  {name + '_load':<22}{results[name + '_load']['p50_ms']:>10.1f} ms p50 {results[name + '_load']['img_per_s']:>9.1f} img/s "
              f"(mean GPU batch {results[name + '_load']['metrics'].get('aipic_batch_size_mean', {}).get('stage=generate', 0):.1f})", flush=True)
    results[f"{prefix}_warm_up_only_s"] = round(warm, 1)

    if args.through_app and not compile_:
        results["app_load"] = bench_app(args, pipeline)
    pipeline.close()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return results


def bench_app(args, pipeline):
    """The same load through the Gradio app's queue over HTTP (gradio_client), on 127.0.0.1."""
    import socket

    import uvicorn
    from gradio_client import Client

    import app as app_module

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    from aipic.web.ratelimit import RateLimiter

    server = uvicorn.Server(uvicorn.Config(app_module.make_server_app(pipeline, app_module.build_app(pipeline, RateLimiter(0))), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    while not server.started:
        time.sleep(0.05)
    clients = [Client(url, verbose=False) for _ in range(args.concurrency)]

    def call(seed):
        client = clients[(seed // 100_000) % len(clients)]
        client.predict("a photo of a doctor", "", seed, args.steps, args.guidance, args.size, args.size, 1, args.formats[0], api_name="/text_to_image")

    call(0)
    before = pipeline.engine.metrics.snapshot()
    latencies, wall = load(call, args.concurrency, args.per_client)
    result = summary(latencies, len(latencies), wall, peak_memory(), clients=args.concurrency, metrics=metric_delta(before, pipeline.engine.metrics.snapshot()))
    print(f"  {'app_load':<22}{result['p50_ms']:>10.1f} ms p50 {result['img_per_s']:>9.1f} img/s", flush=True)
    server.should_exit = True
    thread.join(timeout=10)
    return result


# ---- main --------------------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny", choices=("auto", "real", "tiny"))
    parser.add_argument("--real-architectures", action="store_true", help="random weights of SD-Turbo / ViT-B-32 / VGG19, built offline")
    parser.add_argument("--tiny-decoder", action="store_true", help="decode with the TAESD architecture (bare and aipic alike)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=8)
    parser.add_argument("--max-gpu-batch", type=int, default=16)
    parser.add_argument("--wait-ms", type=float, default=4.0)
    parser.add_argument("--cpu-workers", type=int, default=0)
    parser.add_argument("--cpu-processes", type=int, default=None, help="finishing worker processes (default: automatic, on for CUDA)")
    parser.add_argument("--formats", nargs="+", default=["png"], choices=("png", "jpeg", "webp"), help="output formats to measure; the first is the default (targets)")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--buckets", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--through-app", action="store_true")
    parser.add_argument("--watermark", action="store_true", help="include the invisible-watermark stage (the targets are measured without it)")
    parser.add_argument("--no-safety", action="store_true", help="leave out the safety checker (on by default, as in the app: with --real-architectures a random-weight CLIP ViT-L/14 checker)")
    parser.add_argument("--skip-eager", action="store_true", help="with --compile: measure only the compiled aipic")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    args.device = str(device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    if args.real_architectures:
        args.models = "tiny"  # placeholders for the style model; text-to-image and CLIP are replaced
        defaults = {"steps": 1, "guidance": 0.0, "size": 512}
    else:
        from aipic.models.catalog import load_catalog

        defaults = load_catalog().entry("text_to_image", "tiny-random").defaults
    args.size = args.size or defaults["size"]
    args.steps = args.steps or defaults["steps"]
    args.guidance = defaults["guidance"] if args.guidance is None else args.guidance
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    architecture = "random-weight SD-Turbo architecture" + (" + TAESD decoder" if args.tiny_decoder else "") if args.real_architectures else "tiny random-weight SD"
    print(f"device: {name} · {architecture} · {args.size}², {args.steps} step(s), guidance {args.guidance} · {'/'.join(args.formats)} · "
          f"max GPU batch {args.max_gpu_batch}, {args.concurrency} clients × {args.per_client}", flush=True)

    import diffusers

    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": name,
        "gpu_figures": "measured" if device.type == "cuda" else "pending: no CUDA device on this machine; these are CPU figures",
        "model": architecture,
        "settings": {key: value for key, value in vars(args).items() if key != "json"},
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__, "python": platform.python_version()},
        "targets": TARGETS,
    }
    results = {}
    results.update(bench_bare(args, device, dtype))
    if not (args.compile and args.skip_eager):
        results.update(bench_aipic(args))
    if args.compile:
        results.update(bench_aipic(args, compile_=True, prefix="aipic_compiled"))
    report["results"] = results

    best_b1 = min(results[k]["p50_ms"] for k in ("aipic_b1", "aipic_compiled_b1") if k in results)
    best_load = max(results[k]["img_per_s"] for k in ("aipic_load", "aipic_compiled_load") if k in results)
    report["ratios"] = {
        "aipic_b1_over_bare_b1_latency": round(best_b1 / results["bare_b1"]["p50_ms"], 3),
        "aipic_load_over_bare_batch_throughput": round(best_load / results["bare_batch"]["img_per_s"], 3),
    }
    report["targets_met"] = {
        "one_request_le_50_ms": best_b1 <= TARGETS["aipic_b1_p50_ms_max"],
        "load_ge_100_img_s": best_load >= TARGETS["aipic_load_img_s_min"],
        "throughput_ge_bare_eager": report["ratios"]["aipic_load_over_bare_batch_throughput"] >= TARGETS["throughput_ratio_min"],
    } if device.type == "cuda" else "pending (GPU figures only)"
    print(json.dumps({"ratios": report["ratios"], "targets_met": report["targets_met"]}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
