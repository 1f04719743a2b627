"""Checks shared by the op definitions."""

from __future__ import annotations

from ..dtypes import is_float
from ..errors import DTypeError, ShapeError
from ..types import TensorType, normalize_axes


def require_float(*types: TensorType) -> None:
    for t in types:
        if not is_float(t.dtype):
            raise DTypeError(f"needs a floating dtype, got {t.dtype}; convert with gk.cast(x, 'float32')")


def require_numeric(*types: TensorType) -> None:
    for t in types:
        if t.dtype == "bool":
            raise DTypeError("does not accept bool; convert with gk.cast(x, 'float32')")


def require_same_dtype(*types: TensorType) -> str:
    dtypes = {t.dtype for t in types}
    if len(dtypes) != 1:
        raise DTypeError(f"operand dtypes differ ({', '.join(sorted(dtypes))}); cast one with gk.cast")
    return dtypes.pop()


def check_axes(axes: tuple[int, ...], rank: int) -> tuple[int, ...]:
    """Axes must already be normalized (sorted, non-negative, in range)."""
    if tuple(axes) != normalize_axes(axes, rank):
        raise ShapeError(f"axes {axes} must be sorted, unique and in [0, {rank})")
    return tuple(axes)
