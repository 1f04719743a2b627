"""A sparse gradient of a table read by rows: `IndexedSlices(indices, values, dense_shape)`.

The gradient of `take(table, ids)` (an embedding lookup) with respect to the table is zero except on
the rows `ids` names; TensorFlow keeps it as `tf.IndexedSlices` and PyTorch as a sparse COO tensor
(`nn.Embedding(sparse=True)`). Here it is a pair of graph Tensors: `indices` (int64, shape (n,), each in
[0, dense_shape[0])) and `values` (shape (n, *dense_shape[1:])); the dense gradient is the sum, per
row, of the values at that row's indices. Indices may repeat (two tokens with the same id): the
gradient stays uncoalesced, as torch's, and accumulation is concatenation. What is nonlinear in the
rows (a norm, Adam's moments) first sums duplicates with `coalesce`, in the graph and with static
shapes: each slot's group total lands in the slot of its first occurrence, the other slots hold zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..graph import GradientError, Tensor
from ..graph import builder as gb
from ..graph.types import Dim


@dataclass(frozen=True)
class IndexedSlices:
    """Rows `values[k]` added at row `indices[k]` of a tensor of shape `dense_shape` (tf.IndexedSlices).

    `indices` is an int64 Tensor of shape (n,), `values` a float Tensor of shape (n, *dense_shape[1:]).
    `.dense()` (or `gk.to_dense`) materializes the dense tensor, only where the caller asks for it.
    """

    indices: Tensor
    values: Tensor
    dense_shape: tuple[Dim, ...]

    def __post_init__(self) -> None:
        if self.indices.ndim != 1 or self.indices.dtype != "int64":
            raise GradientError(f"IndexedSlices: indices must be int64 of shape (n,), got {self.indices.type}")
        rows = self.indices.shape[0]
        if self.values.ndim != len(self.dense_shape) or (rows, *self.dense_shape[1:]) != tuple(self.values.shape):
            raise GradientError(
                f"IndexedSlices: values {self.values.type} must have shape {(rows, *self.dense_shape[1:])} "
                f"(one row of dense_shape {self.dense_shape} per index)"
            )

    @property
    def dtype(self) -> str:
        return self.values.dtype

    def dense(self) -> Tensor:
        """The dense tensor: zeros of `dense_shape` with each row of `values` added at its index."""
        with self.values.graph:
            return gb.scatter_add(gb.zeros(self.dense_shape, self.dtype), self.indices, self.values)

    def with_values(self, values: Tensor) -> IndexedSlices:
        """The same rows with new values (a per-row op: scaling, clipping, a cast)."""
        return IndexedSlices(self.indices, values, self.dense_shape)

    def __repr__(self) -> str:
        return f"IndexedSlices(indices={self.indices.type}, values={self.values.type}, dense_shape={self.dense_shape})"


def to_dense(gradient: Tensor | IndexedSlices) -> Tensor:
    """A gradient as a dense Tensor (TensorFlow's `convert_to_tensor` of IndexedSlices); a Tensor is
    returned as it is."""
    return gradient.dense() if isinstance(gradient, IndexedSlices) else gradient


def add(a: Tensor | IndexedSlices, b: Tensor | IndexedSlices) -> Tensor | IndexedSlices:
    """The sum of two gradients of one tensor: slices concatenated (they stay sparse), slices
    scattered into a dense one, or two dense ones added."""
    with (a.values if isinstance(a, IndexedSlices) else a).graph:
        return _add(a, b)


def _add(a: Tensor | IndexedSlices, b: Tensor | IndexedSlices) -> Tensor | IndexedSlices:
    if isinstance(a, IndexedSlices) and isinstance(b, IndexedSlices):
        if a.dense_shape != b.dense_shape:
            raise GradientError(f"sparse.add: dense shapes differ: {a.dense_shape} and {b.dense_shape}")
        return IndexedSlices(gb.concat([a.indices, b.indices]), gb.concat([a.values, b.values]), a.dense_shape)
    if isinstance(b, IndexedSlices):
        a, b = b, a
    if isinstance(a, IndexedSlices):
        return gb.scatter_add(b, a.indices, a.values)
    return a + b


@dataclass(frozen=True)
class Coalesced:
    """Slices with duplicate indices summed, in the slots they came in: `values[k]` is the total of
    index `indices[k]`'s group where `first[k]` (its first occurrence) and zero elsewhere, so a sum
    over slots counts each row once and an update masked by `first` touches each row once."""

    slices: IndexedSlices
    first: Tensor


def coalesce(slices: IndexedSlices) -> Coalesced:
    """Duplicates summed without leaving static shapes: an (n, n) index comparison finds each slot's
    first occurrence (argmax of the first True), and a scatter_add of the values into those slots
    sums each group (O(n^2) comparisons of integers, O(n * row) additions)."""
    idx = slices.indices
    with idx.graph:
        return _coalesce(slices, idx)


def _coalesce(slices: IndexedSlices, idx: Tensor) -> Coalesced:
    same = gb.equal(gb.expand_dims(idx, 1), gb.expand_dims(idx, 0))
    first_slot = gb.argmax(gb.cast(same, "int32"), axis=1)
    slot = gb.cumsum(gb.ones_like(idx), 0, exclusive=True)
    summed = gb.scatter_add(gb.zeros_like(slices.values), first_slot, slices.values)
    return Coalesced(slices.with_values(summed), gb.equal(first_slot, slot))


def flatten(gradients: Mapping[str, Tensor | IndexedSlices]) -> dict[str, Tensor]:
    """Outputs for `gk.compile`: each IndexedSlices `name` becomes two outputs, `name.indices` and
    `name.values`; Tensors keep their name."""
    out: dict[str, Tensor] = {}
    for name, g in gradients.items():
        if isinstance(g, IndexedSlices):
            out[f"{name}.indices"], out[f"{name}.values"] = g.indices, g.values
        else:
            out[name] = g
    return out


def host_dense(indices: np.ndarray, values: np.ndarray, dense_shape: tuple[int, ...]) -> np.ndarray:
    """The dense array of computed slices (numpy), for checks and for callers that want it."""
    dense = np.zeros(dense_shape, values.dtype)
    np.add.at(dense, indices, values)
    return dense
