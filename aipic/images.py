"""Reading user images safely, and fitting them to a size."""

import io
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import AipicError

Image.MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # refuse decompression bombs before they eat memory


def open_user_image(source, what: str = "image", max_pixels: int | None = None) -> Image.Image:
    """Open a path, bytes or PIL image as an RGB image; a clear error if it is not one."""
    if source is None:
        raise AipicError(f"Please provide the {what}.")
    try:
        if isinstance(source, Image.Image):
            image = source
        elif isinstance(source, (bytes, bytearray)):
            image = Image.open(io.BytesIO(source))
        else:
            path = Path(source)
            if not path.is_file():
                raise AipicError(f"The {what} file {str(path)!r} does not exist.")
            image = Image.open(path)
        image.load()
    except AipicError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise AipicError(f"The {what} could not be read as an image ({error}).") from None
    if max_pixels and image.width * image.height > max_pixels:
        raise AipicError(f"The {what} is {image.width}x{image.height}; at most {max_pixels:,} pixels are accepted.")
    image = ImageOps.exif_transpose(image)
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


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
