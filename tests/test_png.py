"""The fast PNG writer: an ordinary lossless PNG that any decoder reads, whatever the size and stripe count."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from aipic.common.images import encode, png_fast


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Every chunk of a PNG, its CRC checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        tag, payload = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length:at + 12 + length])
        assert crc == zlib.crc32(tag + payload)
        out.append((tag, payload))
        at += 12 + length
    return out


def decoded(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.mode == "RGB"
    return np.asarray(image)


SHAPES = [(1, 1, 1), (1, 300, 8), (300, 1, 8), (63, 64, 2), (64, 64, 8), (65, 63, 3), (129, 7, 8), (512, 512, 8)]
SHAPES += [tuple(int(v) for v in np.random.default_rng(n).integers((1, 1, 1), (400, 400, 9))) for n in range(24)]


@pytest.mark.parametrize("height, width, stripes", SHAPES)
def test_any_array_round_trips_exactly(height, width, stripes):
    seed = height * 1000 + width
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    data = png_fast(array, stripes=stripes)
    assert np.array_equal(decoded(data), array)
    tags = [tag for tag, _ in chunks(data)]
    assert tags == [b"IHDR", b"IDAT", b"IEND"]
    idat = dict(chunks(data))[b"IDAT"]
    assert len(zlib.decompress(idat)) == height * (width * 3 + 1)  # one zlib stream, its Adler-32 checked


@pytest.mark.parametrize("stripes", [1, 2, 3, 8])
def test_a_photo_is_the_same_picture_whatever_the_stripes(stripes):
    y, x = np.mgrid[0:384, 0:512] / 384.0  # a smooth picture with edges and a little grain, like a photo
    grain = np.random.default_rng(0).integers(0, 6, (384, 512))
    photo = np.stack([120 + 100 * np.sin(3 * x) * y, 80 + 60 * ((x - 0.6) ** 2 + (y - 0.5) ** 2 < 0.1), 200 * y], -1)
    photo = np.clip(photo + grain[..., None], 0, 255).astype(np.uint8)
    data = png_fast(photo, stripes=stripes)
    assert np.array_equal(decoded(data), photo)
    reference = io.BytesIO()
    Image.fromarray(photo).save(reference, "PNG", compress_level=1, compress_type=zlib.Z_RLE)  # the previous writer
    assert len(data) < 1.1 * len(reference.getvalue())  # a photo compresses about as well as before


def test_encode_uses_it_for_rgb_arrays_and_pil_for_the_rest():
    array = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    data, mime = encode(array, "png")
    assert mime == "image/png" and data == png_fast(array)
    image = Image.fromarray(array)
    from_pil, _ = encode(image, "png")
    assert np.array_equal(decoded(from_pil), array)
