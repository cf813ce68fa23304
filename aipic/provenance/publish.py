"""How a signed output becomes visible: written under a staging name that is never served, recorded in the
provenance registry, and only then renamed into its folder. "Nothing published that the registry does not
know" holds at every instant, a crash included.

    <output root>/.staging/<UTC day>/<name>   written and flushed here first (the app refuses to serve .staging/)
    <output root>/<UTC day>/<name>            renamed here once its registry row is committed

At start the app reconciles its output folder (``reconcile``): a staged file left by a crash is published when
its row was committed (it was recorded, so nothing is lost) and removed otherwise; a file in the output folder
that the registry does not know (left by an older aipic, or put there by hand) is moved to the quarantine
folder, never served, and logged.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from aipic.common.files import PARTIAL_SUFFIX, replace_durably, write_atomically

log = logging.getLogger(__name__)

STAGING = ".staging"
STALE_SECONDS = 600.0  # a staged file older than this belongs to no running request (commits wait at most 30 s)


def day_folder(now: datetime.datetime | None = None) -> str:
    return (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%d")


def final_path(root: Path, name: str, day: str | None = None) -> Path:
    """Where an output of this name is published (an absolute path: the registry records it)."""
    return Path(root).resolve() / (day or day_folder()) / name


def staged_path(final: Path) -> Path:
    """The staging name of a final path: the same day folder and name under ``<root>/.staging``."""
    return final.parent.parent / STAGING / final.parent.name / final.name


def stage(final: Path, data: bytes) -> Path:
    """Write the signed bytes durably under their staging name; returns it."""
    staged = staged_path(final)
    staged.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(staged, data)


def publish(staged: Path, final: Path) -> None:
    """Rename a recorded output into its folder, durably (aipic.common.files)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    replace_durably(staged, final)


@dataclass
class Reconciled:
    published: int = 0  # staged files whose row had been committed: renamed into place
    removed: int = 0  # staged or partial files with no row: deleted
    quarantined: int = 0  # files in the output folder the registry does not know: moved aside


def reconcile(root: Path, registry, quarantine: Path, stale_seconds: float = STALE_SECONDS, batch: int = 500) -> Reconciled:
    """Bring an output folder in line with the registry after a crash (see the module's docstring)."""
    root = Path(root).resolve()
    done = Reconciled()
    if not root.is_dir():
        return done
    now = time.time()
    staging = root / STAGING
    staged = [path for path in staging.rglob("*") if path.is_file() and now - path.stat().st_mtime > stale_seconds] if staging.is_dir() else []
    finals = {str(root / path.parent.name / path.name.removesuffix(PARTIAL_SUFFIX)): path for path in staged}
    for chunk in _chunks(list(finals), batch):
        known = registry.known_paths(chunk)
        for final in chunk:
            path = finals[final]
            if final in known and not path.name.endswith(PARTIAL_SUFFIX) and not Path(final).exists():
                publish(path, Path(final))
                done.published += 1
            else:
                path.unlink(missing_ok=True)
                done.removed += 1
    candidates = []
    for path in root.rglob("*"):
        if not path.is_file() or STAGING in path.relative_to(root).parts[:1] or path.name.startswith(".write-check-"):
            continue
        if path.name.endswith(PARTIAL_SUFFIX):
            if now - path.stat().st_mtime > stale_seconds:
                path.unlink(missing_ok=True)
                done.removed += 1
            continue
        candidates.append(path)
    for chunk in _chunks(candidates, batch):
        known = registry.known_paths([str(path) for path in chunk] + [os.path.relpath(path) for path in chunk])
        for path in chunk:
            if str(path) in known or os.path.relpath(path) in known:
                continue
            target = Path(quarantine) / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            done.quarantined += 1
    if done.quarantined:
        log.warning("%d file(s) in the output folder had no registry record: moved to %s, not served", done.quarantined, quarantine)
    if done.published or done.removed:
        log.info("output folder reconciled after an interruption: %d recorded output(s) published, %d unrecorded leftover(s) removed", done.published, done.removed)
    return done


def apply_retention(registry, days: float) -> int:
    """Delete output files older than ``days`` (0: keep them) and mark them deleted in the registry, which keeps
    their manifests and fingerprints: a copy can still be recognised. Returns how many files were deleted."""
    if days <= 0:
        return 0
    cutoff = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days)
    deleted = []
    for entry in registry.older_than(cutoff):
        path = Path(entry.path) if entry.path else None
        try:
            if path is not None:
                path.unlink(missing_ok=True)
            deleted.append(entry.id)
        except OSError as error:
            log.warning("retention could not delete an output (%s)", error.strerror or error)
    if deleted:
        registry.mark_deleted(deleted)
        log.info("retention: deleted %d output files older than %g days (their manifests stay in the registry)", len(deleted), days)
    return len(deleted)


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]
