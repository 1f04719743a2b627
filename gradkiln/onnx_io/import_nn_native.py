"""Import rules mapping ONNX convolution, pooling and indexing onto gradkiln's native nn ops
(one node each, so that they differentiate, lower and export as themselves). They replace the
window decompositions of `import_conv` and the known-index Gather of `shape_rules`, and fall
back to them where the native op does not fit: other than 2-D, auto_pad, ceil_mode, pooling
dilations, a ConvTranspose output_shape, Gather indices known at import time. ScatterND with reduction "add"
is read as scatter_add over the flattened leading axes the indices address.
"""

from __future__ import annotations

import math

import numpy as np

from ..graph import ONNXError, Tensor
from ..graph import builder as gb
from .importer import ImportContext, OnnxNode, Operand, register_importer


def _padding(n: OnnxNode) -> tuple[tuple[int, int], tuple[int, int]]:
    top, left, bottom, right = n.attrs.get("pads", [0, 0, 0, 0])
    return (top, bottom), (left, right)


def _plain_2d(n: OnnxNode, args: list[Operand]) -> bool:
    """A 4-D tensor input with explicit pads and floor mode."""
    x = args[0]
    return (
        isinstance(x, Tensor)
        and x.ndim == 4
        and n.attrs.get("auto_pad", "NOTSET") in ("NOTSET", "VALID")
        and not n.attrs.get("ceil_mode", 0)
    )


def _biased(y: Tensor, ctx: ImportContext, args: list[Operand]) -> Tensor:
    if len(args) < 3 or args[2] is None:
        return y
    return gb.add(y, gb.reshape(ctx.tensor(args[2]), (int(y.shape[1]), 1, 1)))


def _conv(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    x, w = ctx.tensor(args[0]), ctx.tensor(args[1])
    geometry = (n.attrs.get("strides", 1), _padding(n), n.attrs.get("dilations", 1), n.attrs.get("group", 1))
    return _biased(gb.conv2d(x, w, *geometry), ctx, args)


def _conv_transpose(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    x, w = ctx.tensor(args[0]), ctx.tensor(args[1])
    extra = n.attrs.get("output_padding", 0)
    geometry = (n.attrs.get("strides", 1), _padding(n), extra, n.attrs.get("dilations", 1), n.attrs.get("group", 1))
    return _biased(gb.conv_transpose2d(x, w, *geometry), ctx, args)


def _pool_fits(n: OnnxNode, args: list[Operand]) -> bool:
    if not (_plain_2d(n, args) and len(n.attrs["kernel_shape"]) == 2):
        return False  # 1-D and 3-D pools (and their pads) go to the general rule
    (top, bottom), (left, right) = _padding(n)
    kh, kw = n.attrs["kernel_shape"]
    return (
        n.num_outputs == 1
        and n.attrs.get("auto_pad", "NOTSET") == "NOTSET"
        and all(d == 1 for d in n.attrs.get("dilations", [1, 1]))
        and max(top, bottom) < kh
        and max(left, right) < kw
    )


def _max_pool(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    kernel = n.attrs["kernel_shape"]
    return gb.max_pool2d(ctx.tensor(args[0]), kernel, n.attrs.get("strides", 1), _padding(n))


def _average_pool(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    kernel, include = n.attrs["kernel_shape"], bool(n.attrs.get("count_include_pad", 0))
    return gb.avg_pool2d(ctx.tensor(args[0]), kernel, n.attrs.get("strides", 1), _padding(n), include)


def _gather(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    return gb.take(ctx.tensor(args[0]), args[1], n.attrs.get("axis", 0))


@register_importer("ScatterND")
def _scatter_nd(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """data[indices[...]] += updates, as scatter_add over the k leading axes of the data
    flattened to one (k the indices' last dim); an index column made by Unsqueeze is read
    through, so that scatter_add's export comes back as itself."""
    if n.attrs.get("reduction", "none") != "add":
        raise ONNXError("ScatterND is supported with reduction='add' only")
    x, indices, updates = (ctx.tensor(a) for a in args[:3])
    depth = int(indices.shape[-1])
    if depth == 1:
        column = indices.node
        if column.op == "expand_dims" and column.attrs["axes"] == (indices.ndim - 1,):
            return gb.scatter_add(x, Tensor(x.graph, column.inputs[0]), updates, 0)
        return gb.scatter_add(x, gb.squeeze(indices, -1), updates, 0)
    lead = [int(d) for d in x.shape[:depth]]
    strides = np.array([math.prod(lead[i + 1 :]) for i in range(depth)], indices.dtype)
    wrapped = gb.where(indices < 0, indices + np.array(lead, indices.dtype), indices)
    flat_index = gb.sum(wrapped * strides, -1)
    flat = gb.reshape(x, (math.prod(lead), *x.shape[depth:]))
    return gb.reshape(gb.scatter_add(flat, flat_index, updates, 0), x.shape)


register_importer("Conv", when=lambda c, n, args: _plain_2d(n, args))(_conv)
register_importer("ConvTranspose", when=lambda c, n, args: _plain_2d(n, args) and "output_shape" not in n.attrs)(
    _conv_transpose
)
register_importer("MaxPool", when=lambda c, n, args: _pool_fits(n, args))(_max_pool)
register_importer("AveragePool", when=lambda c, n, args: _pool_fits(n, args))(_average_pool)
register_importer("Gather", when=lambda c, n, args: isinstance(args[1], Tensor))(_gather)
