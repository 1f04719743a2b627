"""Atomic checkpoints of a training state (parameters, optimizer buffers, the step count).

`Checkpoints(folder).save(step, state)` writes `step-<step>.npz` through a temporary file and a
rename, so a job killed mid-write leaves the previous checkpoint intact and never a torn one;
`latest()` gives the newest (step, state), which a restarted job resumes from. With several
workers only rank 0 writes (every worker holds the same replicated state) and every worker reads
the same file, so the folder must be shared by the workers (one machine, or a shared filesystem).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import numpy as np

from ..atomic import write_atomic_with

STEP_KEY = "__step__"
_NAME = re.compile(r"step-(\d+)\.npz")


class Checkpoints:
    """The checkpoints of one job in `folder`, keeping the newest `keep`."""

    def __init__(self, folder: str | Path, keep: int = 2) -> None:
        self.folder, self.keep = Path(folder), keep

    def save(self, step: int, state: Mapping[str, np.ndarray]) -> Path:
        """Write the state after `step` steps atomically; drop checkpoints older than the newest `keep`."""
        path = self.folder / f"step-{step:08d}.npz"
        arrays = {STEP_KEY: np.int64(step), **state}
        write_atomic_with(path, lambda tmp: np.savez(tmp, **arrays))
        for old in self._steps()[: -self.keep]:
            (self.folder / f"step-{old:08d}.npz").unlink(missing_ok=True)
        return path

    def latest(self) -> tuple[int, dict[str, np.ndarray]] | None:
        """(step, state) of the newest checkpoint, or None when there is none."""
        steps = self._steps()
        if not steps:
            return None
        with np.load(self.folder / f"step-{steps[-1]:08d}.npz") as data:
            state = {k: data[k] for k in data.files if k != STEP_KEY}
            return int(data[STEP_KEY]), state

    def _steps(self) -> list[int]:
        if not self.folder.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.folder.iterdir() if (m := _NAME.fullmatch(p.name)))
