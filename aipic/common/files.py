"""The one way aipic writes a file it must not lose: to a temporary name, flushed to disk, then renamed, and the
rename made durable. A crash or a full disk never leaves a half-written file under the real name."""

from __future__ import annotations

import os
from pathlib import Path

PARTIAL_SUFFIX = ".part"


def write_atomically(path: Path, data: bytes | str, private: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (fsync, then rename). ``private``: the file is created 0600 (keys)."""
    path = Path(path)
    temporary = path.with_name(path.name + PARTIAL_SUFFIX)
    payload = data.encode() if isinstance(data, str) else data
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o666)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        replace_durably(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if private:
        os.chmod(path, 0o600)
    return path


def replace_durably(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` (atomic on one file system) and flush the folder, so the rename survives a
    power cut."""
    os.replace(source, target)
    try:
        folder = os.open(Path(target).parent, os.O_RDONLY)
    except OSError:  # a file system without directory handles: the rename is still atomic
        return
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
