"""PNG encoding cost on the CPU: the options aipic could use, measured in one run on the same pictures.

    python bench/bench_encode.py [--repeat 20] [--out bench/results/<date>-cpu-encode.json]

Pictures: scikit-image's astronaut (a natural 512² photo) and 512² uniform noise (the worst case, like the
random-weight models' outputs). Every option is lossless (checked). Prints a table and writes JSON.
"""

import argparse
import datetime
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ZLIB_STRATEGIES = {"default": 0, "huffman": 2, "rle": 3}


def pictures() -> dict:
    out = {"noise": (np.random.default_rng(0).random((512, 512, 3)) * 255).astype(np.uint8)}
    try:
        from skimage import data

        out["astronaut"] = data.astronaut()
    except ImportError:  # the bench extra: pip install 'aipic[bench]'
        pass
    return out


def pil_png(level: int, strategy: str):
    def encode(array) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, "PNG", compress_level=level, compress_type=ZLIB_STRATEGIES[strategy])
        return buffer.getvalue()

    return encode


def measure(encode, array, repeat: int) -> dict:
    data = encode(array)
    assert (np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) == array).all(), "not lossless"
    start = time.perf_counter()
    for _ in range(repeat):
        data = encode(array)
    return {"ms": (time.perf_counter() - start) / repeat * 1000, "kb": len(data) / 1024}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    options = {f"PIL level {level}, {strategy}": pil_png(level, strategy) for level in (1, 6) for strategy in ZLIB_STRATEGIES}
    from aipic.common.images import png_fast  # aipic's writer: Up filter, level 1 run-length, stripes in parallel threads

    options["aipic png_fast, 1 thread"] = lambda array: png_fast(array, stripes=1)
    options[f"aipic png_fast, {min(8, os.cpu_count() or 1)} threads"] = png_fast
    results: dict = {}
    for picture, array in pictures().items():
        baseline = None
        for name, encode in options.items():
            row = measure(encode, array, args.repeat)
            baseline = baseline or row["ms"]
            row["speed_vs_level1_default"] = baseline / row["ms"]
            results.setdefault(picture, {})[name] = row
            print(f"{picture:10s} {name:24s} {row['ms']:7.2f} ms {row['kb']:7.1f} KB  ×{row['speed_vs_level1_default']:.2f}")
    report = {"date": datetime.date.today().isoformat(), "machine": f"{platform.processor() or platform.machine()}, CPU, {os.cpu_count()} cores", "size": "512x512 RGB", "results": results}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
