"""The reductions that read a flattened tensor: argmax and argmin with `axis=None` (numpy's
index into `x.ravel()`). The others (sum, mean, max, ...) are in core.py."""

from __future__ import annotations

from ..tensor import Tensor
from ..types import normalize_axis
from .core import emit
from .shape import reshape


def _arg_reduction(op: str, doc: str):
    def arg(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
        if axis is not None:
            return emit(op, x, axis=normalize_axis(axis, x.ndim), keepdims=bool(keepdims))
        index = emit(op, reshape(x, (-1,)), axis=0, keepdims=False)
        return reshape(index, (1,) * x.ndim) if keepdims else index

    arg.__name__, arg.__doc__ = op, doc
    return arg


argmax = _arg_reduction("argmax", "Index (int64) of the first maximum along `axis` (None: of the flattened x).")
argmin = _arg_reduction("argmin", "Index (int64) of the first minimum along `axis` (None: of the flattened x).")
