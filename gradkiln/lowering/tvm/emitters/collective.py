"""The collective ops on the llvm target: a destination-passing call of a Python function.

The compiled Relax VM calls the packed function `gradkiln.collective` (registered here, so in every
process that imports the TVM backend) with the op, its attributes as JSON, the operand and the
output tensor the VM allocated; the function runs the op's reference (`collective.INTO`) on numpy
views of both through DLPack, so the communicator works in place on the VM's buffer, between the
compiled kernels before and after it. GPU targets are refused before anything is built: their
buffers would need a device communicator (NCCL) that is not wired up.
"""

from __future__ import annotations

import json
from typing import Any

import tvm
from tvm import relax
from tvm.ir.expr import StringImm

from ....graph import Graph, LoweringError, Node
from ....graph.ops.collective import COLLECTIVES, INTO, as_numpy
from ....graph.outputs import normalize_outputs
from .context import EmitContext, register_emitter

PACKED = "gradkiln.collective"
CPU_KINDS = ("llvm", "cpu")


@tvm.register_global_func(PACKED, override=True)
def _run(op: str, attrs: str, x: Any, out: Any) -> None:
    INTO[op](as_numpy(x), as_numpy(out), **json.loads(attrs))


def refuse_collectives(graph: Graph, outputs: Any, target: Any) -> None:
    """Raise a LoweringError naming the first collective that `outputs` need on a non-CPU target."""
    kind = target.get("kind") if isinstance(target, dict) else target
    if kind in CPU_KINDS:
        return
    values, _ = normalize_outputs(graph, outputs)
    for node_id in graph.needed_nodes(values):
        if graph.op_of(node_id) in COLLECTIVES:
            node = graph.node(node_id)
            raise LoweringError(
                f"target {target!r}: {node.label} = {node.op}(...) is a collective; collectives run on the numpy "
                f"executor and the llvm target (GPU buffers would need NCCL, not wired up yet): compile for 'llvm'"
            )


def _emit(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    (t,) = node.types
    out_ty = relax.TensorType([ctx.dim(d) for d in t.shape], t.dtype)
    attrs = StringImm(json.dumps(node.attrs, sort_keys=True))
    return ctx.bb.emit(relax.call_dps_packed(PACKED, relax.Tuple([StringImm(node.op), attrs, args[0]]), out_ty=out_ty))


for _name in COLLECTIVES:
    register_emitter(_name)(_emit)
