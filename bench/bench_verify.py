"""Memory and time of one verification of hostile and ordinary files, through the bounded worker with a registry.

    python bench/bench_verify.py [--out bench/results/<date>-cpu-verify.json]

Each case runs in a fresh parent process that verifies one file (the worker parses it, and looks it up in a
registry because it carries no credentials) and reports the worker's peak resident memory (the children's
``ru_maxrss``) and the wall time. The target (issue: verify memory bounded): under 300 MB per verification,
whatever the file. Cases: a 58 KB PNG that decodes to 4096×4096 (the upload limit), a 4096² noise PNG (~50 MB,
the file-size limit), a 4096² JPEG, an 8000×8000 PNG (over the pixel limit: refused from its header), long thin
pictures at the limit (65535×256 PNG, 65500×256 JPEG), WebP at 4096² and 16383×1024 (over the limit of the formats whose decoders hold far more than the
pixels, half the others': WebP, AVIF, progressive or CMYK JPEG) and at 2896² (at it), the same for progressive
and CMYK JPEG and AVIF (noise: the worst case for their decoders), and an ordinary 512² PNG. Prints a table and writes JSON.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_MB = 300

MEASURE = """
import json, resource, sys, time
from aipic.provenance.verify import verify_file
start = time.perf_counter()
result = verify_file(sys.argv[1], registry_url=sys.argv[2])
seconds = time.perf_counter() - start
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"verdict": result.verdict, "problems": result.problems, "seconds": seconds, "peak_mb": peak_kb / 1024}))
"""


def cases(folder: Path) -> dict:
    out = {}
    flat = folder / "flat-4096.png"
    Image.new("RGB", (4096, 4096), (40, 90, 160)).save(flat, optimize=True)
    out["58 KB PNG, 4096x4096"] = flat
    noise = folder / "noise-4096.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (4096, 4096, 3), dtype=np.uint8)).save(noise, compress_level=1)
    out["noise PNG, 4096x4096"] = noise
    jpeg = folder / "photo-4096.jpg"
    x = np.linspace(0, 255, 4096, dtype=np.float32)
    smooth = np.stack([np.add.outer(x, x) / 2, np.add.outer(x[::-1], x) / 2, np.add.outer(x, x[::-1]) / 2], -1).astype(np.uint8)
    Image.fromarray(smooth).save(jpeg, quality=90)
    out["JPEG, 4096x4096"] = jpeg
    huge = folder / "huge-8000.png"
    Image.new("L", (8000, 8000)).save(huge, compress_level=9)
    out["PNG, 8000x8000 (over the pixel limit)"] = huge
    wide = folder / "wide-65535x256.png"
    Image.new("RGB", (65535, 256), (120, 30, 60)).save(wide, optimize=True)
    out["PNG, 65535x256"] = wide
    webp = folder / "webp-4096.webp"
    Image.fromarray(smooth).save(webp, quality=80)
    out["WebP, 4096x4096"] = webp
    webp_limit = folder / "webp-2896.webp"
    Image.fromarray(smooth[:2896, :2896]).save(webp_limit, quality=80)
    out["WebP, 2896x2896 (at its limit)"] = webp_limit
    wide_jpeg = folder / "wide-65500x256.jpg"
    Image.new("RGB", (65500, 256), (90, 90, 200)).save(wide_jpeg, quality=90)
    out["JPEG, 65500x256"] = wide_jpeg
    from PIL import ImageFile

    ImageFile.MAXBLOCK = 1 << 27  # progressive noise JPEGs need a larger encoder buffer than Pillow's default
    noise = np.random.default_rng(1).integers(0, 256, (4096, 4096, 4), dtype=np.uint8)
    cmyk = folder / "cmyk-progressive-4096.jpg"
    Image.fromarray(noise, "CMYK").save(cmyk, quality=85, progressive=True, subsampling=0)
    out["progressive CMYK JPEG, 4096x4096 (over its limit)"] = cmyk
    progressive = folder / "progressive-2896.jpg"
    Image.fromarray(np.ascontiguousarray(noise[:2896, :2896, :3])).save(progressive, quality=95, progressive=True, subsampling=0)
    out["progressive JPEG, 2896x2896 noise (at its limit)"] = progressive
    avif = folder / "noise-2896.avif"
    Image.fromarray(np.ascontiguousarray(noise[:2896, :2896, :3])).save(avif, quality=90)
    out["AVIF, 2896x2896 noise (at its limit)"] = avif
    del noise
    long_webp = folder / "webp-16383x1024.webp"
    Image.new("RGB", (16383, 1024), (10, 200, 90)).save(long_webp, lossless=True)
    out["WebP, 16383x1024"] = long_webp
    small = folder / "ordinary-512.png"
    Image.fromarray(smooth[::8, ::8]).save(small)
    out["PNG, 512x512"] = small
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from aipic.provenance.registry import Registry

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        registry = Registry.for_home(folder / "home")  # an empty registry: the lookup runs to its end
        registry.close()
        url = f"sqlite:///{folder / 'home' / 'registry.sqlite3'}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for name, path in cases(folder).items():
            done = subprocess.run([sys.executable, "-c", MEASURE, str(path), url], capture_output=True, text=True, env=env, timeout=120)
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append({"case": name, "file_kb": round(path.stat().st_size / 1024, 1), **measured, "within_target": measured["peak_mb"] < TARGET_MB})
            print(f"{name:<40} {rows[-1]['file_kb']:>9.1f} KB  {measured['peak_mb']:7.1f} MB  {measured['seconds']:6.2f} s  {measured['verdict']}")
    from aipic.provenance.verify import automatic_verify_slots

    result = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores", "target_mb": TARGET_MB,
              "verify_slots": automatic_verify_slots(), "cases": rows}
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"{result['date']}-cpu-verify.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
