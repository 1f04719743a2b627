"""Elementwise ops: unary math, binary arithmetic with numpy broadcasting, comparisons, where, cast."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..dtypes import as_dtype
from ..errors import DTypeError
from ..opdef import OpDef, register_op
from ..types import TensorType, broadcast_shapes
from .common import require_float, require_numeric, require_same_dtype


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0, -x)).astype(x.dtype)


UNARY: dict[str, tuple[Callable, bool]] = {
    # name: (numpy function, floats only)
    "neg": (np.negative, False),
    "abs": (np.abs, False),
    "sign": (np.sign, False),
    "relu": (lambda x: np.maximum(x, np.zeros((), x.dtype)), False),
    "exp": (np.exp, True),
    "log": (np.log, True),
    "sqrt": (np.sqrt, True),
    "tanh": (np.tanh, True),
    "sigmoid": (_sigmoid, True),
}

BINARY: dict[str, tuple[Callable, bool]] = {
    "add": (np.add, False),
    "sub": (np.subtract, False),
    "mul": (np.multiply, False),
    "div": (np.divide, True),
    "pow": (np.power, True),
    "maximum": (np.maximum, False),
    "minimum": (np.minimum, False),
}

COMPARE: dict[str, Callable] = {
    "equal": np.equal,
    "not_equal": np.not_equal,
    "less": np.less,
    "less_equal": np.less_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
}


def _unary_infer(floats_only: bool) -> Callable:
    def infer(x: TensorType) -> tuple[TensorType]:
        (require_float if floats_only else require_numeric)(x)
        return (x,)

    return infer


def _binary_infer(floats_only: bool, out_dtype: str | None = None) -> Callable:
    def infer(a: TensorType, b: TensorType) -> tuple[TensorType]:
        dtype = require_same_dtype(a, b)
        if floats_only:
            require_float(a)
        elif out_dtype is None:
            require_numeric(a)
        return (TensorType(out_dtype or dtype, broadcast_shapes(a.shape, b.shape)),)

    return infer


def _where_infer(cond: TensorType, a: TensorType, b: TensorType) -> tuple[TensorType]:
    if cond.dtype != "bool":
        raise DTypeError(f"the condition must be bool, got {cond.dtype}; compare first (x > 0)")
    dtype = require_same_dtype(a, b)
    return (TensorType(dtype, broadcast_shapes(cond.shape, a.shape, b.shape)),)


for _name, (_fn, _floats) in UNARY.items():
    register_op(OpDef(_name, _unary_infer(_floats), _fn, 1, elementwise=True))
for _name, (_fn, _floats) in BINARY.items():
    register_op(OpDef(_name, _binary_infer(_floats), _fn, 2, elementwise=True))
for _name, _fn in COMPARE.items():
    register_op(OpDef(_name, _binary_infer(False, "bool"), _fn, 2, elementwise=True))
register_op(
    OpDef("where", _where_infer, np.where, 3, elementwise=True, doc="where(cond, a, b): a where cond is true, else b.")
)
register_op(
    OpDef(
        "cast",
        lambda x, dtype: (x.with_dtype(as_dtype(dtype)),),
        lambda x, dtype: x.astype(dtype),
        1,
        elementwise=True,
        doc="attrs: dtype.",
    )
)
