"""Loading the models named in the catalog: real weights when they are at hand, tiny random ones otherwise.

Three modes, chosen explicitly (``--models`` on the CLI, ``AIPIC_MODELS`` for the app):

* ``auto`` (default): real weights if they are on this machine (a local directory,
  or already in the Hugging Face / torch caches), else the tiny random-weight
  placeholders.  Never downloads, so it never hangs offline.
* ``real``: real weights, downloading them if needed; a clear error if that fails.
* ``tiny``: the tiny random-weight placeholders (tests, offline demos).
"""

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aipic.common.errors import ModelUnavailable
from aipic.models import tiny
from aipic.models.catalog import TINY_RANDOM, Catalog, ModelEntry

log = logging.getLogger(__name__)
OPEN_CLIP_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
VGG19_LAYERS = {"conv1_1": 0, "conv2_1": 5, "conv3_1": 10, "conv4_1": 19, "conv4_2": 21, "conv5_1": 28}


@dataclass
class LoadedModel:
    """A model ready to run, and the facts about it that the UI and the manifest report."""

    entry: ModelEntry  # the catalog entry asked for
    obj: Any
    placeholder: bool  # True when these are tiny random weights
    note: str = ""  # why a placeholder was used, for people to read
    extra: dict = field(default_factory=dict)
    tiny: bool = False  # the tiny architecture (its own request defaults), not only random weights
    revision: str | None = None  # the weights' exact version: the Hub commit of the snapshot that was loaded

    @property
    def name(self) -> str:
        return "tiny-random" if self.placeholder else self.entry.source

    def describe(self) -> dict:
        return {
            "catalog_key": self.entry.key,
            "name": self.name,
            "label": self.entry.label if not self.placeholder else f"tiny random weights in place of {self.entry.label}",
            "source": self.entry.source,
            "pretrained": self.entry.pretrained,
            "revision": self.revision or ("random-weights" if self.placeholder else None),
            "placeholder": self.placeholder,
            "note": self.note,
            "license": self.license,
        }

    @property
    def license(self) -> dict | None:
        """The licence of the weights that actually run (a placeholder's are aipic's own random weights)."""
        return self.entry.placeholder_license if self.placeholder else self.entry.license


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _placeholder_note(entry: ModelEntry, reason: str) -> str:
    return f"Using tiny random weights in place of {entry.label} ({reason}): outputs are noise, not real images or audits."


def _hub_revision(path) -> str | None:
    """The commit of a Hugging Face cache snapshot from a file path inside it (…/snapshots/<commit>/…)."""
    parts = Path(str(path)).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts and parts.index("snapshots") + 1 < len(parts) else None


def _cached_file(repo_id: str, filename: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename)
    except ValueError:  # not a valid hub id (e.g. a path that does not exist)
        return None
    return found if isinstance(found, str) else None


def _hub_snapshot_present(repo_id: str, filename: str = "model_index.json") -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except ValueError:  # not a valid hub id (e.g. a path that does not exist)
        return False


# ---- text-to-image / img2img -------------------------------------------------------------------


def prepare_for_gpu(pipe, compile: bool = False):
    """The fast path on CUDA. SDPA attention is diffusers' default on torch 2 in every mode.

    With ``compile``: channels_last UNet and VAE, fused QKV projections, and torch.compile of the UNet and the VAE
    decoder with CUDA graphs ("reduce-overhead"); the engine pads batches to a few sizes and warms each one at
    start-up, so no user pays for compilation.  Eager (no compile), the pipeline is left as diffusers builds it:
    on an H200, channels_last and fused QKV made eager generation slower (a batch of 16 took 485 ms instead of
    316 ms with the full VAE, whose GroupNorms are slow in channels_last), so they are used only under compile.
    """
    if pipe.device.type != "cuda" or not compile:
        return pipe
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    try:
        from diffusers import AutoencoderKL

        pipe.fuse_qkv_projections(unet=True, vae=isinstance(pipe.vae, AutoencoderKL))
    except Exception as error:  # noqa: BLE001 - an optimisation, not a requirement
        log.info("fused QKV projections not available: %s", error)
    pipe.unet = torch.compile(pipe.unet, mode="reduce-overhead", fullgraph=True)
    pipe.vae.decode = torch.compile(pipe.vae.decode, mode="reduce-overhead", fullgraph=True)
    return pipe


class BucketCompiled(torch.nn.Module):
    """An image tower (CLIP's, the safety checker's) compiled with CUDA graphs for a few padded batch sizes.

    A batch is padded up to the next bucket (repeating its last image) and the results cut back, so the
    captured graphs are reused whatever the batch. CUDA graphs belong to the thread that captured them: the
    compiled tower runs only on the thread that first used it (the engine's batch lane, at warm-up); any
    other thread (the long-job lane) and any batch above the largest bucket run the eager tower. If
    compiling fails, the eager tower takes over for good and the log says so.
    """

    compiled: Any  # the torch.compile'd tower

    def __init__(self, tower: torch.nn.Module, buckets: tuple):
        super().__init__()
        self.eager = tower
        # not a child module: the tower's parameters are registered once, under ``eager``
        object.__setattr__(self, "compiled", torch.compile(tower, mode="reduce-overhead", dynamic=False))
        self.buckets = tuple(sorted(buckets))
        self._thread: int | None = None
        self._failed = False

    def forward(self, images: torch.Tensor, *args, **kwargs):
        count = images.shape[0]
        size = next((bucket for bucket in self.buckets if bucket >= count), None)
        if self._thread is None:
            self._thread = threading.get_ident()
        if self._failed or size is None or threading.get_ident() != self._thread:
            return self.eager(images, *args, **kwargs)
        if size > count:
            images = torch.cat([images, images[-1:].expand(size - count, *images.shape[1:])])
        try:
            out = self.compiled(images, *args, **kwargs)
        except Exception as error:  # noqa: BLE001 - an optimisation, not a requirement
            log.warning("compiled image tower failed (%s); using the eager one", type(error).__name__)
            self._failed = True
            return self.eager(images[:count], *args, **kwargs)
        return _cut(out, count)


def _cut(out, count: int):
    """The first ``count`` rows of a tower's output (a tensor, a tuple of them, or a transformers ModelOutput)."""
    if isinstance(out, torch.Tensor):
        return out[:count].clone()  # a CUDA graph's output is overwritten by its next run
    if hasattr(out, "to_tuple"):
        return type(out)(**{key: _cut(value, count) for key, value in out.items()})
    if isinstance(out, (tuple, list)):
        return type(out)(_cut(value, count) for value in out)
    return out


def compile_tower(owner: torch.nn.Module, attribute: str, buckets: tuple | None) -> None:
    """Swap ``owner.<attribute>`` (an image tower on CUDA) for its BucketCompiled version, once."""
    tower = getattr(owner, attribute)
    if not buckets or isinstance(tower, BucketCompiled) or next(tower.parameters()).device.type != "cuda":
        return
    setattr(owner, attribute, BucketCompiled(tower, buckets))


def text_to_image_weights_present(entry: ModelEntry) -> bool:
    """Whether a diffusers model's weights (and its tiny decoder's) are on this machine, without loading them."""
    return (Path(entry.source).is_dir() or _hub_snapshot_present(entry.source)) and (
        not entry.tiny_decoder or Path(entry.tiny_decoder).is_dir() or _hub_snapshot_present(entry.tiny_decoder, "config.json")
    )


def load_text_to_image(entry: ModelEntry, mode: str, device: torch.device, compile: bool = False) -> LoadedModel:
    if entry.is_tiny_random or mode == "tiny":
        note = "" if entry.is_tiny_random else _placeholder_note(entry, "tiny models were asked for")
        return LoadedModel(entry, tiny.build_tiny_stable_diffusion().to(device), placeholder=True, note=note or "tiny random weights: outputs are noise", tiny=True)
    if mode == "auto" and not text_to_image_weights_present(entry):
        note = _placeholder_note(entry, "its weights are not on this machine; run `aipic download` or set AIPIC_MODELS=real")
        return LoadedModel(entry, tiny.build_tiny_stable_diffusion().to(device), placeholder=True, note=note, tiny=True)
    from diffusers import AutoPipelineForText2Image

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    try:
        pipe = AutoPipelineForText2Image.from_pretrained(entry.source, torch_dtype=dtype, local_files_only=(mode == "auto"))
        if entry.tiny_decoder:
            from diffusers import AutoencoderTiny

            pipe.vae = AutoencoderTiny.from_pretrained(entry.tiny_decoder, torch_dtype=dtype, local_files_only=(mode == "auto"))
    except Exception as error:  # noqa: BLE001 - any loading failure becomes a clear message
        raise ModelUnavailable(f"Could not load {entry.label} from {entry.source!r}: {error}") from None
    if hasattr(pipe, "safety_checker"):
        pipe.safety_checker = None
    pipe.set_progress_bar_config(disable=True)
    revision = None if Path(entry.source).is_dir() else _hub_revision(_cached_file(entry.source, "model_index.json"))
    return LoadedModel(entry, prepare_for_gpu(pipe.to(device), compile), placeholder=False, revision=revision)


def image_to_image_pipeline(text_to_image_pipe):
    """The img2img pipeline that shares every component (and so all memory) with the text-to-image one."""
    from diffusers import AutoPipelineForImage2Image

    pipe = AutoPipelineForImage2Image.from_pipe(text_to_image_pipe)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ---- CLIP ----------------------------------------------------------------------------------------


def _open_clip_local_weights(entry: ModelEntry) -> str | None:
    if entry.pretrained and Path(entry.pretrained).is_file():
        return entry.pretrained
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    cfg = open_clip.get_pretrained_cfg(entry.source, entry.pretrained or "")
    repo = (cfg or {}).get("hf_hub", "").strip("/")
    for filename in OPEN_CLIP_WEIGHT_FILES if repo else ():
        cached = try_to_load_from_cache(repo, filename)
        if isinstance(cached, str):
            return cached
    return None


def load_clip(entry: ModelEntry, mode: str, device: torch.device) -> LoadedModel:
    if entry.is_tiny_random or mode == "tiny":
        model, preprocess, tokenizer = tiny.build_tiny_clip()
        note = "tiny random weights: audits are meaningless" if entry.is_tiny_random else _placeholder_note(entry, "tiny models were asked for")
        return LoadedModel(entry, model.to(device), placeholder=True, note=note, extra={"preprocess": preprocess, "tokenizer": tokenizer}, tiny=True)
    import open_clip

    weights = _open_clip_local_weights(entry)
    if mode == "auto" and weights is None:
        model, preprocess, tokenizer = tiny.build_tiny_clip()
        note = _placeholder_note(entry, "its weights are not on this machine; run `aipic download` or set AIPIC_MODELS=real")
        return LoadedModel(entry, model.to(device), placeholder=True, note=note, extra={"preprocess": preprocess, "tokenizer": tokenizer}, tiny=True)
    try:
        precision = "fp16" if device.type == "cuda" else "fp32"  # the audit's only GPU cost: half precision, like the generator
        model, _, preprocess = open_clip.create_model_and_transforms(entry.source, pretrained=weights or entry.pretrained, device=device, precision=precision)
    except Exception as error:  # noqa: BLE001
        raise ModelUnavailable(f"Could not load {entry.label}: {error}") from None
    model.eval()
    revision = _hub_revision(weights) if weights else None
    return LoadedModel(entry, model, placeholder=False, extra={"preprocess": preprocess, "tokenizer": open_clip.get_tokenizer(entry.source)}, revision=revision or entry.pretrained)


# ---- style (VGG features) ------------------------------------------------------------------------


def _vgg19_cached_file() -> Path:
    from torchvision.models import VGG19_Weights

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG19_Weights.IMAGENET1K_V1.url).name


def _style_weights_file(entry: ModelEntry) -> Path:
    """Where the style network's weights are on this machine, if anywhere: a local file, or torch's cache."""
    return Path(entry.source) if Path(entry.source).is_file() else _vgg19_cached_file()


def load_style_network(entry: ModelEntry, mode: str, device: torch.device) -> LoadedModel:
    if entry.is_tiny_random or mode == "tiny":
        note = "tiny random weights" if entry.is_tiny_random else _placeholder_note(entry, "tiny models were asked for")
        return LoadedModel(entry, tiny.build_tiny_vgg().to(device), placeholder=True, note=note, extra={"layers": tiny.TINY_VGG_LAYERS}, tiny=True)
    from torchvision.models import VGG19_Weights, vgg19

    local_file = _style_weights_file(entry)
    if mode == "auto" and not local_file.is_file():
        note = _placeholder_note(entry, "its weights are not on this machine; run `aipic download` or set AIPIC_MODELS=real")
        return LoadedModel(entry, tiny.build_tiny_vgg().to(device), placeholder=True, note=note, extra={"layers": tiny.TINY_VGG_LAYERS}, tiny=True)
    try:
        if local_file.is_file():
            network = vgg19()
            network.load_state_dict(torch.load(local_file, map_location="cpu", weights_only=True))
        else:
            network = vgg19(weights=VGG19_Weights.IMAGENET1K_V1)
    except Exception as error:  # noqa: BLE001
        raise ModelUnavailable(f"Could not load {entry.label}: {error}") from None
    features = network.features[: max(VGG19_LAYERS.values()) + 1].eval().to(device)
    return LoadedModel(entry, features, placeholder=False, extra={"layers": VGG19_LAYERS})


# ---- the set of models one pipeline uses ---------------------------------------------------------


class Models:
    """The models one pipeline uses: each loaded once, on first use, and kept. ``mode`` is auto, real or tiny
    (Settings.models_mode, checked there)."""

    def __init__(self, catalog: Catalog, mode: str = "auto", device: str | None = None, compile: bool = False):
        self.catalog = catalog
        self.mode = mode
        self.device = pick_device(device)
        self.compile = compile
        self._loading = threading.Lock()
        self._loaded: dict[tuple[str, str], LoadedModel] = {}

    def entry(self, section: str, key: str | None = None) -> ModelEntry:
        """The catalog entry a request of ``section`` (``key``) is held to, licence included: the tiny random one in
        tiny mode, which runs it whatever was asked."""
        return self.catalog.entry(section, TINY_RANDOM if self.mode == "tiny" else key)

    def get(self, section: str, key: str | None = None) -> LoadedModel:
        entry = self.catalog.entry(section, key)
        cache_key = (section, entry.key)
        if cache_key not in self._loaded:
            with self._loading:
                if cache_key not in self._loaded:
                    if section == "text_to_image":
                        self._loaded[cache_key] = load_text_to_image(entry, self.mode, self.device, self.compile)
                    else:
                        loader = {"clip": load_clip, "style": load_style_network, "safety": load_safety_checker}[section]
                        self._loaded[cache_key] = loader(entry, self.mode, self.device)
        return self._loaded[cache_key]

    def loaded(self, section: str, key: str | None = None) -> LoadedModel | None:
        """The model if it is already loaded, else None (never loads)."""
        return self._loaded.get((section, self.catalog.entry(section, key).key))

    def request_defaults(self, key: str | None = None) -> dict:
        """A text-to-image model's request defaults (steps, guidance, size…), known without loading it: a tiny
        placeholder runs with the tiny model's own (a real model's 50 steps would be pointless on it)."""
        entry = self.catalog.entry("text_to_image", key)
        return dict((self.catalog.entry("text_to_image", TINY_RANDOM) if self.runs_tiny(entry.key) else entry).defaults or {})

    def runs_tiny(self, key: str | None = None) -> bool:
        """Whether this text-to-image model runs as the tiny random-weight stand-in (loaded, or as it would load)."""
        entry = self.catalog.entry("text_to_image", key)
        loaded = self.loaded("text_to_image", entry.key)
        if loaded is not None:
            return bool(loaded.tiny)
        return entry.is_tiny_random or self.mode == "tiny" or (self.mode == "auto" and not text_to_image_weights_present(entry))

    def register(self, model: LoadedModel) -> None:
        """Use an already built model for its catalog entry (e.g. benchmarks with random real-size weights)."""
        self._loaded[(model.entry.section, model.entry.key)] = model

    def status(self) -> dict:
        return {f"{section}:{key}": model.describe() for (section, key), model in self._loaded.items()}


# ---- safety checker ------------------------------------------------------------------------------


def _safety_weights_present(entry: ModelEntry) -> bool:
    return Path(entry.source).is_dir() or _hub_snapshot_present(entry.source, "config.json")


def load_safety_checker(entry: ModelEntry, mode: str, device: torch.device) -> LoadedModel:
    """The Stable Diffusion safety checker with real weights when they are on this machine (or with mode real);
    otherwise a tiny random stand-in that flags nothing, and the UI says the filter is not active."""
    if entry.is_tiny_random or mode == "tiny":
        note = "tiny random safety checker: no real safety filtering" if entry.is_tiny_random else _placeholder_note(entry, "tiny models were asked for").replace("outputs are noise, not real images or audits", "no real safety filtering")
        return LoadedModel(entry, tiny.build_tiny_safety_checker().to(device), placeholder=True, note=note, tiny=True)
    if mode == "auto" and not _safety_weights_present(entry):
        note = _placeholder_note(entry, "its weights are not on this machine; run `aipic download` or set AIPIC_MODELS=real").replace("outputs are noise, not real images or audits", "no real safety filtering")
        return LoadedModel(entry, tiny.build_tiny_safety_checker().to(device), placeholder=True, note=note, tiny=True)
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    try:
        checker = StableDiffusionSafetyChecker.from_pretrained(entry.source, torch_dtype=dtype, local_files_only=(mode == "auto"))
    except Exception as error:  # noqa: BLE001
        raise ModelUnavailable(f"Could not load {entry.label}: {error}") from None
    revision = None if Path(entry.source).is_dir() else _hub_revision(_cached_file(entry.source, "config.json"))
    return LoadedModel(entry, checker.eval().to(device), placeholder=False, revision=revision)


def weights_present(entry: ModelEntry) -> bool:
    """Whether a catalog entry's real weights are on this machine (a local path, or the Hugging Face or torch
    cache), found as its loader finds them, without loading anything: what auto mode loads instead of a
    placeholder. Always False for a tiny-random entry, which has no weights to find."""
    if entry.is_tiny_random:
        return False
    if entry.section == "text_to_image":
        return text_to_image_weights_present(entry)
    if entry.section == "clip":
        return _open_clip_local_weights(entry) is not None
    if entry.section == "style":
        return _style_weights_file(entry).is_file()
    return _safety_weights_present(entry)


def download_weights(catalog: Catalog) -> list[str]:
    """Fetch the default real weights into the local caches (needs network). Returns what was fetched."""
    from diffusers import AutoPipelineForText2Image
    import open_clip
    from torchvision.models import VGG19_Weights, vgg19

    fetched = []
    t2i = catalog.entry("text_to_image")
    if not t2i.is_tiny_random:
        AutoPipelineForText2Image.from_pretrained(t2i.source)
        fetched.append(t2i.source)
        if t2i.tiny_decoder:
            from diffusers import AutoencoderTiny

            AutoencoderTiny.from_pretrained(t2i.tiny_decoder)
            fetched.append(t2i.tiny_decoder)
    clip = catalog.entry("clip")
    if not clip.is_tiny_random:
        open_clip.create_model_and_transforms(clip.source, pretrained=clip.pretrained)
        fetched.append(f"{clip.source}/{clip.pretrained}")
    if not catalog.entry("style").is_tiny_random:
        vgg19(weights=VGG19_Weights.IMAGENET1K_V1)
        fetched.append("torchvision vgg19 IMAGENET1K_V1")
    safety = catalog.entry("safety")
    if not safety.is_tiny_random:
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

        StableDiffusionSafetyChecker.from_pretrained(safety.source)
        fetched.append(safety.source)
    return fetched
