"""A perceptual fingerprint of every output (a C2PA soft binding): recognises copies that lost their manifest.

pHash (DCT of a 32×32 greyscale, 64 bits) survives re-encoding (JPEG, WebP, PNG re-save) and resizing; a
crop or a strong colour shift moves it further. Two unrelated images differ in about 32 of the 64 bits.
"""

import base64

from PIL import Image

ALGORITHM = "org.aipic.phash64"  # the soft-binding algorithm name in the manifest
MATCH_BITS = 8  # at most this many differing bits count as the same picture (bench/ measures both sides)


def fingerprint(image) -> str:
    """The 64-bit pHash of a PIL image or an HWC uint8 array, as 16 hex digits."""
    import imagehash

    if not isinstance(image, Image.Image):
        image = Image.fromarray(image, "RGB")
    return str(imagehash.phash(image.convert("RGB")))


CROPS = {"full": 1.0, "crop90": 0.9, "crop80": 0.8}  # centred crops: a copy cropped at its edges matches one


def fingerprints(image) -> dict:
    """The fingerprint of the whole picture and of its centred 90% and 80% crops."""
    if not isinstance(image, Image.Image):
        image = Image.fromarray(image, "RGB")
    out = {}
    for name, keep in CROPS.items():
        if keep == 1.0:
            out[name] = fingerprint(image)
            continue
        dx, dy = round(image.width * (1 - keep) / 2), round(image.height * (1 - keep) / 2)
        out[name] = fingerprint(image.crop((dx, dy, image.width - dx, image.height - dy)))
    return out


def distance(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def soft_binding(value: str) -> dict:
    """The c2pa.soft-binding assertion for a fingerprint (the shape c2pa-rs accepts: alg + blocks)."""
    return {"alg": ALGORITHM, "blocks": [{"scope": {}, "value": base64.b64encode(bytes.fromhex(value)).decode()}]}
