"""Elementwise ops: unary math, binary arithmetic with numpy broadcasting, comparisons, where, cast.

The simple unary and the binary arithmetic ops come from the rows of `elementwise_table.py`;
the unary ops with attributes, comparisons, where and cast are defined here."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..dtypes import as_dtype, is_complex, real_dtype
from ..errors import DTypeError
from ..opdef import OpDef, register_op
from ..types import TensorType, broadcast_shapes
from .common import COMPLEX_HINT, operand_check, require_same_dtype
from .elementwise_table import BINARY_ROWS, UNARY_ROWS, Binary, Unary, erf_array


def _gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    """x * Phi(x) ("none"), or the tanh approximation of it ("tanh")."""
    if approximate == "tanh":
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
        return (0.5 * x * (1 + np.tanh(inner))).astype(x.dtype)
    return (0.5 * x * (1 + erf_array(x / math.sqrt(2)))).astype(x.dtype)


def _clip(x: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
    """min(max(x, lo), hi), a missing bound leaving that side open."""
    low = x if lo is None else np.maximum(x, np.asarray(lo, x.dtype))
    return low if hi is None else np.minimum(low, np.asarray(hi, x.dtype))


# name: (numpy function, floats only), derived from the table's rows
UNARY: dict[str, tuple[Callable, bool]] = {row.name: (row.numpy, row.floats) for row in UNARY_ROWS}

# Unary ops with attributes: name -> (numpy function of (x, **attrs), floats only, doc).
UNARY_WITH_ATTRS: dict[str, tuple[Callable, bool, str]] = {
    "gelu": (
        _gelu,
        True,
        'attrs: approximate ("none": x * Phi(x) with the exact erf, "tanh": its tanh approximation).',
    ),
    "leaky_relu": (
        lambda x, negative_slope: np.where(x > 0, x, x * np.asarray(negative_slope, x.dtype)),
        True,
        "attrs: negative_slope.",
    ),
    "elu": (
        lambda x, alpha: np.where(x > 0, x, np.asarray(alpha, x.dtype) * np.expm1(np.where(x > 0, 0, x))),
        True,
        "attrs: alpha.",
    ),
    "clip": (_clip, False, "attrs: lo, hi (either may be None: no bound on that side), in x's dtype."),
}

BINARY: dict[str, tuple[Callable, bool]] = {row.name: (row.numpy, row.floats) for row in BINARY_ROWS}

# The ops above that also compute on complex numbers (abs gives the real modulus); every other op
# refuses complex operands with a DTypeError. Their gradients follow `symbolic/complex_rules.py`.
COMPLEX_OPS = frozenset({"neg", "abs", "square", "exp", "log", "reciprocal", "add", "sub", "mul", "div"})
ORDERED_COMPARE = frozenset({"less", "less_equal", "greater", "greater_equal"})

COMPARE: dict[str, Callable] = {
    "equal": np.equal,
    "not_equal": np.not_equal,
    "less": np.less,
    "less_equal": np.less_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
}


def _unary_infer(name: str, floats_only: bool) -> Callable:
    def infer(x: TensorType, **attrs: object) -> tuple[TensorType]:
        operand_check(floats_only, name in COMPLEX_OPS)(x)
        return (x.with_dtype(real_dtype(x.dtype)) if name == "abs" else x,)

    return infer


def _binary_infer(name: str, floats_only: bool) -> Callable:
    def infer(a: TensorType, b: TensorType) -> tuple[TensorType]:
        dtype = require_same_dtype(a, b)
        operand_check(floats_only, name in COMPLEX_OPS)(a)
        return (TensorType(dtype, broadcast_shapes(a.shape, b.shape)),)

    return infer


def _compare_infer(name: str) -> Callable:
    def infer(a: TensorType, b: TensorType) -> tuple[TensorType]:
        require_same_dtype(a, b)
        if name in ORDERED_COMPARE and is_complex(a.dtype):
            raise DTypeError(f"complex numbers have no order, got {a.dtype}; compare gk.abs or gk.real of them")
        return (TensorType("bool", broadcast_shapes(a.shape, b.shape)),)

    return infer


def _cast_infer(x: TensorType, dtype: str) -> tuple[TensorType]:
    dtype = as_dtype(dtype)
    if is_complex(x.dtype) and not is_complex(dtype):
        raise DTypeError(f"cannot cast {x.dtype} to {dtype}: it would drop the imaginary part; {COMPLEX_HINT}")
    return (x.with_dtype(dtype),)


def _where_infer(cond: TensorType, a: TensorType, b: TensorType) -> tuple[TensorType]:
    if cond.dtype != "bool":
        raise DTypeError(f"the condition must be bool, got {cond.dtype}; compare first (x > 0)")
    dtype = require_same_dtype(a, b)
    return (TensorType(dtype, broadcast_shapes(cond.shape, a.shape, b.shape)),)


def unary_opdef(row: Unary) -> OpDef:
    """The op definition of a table row: its numpy function, and type inference that refuses
    ints for float-only ops and complex operands outside COMPLEX_OPS."""
    return OpDef(row.name, _unary_infer(row.name, row.floats), row.numpy, 1, elementwise=True)


for _row in UNARY_ROWS:
    register_op(unary_opdef(_row))
for _name, (_fn, _floats, _doc) in UNARY_WITH_ATTRS.items():
    register_op(OpDef(_name, _unary_infer(_name, _floats), _fn, 1, elementwise=True, doc=_doc))


def binary_opdef(row: Binary) -> OpDef:
    """The op definition of a binary table row: its numpy function, and type inference that
    broadcasts, requires one dtype and refuses ints for float-only ops."""
    return OpDef(row.name, _binary_infer(row.name, row.floats), row.numpy, 2, elementwise=True)


for _row in BINARY_ROWS:
    register_op(binary_opdef(_row))
for _name, _fn in COMPARE.items():
    register_op(OpDef(_name, _compare_infer(_name), _fn, 2, elementwise=True))
register_op(
    OpDef("where", _where_infer, np.where, 3, elementwise=True, doc="where(cond, a, b): a where cond is true, else b.")
)
register_op(
    OpDef(
        "cast",
        _cast_infer,
        lambda x, dtype: x.astype(dtype),
        1,
        elementwise=True,
        doc="attrs: dtype.",
    )
)
