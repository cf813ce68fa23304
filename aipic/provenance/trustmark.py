"""Adobe TrustMark as the second watermark backend, when its model files are on this machine.

TrustMark (the ``trustmark`` package, MIT) is a learned watermark: a U-Net encoder adds a residual computed at
256² and a ResNet decoder reads 100 bits back at 245² (224² for variant P), with BCH error correction. It
survives resizing and mild crops, which aipic's default dwtDctSvd mark does not.

Its model files are not in the package: the package downloads them from Adobe's CDN on first use. aipic never
lets it: the files are read from a folder the operator fills (``aipic download --trustmark``, or a copy),
``AIPIC_TRUSTMARK_MODELS`` (default ``<home>/models/trustmark``), and each must match the checksum Adobe
publishes in the package. With ``published=False`` (tiny random-weight stand-ins, tests only) any files are
accepted and the soft binding names aipic's stand-in algorithm, never Adobe's.

The payload is the same as dwtDctSvd's: a 32-bit output id and its CRC-16 (48 bits), carried in TrustMark's
BCH_5 schema (61 data bits, 5 bit errors corrected). The soft binding follows Adobe's C2PA example:
``alg`` ``com.adobe.trustmark.<variant>``, value ``"<schema>*<data bits>"``.

This module imports torch only inside the functions that need it; ``files``/``present`` do not.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import pathlib
import shutil
import sys
import threading
import urllib.request
from dataclasses import dataclass

import numpy as np
from PIL import Image

from aipic.common.errors import ConfigError, ModelUnavailable
from aipic.common.settings import TRUSTMARK_VARIANTS as VARIANTS
from aipic.common.settings import Settings
from aipic.provenance.watermark import id_from_bits, payload_bits

log = logging.getLogger(__name__)
SCHEMA = 1  # TrustMark.Encoding.BCH_5: 61 data bits, 5 correctable bit errors
DATA_BITS = 61
STAND_IN_ALGORITHM = "org.aipic.trustmark-stand-in"
NEEDS_EXTRA = "The TrustMark watermark needs the optional extra: pip install 'aipic[trustmark]'."


@dataclass(frozen=True)
class TrustMarkSpec:
    """Where a TrustMark model lives and which one: picklable, so worker processes load their own copy."""

    folder: str
    variant: str = "Q"
    published: bool = True  # the files must be Adobe's published ones (checksums); False: test stand-ins

    def check(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"Unknown TrustMark variant {self.variant!r}; use one of {', '.join(VARIANTS)}.")

    @property
    def algorithm(self) -> str:
        return f"com.adobe.trustmark.{self.variant}" if self.published else f"{STAND_IN_ALGORITHM}.{self.variant}"


def for_settings(settings: Settings, published: bool = True) -> TrustMarkSpec:
    """The TrustMark model a deployment names (Settings.trustmark_models, trustmark_variant)."""
    return TrustMarkSpec(settings.trustmark_folder, settings.trustmark_variant, published)


def for_verifying(settings: Settings) -> TrustMarkSpec | None:
    """The TrustMark model a verifier reads with: the one this deployment marks with (watermark_method
    trustmark), when its files are here."""
    if settings.watermark_method != "trustmark":
        return None
    spec = for_settings(settings, published=settings.models_mode != "tiny")
    return spec if present(spec) else None


def files(variant: str) -> list[str]:
    """The files one variant needs for embedding and reading (its config, encoder and decoder)."""
    return [f"trustmark_{variant}.yaml", f"encoder_{variant}.ckpt", f"decoder_{variant}.ckpt"]


def present(spec: TrustMarkSpec) -> bool:
    return all((pathlib.Path(spec.folder) / name).is_file() for name in files(spec.variant))


def _md5(path: pathlib.Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _published_checksums() -> dict:
    try:
        from trustmark.trustmark import MODEL_CHECKSUMS
    except ImportError:
        raise ModelUnavailable(NEEDS_EXTRA) from None
    return dict(MODEL_CHECKSUMS)


def check_files(spec: TrustMarkSpec) -> None:
    """Refuse, with a message that says what to do, when the files are missing or are not Adobe's."""
    spec.check()
    folder = pathlib.Path(spec.folder)
    missing = [name for name in files(spec.variant) if not (folder / name).is_file()]
    if missing:
        raise ModelUnavailable(
            f"The TrustMark {spec.variant} model files are not in {folder} (missing: {', '.join(missing)}). "
            f"Fetch them once with `aipic download --trustmark` on a machine with network access and copy the folder, "
            f"or choose the default watermark (AIPIC_WATERMARK_METHOD=dwtdctsvd).")
    if spec.published:
        checksums = _published_checksums()
        wrong = [name for name in files(spec.variant) if checksums.get(name) and _md5(folder / name) != checksums[name]]
        if wrong:
            raise ModelUnavailable(f"{', '.join(wrong)} in {folder} are not Adobe's published TrustMark files (checksum differs): "
                                   f"fetch them again with `aipic download --trustmark`.")


# ---- the model ---------------------------------------------------------------------------------------------


_models: dict = {}
_models_lock = threading.Lock()


def _trustmark(spec: TrustMarkSpec):
    """The loaded TrustMark for a spec, once per process (thread-safe: inference only, under no_grad)."""
    with _models_lock:
        model = _models.get(spec)
        if model is None:
            model = _models[spec] = _load(spec)
    return model


def _load(spec: TrustMarkSpec):
    check_files(spec)
    try:
        from trustmark import TrustMark
    except ImportError:
        raise ModelUnavailable(NEEDS_EXTRA) from None

    folder = pathlib.Path(spec.folder)

    class LocalTrustMark(TrustMark):
        """TrustMark reading its files from the operator's folder, never from the network."""

        def check_and_download(self, filename):  # the files were checked above; nothing is ever downloaded
            if not (folder / pathlib.Path(filename).name).is_file():
                raise FileNotFoundError(pathlib.Path(filename).name)

        def load_model(self, config_path, weight_path, *args, **kwargs):
            return super().load_model(str(folder / pathlib.Path(config_path).name), str(folder / pathlib.Path(weight_path).name), *args, **kwargs)

    try:
        model = LocalTrustMark(verbose=False, model_type=spec.variant, encoding_type=SCHEMA, loadRemover=False, device="cpu")
    except Exception as error:  # noqa: BLE001 - the package raises whatever its loaders raise
        raise ModelUnavailable(f"Could not load the TrustMark {spec.variant} model from {folder} ({type(error).__name__}).") from None
    if model.encoder is None or model.decoder is None:  # the package returns None when a file cannot be loaded
        raise ModelUnavailable(f"Could not load the TrustMark {spec.variant} model from {folder}.")
    log.info("TrustMark %s loaded from %s", spec.variant, folder)
    return model


def _data_bits(watermark_id: str) -> str:
    return "".join("1" if bit else "0" for bit in payload_bits(watermark_id))


def embed(spec: TrustMarkSpec, rgb: np.ndarray, watermark_id: str) -> np.ndarray:
    """A copy of an HWC uint8 RGB image carrying the id (any size; TrustMark works at 256² and resizes)."""
    marked = _trustmark(spec).encode(Image.fromarray(rgb), _data_bits(watermark_id), MODE="binary")
    return np.asarray(marked.convert("RGB"))


def decoder_input(spec: TrustMarkSpec, picture) -> np.ndarray:
    """What TrustMark's decoder looks at: the centre (a square when the aspect ratio is over 2, as the package
    does) resized to its decoding resolution. Computed without torch, so the bounded verify worker can make it.
    ``picture``: an HWC uint8 RGB array or an RGB PIL image."""
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    width, height = image.size
    if spec.variant == "P" or max(width, height) / min(width, height) > 2.0:  # P always reads the centre square
        side = min(width, height)
        image = image.crop(((width - side) // 2, (height - side) // 2, (width - side) // 2 + side, (height - side) // 2 + side))
    resolution = 224 if spec.variant == "P" else 245
    return np.asarray(image.resize((resolution, resolution), Image.Resampling.BILINEAR))


def read_prepared(spec: TrustMarkSpec, prepared: np.ndarray) -> str | None:
    """The id carried by a decoder input, if TrustMark's BCH decodes it *and* aipic's CRC checks out."""
    import torch

    model = _trustmark(spec)
    tensor = torch.from_numpy(np.array(prepared, dtype=np.float32)).permute(2, 0, 1).div(255).unsqueeze(0) * 2 - 1
    with torch.no_grad():
        packet = (model.decoder.decoder(tensor.to(model.decoder.device)) > 0).cpu().numpy()[0]
    return id_from_packet(model, packet)


def id_from_packet(model, packet: np.ndarray) -> str | None:
    """The id in a decoded 100-bit packet: BCH corrects up to 5 bit errors, then aipic's CRC must check out."""
    bits, detected, _ = model.ecc.decode_bitstream(np.asarray(packet).reshape(1, -1), "binary")[0]
    if not detected or len(bits) < 48:
        return None
    return id_from_bits(np.array([int(bit) for bit in bits[:48]], dtype=np.float64))


def packet(model, watermark_id: str) -> np.ndarray:
    """The 100-bit packet TrustMark's encoder is given for an id (data bits, BCH parity, schema bits)."""
    return np.asarray(model.ecc.encode_binary([_data_bits(watermark_id)]))[0]


def read(spec: TrustMarkSpec, rgb: np.ndarray) -> str | None:
    return read_prepared(spec, decoder_input(spec, rgb))


def soft_binding(spec: TrustMarkSpec, watermark_id: str) -> dict:
    data = _data_bits(watermark_id).ljust(DATA_BITS, "0")
    return {"alg": spec.algorithm, "blocks": [{"scope": {}, "value": f"{SCHEMA}*{data}"}]}


def download(folder: str | pathlib.Path, variant: str = "Q", host: str | None = None) -> list[str]:
    """Fetch one variant's files from Adobe's CDN (the package's own address, or ``host``, a mirror) into
    ``folder``, each checked against Adobe's published checksum before it takes its real name."""
    try:
        from trustmark.trustmark import MODEL_REMOTE_HOST
    except ImportError:
        raise ModelUnavailable(NEEDS_EXTRA) from None
    host = host or MODEL_REMOTE_HOST
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    checksums = _published_checksums()
    fetched = []
    for name in files(variant):
        target = folder / name
        if target.is_file() and _md5(target) == checksums.get(name):
            continue
        partial = target.with_suffix(target.suffix + ".partial")
        try:
            with urllib.request.urlopen(host + name, timeout=60) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise ModelUnavailable(f"Could not download {name} from {host} ({type(error).__name__}): connect to the internet, or copy the files into {folder}.") from None
        if _md5(partial) != checksums.get(name):
            partial.unlink(missing_ok=True)
            raise ModelUnavailable(f"{name} downloaded from {host} does not match Adobe's published checksum; nothing was kept.")
        partial.replace(target)  # never a half-written file under the real name
        fetched.append(str(target))
    return fetched


@functools.cache
def stand_in_config() -> dict:
    """aipic's own tiny configuration of TrustMark's architecture (a narrow U-Net encoder, a ResNet-18 decoder),
    for random-weight stand-ins: the real code path, none of the real behaviour."""
    return {"model": {"target": "trustmark.model.TrustMark_Arch", "params": {
        "cover_key": "image", "secret_key": "secret", "secret_len": 100, "resolution": 256,
        "secret_encoder_config": {"target": "trustmark.unet.Unet1", "params": {"width": 4, "ndown": 4, "nmiddle": 1, "activ": "silu", "secret_len": 100, "resolution": 256}},
        "secret_decoder_config": {"target": "trustmark.unet.SecretDecoder", "params": {"arch": "resnet18", "secret_len": 100, "resolution": 224}},
        "discriminator_config": {"target": "trustmark.model.Identity"},
        "loss_config": {"target": "trustmark.model.Identity"},
        "noise_config": {"target": "trustmark.model.Identity"},
    }}}


def write_stand_in(folder: str | pathlib.Path, variant: str = "Q", seed: int = 0) -> TrustMarkSpec:
    """Tiny random-weight TrustMark files in ``folder`` (tests and offline trials; marks made with them mean
    nothing to real TrustMark readers, so their soft binding names the stand-in algorithm)."""
    import torch
    from omegaconf import OmegaConf
    from trustmark.model import instantiate_from_config

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = OmegaConf.create(stand_in_config())
    torch.manual_seed(seed)
    model = instantiate_from_config(config.model)
    state = model.state_dict()
    (folder / f"trustmark_{variant}.yaml").write_text(OmegaConf.to_yaml(config))
    for part in ("encoder", "decoder"):
        torch.save({"state_dict": {key: value for key, value in state.items() if key.startswith(part + ".")}}, folder / f"{part}_{variant}.ckpt")
    return TrustMarkSpec(str(folder), variant, published=False)


def _reader_main() -> None:
    """``python -m aipic.provenance.trustmark FOLDER VARIANT PUBLISHED``: a decoder input (uint8, its shape in JSON on
    the first line, then the raw bytes) on stdin; ``{"id": …}`` on stdout. Run by the verifier, which keeps torch
    out of its own process and out of the memory-bounded worker that parses untrusted files."""
    folder, variant, published = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    header = sys.stdin.buffer.readline()
    shape = tuple(json.loads(header))
    prepared = np.frombuffer(sys.stdin.buffer.read(), dtype=np.uint8).reshape(shape)
    try:
        found = read_prepared(TrustMarkSpec(folder, variant, published), prepared)
        sys.stdout.write(json.dumps({"id": found}))
    except ModelUnavailable as error:
        sys.stdout.write(json.dumps({"id": None, "error": str(error)}))


if __name__ == "__main__":
    _reader_main()
