"""Bitwise ops: and, or, xor, not (on integers, or bools as the logical ops) and shifts with
ONNX's definition where C has none (see `gradkiln.graph.ops.bitwise`). Operands promote as in
the other binary ops; Python ints take the tensor's dtype."""

from __future__ import annotations

from .core import Tensor, TensorLike, _graph_of, _lift, binary_function, emit

bitwise_and = binary_function("bitwise_and", "a & b elementwise.")
bitwise_or = binary_function("bitwise_or", "a | b elementwise.")
bitwise_xor = binary_function("bitwise_xor", "a ^ b elementwise.")
left_shift = binary_function(
    "left_shift", "x << amount, wrapping around; 0 where amount < 0 or amount >= the bit width."
)
right_shift = binary_function(
    "right_shift",
    "x >> amount (arithmetic for signed x); where amount < 0 or >= the bit width, -1 for a negative x and 0 otherwise.",
)


def bitwise_not(x: TensorLike) -> Tensor:
    """~x elementwise (not x for bool)."""
    return emit("bitwise_not", _lift(_graph_of([x]), x, None))
