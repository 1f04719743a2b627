"""Relax emitters of the bitwise ops: Relax's bitwise ops on integers, its logical ops on bool;
shifts guard the amount (LLVM leaves a shift by a negative amount or by the bit width undefined)
and give ONNX's 0 or sign fill there, as the numpy reference does."""

from __future__ import annotations

from typing import Callable

import numpy as np
from tvm import relax
from tvm.relax import op as R  # noqa: N812 (the spelling TVM uses)

from ....graph import Node
from .context import EmitContext, register_emitter

# name: (integer op, bool op)
LOGICAL: dict[str, tuple[Callable[..., relax.Expr], Callable[..., relax.Expr]]] = {
    "bitwise_and": (R.bitwise_and, R.logical_and),
    "bitwise_or": (R.bitwise_or, R.logical_or),
    "bitwise_xor": (R.bitwise_xor, R.logical_xor),
    "bitwise_not": (R.bitwise_not, R.logical_not),
}


def _logical(ops: tuple[Callable[..., relax.Expr], Callable[..., relax.Expr]]):
    def emit(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
        on_bool = node.graph.type_of(node.inputs[0]).dtype == "bool"
        return ops[on_bool](*args)

    return emit


def _shift(left: bool):
    def emit(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
        x, amount = args
        dtype = node.types[0].dtype
        zero = relax.const(0, dtype)
        inside = R.logical_and(
            R.greater_equal(amount, zero), R.less(amount, relax.const(np.dtype(dtype).itemsize * 8, dtype))
        )
        safe = R.where(inside, amount, zero)
        shifted = R.left_shift(x, safe) if left else R.right_shift(x, safe)
        signed = np.issubdtype(np.dtype(dtype), np.signedinteger)
        fill = R.where(R.less(x, zero), relax.const(-1, dtype), zero) if signed and not left else zero
        return R.where(inside, shifted, fill)

    return emit


for _name, _ops in LOGICAL.items():
    register_emitter(_name)(_logical(_ops))
register_emitter("left_shift")(_shift(True))
register_emitter("right_shift")(_shift(False))
