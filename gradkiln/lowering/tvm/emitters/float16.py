"""float16 nodes of the elementwise table's transcendental ops, computed in float32 and rounded
once, as numpy's float16 loops call the float32 function: each row's emitter (from elementwise.py
or numerics.py, imported first so that those rules exist) gets a `when=` alternative for float16."""

from __future__ import annotations

from dataclasses import replace

from tvm import relax
from tvm.relax import op as R  # noqa: N812 (the spelling TVM uses)

from ....graph import Node
from ....graph.ops.elementwise_table import BINARY_ROWS, UNARY_ROWS
from ....graph.types import TensorType
from . import elementwise, numerics  # noqa: F401  (the rules wrapped below, registered first)
from .context import EMITTERS, EmitContext, Emitter, register_emitter


class _Float32View(Node):
    """A node read as if its float16 outputs were float32 (for emitters that take constants'
    dtypes from the node)."""

    __slots__ = ()

    @property
    def types(self) -> tuple[TensorType, ...]:
        return tuple(replace(t, dtype="float32") if t.dtype == "float16" else t for t in super().types)


def in_float32(emitter: Emitter) -> Emitter:
    """`emitter` of a float16 node computed in float32 and rounded once, as numpy's float16 loops
    call the float32 function: TVM has no float16 form of most libm calls (atan2, cosh, asin failed
    to compile on llvm), and its float16 arithmetic forms (sigmoid, silu, tanh) round every step."""

    def emit(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
        wide = [ctx.bb.emit(R.astype(a, "float32")) for a in args]
        return R.astype(ctx.bb.emit(emitter(ctx, _Float32View(node.graph, node.id), wide)), "float16")

    return emit


def _is_float16(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> bool:
    return node.types[0].dtype == "float16"


for _row in (*UNARY_ROWS, *BINARY_ROWS):
    if _row.rounding == "transcendental":
        register_emitter(_row.name, when=_is_float16)(in_float32(EMITTERS[_row.name]))
