"""Checks shared by the op definitions."""

from __future__ import annotations

from typing import Callable

from ..dtypes import is_complex, is_float, is_inexact
from ..errors import DTypeError, ShapeError
from ..types import TensorType, normalize_axes

COMPLEX_HINT = (
    "complex tensors take real, imag, conj, abs, angle and the arithmetic listed in docs/autodiff.md "
    "(Complex numbers); split one with gk.real and gk.imag (or gk.abs) first"
)


def require_float(*types: TensorType) -> None:
    for t in types:
        if is_complex(t.dtype):
            raise DTypeError(f"does not accept complex dtypes, got {t.dtype}; {COMPLEX_HINT}")
        if not is_float(t.dtype):
            raise DTypeError(f"needs a floating dtype, got {t.dtype}; convert with gk.cast(x, 'float32')")


def require_inexact(*types: TensorType) -> None:
    """A floating or complex dtype (ops holomorphic on complex numbers: exp, log, div, ...)."""
    for t in types:
        if not is_inexact(t.dtype):
            raise DTypeError(
                f"needs a floating dtype (or a complex one), got {t.dtype}; convert with gk.cast(x, 'float32')"
            )


def require_numeric(*types: TensorType, complex_ok: bool = False) -> None:
    """Not bool, and not complex unless the op computes on complex numbers (`complex_ok`)."""
    for t in types:
        if t.dtype == "bool":
            raise DTypeError("does not accept bool; convert with gk.cast(x, 'float32')")
        if is_complex(t.dtype) and not complex_ok:
            raise DTypeError(f"does not accept complex dtypes, got {t.dtype}; {COMPLEX_HINT}")


def operand_check(floats_only: bool, complex_ok: bool = False) -> Callable[[TensorType], None]:
    """The dtype check of an op's operands: floats only (or floats and complex, `complex_ok`), or
    any number but bool (complex only with `complex_ok`)."""
    if floats_only:
        return require_inexact if complex_ok else require_float
    return lambda t: require_numeric(t, complex_ok=complex_ok)


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
