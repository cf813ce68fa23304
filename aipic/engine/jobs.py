"""What flows through the engine: a Job (one resolved request: what to make and what to record) makes one Record
per image; Stages work on records. The engine knows these three and nothing of the domain: what a request,
a model or an audit is, the stages and their jobs' fields say."""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol


@dataclass(eq=False)
class Job:
    """One validated request: what to make (for the generator) and what to record (for the manifest).

    ``batch_key`` holds every parameter that changes the computation (task, model, size, steps, guidance,
    strength, and each family's own inputs): jobs with equal keys may share one GPU batch.
    """

    task: str  # "text-to-image" | "img2img" | "style-transfer" | a future family's task
    family: str  # which generator runs it: "diffusion", "style", …
    request: Any  # the resolved request of that family
    batch_key: tuple
    seeds: list[int]  # one per image: image i of a request uses seed + i
    model: Any  # the LoadedModel that generates
    human: dict  # what the person contributed, as recorded
    description: str
    ingredients: list = field(default_factory=list)
    output_format: str | None = "png"  # None: the deployment's default
    output_dir: Path | None = None
    warnings: list = field(default_factory=list)
    secret: str | None = None  # for the person only, never recorded or logged (a private prompt's salt)
    author: Any = None  # the named author (authorship.Author) whose identity assertion is attached; None: anonymous
    terms: dict | None = None  # the cawg.training-mining assertion's data
    intended_use: dict | None = None  # what the outputs must not be used for, recorded in their manifests (e.g. not for diagnosis)
    progress: Callable[[int, int], None] | None = None  # (step, total) from the GPU loop
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    submitted: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    warm_up: bool = False  # GPU stages only, nothing signed or stored, not counted (start-up compilation)
    yield_gpu: Callable[[], None] | None = None  # set by the long lane: hands the model lock to waiting batches between steps
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    records: list = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.seeds)

    def cancel(self) -> None:
        """Stop: a queued job is dropped; a running batch is aborted only when all of its jobs are cancelled."""
        self.cancelled = True
        self.future.cancel()


@dataclass(eq=False)
class Record:
    """One image on its way through the stages."""

    job: Job
    index: int  # position in its request
    seed: int
    id: str = field(default_factory=lambda: uuid.uuid4().hex)  # the output's id: the registry's idempotency key
    pixels: Any = None  # CHW float tensor in [0, 1] on the generating device (GPU stages)
    array: Any = None  # HWC uint8 numpy array on the host (after readback)
    model_info: dict = field(default_factory=dict)  # what the generating model reports about this image
    audit: Any = None
    data: bytes | None = None  # the encoded, signed file
    mime: str | None = None
    timestamped: bool = False  # the signature carries an RFC 3161 timestamp
    fingerprints: dict | None = None  # perceptual hashes of the picture ("full", the soft binding) and its centred crops
    watermark_id: str | None = None  # the invisible watermark's id (8 hex digits), when marked
    watermark_binding: dict | None = None  # its c2pa.soft-binding (algorithm and value), for the manifest
    watermark_note: str | None = None  # why an output was not marked
    labelled: bool = False  # a visible "AI-generated" label was drawn on it
    manifest_store: bytes | None = None
    manifest_label: str | None = None
    sha256: str | None = None
    path: Path | None = None  # where the output is published (its registry path)
    staged: Path | None = None  # where it is written first, never served, until its registry row is committed
    width: int = 0
    height: int = 0
    error: BaseException | None = None
    blocked: str | None = None  # held back by the safety filter: which checker (skips every later stage, never shown)
    blocked_detail: str = ""  # what the checker found, when it says (NudeNet's classes)
    timings: dict = field(default_factory=dict)

    @property
    def fingerprint(self) -> str | None:
        """The whole picture's perceptual hash: the one in the manifest's soft binding."""
        return self.fingerprints["full"] if self.fingerprints else None


class Stage(Protocol):
    name: str
    gpu: bool

    def process(self, records: list[Record]) -> None:
        """Work on a batch (GPU stages) or one record (CPU stages); set ``record.error`` for a record that fails."""
