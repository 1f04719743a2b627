"""The TVM emitter table and what every emitter receives: `EmitContext`, `EMITTERS`,
`register_emitter`. Kept apart from the emitters themselves so that each family module of this
package and the backend import this small module, and the package can load the families from one
list without an import circle.

An emitter is `emitter(ctx, node, args) -> relax.Expr`: `args` are the Relax values of the node's
inputs, `node.attrs` its attributes, `ctx.dim` converts (symbolic) dims to TIR, and
`ctx.emit_node` emits another node the way the backend does (the control-flow emitters emit their
bodies with it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from tvm import relax, sym

from ....graph import Node, Value
from ....graph.registry import Registry
from ..dims import DimConverter

NodeEmitter = Callable[["EmitContext", Node, list[relax.Expr]], dict[Value, relax.Expr]]


@dataclass
class EmitContext:
    """What an emitter may use besides its node and arguments: the block builder, the dim
    converter, an arithmetic analyzer to compare TIR dims, and the backend's node emitter."""

    bb: relax.BlockBuilder
    dim: DimConverter
    emit_node: NodeEmitter
    analyzer: sym.Analyzer = field(default_factory=sym.Analyzer)


Emitter = Callable[[EmitContext, Node, list[relax.Expr]], relax.Expr]
EMITTERS: Registry[Emitter] = Registry("TVM emitter")


def register_emitter(op_name: str, **how: Any) -> Callable[[Emitter], Emitter]:
    """Decorator registering the Relax emitter of `op_name` (also how custom ops get a TVM lowering);
    `how` is `Registry.register`'s `when=`/`override=`."""
    return EMITTERS.register(op_name, **how)
