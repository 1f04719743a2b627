"""Import rules for ONNX sequences of tensors whose length is known at import time.

A sequence is held as a Python list of operands while importing; the sequence ops edit that
list (positions must be known), and the graph only ever sees the tensors in it. Sequences as
graph inputs or outputs are not supported.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from ..graph import ONNXError
from ..graph import builder as gb
from ..graph.types import normalize_axis
from .import_select import take_range
from .importer import ImportContext, Known, OnnxNode, Operand, TensorSequence, register_importer


def _sequence(value: object) -> TensorSequence:
    if not isinstance(value, TensorSequence):
        raise ONNXError("expected a sequence, got a tensor")
    return value


def _position(ctx: ImportContext, args: list, i: int, length: int, default: int) -> int:
    at = ctx.optional(args, i, "position", None)
    at = default if at is None else int(np.asarray(at).reshape(()))
    return at + length if at < 0 else at


@register_importer("SequenceConstruct")
def _construct(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> TensorSequence:
    return TensorSequence(args)


@register_importer("SequenceEmpty")
def _empty(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> TensorSequence:
    return TensorSequence()


@register_importer("SequenceLength")
def _length(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    return Known(np.asarray(len(_sequence(args[0])), np.int64), "int64")


@register_importer("SequenceAt")
def _at(ctx: ImportContext, n: OnnxNode, args: list) -> Operand:
    seq = _sequence(args[0])
    return seq[_position(ctx, args, 1, len(seq), 0)]


@register_importer("SequenceInsert")
def _insert(ctx: ImportContext, n: OnnxNode, args: list) -> TensorSequence:
    seq = TensorSequence(_sequence(args[0]))
    seq.insert(_position(ctx, args, 2, len(seq), len(seq)), args[1])
    return seq


@register_importer("SequenceErase")
def _erase(ctx: ImportContext, n: OnnxNode, args: list) -> TensorSequence:
    seq = TensorSequence(_sequence(args[0]))
    del seq[_position(ctx, args, 1, len(seq), len(seq) - 1)]
    return seq


@register_importer("ConcatFromSequence")
def _concat(ctx: ImportContext, n: OnnxNode, args: list) -> Operand:
    tensors = [ctx.tensor(t) for t in _sequence(args[0])]
    if n.attrs.get("new_axis", 0):
        axis = normalize_axis(n.attrs["axis"], tensors[0].ndim + 1)
        tensors = [gb.expand_dims(t, axis) for t in tensors]
    return gb.concat(tensors, n.attrs["axis"])


@register_importer("SplitToSequence")
def _split(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> TensorSequence:
    """Pieces of the given sizes (one size: equal pieces, the last smaller); no split: pieces of
    one, squeezed unless `keepdims`."""
    x = ctx.tensor(args[0])
    axis = normalize_axis(n.attrs.get("axis", 0), x.ndim)
    dim = int(x.shape[axis])
    split = ctx.optional(args, 1, "split", None)
    ctx.budget.unrolled(dim if split is None or np.ndim(split) == 0 else np.size(split), "the sequence's elements")
    if split is None:
        pieces = [take_range(x, axis, i, i + 1) for i in range(dim)]
        return TensorSequence(pieces if n.attrs.get("keepdims", 1) else [gb.squeeze(p, axis) for p in pieces])
    sizes = np.asarray(split).reshape(-1)
    if np.ndim(split) == 0:
        sizes = [min(int(split), dim - start) for start in range(0, dim, int(split))]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return TensorSequence(take_range(x, axis, int(a), int(b)) for a, b in pairwise(bounds))
