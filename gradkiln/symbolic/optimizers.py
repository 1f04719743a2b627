"""Optimizer update formulas as graph-building functions, dense and sparse.

The formulas follow `torch.optim` and are written once: `sgd_momentum` and `adam_moments` serve the
training graphs of imported ONNX models (`onnx_io/training.py`) and the sparse updates here. The sparse
updates scatter into the table (`scatter_add`, exported to ONNX as ScatterND with reduction "add"), so
a step touches the rows the gradient names and never builds a dense gradient:

- `sgd(table, slices, lr)`: torch.optim.SGD on a sparse gradient (no momentum, as torch requires).
- `adam(table, slices, state, ...)`: torch.optim.SparseAdam: duplicates coalesced, then the moments
  and the parameter updated on the rows present only (lazy Adam); `state` is the moments and the step.
- `apply_sgd(table, indices, values, lr)`: the SGD update applied in place to a numpy table, for a
  loop that keeps its parameters on the host (the executable returns the slices as two arrays).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..graph import GradientError, Tensor
from ..graph import builder as gb
from ..graph.builder.core import TensorLike
from .indexed_slices import IndexedSlices, coalesce


def sgd_momentum(
    p: Tensor, g: Tensor, buffer: Tensor, lr: TensorLike, momentum: TensorLike, weight_decay: TensorLike
) -> tuple[Tensor, Tensor]:
    """torch.optim.SGD: `(p - lr * buf, buf)` with buf = momentum * buffer + (g + weight_decay * p)."""
    new_buffer = momentum * buffer + (g + weight_decay * p)
    return p - lr * new_buffer, new_buffer


def adam_moments(m: Tensor, v: Tensor, g: Tensor, beta1: TensorLike, beta2: TensorLike) -> tuple[Tensor, Tensor]:
    """Adam's running averages of the gradient and of its square."""
    return beta1 * m + (1.0 - beta1) * g, beta2 * v + (1.0 - beta2) * g * g


def bias_corrections(t: Tensor, beta1: TensorLike, beta2: TensorLike) -> tuple[Tensor, Tensor]:
    """1 - beta1**t and 1 - beta2**t at step t (counted from 1)."""
    return 1.0 - gb.pow(beta1, t), 1.0 - gb.pow(beta2, t)


def sgd(table: Tensor, slices: IndexedSlices, lr: TensorLike) -> Tensor:
    """The table after torch.optim.SGD's step on a sparse gradient: `-lr * values` added at the rows
    (duplicates add up, as the dense gradient does)."""
    _check_table("sgd", table, slices)
    with table.graph:
        return gb.scatter_add(table, slices.indices, gb.cast(-lr * slices.values, table.dtype))


class AdamState(NamedTuple):
    """SparseAdam's state: the moments (the table's shape) and the step count (a scalar of its dtype)."""

    m: Tensor
    v: Tensor
    step: Tensor


def adam_state(table: Tensor, prefix: str) -> AdamState:
    """The state as params of zeros named `{prefix}.m`, `{prefix}.v` and `{prefix}.step` (feed each
    step's returned state back under these names)."""
    if not table.type.is_static:
        raise GradientError(f"adam_state: {table.name} has type {table.type}; zero moments need a static shape")
    zeros = np.zeros(tuple(table.shape), table.dtype)
    step = gb.param(f"{prefix}.step", np.zeros((), table.dtype))
    return AdamState(gb.param(f"{prefix}.m", zeros), gb.param(f"{prefix}.v", zeros), step)


def adam(
    table: Tensor,
    slices: IndexedSlices,
    state: AdamState,
    lr: TensorLike = 1e-3,
    beta1: TensorLike = 0.9,
    beta2: TensorLike = 0.999,
    eps: TensorLike = 1e-8,
) -> tuple[Tensor, AdamState]:
    """`(table, state)` after torch.optim.SparseAdam's step: the gradient coalesced, then on its rows
    only m and v move (Adam's averages) and the table by lr * sqrt(1 - beta2**t) / (1 - beta1**t) *
    m / (sqrt(v) + eps). Each update is a scatter_add of the row changes, zero in duplicate slots."""
    _check_table("adam", table, slices)
    with table.graph:
        return _adam(table, slices, state, lr, beta1, beta2, eps)


def _adam(
    table: Tensor,
    slices: IndexedSlices,
    state: AdamState,
    lr: TensorLike,
    beta1: TensorLike,
    beta2: TensorLike,
    eps: TensorLike,
) -> tuple[Tensor, AdamState]:
    c = coalesce(slices)
    idx, g = c.slices.indices, c.slices.values
    t = state.step + 1.0
    m_rows, v_rows = gb.take(state.m, idx), gb.take(state.v, idx)
    new_m, new_v = adam_moments(m_rows, v_rows, g, beta1, beta2)
    correction1, correction2 = bias_corrections(t, beta1, beta2)
    step_size = lr * gb.sqrt(correction2) / correction1
    change = -step_size * new_m / (gb.sqrt(new_v) + eps)
    first = gb.reshape(c.first, (-1, *[1] * (table.ndim - 1)))

    def scatter(x: Tensor, rows: Tensor) -> Tensor:
        return gb.scatter_add(x, idx, gb.where(first, gb.cast(rows, x.dtype), gb.zeros_like(m_rows)))

    new_state = AdamState(scatter(state.m, new_m - m_rows), scatter(state.v, new_v - v_rows), t)
    return scatter(table, change), new_state


def apply_sgd(table: np.ndarray, indices: np.ndarray, values: np.ndarray, lr: float) -> None:
    """table -= lr * (the dense gradient of the slices), in place, touching only their rows."""
    if table.dtype != values.dtype or values.shape[1:] != table.shape[1:] or indices.shape != values.shape[:1]:
        raise GradientError(
            f"apply_sgd: table {table.dtype}{list(table.shape)}, indices {list(indices.shape)} and values "
            f"{values.dtype}{list(values.shape)} do not fit: values need one row of the table's dtype per index"
        )
    np.add.at(table, indices, values * table.dtype.type(-lr))


def _check_table(what: str, table: Tensor, slices: IndexedSlices) -> None:
    if not isinstance(slices, IndexedSlices):
        raise GradientError(
            f"{what}: the gradient is {type(slices).__name__}; pass the IndexedSlices of gk.sparse.grad"
        )
    if tuple(table.shape) != tuple(slices.dense_shape) or table.dtype != slices.dtype:
        raise GradientError(
            f"{what}: table {table.name} ({table.type}) does not match its gradient {slices!r}; pass the table the "
            "gradient was taken for"
        )
