"""The builder functions of the elementwise table's ops, one per row of
`graph/ops/elementwise_table.py` (`gk.exp`, `gk.silu`, `gk.add`, `gk.atan2`, ...), with the row's
docstring: unary ones emit the op on the operand, ints cast to the default float for float-only
ops; binary ones promote their operands to one dtype first. Listed in `__all__`, so
`from .elementwise import *` re-exports them (the builder package, `gradkiln._api`)."""

from __future__ import annotations

from typing import Callable

from ..ops.elementwise_table import BINARY_ROWS, UNARY_ROWS
from .core import binary_function, unary_function

FUNCTIONS: dict[str, Callable] = {
    **{row.name: unary_function(row.name, row.doc, row.floats) for row in UNARY_ROWS},
    **{row.name: binary_function(row.name, row.doc, row.floats) for row in BINARY_ROWS},
}
for _fn in FUNCTIONS.values():
    _fn.__module__ = __name__  # where they are found (help(), pickling), not core where they are made
globals().update(FUNCTIONS)
__all__ = list(FUNCTIONS)
