"""Bitwise ops on integers: and, or, xor, not (also on bool, as the logical ops) and shifts.

Shifts follow ONNX's BitShift (opset 28) where C leaves them undefined: a shift by a negative
amount or by at least the bit width gives 0 (left) or the sign fill (right: -1 for a negative
signed x, else 0); a left shift wraps around (two's complement); a right shift of a signed
integer is arithmetic. The shift amount has x's dtype. No gradients (piecewise constant).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..dtypes import is_int
from ..errors import DTypeError
from ..opdef import OpDef, register_op
from ..types import TensorType, broadcast_shapes
from .common import require_same_dtype


def _shift(x: np.ndarray, amount: np.ndarray, left: bool) -> np.ndarray:
    bits = x.dtype.itemsize * 8
    inside = (amount >= 0) & (amount < bits)
    safe = np.where(inside, amount, 0).astype(x.dtype)
    shifted = np.left_shift(x, safe) if left else np.right_shift(x, safe)
    fill = np.zeros((), x.dtype) if left else np.where(x < 0, -1, 0).astype(x.dtype)
    return np.where(inside, shifted, fill).astype(x.dtype)


BINARY: dict[str, tuple[Callable, bool, str]] = {
    # name: (numpy function, also on bool, doc)
    "bitwise_and": (np.bitwise_and, True, "a & b (and for bool)."),
    "bitwise_or": (np.bitwise_or, True, "a | b (or for bool)."),
    "bitwise_xor": (np.bitwise_xor, True, "a ^ b (xor for bool)."),
    "left_shift": (lambda x, amount: _shift(x, amount, True), False, "x << amount; 0 outside [0, bits)."),
    "right_shift": (lambda x, amount: _shift(x, amount, False), False, "x >> amount; the sign fill outside [0, bits)."),
}


def _require_bits(name: str, with_bool: bool, *types: TensorType) -> str:
    dtype = require_same_dtype(*types)
    if not (is_int(dtype) or (with_bool and dtype == "bool")):
        kinds = "integers or bools" if with_bool else "integers"
        raise DTypeError(f"{name} takes {kinds}, got {dtype}; cast with gk.cast(x, 'int32')")
    return dtype


def _binary_infer(name: str, with_bool: bool) -> Callable:
    def infer(a: TensorType, b: TensorType) -> tuple[TensorType]:
        return (TensorType(_require_bits(name, with_bool, a, b), broadcast_shapes(a.shape, b.shape)),)

    return infer


def _not_infer(x: TensorType) -> tuple[TensorType]:
    _require_bits("bitwise_not", True, x)
    return (x,)


for _name, (_fn, _with_bool, _doc) in BINARY.items():
    register_op(OpDef(_name, _binary_infer(_name, _with_bool), _fn, 2, elementwise=True, doc=_doc))
register_op(OpDef("bitwise_not", _not_infer, np.invert, 1, elementwise=True, doc="~x (not x for bool)."))
