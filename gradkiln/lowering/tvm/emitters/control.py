"""Relax emitters of the control-flow ops, by unrolling into the enclosing function.

- scan: the body is emitted once per step (each node through its own emitter, as the backend
  emits any node), step t reading slice t of each xs; the ys are stacked with one concat. The
  trip count is static, so the module stays a dataflow block that TVM fuses across steps.
  Unrolling costs compile time and code in proportion to steps x body nodes, so a scan past
  UNROLL_LIMIT emitted nodes is refused (a 2^40-step ONNX Loop would otherwise never compile).
- cond: both bodies are emitted and each output is a `where` on the predicate. A NaN or Inf
  computed in the branch not taken does not leak into the result: `where` picks the other
  value. The price is computing both branches.
"""

from __future__ import annotations

from typing import Sequence

from tvm import relax
from tvm.relax import op as R  # noqa: N812 (the spelling TVM uses)

from ....graph import LoweringError, Node, Value
from ....graph.body import Body
from .context import EmitContext, register_emitter

UNROLL_LIMIT = 200_000  # body nodes emitted for one scan: about a minute of TVM compile


def emit_body(ctx: EmitContext, body: Body, args: Sequence[relax.Expr]) -> list[relax.Expr]:
    """The Relax values of `body`'s outputs, its nodes emitted in order on `args`."""
    env: dict[Value, relax.Expr] = dict(zip(body.inputs, args))
    for node_id in body.nodes():
        node = body.graph.node(node_id)
        if node.op != "input":
            env.update(ctx.emit_node(ctx, node, [env[v] for v in node.inputs]))
    return [env[v] for v in body.outputs]


def _step(ctx: EmitContext, x: relax.Expr, t: int) -> relax.Expr:
    row = ctx.bb.emit(R.strided_slice(x, axes=[0], begin=[t], end=[t + 1]))
    return ctx.bb.emit(R.squeeze(row, axis=[0]))


@register_emitter("scan")
def _scan(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    a = node.attrs
    emitted = a["length"] * len(a["body"].nodes())
    if emitted > UNROLL_LIMIT:
        raise LoweringError(
            f"{node.label}: a scan of {a['length']} steps over a body of {len(a['body'].nodes())} nodes "
            f"unrolls into {emitted} nodes on this target, past its limit of {UNROLL_LIMIT} "
            "(gradkiln.lowering.tvm.emitters.control.UNROLL_LIMIT); run it with target='numpy', or shorten the scan"
        )
    carry_count, xs_count = a["num_carry"], a["num_xs"]
    carry, xs, consts = args[:carry_count], args[carry_count : carry_count + xs_count], args[carry_count + xs_count :]
    ys: list[list[relax.Expr]] = [[] for _ in a["body"].outputs[carry_count:]]
    order = range(a["length"] - 1, -1, -1) if a["reverse"] else range(a["length"])
    for t in order:
        results = emit_body(ctx, a["body"], [*carry, *(_step(ctx, x, t) for x in xs), *consts])
        carry = results[:carry_count]
        for stack, y in zip(ys, results[carry_count:]):
            stack.append(ctx.bb.emit(R.expand_dims(y, [0])))
    stacked = [R.concat(s[::-1] if a["reverse"] else s, axis=0) for s in ys]
    return _outputs([*carry, *(ctx.bb.emit(s) for s in stacked)])


@register_emitter("cond")
def _cond(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    taken = emit_body(ctx, node.attrs["true_body"], args[1:])
    other = emit_body(ctx, node.attrs["false_body"], args[1:])
    picked = [ctx.bb.emit(R.where(args[0], t, f)) for t, f in zip(taken, other)]
    return _outputs(picked)


def _outputs(values: list[relax.Expr]) -> relax.Expr:
    """One output as itself, several as a tuple (as the backend reads emitters' results)."""
    return values[0] if len(values) == 1 else relax.Tuple(values)
