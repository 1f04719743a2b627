"""What every backend's `.profile(feeds, repeat=)` returns: the time per kernel, the hottest first.

A kernel is what a backend times as one call: a compiled TVM kernel, which may compute several
fused nodes (lowering/tvm/profile.py), or one node's numpy call in the numpy executor. Plain data, without
TVM, so the numpy executor and the HTML report use it on machines where TVM is not imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral
from typing import Iterable, NamedTuple

from ..graph import LoweringError


@dataclass(frozen=True)
class KernelTime:
    """One kernel: calls per run, time per run (all calls together), its share of the time in
    kernels, the nodes (labels) whose results it computes, and their op where it computes one node
    (the numpy executor; empty for a TVM kernel)."""

    kernel: str
    calls: int
    seconds: float
    share: float
    nodes: tuple[str, ...]
    op: str = ""


class KernelTotal(NamedTuple):
    """What a backend measured for one kernel over all the profiled runs together."""

    kernel: str
    calls: int
    seconds: float
    nodes: tuple[str, ...]
    op: str = ""


@dataclass(frozen=True)
class Profile:
    """Time per kernel of one executable, the hottest first; `run_seconds` is the wall time of a
    whole instrumented run (kernels plus the backend's own work), averaged over `repeat` runs.
    `unit` names what a row times: "kernel" (TVM) or "node" (the numpy executor)."""

    title: str
    rows: tuple[KernelTime, ...]
    run_seconds: float
    repeat: int
    unit: str = "kernel"

    @classmethod
    def of(
        cls, title: str, totals: Iterable[KernelTotal], wall_seconds: float, repeat: int, unit: str = "kernel"
    ) -> Profile:
        """The profile of `repeat` runs that took `wall_seconds` in all: totals become per-run
        figures, each kernel's share is of the time in kernels, rows go hottest first."""
        totals = list(totals)
        in_kernels = sum(t.seconds for t in totals) or 1.0
        rows = [
            KernelTime(t.kernel, t.calls // repeat, t.seconds / repeat, t.seconds / in_kernels, t.nodes, t.op)
            for t in totals
        ]
        return cls(title, tuple(sorted(rows, key=lambda r: -r.seconds)), wall_seconds / repeat, repeat, unit)

    @property
    def kernel_seconds(self) -> float:
        return sum(row.seconds for row in self.rows)

    def __getitem__(self, kernel: str) -> KernelTime:
        for row in self.rows:
            if row.kernel == kernel:
                return row
        raise KeyError(f"no {self.unit} {kernel!r} in the profile; {self.unit}s: {[r.kernel for r in self.rows]}")

    def __str__(self) -> str:
        width = max([len(row.kernel) for row in self.rows] + [6])
        detail = "op" if self.unit == "node" else "nodes"
        lines = [
            f"profile of {self.title}: {self.repeat} runs, {_ms(self.run_seconds)} per run, "
            f"{_ms(self.kernel_seconds)} in {len(self.rows)} {self.unit}s",
            f"{self.unit:<{width}}  calls      time   share  {detail}",
        ]
        for row in self.rows:
            shown = row.op if self.unit == "node" else ", ".join(row.nodes) or "-"
            lines.append(f"{row.kernel:<{width}}  {row.calls:>5}  {_ms(row.seconds):>8}  {row.share:>5.1%}  {shown}")
        return "\n".join(lines)


def check_repeat(repeat: int) -> None:
    """A profile needs at least one timed run."""
    if not isinstance(repeat, Integral) or repeat < 1:
        raise LoweringError(f"profile(repeat={repeat!r}): repeat must be at least 1 (a whole number of timed runs)")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"
