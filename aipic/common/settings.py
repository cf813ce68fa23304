"""The one ``Settings``: every knob of a deployment, read from the environment once, at the edges (the app, the
CLI), and passed down. No other module reads ``os.environ`` (a helper process gets its environment from the
process that starts it). Every ``AIPIC_*`` variable is listed in the README's table, with its default.

Precedence: the defaults below, then the environment (``Settings.from_env``), then explicit overrides (command
line options). ``Settings()`` alone reads nothing: tests and library callers say what they want.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aipic.common.errors import ConfigError
from aipic.common.images import OUTPUT_FORMATS

MODEL_MODES = ("auto", "real", "tiny")
WATERMARK_METHODS = ("dwtdctsvd", "trustmark")
TRUSTMARK_VARIANTS = ("Q", "P", "C", "B")
DEFAULT_NAMESPACE = "org.aipic"  # a placeholder this project does not own: deployments set their own domain
NAMESPACE_PATTERN = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+"
TRUE_WORDS = ("1", "true", "yes", "on")


def default_home() -> Path:
    return Path.home() / ".aipic"


@dataclass(frozen=True)
class Settings:
    """How one deployment runs. Grouped by who reads them; the README's table says what each does."""

    # where things are
    home: Path = field(default_factory=default_home)  # keys/, outputs/, registry.sqlite3, models/trustmark
    registry_url: str | None = None  # a SQLAlchemy URL; None: SQLite under the home
    models_mode: str = "auto"  # auto | real | tiny (aipic.models.loading)
    device: str | None = None  # torch device; None: cuda when available
    hub_offline: bool = False  # HF_HUB_OFFLINE: the model hub is never contacted
    # the engine: batching and finishing
    max_gpu_batch: int = 16  # most images in one GPU batch (a request's own count is limited by the catalog)
    batch_wait_s: float = 0.004  # how long the oldest queued job waits for compatible company
    cpu_workers: int = 0  # finishing threads; 0: one per core, at most 16
    cpu_processes: int | None = None  # finishing worker processes; None: automatic (on CUDA machines with 4+ cores)
    compile: bool = False  # torch.compile on CUDA, warmed at start for ``buckets`` (padded batch sizes)
    buckets: tuple = (1, 4, 16)
    inline: bool = False  # run each job in the caller's thread (ZeroGPU: CUDA exists only inside the call)
    long_families: tuple = ("style",)  # generator families with their own lane (queue and GPU thread)
    # what every output gets
    output_format: str = "png"
    safety: bool = True  # the Stable Diffusion safety checker on every generation
    nudenet: bool = False  # NudeNet as a second checker (an optional AGPL extra: the operator opts in)
    watermark: bool = True
    watermark_method: str = "dwtdctsvd"  # dwtdctsvd | trustmark
    trustmark_models: str | None = None  # the folder with TrustMark's files; None: <home>/models/trustmark
    trustmark_variant: str = "Q"
    tsa_url: str | None = None  # an RFC 3161 time-stamp authority for every signature
    thumbnail: bool = False  # a small claim thumbnail (~3 KB) in every manifest
    visible_label: bool = False  # draw a visible "AI-generated" label on every output (recorded in the manifest)
    assertion_namespace: str = DEFAULT_NAMESPACE  # the reverse domain of aipic's own assertion labels
    commercial_use: bool = False  # refuse models whose licence forbids or leaves unclear commercial use
    retention_days: float = 0.0  # delete output files older than this (0: keep); the registry keeps their records
    # the web app
    host: str = "127.0.0.1"
    port: int = 7860
    rate_limit: float = 30.0  # requests a minute per client; 0: off
    auth: tuple = field(default=(), repr=False)  # (user, password) pairs: sign-in
    trusted_proxies: tuple = ()  # proxies whose X-Forwarded-For names the client
    verify_concurrency: int | None = None  # verifications at once; None: by cores and memory
    on_spaces: bool = False  # running on Hugging Face Spaces (sign-in with gr.LoginButton)
    analytics: bool = False  # Gradio's usage analytics: off unless the operator opts in
    debug: bool = False  # the CLI shows tracebacks of unexpected errors

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home))

    # ---- reading the environment (the only place) ---------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Defaults, then the environment, then ``overrides`` (None means "not given"). Checked."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}

        def text(name: str) -> str:
            return (env.get(name) or "").strip()

        def number(name: str, kind, key: str, scale: float = 1.0) -> None:
            if text(name):
                try:
                    values[key] = kind(float(text(name)) * scale) if kind is float else kind(text(name))
                except ValueError:
                    raise ConfigError(f"{name} must be a number (got {text(name)!r}).") from None

        if text("AIPIC_HOME"):
            values["home"] = Path(text("AIPIC_HOME"))
        if text("AIPIC_REGISTRY_URL"):
            values["registry_url"] = text("AIPIC_REGISTRY_URL")
        if text("AIPIC_MODELS"):
            values["models_mode"] = text("AIPIC_MODELS").lower()
        values["hub_offline"] = text("HF_HUB_OFFLINE") not in ("", "0")
        number("AIPIC_MAX_GPU_BATCH", int, "max_gpu_batch")
        number("AIPIC_BATCH_WAIT_MS", float, "batch_wait_s", 1 / 1000)
        number("AIPIC_CPU_WORKERS", int, "cpu_workers")
        number("AIPIC_CPU_PROCESSES", int, "cpu_processes")
        if text("SPACES_ZERO_GPU"):  # Hugging Face ZeroGPU: the GPU is lent per call
            values["inline"] = True
        for name in ("compile", "watermark", "thumbnail", "safety", "nudenet", "inline", "visible_label"):
            if text(f"AIPIC_{name.upper()}"):
                values[name] = text(f"AIPIC_{name.upper()}").lower() in TRUE_WORDS
        if text("AIPIC_OUTPUT_FORMAT"):
            values["output_format"] = text("AIPIC_OUTPUT_FORMAT").lower()
        if text("AIPIC_WATERMARK_METHOD"):
            values["watermark_method"] = text("AIPIC_WATERMARK_METHOD").lower()
        if text("AIPIC_TRUSTMARK_MODELS"):
            values["trustmark_models"] = text("AIPIC_TRUSTMARK_MODELS")
        if text("AIPIC_TRUSTMARK_VARIANT"):
            values["trustmark_variant"] = text("AIPIC_TRUSTMARK_VARIANT").upper()
        if text("AIPIC_TSA_URL"):
            values["tsa_url"] = text("AIPIC_TSA_URL")
        if text("AIPIC_ASSERTION_NAMESPACE"):
            values["assertion_namespace"] = text("AIPIC_ASSERTION_NAMESPACE").lower()
        values["commercial_use"] = text("AIPIC_COMMERCIAL_USE").lower() in TRUE_WORDS
        number("AIPIC_RETENTION_DAYS", float, "retention_days")
        values["host"] = text("GRADIO_SERVER_NAME") or text("AIPIC_HOST") or cls.host
        port = text("GRADIO_SERVER_PORT") or text("AIPIC_PORT")
        if port:
            try:
                values["port"] = int(port)
            except ValueError:
                raise ConfigError(f"The port must be a whole number (got {port!r}).") from None
        number("AIPIC_RATE_LIMIT", float, "rate_limit")
        values["auth"] = _auth_pairs(text("AIPIC_AUTH"), text("AIPIC_AUTH_FILE"))
        values["trusted_proxies"] = tuple(item.strip() for item in text("AIPIC_TRUSTED_PROXIES").split(",") if item.strip())
        if text("AIPIC_VERIFY_CONCURRENCY"):
            try:
                values["verify_concurrency"] = int(text("AIPIC_VERIFY_CONCURRENCY"))
            except ValueError:
                raise ConfigError(f"AIPIC_VERIFY_CONCURRENCY must be a whole number of 1 or more (got {text('AIPIC_VERIFY_CONCURRENCY')!r}).") from None
        values["on_spaces"] = bool(text("SPACE_ID"))
        values["analytics"] = (text("AIPIC_ANALYTICS") or text("GRADIO_ANALYTICS_ENABLED")).lower() in TRUE_WORDS
        values["debug"] = text("AIPIC_DEBUG").lower() in TRUE_WORDS
        values.update({key: value for key, value in overrides.items() if value is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def replace(self, **changes) -> "Settings":
        """A copy with some settings changed (None means "keep"), checked."""
        settings = dataclasses.replace(self, **{key: value for key, value in changes.items() if value is not None})
        settings.check()
        return settings

    # ---- checking -------------------------------------------------------------------------------------------

    def check(self) -> None:
        """Every problem in plain words, at start, not at the first request."""
        if self.models_mode not in MODEL_MODES:
            raise ConfigError(f"Unknown model mode {self.models_mode!r}; use one of {', '.join(MODEL_MODES)}.")
        if self.max_gpu_batch < 1:
            raise ConfigError(f"max_gpu_batch must be at least 1 (got {self.max_gpu_batch}).")
        if not 0 <= self.batch_wait_s <= 120:
            raise ConfigError(f"The batch wait window must be between 0 and 120 000 ms (got {self.batch_wait_s * 1000:g} ms).")
        if self.cpu_workers < 0:
            raise ConfigError(f"cpu_workers must be 0 (automatic) or more (got {self.cpu_workers}).")
        if self.cpu_processes is not None and self.cpu_processes < 0:
            raise ConfigError(f"cpu_processes must be 0 (none) or more (got {self.cpu_processes}).")
        if self.tsa_url and not self.tsa_url.startswith(("http://", "https://")):
            raise ConfigError(f"The time-stamp authority must be an http(s) URL (got {self.tsa_url!r}).")
        if self.watermark_method not in WATERMARK_METHODS:
            raise ConfigError(f"Unknown watermark method {self.watermark_method!r}; use one of {', '.join(WATERMARK_METHODS)}.")
        if self.trustmark_variant not in TRUSTMARK_VARIANTS:
            raise ConfigError(f"Unknown TrustMark variant {self.trustmark_variant!r}; use one of {', '.join(TRUSTMARK_VARIANTS)}.")
        if self.output_format not in OUTPUT_FORMATS:
            raise ConfigError(f"Unknown output format {self.output_format!r}; use one of {', '.join(OUTPUT_FORMATS)}.")
        namespace = self.assertion_namespace
        if not re.fullmatch(NAMESPACE_PATTERN, namespace) or namespace.startswith(("c2pa.", "cawg.", "stds.")):
            raise ConfigError(f"AIPIC_ASSERTION_NAMESPACE must be a reverse domain name you control, e.g. com.example.pics (got {namespace!r}).")
        if self.retention_days < 0:
            raise ConfigError(f"AIPIC_RETENTION_DAYS must be 0 (keep everything) or a number of days (got {self.retention_days:g}).")
        if self.rate_limit < 0:
            raise ConfigError(f"AIPIC_RATE_LIMIT must be 0 (off) or a number of requests per minute (got {self.rate_limit:g}).")
        if self.verify_concurrency is not None and self.verify_concurrency < 1:
            raise ConfigError(f"AIPIC_VERIFY_CONCURRENCY must be a whole number of 1 or more (got {self.verify_concurrency}).")

    # ---- derived --------------------------------------------------------------------------------------------

    @property
    def key_dir(self) -> Path:
        return self.home / "keys"

    @property
    def output_dir(self) -> Path:
        return self.home / "outputs"

    @property
    def registry_file(self) -> Path:
        """The default registry's SQLite file (used when no AIPIC_REGISTRY_URL is set)."""
        return self.home / "registry.sqlite3"

    @property
    def registry(self) -> str:
        """The registry's URL: AIPIC_REGISTRY_URL, else SQLite under the home."""
        return self.registry_url or f"sqlite:///{self.registry_file}"

    @property
    def trustmark_folder(self) -> str:
        return self.trustmark_models or str(self.home / "models" / "trustmark")

    @property
    def finishing_threads(self) -> int:
        """The CPU pool's threads (``cpu_workers``, or one per core up to 16); not the worker processes."""
        return self.cpu_workers or min(16, os.cpu_count() or 1)


def _auth_pairs(text: str, path: str) -> tuple:
    """AIPIC_AUTH=user:password[,user:password…], or AIPIC_AUTH_FILE (one user:password per line)."""
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8").replace("\n", ",")
        except OSError as error:
            raise ConfigError(f"Cannot read AIPIC_AUTH_FILE {path}: {error.strerror or error}") from None
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise ConfigError("AIPIC_AUTH takes user:password pairs separated by commas.")
        pairs.append((user, password))
    return tuple(pairs)
