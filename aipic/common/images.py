"""Reading user images safely, and fitting them to a size."""

import io
import os
import struct
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from aipic.common.errors import BadInput

Image.MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # refuse decompression bombs before they eat memory
# The formats an upload may be in (the page lists them). Pillow tries only these: some others (ICO, AVIF) decode
# pixels while the file is merely opened, before the size could be checked.
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "TIFF", "BMP")
UPLOAD_FORMAT_NAMES = "PNG, JPEG, WebP, GIF, TIFF or BMP"  # the same, as the person reads them


MIN_INPUT_SIDE = 32  # an input picture smaller than this on a side would only be stretched into a blur: refused


def open_user_image(source, what: str = "image", max_pixels: int | None = None, min_side: int = 0) -> Image.Image:
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
            image = Image.open(io.BytesIO(source), formats=UPLOAD_FORMATS)
        else:
            path = Path(source)
            if not path.is_file():
                raise BadInput(f"The {what} file {path.name!r} does not exist.")
            image = Image.open(path, formats=UPLOAD_FORMATS)
        if max_pixels and image.width * image.height > max_pixels:
            raise BadInput(f"The {what} is {image.width}×{image.height}; at most {max_pixels:,} pixels are accepted.")
        if min(image.width, image.height) < min_side:
            raise BadInput(f"The {what} is {image.width}×{image.height} pixels; it needs at least {min_side} pixels on each side (a smaller one would only be stretched into a blur).")
        image.load()
    except BadInput:
        raise
    except UnidentifiedImageError:
        raise BadInput(f"The {what} is not an image format aipic can read ({UPLOAD_FORMAT_NAMES}).") from None
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        # The reason in plain words, never a path on the server.
        reason = str(error).split(" '/")[0].split(' "/')[0] if not isinstance(error, Image.DecompressionBombError) else "too many pixels"
        raise BadInput(f"The {what} could not be read as an image ({reason}).") from None
    oriented = image.getexif().get(0x0112, 1) not in (None, 1)  # EXIF orientation: the pixels are turned upright
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and 32-bit greyscale: scale to 8 bits (converting directly clips everything above 255 to white).
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
        image = Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode != "RGB":
        background = Image.new("RGB", image.size, (255, 255, 255))
        rgba = image.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        image = background
    image.info["oriented"] = oriented  # on the image returned: a conversion above makes a new one
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


# Output formats, all signable with C2PA. PNG: RGB arrays (the engine's outputs) go through `png_fast` below;
# anything else through PIL at zlib level 1 with the run-length strategy (compress_type 3, Z_RLE). JPEG for the
# smallest files; WebP lossless. bench/bench_encode.py measures every option.
OUTPUT_FORMATS = {
    "png": ("image/png", "PNG", {"compress_level": 1, "compress_type": 3}),
    "jpeg": ("image/jpeg", "JPEG", {"quality": 92}),
    "webp": ("image/webp", "WEBP", {"lossless": True, "method": 0, "quality": 50}),
}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


XMP_KEYWORD = "XML:com.adobe.xmp"  # the PNG iTXt keyword XMP readers look for


def encode(image, output_format: str = "png", xmp: bytes | None = None) -> tuple[bytes, str]:
    """Encode a PIL image or an HWC uint8 array, with an XMP packet when given; returns (bytes, MIME type)."""
    mime, pil_format, defaults = OUTPUT_FORMATS[output_format]
    if output_format == "png" and not isinstance(image, Image.Image) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        return png_fast(image, xmp=xmp), mime
    if not isinstance(image, Image.Image):
        image = Image.fromarray(image, "RGB")
    options: dict[str, Any] = dict(defaults)
    if xmp and output_format == "png":
        info = PngInfo()
        info.add_itxt(XMP_KEYWORD, xmp.decode("utf-8"), zip=False)
        options["pnginfo"] = info
    elif xmp:
        options["xmp"] = xmp
    buffer = io.BytesIO()
    image.save(buffer, format=pil_format, **options)
    return buffer.getvalue(), mime


def png_bytes(image: Image.Image) -> bytes:
    return encode(image, "png")[0]


# ---- fast lossless PNG ---------------------------------------------------------------------------------------
# PIL chooses a filter for every row (adaptive filtering) and compresses in one thread: 16–19 ms for a 512²
# picture on one core. Here every row gets the "Up" filter (one vectorised subtraction), and horizontal stripes
# of rows are deflated in parallel threads (zlib lets go of the GIL), joined with sync flushes into one valid
# zlib stream, as pigz does: 4–7 ms on one core, files ~5 % larger than PIL's on photos
# (bench/bench_encode.py). The result is an ordinary 8-bit RGB PNG that every decoder reads.

_STRIPE_ROWS = 64  # at least this many rows per stripe, so small images stay in one piece
_png_pool = None
_png_pool_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _png_pool
    with _png_pool_lock:
        if _png_pool is None:
            _png_pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="aipic-png")
        return _png_pool


def in_background(function, *args) -> Future:
    """Run a short CPU task on the shared helper threads (those that deflate PNG stripes)."""
    return _pool().submit(function, *args)


def _chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(payload, zlib.crc32(tag)))


def _deflate(rows, last: bool) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15, 8, zlib.Z_RLE)
    return compressor.compress(rows) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def png_fast(array, stripes: int | None = None, xmp: bytes | None = None) -> bytes:
    """A lossless PNG of an HWC uint8 RGB array: Up filter, zlib level 1 run-length, stripes deflated in parallel;
    an XMP packet, when given, in an uncompressed iTXt chunk before the image data."""
    height, width, channels = array.shape
    rows = np.ascontiguousarray(array).reshape(height, width * channels)
    filtered = np.empty((height, width * channels + 1), np.uint8)
    filtered[:, 0] = 2  # PNG filter type 2, Up: each byte minus the byte above it (the first row is kept as is)
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    count = max(1, min(stripes or (os.cpu_count() or 1), 8, height // _STRIPE_ROWS or 1))
    bounds = [height * i // count for i in range(count + 1)]
    parts = [filtered[bounds[i]:bounds[i + 1]].data.cast("B") for i in range(count)]
    if count == 1:
        body = _deflate(parts[0], True)
    else:
        futures = [_pool().submit(_deflate, part, i == count - 1) for i, part in enumerate(parts)]
        body = b"".join(future.result() for future in futures)
    stream = b"\x78\x01" + body + struct.pack(">I", zlib.adler32(filtered.data.cast("B")))  # zlib header: deflate, fastest
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, deflate, adaptive filters, no interlace
    metadata = _chunk(b"iTXt", XMP_KEYWORD.encode("latin-1") + b"\x00\x00\x00\x00\x00" + xmp) if xmp else b""  # no compression, no language
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + metadata + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")
