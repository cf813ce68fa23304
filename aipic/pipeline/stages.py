"""The stages every output goes through, in the engine (aipic.engine), in this order:

GPU stages (batched, under the model lock):  GenerateStage → [SafetyCheckerStage] → AuditStage → ReadbackStage
CPU stages (one record each, in the pool):   [NudeNetStage] → [LabelStage] → [WatermarkStage] → EncodeSignStage → StoreStage → RegistryStage

Each stage calls into the domain (generation, audit, provenance) and sets fields on the records; a new stage (a
second watermark, another registry sink) is one more object in AipicPipeline.build_stages.
"""

from __future__ import annotations

import datetime
import logging
import time
import uuid
from pathlib import Path
from typing import Callable

import torch

from aipic.common.errors import AipicError, Cancelled, ConfigError, StageFailed
from aipic.common.images import EXTENSIONS
from aipic.common.settings import DEFAULT_NAMESPACE
from aipic.common.tensors import to_uint8
from aipic.engine import Record, WorkerPool
from aipic.generation.safety import NUDENET_THRESHOLD, NudeNet, checker_flags
from aipic.models.loading import compile_tower
from aipic.pipeline import finishing
from aipic.provenance import publish, watermark
from aipic.provenance.disclosure import draw_label
from aipic.provenance.manifest import public_audit, software_agent
from aipic.provenance.registry import Entry

log = logging.getLogger(__name__)


class GenerateStage:
    """Runs the generator family of a batch (all its jobs share one batch key, so one family)."""

    name, gpu = "generate", True

    def __init__(self, generators: list, max_seconds: float | None = None):
        families = [generator.family for generator in generators]
        if len(set(families)) != len(families):
            raise ConfigError(f"Two generators for one family ({', '.join(sorted(f for f in set(families) if families.count(f) > 1))}); each family has one.")
        self.generators = {generator.family: generator for generator in generators}
        self.max_seconds = max_seconds  # the per-request time limit (checked at every step)

    def process(self, records: list[Record]) -> None:
        jobs = list(dict.fromkeys(record.job for record in records))
        family = jobs[0].family
        if family not in self.generators:
            raise AipicError(f"No generator for {family!r} in this deployment.")

        started = time.monotonic()

        def on_step(step: int, total: int) -> None:
            if all(job.cancelled for job in jobs):
                raise Cancelled("Stopped.")
            if self.max_seconds and time.monotonic() - started > self.max_seconds:
                raise Cancelled(f"Stopped: this took longer than {self.max_seconds:g} s, the limit for one request. Try fewer steps or a smaller size.")
            for job in jobs:
                if job.yield_gpu is not None:
                    job.yield_gpu()  # a long job lets waiting batches use the GPU between its steps
                if job.progress is not None:
                    try:
                        job.progress(step, total)
                    except Exception:  # noqa: BLE001 - a progress display never stops the work
                        log.debug("progress callback failed", exc_info=True)

        try:
            results = self.generators[family].generate(jobs, on_step)
        except Cancelled as stopped:
            for record in records:
                record.error = stopped
            return
        for job, images in zip(jobs, results):
            for record, (pixels, seed, info) in zip(job.records, images):
                record.pixels, record.seed, record.model_info = pixels, seed, info


class SafetyCheckerStage:
    """The Stable Diffusion safety checker over the whole batch, on the GPU."""

    name, gpu = "safety", True

    def __init__(self, checker, buckets: tuple | None = None):
        self._checker = checker  # a callable returning the LoadedModel (loaded on first use)
        self.buckets = buckets  # compiled: the vision tower with CUDA graphs for these padded batch sizes

    def process(self, records) -> None:
        checker = self._checker().obj
        if self.buckets and hasattr(checker, "vision_model"):
            compile_tower(checker, "vision_model", self.buckets)
        for record, flagged in zip(records, checker_flags(checker, [record.pixels for record in records])):
            if flagged:
                record.blocked = "Stable Diffusion safety checker"


class NudeNetStage:
    """NudeNet's detector on each image in the CPU pool (optional extra; AGPL — aipic.generation.safety)."""

    name, gpu = "nudenet", False

    def __init__(self, threshold: float = NUDENET_THRESHOLD):
        self.nudenet = NudeNet(threshold)

    def process(self, records) -> None:
        for record in records:
            found = self.nudenet.exposed(record.array)
            if found:
                record.blocked = "NudeNet"
                record.blocked_detail = ", ".join(name.lower().replace("_", " ") for name in found)


class AuditStage:
    """The CLIP bias audit of the whole batch, on the pixels where they are (the GPU)."""

    name, gpu = "audit", True

    def __init__(self, auditor: Callable, buckets: tuple | None = None):
        self._auditor = auditor  # a callable returning the BiasAuditor (loaded on first use)
        self.buckets = buckets  # compiled: CLIP's image tower with CUDA graphs for these padded batch sizes

    def process(self, records: list[Record]) -> None:
        auditor = self._auditor()
        if self.buckets and hasattr(auditor.model, "visual"):
            compile_tower(auditor.model, "visual", self.buckets)
        results = auditor.audit_pixels([record.pixels for record in records])
        for record, result in zip(records, results):
            record.audit = result


class ReadbackStage:
    """Pixels to host memory as uint8 arrays, one transfer per image size; frees the GPU copies."""

    name, gpu = "readback", True

    def process(self, records: list[Record]) -> None:
        by_shape: dict[tuple, list[Record]] = {}
        for record in records:
            by_shape.setdefault(tuple(record.pixels.shape), []).append(record)
        for group in by_shape.values():
            arrays = to_uint8(torch.stack([record.pixels for record in group]))
            for record, array in zip(group, arrays):
                record.array, record.pixels = array, None
                record.height, record.width = int(array.shape[0]), int(array.shape[1])


class LabelStage:
    """Draw the visible "AI-generated" label (Settings.visible_label) on each picture, before the watermark and
    the signature; the manifest records it as an action."""

    name, gpu = "label", False

    def process(self, records: list[Record]) -> None:
        for record in records:
            record.array = draw_label(record.array)
            record.labelled = True


class WatermarkStage:
    """Embed an invisible watermark (a random 32-bit id with a CRC) in the pixels, before they are fingerprinted,
    encoded and signed. Runs in the CPU pool (in a worker process when there are any). The default method is
    dwtDctSvd (~140 ms for 512² on one core; images under 256×256 are left unmarked, and the manifest says why);
    with ``trustmark`` (a TrustMarkSpec) Adobe TrustMark marks every size."""

    name, gpu = "watermark", False

    def __init__(self, pool: WorkerPool | None = None, trustmark=None):
        self._pool = pool or WorkerPool(0)
        self.trustmark = trustmark

    def process(self, records: list[Record]) -> None:
        for record in records:
            if self.trustmark is None and not watermark.can_mark(record.width, record.height):
                record.watermark_note = f"not marked: smaller than {watermark.MIN_SIDE}×{watermark.MIN_SIDE}"
                continue
            watermark_id = watermark.new_id()
            record.array = self._pool.call(finishing.embed_mark, record.array, watermark_id, self.trustmark)
            record.watermark_id = watermark_id
            record.watermark_binding = finishing.mark_binding(watermark_id, self.trustmark)


class EncodeSignStage:
    """Encode in the request's format and embed a signed C2PA manifest of what the person and the models did.
    The fingerprints, encoding and signing run in a worker process when the pool has any (aipic.engine.workers)."""

    name, gpu = "encode_sign", False

    def __init__(self, identity: Callable, default_format: str = "png", tsa_url: str | None = None, thumbnail: bool = False, pool: WorkerPool | None = None,
                 namespace: str = DEFAULT_NAMESPACE):
        self._identity = identity  # a callable returning the SigningIdentity
        self.default_format = default_format
        self.tsa_url = tsa_url
        self.thumbnail = thumbnail
        self._pool = pool or WorkerPool(0)
        self.namespace = namespace  # the reverse domain of aipic's own assertions

    def process(self, records: list[Record]) -> None:
        for record in records:
            job = record.job
            output_format = job.output_format or self.default_format
            record.path = Path(output_name(job.task, record.seed, output_format))
            fields = dict(
                title=record.path.name,
                task=job.task,
                description=job.description,
                agent=software_agent(job.model.describe()),
                human=job.human,
                models=[{**job.model.describe(), **record.model_info}],
                outputs={"seed": record.seed, "index_in_batch": record.index, "width": record.width, "height": record.height,
                         **({"watermark": record.watermark_note} if record.watermark_note else {})},
                audit=public_audit(record.audit.to_dict(), from_upload=bool(job.ingredients)),
                ingredients=job.ingredients,
                terms=job.terms,
                intended_use=job.intended_use,
                labelled=record.labelled,
            )
            record.manifest_label = f"urn:c2pa:{uuid.UUID(record.id)}"
            done = self._pool.call(finishing.encode_and_sign, record.array, output_format, fields, record.manifest_label, record.watermark_binding,
                                   job.ingredients, self._identity(), job.author, self.tsa_url, self.thumbnail, self.namespace)
            record.data, record.manifest_store, record.mime = done["data"], done["store"], done["mime"]
            record.fingerprints, record.timestamped, record.sha256 = done["fingerprints"], done["timestamped"], done["sha256"]
            record.array = None


def output_name(task: str, seed: int, output_format: str) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%H%M%S")
    return f"aipic-{task}-{stamp}-{seed}-{uuid.uuid4().hex[:8]}.{EXTENSIONS[output_format]}"


class StoreStage:
    """Write each signed file durably under its staging name (aipic.provenance.publish), which is never served; the
    registry stage records it and only then renames it into <output dir>/<UTC day>/. A crash never leaves a half
    file that looks valid, nor a published file the registry does not know."""

    name, gpu = "store", False

    def __init__(self, default_dir: Callable[[], Path]):
        self._default_dir = default_dir

    def process(self, records: list[Record]) -> None:
        for record in records:
            assert record.path is not None and record.data is not None  # named and signed by EncodeSignStage
            final = publish.final_path(Path(record.job.output_dir or self._default_dir()), record.path.name)
            try:
                record.staged = publish.stage(final, record.data)
            except OSError as error:
                raise StageFailed(f"Could not save the signed output ({error.strerror or error}); nothing was published.") from None
            record.path, record.data = final, None


class RegistryStage:
    """Record every output in the provenance registry, then publish it (rename it from staging into its folder).
    If the record cannot be committed, the staged file is removed and the request fails; if the rename fails,
    the record is marked deleted: no output exists that the registry does not know."""

    name, gpu = "registry", False

    def __init__(self, registry: Callable):
        self._registry = registry  # a callable returning the Registry

    def process(self, records: list[Record]) -> None:
        for record in records:
            job = record.job
            assert record.mime and record.sha256 and record.fingerprint and record.path and record.staged  # set by the stages before
            entry = Entry(
                id=record.id, created_at=datetime.datetime.now(datetime.timezone.utc), task=job.task, model=job.model.name,
                mime=record.mime, file_sha256=record.sha256, manifest_label=record.manifest_label or "", manifest_store=record.manifest_store or b"",
                watermark_id=record.watermark_id, fingerprint=record.fingerprint, path=str(record.path), file_deleted_at=None,
            )
            registry = self._registry()
            try:
                registry.record(entry, record.fingerprints)
            except Exception as error:  # noqa: BLE001
                record.staged.unlink(missing_ok=True)
                log.error("registry commit failed (%s); the output was removed", type(error).__name__)
                raise StageFailed("The output could not be recorded in the provenance registry, so it was not published. Please try again.") from None
            try:
                publish.publish(record.staged, record.path)
            except OSError as error:
                record.staged.unlink(missing_ok=True)
                registry.mark_deleted([record.id])
                raise StageFailed(f"Could not publish the signed output ({error.strerror or error}); nothing was published.") from None
            record.manifest_store, record.staged = None, None
