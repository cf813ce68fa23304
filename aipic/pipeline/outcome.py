"""What a request gives back: the signed outputs (each an OutputItem pointing at the signed file on disk, the only
way an image leaves the pipeline) and what the person must be told (held back, failed, placeholders, private
prompt's salt)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aipic.audit.auditor import AuditResult
from aipic.engine import Job


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


def outcome_of(job: Job, records) -> Outcome:
    """A finished job's outcome: its signed outputs, and warnings for what was held back or failed."""
    items = [
        OutputItem(path=r.path, seed=r.seed, audit=r.audit, width=r.width, height=r.height, sha256=r.sha256, mime=r.mime, timestamped=r.timestamped,
                   id=r.id, fingerprint=r.fingerprint, watermark_id=r.watermark_id)
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
