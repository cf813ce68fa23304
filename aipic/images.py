"""Reading user images safely, and fitting them to a size."""

import io
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BadInput

Image.MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # refuse decompression bombs before they eat memory


def open_user_image(source, what: str = "image", max_pixels: int | None = None) -> Image.Image:
    """Open a path, bytes or PIL image as an RGB image; a clear error if it is not one.

    The size is checked from the header, before any pixel is decoded: a small file that claims 11000×11000
    pixels is refused without spending memory on it.
    """
    if source is None:
        raise BadInput(f"Please provide the {what}.")
    try:
        if isinstance(source, Image.Image):
            image = source
        elif isinstance(source, (bytes, bytearray)):
            image = Image.open(io.BytesIO(source))
        else:
            path = Path(source)
            if not path.is_file():
                raise BadInput(f"The {what} file {path.name!r} does not exist.")
            image = Image.open(path)
        if max_pixels and image.width * image.height > max_pixels:
            raise BadInput(f"The {what} is {image.width}×{image.height}; at most {max_pixels:,} pixels are accepted.")
        image.load()
    except BadInput:
        raise
    except UnidentifiedImageError:
        raise BadInput(f"The {what} is not an image format aipic can read (PNG, JPEG, WebP, GIF, TIFF or BMP).") from None
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        # The reason in plain words, never a path on the server.
        reason = str(error).split(" '/")[0].split(' "/')[0] if not isinstance(error, Image.DecompressionBombError) else "too many pixels"
        raise BadInput(f"The {what} could not be read as an image ({reason}).") from None
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and 32-bit greyscale: scale to 8 bits (converting directly clips everything above 255 to white).
        import numpy as np

        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
        image = Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode != "RGB":
        background = Image.new("RGB", image.size, (255, 255, 255))
        rgba = image.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        image = background
    return image


def fit_cover(image: Image.Image, width: int, height: int) -> Image.Image:
    """Resize to fill width x height, keeping the aspect ratio and cropping the centre."""
    return ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS)


def size_for_aspect(image: Image.Image, longest_side: int, multiple: int = 8) -> tuple[int, int]:
    """(width, height) with the image's aspect ratio, the longest side given, both multiples of `multiple`."""
    scale = longest_side / max(image.width, image.height)
    width = max(multiple, int(round(image.width * scale / multiple)) * multiple)
    height = max(multiple, int(round(image.height * scale / multiple)) * multiple)
    return width, height


# Output formats, all signable with C2PA. PNG at zlib level 1 with the run-length strategy (compress_type 3,
# Z_RLE): lossless, 1.2–1.3× faster than level 1's default strategy and ~10 % smaller on photos
# (bench/bench_encode.py); JPEG for the smallest files; WebP lossless.
OUTPUT_FORMATS = {
    "png": ("image/png", "PNG", {"compress_level": 1, "compress_type": 3}),
    "jpeg": ("image/jpeg", "JPEG", {"quality": 92}),
    "webp": ("image/webp", "WEBP", {"lossless": True, "method": 0, "quality": 50}),
}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


def encode(image, output_format: str = "png") -> tuple[bytes, str]:
    """Encode a PIL image or an HWC uint8 array; returns (bytes, MIME type)."""
    mime, pil_format, options = OUTPUT_FORMATS[output_format]
    if not isinstance(image, Image.Image):
        image = Image.fromarray(image, "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=pil_format, **options)
    return buffer.getvalue(), mime


def png_bytes(image: Image.Image) -> bytes:
    return encode(image, "png")[0]
