"""Relax emitter of random_bits: the op's own `seed_keys` and `keyed_code` with each cipher round a
TE kernel of its own (`keep_round` on TIR expressions, `tvm.emitters.select._Elementwise`), so
they compute the numpy reference's integers bit for bit: the seed reduced modulo P, the chain of
round keys over the seed's shape, the block's flat index, and the rounds over the output.

Every kernel is marked opaque, so FuseOps keeps them apart: fused, the GPU schedules (dlight)
inline each round's stored values into the next, whose expressions grow threefold per round,
and TVM's TIR passes then ran for minutes on one kernel. One round per kernel builds in moments."""

from __future__ import annotations

import functools
from typing import Callable, Sequence

from tvm import relax, te, tirx

from ....graph import Node
from ....graph.ops.dropout import PRIME, keep_round
from ....graph.ops.random import keyed_code, seed_keys
from .context import EmitContext, register_emitter
from .select import _Elementwise

OPAQUE = {"op_pattern": 8}  # TVM's kOpaque: FuseOps fuses the kernel with nothing


def _flat(index: Sequence[tirx.PrimExpr], shape: Sequence[int]) -> tirx.PrimExpr:
    """The row-major int64 index of `index` within a block of `shape`."""
    return functools.reduce(lambda total, pair: total * pair[1] + tirx.Cast("int64", pair[0]), zip(index, shape), 0)


def _kernel(ctx: EmitContext, compute: Callable[..., te.Tensor], *args: relax.Expr) -> relax.Expr:
    return ctx.bb.emit_te(compute, *args, primfunc_name_hint="random_bits", primfunc_attrs=OPAQUE)


def _round(ctx: EmitContext) -> Callable[[relax.Expr, relax.Expr | int], relax.Expr]:
    """`keep_round` as a kernel: x of shape S + block, key an int or a tensor of shape S."""

    def apply(x: relax.Expr, key: relax.Expr | int) -> relax.Expr:
        def compute(xs: te.Tensor, *key_tensor: te.Tensor) -> te.Tensor:
            def stage(value: _Elementwise) -> _Elementwise:
                return _Elementwise(te.compute(xs.shape, value.at, name="random_stage"))

            k = key_tensor[0] if key_tensor else None
            key_value = key if k is None else _Elementwise(lambda *i: k(*i[: len(k.shape)]))
            return te.compute(xs.shape, keep_round(_Elementwise(xs), key_value, stage).at, name="random_round")

        return _kernel(ctx, compute, x, *([] if isinstance(key, int) else [key]))

    return apply


@register_emitter("random_bits")
def _random_bits(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    shape, stream = node.attrs["shape"], node.attrs["stream"]

    def seed_code(seed: te.Tensor) -> te.Tensor:
        return te.compute(seed.shape, lambda *i: tirx.floormod(tirx.Cast("int64", seed(*i)), PRIME), name="seed_code")

    def block_index(key: te.Tensor) -> te.Tensor:
        rank = len(key.shape)
        out_shape = [*key.shape, *(tirx.IntImm("int64", d) for d in shape)]
        return te.compute(out_shape, lambda *i: _flat(i[rank:], shape) % PRIME, name="block_index")

    keys = seed_keys(_kernel(ctx, seed_code, args[0]), stream, _round(ctx))
    return keyed_code(_kernel(ctx, block_index, keys[0]), keys, _round(ctx))
