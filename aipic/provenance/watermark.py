"""An invisible watermark in every output large enough to carry one: the second soft binding.

The method is invisible-watermark's ``dwtDctSvd`` (Haar DWT of the U channel, then for every 4×4 block of the
approximation band a DCT and an SVD whose largest singular value is quantised to carry one bit), written here
with numpy, SciPy and PyWavelets: no OpenCV (one ``cv2`` only in the environment: ARCHITECTURE.md, decisions) and no
torch or onnxruntime (which the ``imwatermark`` package imports), so the verifier's worker can decode it.

The payload is 48 bits: a random 32-bit output id and its CRC-16. A decoder always returns *some* bits, so a
mark counts only when its CRC checks out — and the registry then also requires the fingerprint to agree.
Images under 256×256 are not marked (too few blocks to be reliable; the package refuses them too); the manifest
says so. The mark survives re-encoding (JPEG, WebP, PNG); it does not survive resizing or cropping, which is
what the fingerprint is for.
"""

from __future__ import annotations

import base64
import binascii
import secrets

import numpy as np

ALGORITHM = "org.aipic.dwtDctSvd48"  # the soft-binding algorithm name in the manifest
SCALE = 36.0  # quantisation step of the largest singular value (invisible-watermark's default for U)
BLOCK = 4
MIN_SIDE = 256
ID_BITS, CRC_BITS = 32, 16


def new_id() -> str:
    """A random 32-bit watermark id, as 8 hex digits."""
    return f"{secrets.randbits(ID_BITS):08x}"


def payload_bits(watermark_id: str) -> np.ndarray:
    raw = bytes.fromhex(watermark_id)
    crc = binascii.crc_hqx(raw, 0xFFFF).to_bytes(2, "big")
    return np.unpackbits(np.frombuffer(raw + crc, dtype=np.uint8)).astype(np.float64)


def id_from_bits(bits: np.ndarray) -> str | None:
    """The id, if the 48 decoded bits carry a valid CRC; else None (most images that carry no mark)."""
    data = np.packbits(bits.astype(np.uint8)).tobytes()
    raw, crc = data[:4], data[4:6]
    return raw.hex() if binascii.crc_hqx(raw, 0xFFFF).to_bytes(2, "big") == crc else None


def can_mark(width: int, height: int) -> bool:
    return width >= MIN_SIDE and height >= MIN_SIDE


# ---- colour and transforms --------------------------------------------------------------------------------


def _u_channel(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Y, U, V) in float, with the coefficients OpenCV's BGR2YUV uses (U, V offset by 128)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return y, 0.492 * (b - y) + 128.0, 0.877 * (r - y) + 128.0


def _to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    b = y + (u - 128.0) / 0.492
    r = y + (v - 128.0) / 0.877
    g = (y - 0.299 * r - 0.114 * b) / 0.587
    return np.clip(np.round(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


def _blocks(band: np.ndarray) -> np.ndarray:
    rows, cols = band.shape[0] // BLOCK, band.shape[1] // BLOCK
    return band[: rows * BLOCK, : cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK).transpose(0, 2, 1, 3).reshape(-1, BLOCK, BLOCK)


def _unblocks(blocks: np.ndarray, shape: tuple) -> np.ndarray:
    rows, cols = shape[0] // BLOCK, shape[1] // BLOCK
    return blocks.reshape(rows, cols, BLOCK, BLOCK).transpose(0, 2, 1, 3).reshape(rows * BLOCK, cols * BLOCK)


# ---- embed and read -----------------------------------------------------------------------------------------


def embed(rgb: np.ndarray, watermark_id: str) -> np.ndarray:
    """A copy of an HWC uint8 RGB image carrying the id (images of at least 256×256)."""
    import pywt
    from scipy.fft import dctn, idctn

    height, width = rgb.shape[:2]
    if not can_mark(width, height):
        raise ValueError(f"an image of {width}×{height} is too small for the watermark (at least {MIN_SIDE}×{MIN_SIDE})")
    bits = payload_bits(watermark_id)
    y, u, v = _u_channel(rgb)
    h4, w4 = height // 4 * 4, width // 4 * 4
    approx, details = pywt.dwt2(u[:h4, :w4], "haar")
    blocks = _blocks(approx)
    left, sigma, right = np.linalg.svd(dctn(blocks, axes=(1, 2), norm="ortho"))
    wanted = bits[np.arange(len(blocks)) % len(bits)]
    sigma[:, 0] = (sigma[:, 0] // SCALE + 0.25 + 0.5 * wanted) * SCALE
    marked = idctn(left @ (sigma[:, :, None] * right), axes=(1, 2), norm="ortho")
    unblocked = _unblocks(marked, approx.shape)
    approx = approx.copy()
    approx[: unblocked.shape[0], : unblocked.shape[1]] = unblocked
    u = u.copy()
    u[:h4, :w4] = pywt.idwt2((approx, details), "haar")
    return _to_rgb(y, u, v)


# The U channel from RGB in one matrix product (the coefficients of _u_channel folded together).
_U_FROM_RGB = np.array([-0.492 * 0.299, -0.492 * 0.587, 0.492 * (1 - 0.114)], dtype=np.float32)
_STRIP_PIXELS = 1 << 20  # pixels converted at a time: reading never holds a full-size float copy of the picture


def approximation_band(picture) -> np.ndarray:
    """The Haar approximation band of the picture's U channel (float32, half the size on each side), as
    ``pywt.dwt2(u, "haar")[0]`` gives it, computed strip by strip from an HWC uint8 array or a PIL image: reading
    a 16-megapixel upload needs this quarter-size band, not float copies of the whole picture."""
    if isinstance(picture, np.ndarray):
        height, width = picture.shape[:2]
    else:
        width, height = picture.size
    h4, w4 = height // 4 * 4, width // 4 * 4
    band = np.empty((h4 // 2, w4 // 2), dtype=np.float32)
    rows = max(2, _STRIP_PIXELS // max(w4, 1) // 2 * 2)  # an even count, so each strip halves exactly
    for top in range(0, h4, rows):
        bottom = min(top + rows, h4)
        if isinstance(picture, np.ndarray):
            strip = picture[top:bottom, :w4, :3]
        else:
            strip = np.asarray(picture.crop((0, top, w4, bottom)).convert("RGB"))
        u = strip.astype(np.float32) @ _U_FROM_RGB + np.float32(128.0)
        band[top // 2 : bottom // 2] = (u[0::2, 0::2] + u[0::2, 1::2] + u[1::2, 0::2] + u[1::2, 1::2]) * np.float32(0.5)
    return band


def read_bits(picture) -> np.ndarray | None:
    """The 48 payload bits as the picture (an HWC uint8 RGB array or a PIL image) carries them (always some
    bits), or None for a picture too small. Works in float32 on the approximation band only."""
    from scipy.fft import dctn

    width, height = (picture.shape[1], picture.shape[0]) if isinstance(picture, np.ndarray) else picture.size
    if not can_mark(width, height):
        return None
    blocks = _blocks(approximation_band(picture))
    sigma = np.linalg.svd(dctn(blocks, axes=(1, 2), norm="ortho"), compute_uv=False)[:, 0]
    # Soft votes: a 0 is written a quarter of the way into its quantisation step, a 1 three quarters, so
    # -sin(2π·phase) is -1 for a clean 0 and +1 for a clean 1, and a block that compression pushed near a
    # boundary counts for little. Averaging these rather than hard 0/1 votes is what keeps every bit at JPEG
    # q75 (hard votes lost one bit of 48 in ~5% of ids there; 0 of 900 with soft votes, smooth 512² pictures).
    votes = -np.sin(2 * np.pi * (sigma % SCALE) / SCALE)
    n = ID_BITS + CRC_BITS
    sums = np.bincount(np.arange(len(blocks)) % n, weights=votes, minlength=n)
    return (sums > 0).astype(np.float64)


def read(picture) -> str | None:
    """The watermark id a picture (an HWC uint8 RGB array or a PIL image) carries, if its CRC checks out."""
    bits = read_bits(picture)
    return None if bits is None else id_from_bits(bits)


def soft_binding(watermark_id: str) -> dict:
    return {"alg": ALGORITHM, "blocks": [{"scope": {}, "value": base64.b64encode(bytes.fromhex(watermark_id)).decode()}]}


def quality(original: np.ndarray, marked: np.ndarray) -> dict:
    """PSNR (dB) and SSIM (mean over 7×7 windows, on luma) between an image and its marked copy."""
    from scipy.ndimage import uniform_filter

    a, b = original.astype(np.float64), marked.astype(np.float64)
    mse = float(np.mean((a - b) ** 2))
    psnr = float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
    ya, yb = _u_channel(original)[0], _u_channel(marked)[0]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = uniform_filter(ya, 7), uniform_filter(yb, 7)
    var_a = uniform_filter(ya * ya, 7) - mu_a**2
    var_b = uniform_filter(yb * yb, 7) - mu_b**2
    cov = uniform_filter(ya * yb, 7) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return {"psnr_db": round(float(psnr), 2), "ssim": round(float(ssim.mean()), 4)}
