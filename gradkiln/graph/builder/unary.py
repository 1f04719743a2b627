"""The builder functions of the simple unary ops, one per row of `graph/ops/elementwise_table.py`
(`gk.exp`, `gk.silu`, ...), with the row's docstring: `emit` of the op on the operand, ints
cast to the default float for float-only ops. Listed in `__all__`, so `from .unary import *`
re-exports them (the builder package, `gradkiln._api`)."""

from __future__ import annotations

from typing import Callable

from ..ops.elementwise_table import UNARY_ROWS
from ..tensor import Tensor
from .core import TensorLike, unary_function

FUNCTIONS: dict[str, Callable[[TensorLike], Tensor]] = {
    row.name: unary_function(row.name, row.doc, row.floats) for row in UNARY_ROWS
}
globals().update(FUNCTIONS)
__all__ = list(FUNCTIONS)
