"""How well stripped copies of aipic outputs are recognised (durable credentials), and how often unrelated images
are wrongly matched.

    python bench/bench_robustness.py --outputs 24 --json robustness.json

Makes signed outputs through the real pipeline (tiny models unless --models says otherwise), applies each
attack, strips the credentials that way, and runs the real verifier with registry recovery on every copy.
Unrelated images: scikit-image's bundled sample images (``pip install .[bench]``), plus random-noise and smooth
random images. Prints a table and writes JSON.

    python bench/bench_robustness.py --watermark-method trustmark --trustmark-models DIR --models real

measures Adobe TrustMark instead of dwtDctSvd (its files in DIR: `aipic download --trustmark`).
"""

import argparse
import datetime
import io
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image, ImageEnhance  # noqa: E402

from aipic.common.settings import Settings  # noqa: E402
from aipic.generation.requests import GenerationRequest  # noqa: E402
from aipic.pipeline import AipicPipeline  # noqa: E402


def _save(image, fmt, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def attacks(image: Image.Image) -> dict:
    width, height = image.size
    dx, dy = int(width * 0.05), int(height * 0.05)
    shifted = ImageEnhance.Color(ImageEnhance.Brightness(image).enhance(1.08)).enhance(1.15)  # screenshot-like colour shift
    return {
        "jpeg q90": _save(image, "JPEG", quality=90),
        "jpeg q75": _save(image, "JPEG", quality=75),
        "jpeg q50": _save(image, "JPEG", quality=50),
        "resize 50%": _save(image.resize((width // 2, height // 2), Image.Resampling.LANCZOS), "PNG"),
        "webp q80": _save(image, "WEBP", quality=80),
        "png re-save": _save(image, "PNG"),
        "crop 10%": _save(image.crop((dx, dy, width - dx, height - dy)), "PNG"),
        "colour shift": _save(shifted, "JPEG", quality=90),
    }


def unrelated_images(count: int, size: int) -> list:
    rng = np.random.default_rng(1)
    images = []
    try:
        from skimage import data

        for name in ("astronaut", "camera", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "coins", "moon", "page",
                     "cat", "retina", "horse", "logo", "text", "brick", "grass", "gravel", "colorwheel"):
            try:
                array = getattr(data, name)()
            except Exception:  # noqa: BLE001 - a sample that needs a download: skip it offline
                continue
            image = Image.fromarray(array).convert("RGB").resize((size, size))
            images.append((f"skimage {name}", image))
    except ImportError:
        pass
    for n in range(count):
        noise = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        smooth = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
        images += [(f"noise {n}", noise), (f"smooth {n}", smooth)]
    return images


def watermark_quality(images, trustmark=None) -> dict:
    """PSNR and SSIM of the invisible watermark on images that carry none yet (256² and larger)."""
    from aipic.pipeline.finishing import embed_mark
    from aipic.provenance import watermark

    scores = [watermark.quality(np.asarray(image), embed_mark(np.asarray(image), watermark.new_id(), trustmark)) for _, image in images if min(image.size) >= watermark.MIN_SIDE]
    psnr, ssim = [s["psnr_db"] for s in scores], [s["ssim"] for s in scores]
    return {"images": len(scores), "psnr_db_mean": float(np.mean(psnr)), "psnr_db_min": float(np.min(psnr)), "ssim_mean": float(np.mean(ssim)), "ssim_min": float(np.min(ssim))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--unrelated", type=int, default=50, help="random images of each kind")
    parser.add_argument("--models", default="tiny", choices=("auto", "real", "tiny"))
    parser.add_argument("--watermark-method", default="dwtdctsvd", choices=("dwtdctsvd", "trustmark"))
    parser.add_argument("--trustmark-models", default=None, help="the folder with TrustMark's files (aipic download --trustmark)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="aipic-robust-"))
    settings = Settings.from_env(watermark_method=args.watermark_method, trustmark_models=args.trustmark_models)
    pipeline = AipicPipeline(settings.replace(models_mode=args.models, home=home))
    method = {"dwtdctsvd": "dwtDctSvd", "trustmark": pipeline.trustmark.algorithm if pipeline.trustmark else ""}[args.watermark_method]
    prompts = ["a portrait of a nurse", "a lighthouse at dusk", "a bowl of fruit", "a city street in the rain"]
    made = []
    for n in range(args.outputs):
        [item] = pipeline.text_to_image(GenerationRequest(prompt=prompts[n % len(prompts)], seed=n, width=args.size, height=args.size)).items
        made.append(item)
    results: dict = {}
    work = home / "copies"
    work.mkdir()
    for item in made:
        for attack, data in attacks(Image.open(item.path).convert("RGB")).items():
            copy = work / f"{item.id}-{attack.replace(' ', '_').replace('%', '')}"
            copy.write_bytes(data)
            recovered = pipeline.verify(copy).recovered
            row = results.setdefault(attack, {"copies": 0, "recovered": 0, "by_watermark": 0, "by_fingerprint": 0, "wrong": 0})
            row["copies"] += 1
            if recovered and recovered["output_id"] == item.id:
                row["recovered"] += 1
                row["by_watermark" if recovered["matched_by"].startswith("watermark") else "by_fingerprint"] += 1
            elif recovered:
                row["wrong"] += 1
    false_matches, unrelated = 0, unrelated_images(args.unrelated, args.size)
    for name, image in unrelated:
        path = work / f"unrelated-{name.replace(' ', '_')}.png"
        image.save(path)
        if pipeline.verify(path).recovered:
            false_matches += 1
    pipeline.close()

    model = pipeline.models.get("text_to_image").describe()["label"]
    print(f"{args.outputs} outputs ({model}, {args.size}²), fingerprint recovery (pHash ≤ 8 of 64 bits):")
    print(f"{'attack':<14}{'recovered':>12}{'watermark':>11}{'fingerprint':>13}{'wrong match':>13}")
    for attack, row in results.items():
        print(f"{attack:<14}{row['recovered'] / row['copies']:>12.0%}{row['by_watermark']:>11}{row['by_fingerprint']:>13}{row['wrong']:>13}")
    marks = watermark_quality(unrelated, pipeline.trustmark)
    print(f"watermark quality over {marks['images']} images: PSNR {marks['psnr_db_mean']:.1f} dB (min {marks['psnr_db_min']:.1f}), SSIM {marks['ssim_mean']:.4f} (min {marks['ssim_min']:.4f})")
    print(f"false matches on unrelated images: {false_matches} of {len(unrelated)}")
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "outputs": args.outputs, "size": args.size, "model": model, "method": f"{method} watermark (CRC + fingerprint agreement), else pHash fingerprint within 8 of 64 bits",
        "attacks": {k: {**v, "share": v["recovered"] / v["copies"]} for k, v in results.items()},
        "unrelated_images": len(unrelated), "false_matches": false_matches, "watermark_quality": marks,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
