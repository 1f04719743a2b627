"""Atomic file writes: a reader never sees a half-written artifact, even if the writer dies."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

_STATUS = "/proc/self/status"  # Linux (4.7+) reports the umask there, readable without changing it


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    return write_atomic_with(path, lambda tmp: tmp.write_bytes(data))


def write_atomic_with(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Let `write` fill a temporary file beside `path`, then rename it over `path`. The temporary
    name keeps `path`'s suffix, for writers that choose a format by suffix (TVM's export_library)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def current_umask() -> int:
    """The process's umask, read without changing it. `os.umask` can only read the mask by setting
    another one, and a file another thread creates meanwhile gets that mode (0666 for a mask of 0),
    so the mask is read from /proc; where there is none, the value read once at import is used."""
    mask = _proc_umask()
    return _UMASK_AT_IMPORT if mask is None else mask


def _proc_umask() -> int | None:
    try:
        with open(_STATUS, encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_at_import() -> int:
    """The fallback where /proc has no umask: set and restore it once, while Python's import lock
    is held, with a strict mask meanwhile (a racing file gets fewer permissions, never more)."""
    mask = _proc_umask()
    if mask is None:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _umask_at_import()
