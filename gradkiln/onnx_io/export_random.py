"""ONNX export of random_bits: the op's own `seed_keys` and `keyed_code` run on int64 ONNX values
(`export_select._Int64Value`: Add, Mul and Mod with fmod=0, numpy's sign convention for negative
seeds), so onnxruntime computes the numpy reference's integers bit for bit, from a seed that stays
a model input. The block's flat index is an initializer (the shape is static); the seed gets
trailing size-1 axes (Unsqueeze) to broadcast over it. Every ONNX op used imports one to one.
ONNX's own RandomUniform/RandomNormal are not used: their values are up to each runtime."""

from __future__ import annotations

import math

import numpy as np

from ..graph import Node
from ..graph.ops.dropout import PRIME
from ..graph.ops.random import keyed_code, seed_keys
from .dtypes import TO_ONNX
from .export_rules import register_exporter
from .export_select import _Int64Value
from .exporter import ExportContext


@register_exporter("random_bits")
def _random_bits(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    shape, stream = node.attrs["shape"], node.attrs["stream"]
    key_type = node.graph.type_of(node.inputs[0])
    rank, seed = len(key_type.shape), ins[0]
    if key_type.dtype != "int64":
        seed = ctx.emit("Cast", [seed], [ctx.fresh("random_seed")], to=TO_ONNX["int64"])
    if shape:
        block_axes = ctx.ints(range(rank, rank + len(shape)), "block_axes")
        seed = ctx.emit("Unsqueeze", [seed, block_axes], [ctx.fresh("random_seed_per_block")])
    keys = seed_keys(_Int64Value(ctx, seed) % PRIME, stream)
    index = ctx.const(np.arange(math.prod(shape), dtype=np.int64).reshape(shape) % PRIME, "block_index")
    code = keyed_code(_Int64Value(ctx, index), keys)
    ctx.emit("Identity", [code.name], outs)
