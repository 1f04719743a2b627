"""Bounds on the work an import does itself, so that a small hostile file cannot make it allocate
gigabytes or run forever: the values it evaluates at import time (constant folding, shape
arithmetic, constants rules build from declared shapes), the steps it unrolls (Loop
iterations, recurrent time steps, sequence elements, slices taken one at a time) and the ONNX
nodes it imports inside unrolled Loop iterations.

Each check runs before the work it guards, from the requested sizes, and refuses with an
`ONNXError` naming the limit and how to raise it; `import_model` adds the node.
"""

from __future__ import annotations

import math
import numbers
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

from ..graph import ONNXError


@dataclass(frozen=True)
class ImportLimits:
    """The bounds of one import (`import_model(..., limits=ImportLimits(...))` changes them).

    - `max_value_elements`: elements of one value evaluated at import time (2**24: 128 MiB of int64).
    - `max_total_elements`: elements of all the values one import evaluates (2**26).
    - `max_unrolled_steps`: steps unrolled at import time, all together: Loop iterations (nested
      ones included), RNN/GRU/LSTM time steps, sequence elements, and the slices Gather with
      known indices, GatherND, Compress, CumProd and Pad's border modes take one at a time (2**16).
    - `max_unrolled_nodes`: ONNX nodes imported inside unrolled Loop iterations (2**16, a few seconds).
    """

    max_value_elements: int = 1 << 24
    max_total_elements: int = 1 << 26
    max_unrolled_steps: int = 1 << 16
    max_unrolled_nodes: int = 1 << 16


class ImportBudget:
    """What one import has spent of its `ImportLimits`; every charge checks before the work."""

    def __init__(self, limits: ImportLimits | None = None) -> None:
        self.limits = limits or ImportLimits()
        self.elements = 0
        self.steps = 0
        self.nodes = 0
        self.unrolling = 0  # how many unrolled Loop iterations are being imported, one inside the other

    def value(self, shape: Sequence[object], what: str) -> None:
        """Charge a value of `shape` about to be computed (symbolic dims are not counted: such a
        value is computed at run time); an `ONNXError` for a negative dim too."""
        dims = [int(d) for d in shape if isinstance(d, numbers.Integral)]
        if any(d < 0 for d in dims):
            raise ONNXError(f"{what} would have the negative dim {min(dims)} (shape {list(shape)})")
        count = math.prod(dims)
        if count > self.limits.max_value_elements:
            self._refuse(f"{what} would have {count} elements at import time", "max_value_elements", count)
        if self.elements + count > self.limits.max_total_elements:
            self._refuse(
                f"{what} would bring the values evaluated at import time to {self.elements + count} elements",
                "max_total_elements",
                self.elements + count,
            )
        self.elements += count

    def unrolled(self, count: int, what: str) -> None:
        """Charge `count` steps about to be unrolled at import time (each builds its own nodes)."""
        self.steps += count
        if self.steps > self.limits.max_unrolled_steps:
            self._refuse(
                f"{what} would bring the steps unrolled at import time to {self.steps}",
                "max_unrolled_steps",
                self.steps,
            )

    @contextmanager
    def iteration(self) -> Iterator[None]:
        """Charge one Loop iteration unrolled at import time; the nodes imported inside count."""
        self.unrolled(1, "another Loop iteration")
        self.unrolling += 1
        try:
            yield
        finally:
            self.unrolling -= 1

    def node(self) -> None:
        """Charge one ONNX node about to be imported (counted inside unrolled iterations only:
        elsewhere the model's own size bounds the work)."""
        if not self.unrolling:
            return
        self.nodes += 1
        if self.nodes > self.limits.max_unrolled_nodes:
            self._refuse(
                f"the Loops unrolled at import time reached {self.nodes} node imports",
                "max_unrolled_nodes",
                self.nodes,
            )

    def _refuse(self, what: str, limit: str, needed: int) -> None:
        bound = getattr(self.limits, limit)
        raise ONNXError(
            f"{what}, over the limit {limit}={bound}; if the model is trusted, raise it with "
            f"import_model(..., limits=gk.onnx_io.ImportLimits({limit}={max(needed, 2 * bound)}))"
        )
