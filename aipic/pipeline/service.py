"""The one path every output takes: a request becomes a job (aipic.pipeline.jobs, resolved once) and runs through
the engine's stages (generate → safety → audit → watermark → encode + sign → store → registry); the app, the CLI
and ``aipic audit`` all come through here.

No output leaves unaudited, unsigned or unrecorded: the only way to get an image out is an OutputItem, which
points at the signed file on disk, published once its registry row was committed.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from aipic.audit.attributes import AttributeSet, load_attribute_set
from aipic.audit.auditor import BiasAuditor
from aipic.common.errors import ConfigError, ModelUnavailable
from aipic.common.logs import keep_user_text_out_of_logs
from aipic.common.settings import Settings
from aipic.engine import Engine, Job, ModelLock, WorkerPool, automatic_processes
from aipic.generation.families import DiffusionGenerator, StyleGenerator
from aipic.generation.requests import GenerationRequest, StyleRequest
from aipic.models import Catalog, Models, load_catalog
from aipic.pipeline import finishing
from aipic.pipeline.jobs import JobBuilder
from aipic.pipeline.outcome import Outcome, outcome_of
from aipic.pipeline.resolve import request_limits
from aipic.pipeline.stages import (
    AuditStage,
    EncodeSignStage,
    GenerateStage,
    LabelStage,
    NudeNetStage,
    ReadbackStage,
    RegistryStage,
    SafetyCheckerStage,
    StoreStage,
    WatermarkStage,
)
from aipic.provenance import publish, trustmark
from aipic.provenance.authorship import Author, IdentityAuthority, check_commercial
from aipic.provenance.registry import Registry
from aipic.provenance.signing_identity import SigningIdentity, ensure_signing_identity
from aipic.provenance.verify import Verification, verify_file

log = logging.getLogger(__name__)


class AipicPipeline:
    """Everything one deployment runs, made from its Settings: the models (loaded on first use), the job builder,
    the engine with its stages, the signing identities and the registry; and the verifier that reads it all back."""

    def __init__(self, settings: Settings | None = None, *, catalog: Catalog | None = None, attribute_set: AttributeSet | None = None,
                 output_dir: str | Path | None = None, generators: Sequence = ()):
        keep_user_text_out_of_logs()
        self.settings = settings or Settings()
        catalog = catalog or load_catalog()
        self.catalog = dataclasses.replace(catalog, limits=request_limits(catalog.limits, self.settings.max_gpu_batch))
        self.attribute_set = attribute_set or load_attribute_set()
        self.models = Models(self.catalog, self.settings.models_mode, self.settings.device, compile=self.settings.compile)
        self.home = self.settings.home
        self.key_dir = self.settings.key_dir
        self.output_dir = Path(output_dir) if output_dir else self.settings.output_dir
        self.jobs = JobBuilder(self.catalog, self.models, self.settings.commercial_use, lambda: self.identity.trust_anchors, lambda: self.output_dir)
        # More generator families beside diffusion and style transfer (aipic.generation.families): their jobs go
        # through the same audit, watermark, signing, storage and registry stages, unchanged.
        self.generators = list(generators)
        self._identity: SigningIdentity | None = None
        self._identity_authority: IdentityAuthority | None = None
        self._auditor: BiasAuditor | None = None
        self._engine: Engine | None = None
        self._registry: Registry | None = None
        self._workers: WorkerPool | None = None
        self._trustmark: trustmark.TrustMarkSpec | None = None
        self._setup = threading.RLock()
        self._lock = ModelLock()  # the model lock: held by the engine's GPU stages only

    # ---- the pieces, each made once, on first use ----------------------------------------------------------

    def _once(self, attribute: str, make):
        """The value of a lazily made attribute, made once even when several threads ask at the same time."""
        value = getattr(self, attribute)
        if value is None:
            with self._setup:
                value = getattr(self, attribute)
                if value is None:
                    value = make()
                    setattr(self, attribute, value)
        return value

    @property
    def identity(self) -> SigningIdentity:
        return self._once("_identity", lambda: ensure_signing_identity(self.key_dir))

    @property
    def identity_authority(self) -> IdentityAuthority:
        """This instance's identity CA, which issues signed-in people their short-lived identity certificates."""
        return self._once("_identity_authority", lambda: IdentityAuthority(self.key_dir))

    def author_for_account(self, account: str, provider: str = "signed-in account") -> Author:
        return self.identity_authority.issue(account, provider)

    @property
    def auditor(self) -> BiasAuditor:
        def make():
            entry = self.models.entry("clip")
            check_commercial(entry.label, entry.license, self.settings.commercial_use)
            clip = self.models.get("clip")
            return BiasAuditor(clip.obj, clip.extra["preprocess"], clip.extra["tokenizer"], self.attribute_set, clip.describe())

        return self._once("_auditor", make)

    @property
    def registry(self) -> Registry:
        """The provenance registry (SQLite under the home, or Settings.registry_url); migrated on first use."""
        def make() -> Registry:
            self.home.mkdir(parents=True, exist_ok=True)
            return Registry(self.settings.registry)

        return self._once("_registry", make)

    @property
    def engine(self) -> Engine:
        return self._once("_engine", lambda: Engine(self.build_stages(), self.settings, lock=self._lock))

    @property
    def workers(self) -> WorkerPool:
        """The finishing worker processes (none on CPU machines and in inline mode unless configured)."""

        def make() -> WorkerPool:
            count = self.settings.cpu_processes
            if count is None:
                count = automatic_processes() if self.models.device.type == "cuda" and not self.settings.inline else 0
            return WorkerPool(count)

        return self._once("_workers", make)

    @property
    def trustmark(self) -> trustmark.TrustMarkSpec | None:
        """The TrustMark model spec when that is the watermark method (its files checked once), else None.

        Its files must be Adobe's published ones; only with tiny models (tests, offline trials) are other files
        accepted, as stand-ins whose soft binding names aipic's stand-in algorithm rather than Adobe's."""
        if self.settings.watermark_method != "trustmark":
            return None

        def make():
            spec = trustmark.for_settings(self.settings)
            if self.models.mode == "tiny":
                try:
                    trustmark.check_files(spec)
                except ModelUnavailable:
                    spec = trustmark.for_settings(self.settings, published=False)
            trustmark.check_files(spec)
            return spec

        return self._once("_trustmark", make)

    def build_stages(self) -> list:
        """The ordered stages every output goes through. A watermark or a registry sink slots in here."""
        settings = self.settings
        return [
            GenerateStage([DiffusionGenerator(self.buckets), StyleGenerator(), *self.generators], self.catalog.limits.max_seconds),
            *([SafetyCheckerStage(lambda: self.models.get("safety"), self.buckets)] if settings.safety else []),
            AuditStage(lambda: self.auditor, self.buckets),
            ReadbackStage(),
            *([NudeNetStage()] if settings.nudenet else []),
            *([LabelStage()] if settings.visible_label else []),
            *([WatermarkStage(self.workers, self.trustmark)] if settings.watermark else []),
            EncodeSignStage(lambda: self.identity, settings.output_format, settings.tsa_url, settings.thumbnail, self.workers, settings.assertion_namespace),
            StoreStage(lambda: self.output_dir),
            RegistryStage(lambda: self.registry),
        ]

    @property
    def buckets(self) -> tuple | None:
        """Padded GPU batch sizes when compiled (a few captured graphs, reused), else None (no padding)."""
        if not self.settings.compile:
            return None
        largest = self.settings.max_gpu_batch
        return tuple(sorted({size for size in self.settings.buckets if size < largest} | {largest}))

    # ---- the home ------------------------------------------------------------------------------------------

    def check_home(self) -> None:
        """Fail at start, in plain words, when the home or the output folder cannot be written."""
        for folder in (self.home, self.output_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
                    pass
            except OSError as error:
                raise ConfigError(f"aipic cannot write to {folder} ({error.strerror or error}). Choose a writable folder with --home or AIPIC_HOME.") from None

    def reconcile_outputs(self) -> publish.Reconciled:
        """At start: publish or remove what a crash left in staging, and quarantine files in the output folder
        that the registry does not know (aipic.provenance.publish). The app runs this before it serves anything."""
        return publish.reconcile(self.output_dir, self.registry, self.home / "quarantine")

    def apply_retention(self) -> int:
        """Delete output files older than Settings.retention_days (their records stay): aipic.provenance.publish."""
        return publish.apply_retention(self.registry, self.settings.retention_days)

    def placeholder_notes(self, sections: Sequence[str] = ("text_to_image", "clip", "style", "safety")) -> list[str]:
        """Plain-language notes about any tiny random-weight models in use (loads the default models of
        ``sections``; a command that needs only some of them names those)."""
        notes = []
        for section in sections:
            if section == "safety" and not self.settings.safety:
                notes.append("The safety filter is turned off (AIPIC_SAFETY=0): generations are not checked.")
                continue
            model = self.models.get(section)
            if model.placeholder:
                notes.append(model.note)
        if self.settings.watermark and self.trustmark is not None and not self.trustmark.published:
            notes.append("The TrustMark watermark uses tiny random-weight stand-ins, not Adobe's model: its marks mean nothing to real TrustMark readers.")
        return notes

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        if self._registry is not None:
            self._registry.close()
            self._registry = None
        if self._workers is not None:
            self._workers.close()
            self._workers = None

    # ---- running -------------------------------------------------------------------------------------------

    def warm_up(self) -> float:
        """Load the default models and run the GPU stages once for each batch size the engine will use
        (each compiled bucket with --compile), so no user pays for loading or compilation. Stores nothing."""
        marking = self.trustmark if self.settings.watermark else None  # its files checked at start, in every mode
        if self.settings.inline:
            log.info("inline mode (ZeroGPU): no start-up warm-up; the GPU exists only inside each call")
            return 0.0
        start = time.perf_counter()
        finishing.warm_up(self.identity, marking)  # this process finishes the requests that come alone
        self.workers.start(finishing.initialise_worker, self.identity, marking)
        limits = self.catalog.limits
        for size in self.buckets or (1,):
            jobs, left = [], size
            while left > 0:
                batch = min(left, limits.max_batch)
                jobs.append(self.jobs.text_to_image(GenerationRequest(prompt="warm-up", seed=0, batch=batch)))
                left -= batch
            self.engine.warm_up(jobs)
        seconds = time.perf_counter() - start
        log.info("warm-up done in %.1f s", seconds)
        return seconds

    def submit(self, job: Job) -> concurrent.futures.Future:
        return self.engine.submit(job)

    def run(self, job: Job, on_wait=None) -> Outcome:
        """Run a job and wait for its outcome; ``on_wait()`` is called on this thread now and then while waiting."""
        return outcome_of(job, self.engine.run(job, on_wait=on_wait))

    def text_to_image(self, request: GenerationRequest, model_key: str | None = None, progress=None, author=None) -> Outcome:
        return self.run(self.jobs.text_to_image(request, model_key, progress, author=author))

    def image_to_image(self, request: GenerationRequest, init_image, model_key: str | None = None, init_title: str = "init image", progress=None, author=None) -> Outcome:
        return self.run(self.jobs.image_to_image(request, init_image, model_key, init_title, progress, author=author))

    def style_transfer(self, request: StyleRequest, content_title: str = "content image", style_title: str = "style image", progress=None, author=None) -> Outcome:
        return self.run(self.jobs.style(request, content_title, style_title, progress, author=author))

    # ---- reading back ----------------------------------------------------------------------------------------

    def verify(self, path, extra_trust_anchors: Sequence[str] = ()) -> Verification:
        """Verify any file (an upload, a stranger's file): in the bounded worker process."""
        return verify_file(path, [*self.identity.trust_anchors, *extra_trust_anchors], registry_url=self.registry.url, identity_anchors=[self.identity_authority.ca_pem],
                           trustmark=self.trustmark, max_pixels=self.catalog.limits.max_upload_pixels, namespace=self.settings.assertion_namespace)

    def credentials(self, path) -> Verification:
        """Read back the credentials of an output this pipeline just wrote, as a verifier sees them."""
        return verify_file(path, self.identity.trust_anchors, isolate=False, identity_anchors=[self.identity_authority.ca_pem], namespace=self.settings.assertion_namespace)
