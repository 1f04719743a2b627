"""Relax emitters of the neural-network ops: convolutions and pools map onto Relax's NCHW ops;
take is one TE kernel reading each element at its index as the mode says (`read_at_indices`:
clamped, or the fill value out of range); scatter_add is a scatter_elements over indices broadcast
to the updates' shape, the updates at out-of-range indices dropped unless the mode clamps them.
softmax and log_softmax map onto Relax's, except in float16, where they take numpy's steps (the
numpy reference's, and ONNX's reference Softmax's): each elementwise step rounds to float16 and
the sum accumulates in float32. Relax's float16 softmax sums in float16 and was off by up to 2
ulps, more than the ONNX suite's rtol of 1e-3 allows (test_attention_4d_fp16)."""

from __future__ import annotations

import math

from tvm import relax
from tvm.relax import op as R  # noqa: N812 (the spelling TVM uses)

from ..graph import Node
from .tvm_emit_context import EmitContext, register_emitter
from .tvm_emitters_select import read_at_indices, safe_indices, without_updates


def _pads(node: Node) -> tuple[int, int, int, int]:
    """((top, bottom), (left, right)) as Relax's (top, left, bottom, right)."""
    (top, bottom), (left, right) = node.attrs["padding"]
    return top, left, bottom, right


@register_emitter("conv2d")
def _conv2d(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    a = node.attrs
    return R.nn.conv2d(*args, a["stride"], _pads(node), a["dilation"], a["groups"])


@register_emitter("conv_transpose2d")
def _conv_transpose2d(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    a = node.attrs
    return R.nn.conv2d_transpose(
        *args, a["stride"], _pads(node), a["output_padding"], a["dilation"], a["groups"], kernel_layout="IOHW"
    )


@register_emitter("max_pool2d")
def _max_pool2d(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    return R.nn.max_pool2d(args[0], node.attrs["kernel"], node.attrs["stride"], _pads(node))


@register_emitter("avg_pool2d")
def _avg_pool2d(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    a = node.attrs
    return R.nn.avg_pool2d(args[0], a["kernel"], a["stride"], _pads(node), count_include_pad=a["count_include_pad"])


@register_emitter("take")
def _take(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    return read_at_indices(ctx, node, *args, paired=False)


@register_emitter("scatter_add")
def _scatter_add(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """Flatten the index axes of the updates to one and give the indices that axis's place."""
    x, indices, updates = args
    if without_updates(node):
        return x
    axis = node.attrs["axis"]
    x_type, index_type = (node.graph.type_of(v) for v in node.inputs[:2])
    count = math.prod(index_type.shape)
    pre, post = x_type.shape[:axis], x_type.shape[axis + 1 :]
    flat = ctx.dim.shape((*pre, count, *post))
    safe = safe_indices(ctx, node, x, indices)
    updates = safe.kept(ctx, updates, axis, len(pre) + index_type.rank + len(post), x_type.dtype)
    column = R.reshape(safe.indices, ctx.dim.shape((*[1] * len(pre), count, *[1] * len(post))))
    spread = R.broadcast_to(column, relax.ShapeExpr(flat))
    return R.scatter_elements(x, spread, R.reshape(updates, flat), axis, reduction="add")


def _half_sum_exp(ctx: EmitContext, x: relax.Expr, axis: int) -> tuple[relax.Expr, relax.Expr, relax.Expr]:
    """(x - max(x), its exp, the sum of that) along `axis` of a float16 x, as numpy computes them:
    the exp of each float16 element rounded to float16, summed in float32, the sum rounded to float16."""
    shifted = ctx.bb.emit(R.subtract(x, ctx.bb.emit(R.max(x, [axis], keepdims=True))))
    e = ctx.bb.emit(R.astype(ctx.bb.emit(R.exp(ctx.bb.emit(R.astype(shifted, "float32")))), "float16"))
    total = ctx.bb.emit(R.sum(ctx.bb.emit(R.astype(e, "float32")), [axis], keepdims=True))
    return shifted, e, ctx.bb.emit(R.astype(total, "float16"))


@register_emitter("softmax")
def _softmax(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    axis = node.attrs["axis"]
    if node.types[0].dtype != "float16":
        return R.nn.softmax(args[0], axis)
    _, e, total = _half_sum_exp(ctx, args[0], axis)
    return R.divide(e, total)


@register_emitter("log_softmax")
def _log_softmax(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    axis = node.attrs["axis"]
    if node.types[0].dtype != "float16":
        return R.nn.log_softmax(args[0], axis)
    shifted, _, total = _half_sum_exp(ctx, args[0], axis)
    return R.subtract(shifted, ctx.bb.emit(R.log(total)))
