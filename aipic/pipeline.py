"""The one path every output takes: a validated request becomes a job in the engine
(generate → audit → encode + sign → store); the app, the CLI and ``aipic audit`` all come through here.

No output leaves this module unaudited or unsigned: the only way to get an image out is an OutputItem, which
points at the signed file on disk.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import threading
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path

from . import authorship, provenance
from .audit import AttributeSet, AuditResult, BiasAuditor, load_attribute_set
from .catalog import Catalog, load_catalog
from .data import default_home
from .engine import Engine, EngineSettings, Job, ModelLock
from .errors import BadInput, ConfigError, ModelUnavailable
from .generate import GenerationRequest, batch_key, resolve_request, truncation_warnings
from .images import open_user_image
from .logs import keep_user_text_out_of_logs
from .models import ModelRegistry
from .safety import NudeNetStage, SafetyCheckerStage
from .stages import AuditStage, DiffusionGenerator, EncodeSignStage, GenerateStage, ReadbackStage, RegistryStage, StoreStage, StyleGenerator, WatermarkStage
from .style import StyleRequest, resolve_style_request
from .workers import WorkerPool, automatic_processes

log = logging.getLogger(__name__)


@dataclass
class OutputItem:
    path: Path  # the signed file; serve these bytes as they are
    seed: int
    audit: AuditResult
    width: int
    height: int
    sha256: str = ""
    mime: str = "image/png"
    timestamped: bool = False
    id: str = ""  # the output's id in the provenance registry
    fingerprint: str = ""
    watermark_id: str | None = None


@dataclass
class Outcome:
    items: list[OutputItem]
    warnings: list[str] = field(default_factory=list)
    models: list[dict] = field(default_factory=list)
    prompt_salt: str | None = None  # a private prompt's salt: the person keeps it to prove authorship
    held_back: int = 0  # images the safety filter held back (never shown, signed or kept)
    failed: int = 0  # images that could not be finished (never published); the others are here, signed and recorded
    parameters: dict = field(default_factory=dict)  # the request's resolved settings, as recorded in the manifest

    @property
    def paths(self) -> list[str]:
        return [str(item.path) for item in self.items]


class AipicPipeline:
    """Validates requests into jobs and runs them through one engine; loads models on first use."""

    def __init__(
        self,
        catalog: Catalog | None = None,
        attribute_set: AttributeSet | None = None,
        models_mode: str | None = None,
        device: str | None = None,
        home: str | Path | None = None,
        output_dir: str | Path | None = None,
        settings: EngineSettings | None = None,
        commercial: bool | None = None,
        generators: Sequence = (),
    ):
        keep_user_text_out_of_logs()
        self.catalog = catalog or load_catalog()
        self.attribute_set = attribute_set or load_attribute_set()
        self.settings = settings or EngineSettings.from_env()
        if self.settings.max_gpu_batch < self.catalog.limits.max_batch:
            # A request is never split across GPU batches, so it may ask for no more pictures than one batch holds.
            limits = dataclasses.replace(self.catalog.limits, max_batch=self.settings.max_gpu_batch)
            self.catalog = dataclasses.replace(self.catalog, limits=limits)
        provenance.assertion_namespace()  # a bad AIPIC_ASSERTION_NAMESPACE fails at start, not at the first signing
        self.models = ModelRegistry(self.catalog, models_mode, device, compile=self.settings.compile)
        self.home = Path(home) if home else default_home()
        self.key_dir = self.home / "keys"
        self.output_dir = Path(output_dir) if output_dir else self.home / "outputs"
        # A deployment for commercial use refuses models whose licence forbids it or leaves it unclear.
        self.commercial = commercial if commercial is not None else os.environ.get("AIPIC_COMMERCIAL_USE", "").strip().lower() in ("1", "true", "yes", "on")
        self._identity = None
        self._identity_authority = None
        self._auditor = None
        self._engine = None
        self._registry = None
        self._workers: WorkerPool | None = None
        self._trustmark = None
        self._setup = threading.RLock()
        self._lock = ModelLock()  # the model lock: held by the engine's GPU stages only
        # More generator families beside diffusion and style transfer (aipic.stages.Generator): their jobs go
        # through the same audit, watermark, signing, storage and registry stages, unchanged.
        self.generators = list(generators)

    # ---- shared pieces -------------------------------------------------------------------------------

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
    def identity(self) -> provenance.SigningIdentity:
        return self._once("_identity", lambda: provenance.ensure_signing_identity(self.key_dir))

    @property
    def identity_authority(self) -> authorship.IdentityAuthority:
        """This instance's identity CA, which issues signed-in people their short-lived identity certificates."""
        return self._once("_identity_authority", lambda: authorship.IdentityAuthority(self.key_dir))

    def author_for_account(self, account: str, provider: str = "signed-in account") -> authorship.Author:
        return self.identity_authority.issue(account, provider)

    @property
    def auditor(self) -> BiasAuditor:
        def make():
            entry = self.catalog.entry("clip", "tiny-random" if self.models.mode == "tiny" else None)
            authorship.check_commercial(entry.label, entry.license, self.commercial)
            clip = self.models.get("clip")
            return BiasAuditor(clip.obj, clip.extra["preprocess"], clip.extra["tokenizer"], self.attribute_set, clip.describe())

        return self._once("_auditor", make)

    @property
    def registry(self):
        """The provenance registry (SQLite under the home, or AIPIC_REGISTRY_URL); migrated on first use."""
        def make():
            from .registry import Registry

            return Registry.for_home(self.home)

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
    def trustmark(self):
        """The TrustMark model spec when that is the watermark method (its files checked once), else None.

        Its files must be Adobe's published ones; only with tiny models (tests, offline trials) are other files
        accepted, as stand-ins whose soft binding names aipic's stand-in algorithm rather than Adobe's."""
        if self.settings.watermark_method != "trustmark":
            return None

        def make():
            from . import trustmark_marks

            folder = self.settings.trustmark_models or trustmark_marks.default_folder(self.home)
            spec = trustmark_marks.TrustMarkSpec(folder, self.settings.trustmark_variant)
            if self.models.mode == "tiny":
                try:
                    trustmark_marks.check_files(spec)
                except ModelUnavailable:
                    spec = trustmark_marks.TrustMarkSpec(folder, self.settings.trustmark_variant, published=False)
            trustmark_marks.check_files(spec)
            return spec

        return self._once("_trustmark", make)

    def build_stages(self) -> list:
        """The ordered stages every output goes through. A watermark or a registry sink slots in here."""
        return [
            GenerateStage([DiffusionGenerator(self.buckets), StyleGenerator(), *self.generators], self.catalog.limits.max_seconds),
            *([SafetyCheckerStage(lambda: self.models.get("safety"), self.buckets)] if self.settings.safety else []),
            AuditStage(lambda: self.auditor, self.buckets),
            ReadbackStage(),
            *([NudeNetStage()] if self.settings.nudenet else []),
            *([WatermarkStage(self.workers, self.trustmark)] if self.settings.watermark else []),
            EncodeSignStage(lambda: self.identity, self.settings.output_format, self.settings.tsa_url, self.settings.thumbnail, self.workers),
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

    def apply_retention(self, days: float | None = None) -> int:
        """Delete output files older than ``days`` (AIPIC_RETENTION_DAYS; unset or 0: keep them) and mark them
        deleted in the registry, which keeps their manifests: a copy can still be recognised. Returns how many."""
        import datetime

        if days is None:
            try:
                days = float(os.environ.get("AIPIC_RETENTION_DAYS") or 0)
            except ValueError:
                raise ConfigError(f"AIPIC_RETENTION_DAYS must be a number of days (got {os.environ['AIPIC_RETENTION_DAYS']!r}).") from None
        if days <= 0:
            return 0
        cutoff = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days)
        deleted = []
        for entry in self.registry.older_than(cutoff):
            path = Path(entry.path) if entry.path else None
            try:
                if path is not None:
                    path.unlink(missing_ok=True)
                deleted.append(entry.id)
            except OSError as error:
                log.warning("retention could not delete an output (%s)", error.strerror or error)
        if deleted:
            self.registry.mark_deleted(deleted)
            log.info("retention: deleted %d output files older than %g days (their manifests stay in the registry)", len(deleted), days)
        return len(deleted)

    def reconcile_outputs(self):
        """At start: publish or remove what a crash left in staging, and quarantine files in the output folder
        that the registry does not know (aipic.publish). The app runs this before it serves anything."""
        from .publish import reconcile

        return reconcile(self.output_dir, self.registry, self.home / "quarantine")

    def check_home(self) -> None:
        """Fail at start, in plain words, when the home or the output folder cannot be written."""
        import tempfile

        for folder in (self.home, self.output_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
                    pass
            except OSError as error:
                raise ConfigError(f"aipic cannot write to {folder} ({error.strerror or error}). Choose a writable folder with --home or AIPIC_HOME.") from None

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

    def placeholder_notes(self) -> list[str]:
        """Plain-language notes about any tiny random-weight models in use (loads the default models)."""
        notes = []
        for section in ("text_to_image", "clip", "style", "safety"):
            if section == "safety" and not self.settings.safety:
                notes.append("The safety filter is turned off (AIPIC_SAFETY=0): generations are not checked.")
                continue
            model = self.models.get(section)
            if model.placeholder:
                notes.append(model.note)
        if self.settings.watermark and self.trustmark is not None and not self.trustmark.published:
            notes.append("The TrustMark watermark uses tiny random-weight stand-ins, not Adobe's model: its marks mean nothing to real TrustMark readers.")
        return notes

    def _defaults(self, model) -> dict:
        """Request defaults of a text-to-image model; a placeholder uses the tiny model's own."""
        entry = self.catalog.entry("text_to_image", "tiny-random") if model.tiny else model.entry
        return dict(entry.defaults or {})

    # ---- requests → jobs -------------------------------------------------------------------------------

    def _rights(self, request, human: dict, author) -> tuple[dict, dict]:
        """The person's terms (validated) and the human record with who made it and their rights statement."""
        terms = authorship.resolve_terms(request.terms, request.terms_constraint)
        statement = authorship.check_rights_statement(request.rights_statement)
        human = {**human, "author": {"name": author.name, "credential": "X.509 (cawg.identity)", "source": author.source} if author else "anonymous"}
        if statement:
            human["rights_statement"] = statement
        return terms.assertion(), human

    def _check_upload_terms(self, ingredients: list) -> None:
        """Refuse an upload whose own Content Credentials say AI inference is not allowed, even when those
        credentials failed validation (the restriction is honoured; the failure is said)."""
        for ingredient in ingredients:
            if authorship.forbids_inference(ingredient.terms):
                failed = f" Its credentials failed verification ({ingredient.credentials.replace('_', ' ')}); the restriction is honoured anyway." if ingredient.failed else ""
                raise BadInput(f"The {ingredient.role or 'upload'}'s Content Credentials say that AI inference is not allowed, so aipic will not use it.{failed}")

    def text_to_image_job(self, request: GenerationRequest, model_key: str | None = None, progress=None, author=None) -> Job:
        if request.init_image is not None:
            raise BadInput("Text-to-image takes no init image; use image-to-image.")
        return self._diffusion_job(request, model_key, ingredients=[], progress=progress, author=author)

    def image_to_image_job(self, request: GenerationRequest, init_image, model_key: str | None = None, init_title: str = "init image", progress=None, author=None) -> Job:
        image = open_user_image(init_image, "init image", self.catalog.limits.max_upload_pixels)
        request = GenerationRequest(**{**request.__dict__, "init_image": image})
        title = _title(init_image, init_title, request.record_upload_names)
        ingredient = provenance.make_ingredient(init_image, image, title, "parentOf", "init image", self.identity.trust_anchors)
        self._check_upload_terms([ingredient])
        return self._diffusion_job(request, model_key, ingredients=[ingredient], progress=progress, author=author)

    def _diffusion_job(self, request: GenerationRequest, model_key: str | None, ingredients: list, progress=None, author=None) -> Job:
        # Check the request against the catalog before loading anything: bad input fails in milliseconds.
        entry = self.catalog.entry("text_to_image", "tiny-random" if self.models.mode == "tiny" else model_key)
        resolve_request(request, dict(entry.defaults or {}), self.catalog.limits)
        authorship.resolve_terms(request.terms, request.terms_constraint)
        authorship.check_rights_statement(request.rights_statement)
        authorship.check_commercial(entry.label, entry.license, self.commercial)
        model = self.models.get("text_to_image", model_key)
        request = resolve_request(request, self._defaults(model), self.catalog.limits)
        assert request.seed is not None and request.guidance is not None  # resolved
        warnings = [model.note] if model.placeholder and model.note else []
        warnings += [ingredient.notice() for ingredient in ingredients if ingredient.notice()]
        warnings += truncation_warnings(model.obj.tokenizer, request)
        if request.negative_prompt and request.guidance <= 1.0:
            warnings.append("The negative prompt has no effect at guidance 1 or below.")
        task = "img2img" if request.is_img2img else "text-to-image"
        human, secret = {"prompt": request.prompt, "negative_prompt": request.negative_prompt}, None
        if request.private_prompt:
            human, secret = provenance.private_prompts(request.prompt, request.negative_prompt)
        terms, human = self._rights(request, {**human, "parameters": request.parameters()}, author)
        return Job(
            task=task,
            family="diffusion",
            request=request,
            batch_key=batch_key(request, model.entry.key),
            seeds=[(request.seed + index) % (2**32) for index in range(request.batch)],
            model=model,
            human=human,
            secret=secret,
            author=author,
            terms=terms,
            description=f"{task} with {model.name}",
            ingredients=ingredients,
            output_format=request.output_format,
            output_dir=self.output_dir,
            warnings=warnings,
            progress=progress,
        )

    def style_job(self, request: StyleRequest, content_title: str = "content image", style_title: str = "style image", progress=None, author=None) -> Job:
        limits = self.catalog.limits
        entry = self.catalog.entry("style", "tiny-random" if self.models.mode == "tiny" else None)
        authorship.check_commercial(entry.label, entry.license, self.commercial)
        titles = (_title(request.content_image, content_title, request.record_upload_names), _title(request.style_image, style_title, request.record_upload_names))
        content = open_user_image(request.content_image, "content image", limits.max_upload_pixels)
        style = open_user_image(request.style_image, "style image", limits.max_upload_pixels)
        sources = request
        request = resolve_style_request(StyleRequest(**{**request.__dict__, "content_image": content, "style_image": style}), limits)
        terms, human = self._rights(request, {"parameters": request.parameters()}, author)
        ingredients = [
            provenance.make_ingredient(sources.content_image, content, titles[0], "parentOf", "content image", self.identity.trust_anchors),
            provenance.make_ingredient(sources.style_image, style, titles[1], "componentOf", "style image", self.identity.trust_anchors),
        ]
        self._check_upload_terms(ingredients)
        model = self.models.get("style")
        job = Job(
            task="style-transfer",
            family="style",
            request=request,
            batch_key=(),
            seeds=[request.seed],
            model=model,
            human=human,
            author=author,
            terms=terms,
            description=f"neural style transfer (Gatys) on {model.name} features",
            ingredients=ingredients,
            output_format=request.output_format,
            output_dir=self.output_dir,
            warnings=([model.note] if model.placeholder and model.note else []) + [i.notice() for i in ingredients if i.notice()],
            progress=progress,
        )
        job.batch_key = ("style", job.id)  # an optimisation per image: never merged with another job
        return job

    # ---- running -----------------------------------------------------------------------------------------

    def warm_up(self) -> float:
        """Load the default models and run the GPU stages once for each batch size the engine will use
        (each compiled bucket with --compile), so no user pays for loading or compilation. Stores nothing."""
        import time

        trustmark = self.trustmark if self.settings.watermark else None  # its files checked at start, in every mode
        if self.settings.inline:
            log.info("inline mode (ZeroGPU): no start-up warm-up; the GPU exists only inside each call")
            return 0.0
        start = time.perf_counter()
        self.workers.start(self.identity, trustmark)
        limits = self.catalog.limits
        for size in self.buckets or (1,):
            jobs, left = [], size
            while left > 0:
                batch = min(left, limits.max_batch)
                jobs.append(self.text_to_image_job(GenerationRequest(prompt="warm-up", seed=0, batch=batch)))
                left -= batch
            self.engine.warm_up(jobs)
        seconds = time.perf_counter() - start
        log.info("warm-up done in %.1f s", seconds)
        return seconds

    def submit(self, job: Job) -> concurrent.futures.Future:
        return self.engine.submit(job)

    def outcome(self, job: Job, records) -> Outcome:
        items = [
            OutputItem(path=r.path, seed=r.seed, audit=r.audit, width=r.width, height=r.height, sha256=r.sha256, mime=r.mime, timestamped=r.timestamped, id=r.id, fingerprint=r.fingerprint, watermark_id=r.watermark_id)
            for r in records if r.blocked is None and r.error is None
        ]
        warnings = list(job.warnings)
        held_back = sum(r.blocked is not None for r in records)
        if held_back:
            warnings.append(f"The safety filter held back {held_back} of {len(records)} images: they were not shown, signed or kept.")
        failed = [r for r in records if r.error is not None]
        if failed:
            why = str(failed[0].error).strip().rstrip(".")
            warnings.append(f"{len(failed)} of {len(records)} images could not be finished: {why}. The {len(items)} shown are signed and recorded.")
        return Outcome(items=items, warnings=warnings, models=[job.model.describe()], prompt_salt=job.secret, held_back=held_back, failed=len(failed),
                       parameters=dict(job.human.get("parameters") or {}))

    def run(self, job: Job) -> Outcome:
        return self.outcome(job, self.engine.run(job))

    def text_to_image(self, request: GenerationRequest, model_key: str | None = None, progress=None, author=None) -> Outcome:
        return self.run(self.text_to_image_job(request, model_key, progress, author=author))

    def image_to_image(self, request: GenerationRequest, init_image, model_key: str | None = None, init_title: str = "init image", progress=None, author=None) -> Outcome:
        return self.run(self.image_to_image_job(request, init_image, model_key, init_title, progress, author=author))

    def style_transfer(self, request: StyleRequest, content_title: str = "content image", style_title: str = "style image", progress=None, author=None) -> Outcome:
        return self.run(self.style_job(request, content_title, style_title, progress, author=author))

    def verify(self, path, extra_trust_anchors: Sequence[str] = ()) -> provenance.Verification:
        """Verify any file (an upload, a stranger's file): in the bounded worker process."""
        anchors = [*self.identity.trust_anchors, *extra_trust_anchors]
        return provenance.verify_file(path, anchors, registry_url=self.registry.url, identity_anchors=[self.identity_authority.ca_pem], trustmark=self.trustmark,
                                      max_pixels=self.catalog.limits.max_upload_pixels)

    def credentials(self, path) -> provenance.Verification:
        """Read back the credentials of an output this pipeline just wrote, as a verifier sees them."""
        return provenance.verify_file(path, self.identity.trust_anchors, isolate=False, identity_anchors=[self.identity_authority.ca_pem])


def _title(source, fallback: str, record_name: bool = False) -> str:
    """An upload's title in the public manifest: its role, or its file name when the person chose to record it."""
    if record_name and isinstance(source, (str, Path)):
        return Path(source).name
    return fallback
