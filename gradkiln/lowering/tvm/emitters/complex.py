"""TVM 0.27 has no complex dtype: graphs with complex values run on the numpy executor.

`compile()` calls `refuse_complex` before building anything, so the error names the first node
with a complex value; the emitters of the complex ops raise the same error for a caller that
reaches them another way.
"""

from __future__ import annotations

from typing import Any

from tvm import relax

from ....graph import Graph, LoweringError, Node
from ....graph.ops.complex import PARTS, first_complex_node
from ....graph.outputs import normalize_outputs
from .context import EmitContext, register_emitter

COMPLEX_ON_NUMPY = "complex dtypes run on the numpy executor; compile(target='numpy')"


def _complex_error(node: Node, target: Any) -> LoweringError:
    types = ", ".join(map(str, node.types))
    return LoweringError(f"target {target!r}: {node.label} = {node.op}(...) -> {types} is complex; {COMPLEX_ON_NUMPY}")


def refuse_complex(graph: Graph, outputs: Any, target: Any) -> None:
    """Raise a LoweringError naming the first node with a complex value that `outputs` need."""
    values, _ = normalize_outputs(graph, outputs)
    node = first_complex_node(graph.node(i) for i in graph.needed_nodes(values))
    if node is not None:
        raise _complex_error(node, target)


def _refuse(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    raise _complex_error(node, "tvm")


for _name in (*PARTS, "complex"):
    register_emitter(_name)(_refuse)
