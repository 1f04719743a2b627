"""ONNX export of the control-flow ops, with their bodies as ONNX sub-graphs.

- scan -> `Loop` with the trip count as M and no condition: the body reads step t of each xs
  with a Gather (t counted down for a reverse scan), and the ys are Loop's scan outputs
  (flipped back for a reverse scan, so ys[t] stays step t's); xs and consts are outer
  values the body reads. `Loop` rather than `Scan`
  because a scan without xs (an ODE integrator, a bounded while) has no ONNX Scan form.
- cond -> `If` on the predicate, each branch a sub-graph without inputs.
A body is exported by the same per-op rules as the main graph, into a context that shares the
model's names (ONNX values are unique across nesting); body inputs are Identity copies of the
ONNX values they stand for (outer values are in scope in a sub-graph).
"""

from __future__ import annotations

from typing import Callable

import onnx
from onnx import helper

from ..graph import Node, TensorType
from ..graph.body import Body
from .export_rules import EXPORTERS, register_exporter
from .exporter import ExportContext, _export_node, value_info

Prelude = Callable[[ExportContext], list[str]]


def export_body(parent: ExportContext, body: Body, prelude: Prelude) -> tuple[ExportContext, list[str]]:
    """Export `body` into a new context sharing `parent`'s names. `prelude(ctx)` emits what the
    body's inputs read and returns one ONNX name per body input; returns the context and one
    ONNX name per body output (a body input or a repeated value is copied by an Identity)."""
    ctx = ExportContext(body.graph, parent.opset)
    ctx._taken = parent._taken
    for value, source in zip(body.inputs, prelude(ctx)):
        ctx.emit("Identity", [source], [ctx.name_of(value)])
    for node_id in body.nodes():
        node = body.graph.node(node_id)
        if node.op != "input":
            _export_node(ctx, node, EXPORTERS)
    outputs: list[str] = []
    for value in body.outputs:  # an Identity only where needed: onnxruntime's Identity removal
        name = ctx.name_of(value)  # in Loop bodies loses values that fused nodes still read
        if value in body.inputs or name in outputs:
            name = ctx.emit("Identity", [name], [ctx.fresh("body_out")])
        outputs.append(name)
    return ctx, outputs


def _graph(
    ctx: ExportContext, name: str, inputs: list[onnx.ValueInfoProto], outputs: list[str], types: list[TensorType]
) -> onnx.GraphProto:
    infos = [value_info(n, t) for n, t in zip(outputs, types)]
    return helper.make_graph(ctx.nodes, name, inputs, infos, ctx.initializers)


@register_exporter("scan")
def _scan(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    a = node.attrs
    body, carry, xs = a["body"], a["num_carry"], a["num_xs"]
    step, keep_going = ctx.fresh("step"), ctx.fresh("keep_going")
    carried = [ctx.fresh("carry") for _ in range(carry)]

    def prelude(sub: ExportContext) -> list[str]:
        index = sub.emit("Sub", [sub.const(a["length"] - 1, "last", "int64"), step]) if a["reverse"] else step
        slices = [sub.emit("Gather", [x, index], axis=0) for x in ins[carry : carry + xs]]
        return [*carried, *slices, *ins[carry + xs :]]

    sub, body_outs = export_body(ctx, body, prelude)
    going_out = sub.emit("Identity", [keep_going], [ctx.fresh("keep_going_out")])
    flag = TensorType("bool", ())
    inputs = [value_info(step, TensorType("int64", ())), value_info(keep_going, flag)]
    inputs += [value_info(n, t) for n, t in zip(carried, body.input_types)]
    graph = _graph(sub, f"{node.op}_{node.id}_body", inputs, [going_out, *body_outs], [flag, *body.output_types])
    ys = outs[carry:] if not a["reverse"] else [ctx.fresh("ys_reversed") for _ in outs[carry:]]
    trips = ctx.const(a["length"], "trips", "int64")
    ctx.emit("Loop", [trips, "", *ins[:carry]], [*outs[:carry], *ys], body=graph)
    if a["reverse"]:
        flip = [ctx.ints([-1], "starts"), ctx.ints([-(2**63)], "ends"), ctx.ints([0], "axes"), ctx.ints([-1], "steps")]
        for reversed_ys, out in zip(ys, outs[carry:]):
            ctx.emit("Slice", [reversed_ys, *flip], [out])


@register_exporter("cond")
def _cond(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    branches = {}
    for side, key in (("then_branch", "true_body"), ("else_branch", "false_body")):
        body = node.attrs[key]
        sub, body_outs = export_body(ctx, body, lambda _: ins[1:])
        branches[side] = _graph(sub, f"{node.op}_{node.id}_{side}", [], body_outs, list(body.output_types))
    ctx.emit("If", [ins[0]], outs, **branches)
