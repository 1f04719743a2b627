"""Linear algebra and neural-network ops: batched matmul, one_hot."""

from __future__ import annotations

import numpy as np

from ..dtypes import as_dtype, is_int
from ..errors import DTypeError, ShapeError
from ..opdef import OpDef, register_op
from ..types import TensorType, broadcast_shapes, dims_equal
from .common import require_numeric, require_same_dtype
from .index_mode import check_mode, resolve


def _matmul_infer(a: TensorType, b: TensorType) -> tuple[TensorType]:
    dtype = require_same_dtype(a, b)
    require_numeric(a, complex_ok=True)
    if a.rank < 2 or b.rank < 2:
        raise ShapeError("operands must have rank >= 2 (gk.matmul handles vectors)")
    if not dims_equal(a.shape[-1], b.shape[-2]):
        raise ShapeError(
            f"inner dims differ: {a.shape[-1]} (last of the first operand) vs "
            f"{b.shape[-2]} (second-to-last of the second)"
        )
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return (TensorType(dtype, batch + (a.shape[-2], b.shape[-1])),)


def _one_hot_infer(x: TensorType, depth: int, dtype: str, mode: str = "raise") -> tuple[TensorType]:
    if not is_int(x.dtype):
        raise DTypeError(f"indices must be int32 or int64, got {x.dtype}")
    check_mode(mode, "one_hot")
    return (TensorType(as_dtype(dtype), x.shape + (depth,)),)


def _one_hot(x: np.ndarray, depth: int, dtype: str, mode: str = "raise") -> np.ndarray:
    """Class indices are in range in [0, depth); in mode "fill" the others give zero rows."""
    if mode != "fill":
        x = resolve(x, depth, mode, "one_hot", from_end=False)[0]
    return (x[..., None] == np.arange(depth)).astype(dtype)


register_op(OpDef("matmul", _matmul_infer, np.matmul, 2, doc="Batched matmul of rank >= 2 operands."))
register_op(
    OpDef(
        "one_hot",
        _one_hot_infer,
        _one_hot,
        1,
        doc="attrs: depth, dtype, mode (class indices outside [0, depth): 'raise', 'clip' or 'fill' (a zero row)).",
    )
)
