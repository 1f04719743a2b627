"""Relax emitter of random_bits: TE kernels running the op's own `seed_keys` and `keyed_code` on
TIR expressions (`tvm_emitters_select._Elementwise`), so they compute the numpy reference's
integers bit for bit. The round keys are computed once per seed element into a tensor of the
seed's shape, then read by the per-element rounds; every value a round reads several times is a
stage of its own (stored), as in dropout's kernel, so no expression tree grows exponentially."""

from __future__ import annotations

import functools
from typing import Callable, Sequence

from tvm import relax, te, tirx

from ..graph import Node
from ..graph.ops.dropout import PRIME
from ..graph.ops.random import keyed_code, seed_keys
from .tvm_emitters import EmitContext, register_emitter
from .tvm_emitters_select import _Elementwise


def _stager(shape: Sequence[tirx.PrimExpr], name: str) -> Callable[[_Elementwise], _Elementwise]:
    """Store a value of every element of `shape` in a TE tensor of its own."""
    return lambda value: _Elementwise(te.compute(shape, value.at, name=name))


def _flat(index: Sequence[tirx.PrimExpr], shape: Sequence[int]) -> tirx.PrimExpr:
    """The row-major int64 index of `index` within a block of `shape`."""
    return functools.reduce(lambda total, pair: total * pair[1] + tirx.Cast("int64", pair[0]), zip(index, shape), 0)


@register_emitter("random_bits")
def _random_bits(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    shape, stream = node.attrs["shape"], node.attrs["stream"]

    def compute(seed: te.Tensor) -> te.Tensor:
        rank = len(seed.shape)
        out_shape = [*seed.shape, *(tirx.IntImm("int64", d) for d in shape)]
        seed_code = _Elementwise(lambda *i: tirx.Cast("int64", seed(*i))) % PRIME
        keys = seed_keys(seed_code, stream, _stager(seed.shape, "random_keys"))
        block_keys = [_Elementwise(lambda *i, key=key: key.at(*i[:rank])) for key in keys]
        index = _Elementwise(lambda *i: _flat(i[rank:], shape) % PRIME)
        code = keyed_code(index, block_keys, _stager(out_shape, "random_hash"))
        return te.compute(out_shape, code.at, name="random_bits")

    return ctx.bb.emit_te(compute, args[0], primfunc_name_hint="random_bits")
