"""Selection ops along one axis: sort, argsort, topk, gather_elements, scatter_elements_add, flip,
and one_hot (class indices to rows of a depth-sized axis).

Ordering is stable everywhere: equal elements keep their order of appearance, in ascending and
descending order alike, so at ties the first index wins (PyTorch's `stable=True`, ONNX TopK).
`gather_elements` and `scatter_elements_add` pair each element of `indices` with one element of
`x` (same rank, equal dims off `axis`); negative indices count from the end, and the `mode`
attribute says what an out-of-range index does (graph/ops/index_mode.py). They are each other's
transpose, which is how the gradients of sort and topk route cotangents back.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import as_dtype, is_int
from ..errors import DTypeError, ShapeError
from ..opdef import OpDef, register_op
from ..types import TensorType, dims_equal, normalize_axis
from .common import require_numeric, require_same_dtype
from .index_mode import check_mode, fill_invalid, resolve


def _sort_infer(x: TensorType, axis: int, descending: bool) -> tuple[TensorType]:
    require_numeric(x)
    normalize_axis(axis, x.rank)
    return (x,)


def _argsort_infer(x: TensorType, axis: int, descending: bool) -> tuple[TensorType]:
    return (TensorType("int64", _sort_infer(x, axis, descending)[0].shape),)


def stable_argsort(x: np.ndarray, axis: int, descending: bool) -> np.ndarray:
    """Indices that sort x along `axis`, ties in their original order also when descending:
    the ascending stable order of the reversed x, reversed, points at the first of equal elements."""
    if not descending:
        return np.argsort(x, axis=axis, kind="stable").astype(np.int64)
    reversed_order = np.argsort(np.flip(x, axis), axis=axis, kind="stable")
    return (x.shape[axis] - 1 - np.flip(reversed_order, axis)).astype(np.int64)


def _sort(x: np.ndarray, axis: int, descending: bool) -> np.ndarray:
    return np.take_along_axis(x, stable_argsort(x, axis, descending), axis)


def _topk_infer(x: TensorType, k: int, axis: int, largest: bool) -> tuple[TensorType, TensorType]:
    require_numeric(x)
    normalize_axis(axis, x.rank)
    dim = x.shape[axis]
    if not isinstance(k, int) or k < 1 or (isinstance(dim, int) and k > dim):
        raise ShapeError(f"topk: k={k!r} must be an int in [1, {dim}] (the size of axis {axis} of {x.shape})")
    shape = x.shape[:axis] + (k,) + x.shape[axis + 1 :]
    return x.with_shape(shape), TensorType("int64", shape)


def _topk(x: np.ndarray, k: int, axis: int, largest: bool) -> tuple[np.ndarray, np.ndarray]:
    order = np.take(stable_argsort(x, axis, largest), np.arange(k), axis=axis)
    return np.take_along_axis(x, order, axis), order


def _paired_indices(x: TensorType, indices: TensorType, axis: int, mode: str, op: str) -> None:
    """indices must be integer, of x's rank, with x's dims off `axis`; mode one of index_mode.MODES."""
    if not is_int(indices.dtype):
        raise DTypeError(f"{op}: indices must be int32 or int64, got {indices.dtype}")
    check_mode(mode, op)
    normalize_axis(axis, x.rank)
    if indices.rank != x.rank or not all(
        i == axis or dims_equal(a, b) for i, (a, b) in enumerate(zip(x.shape, indices.shape))
    ):
        raise ShapeError(
            f"{op}: indices {indices.shape} must have the rank of x {x.shape} and its dims off axis {axis}; "
            "broadcast the indices first (gk.broadcast_to)"
        )


def _gather_elements_infer(x: TensorType, indices: TensorType, axis: int, mode: str = "raise") -> tuple[TensorType]:
    _paired_indices(x, indices, axis, mode, "gather_elements")
    return (x.with_shape(indices.shape),)


def _gather_elements(x: np.ndarray, indices: np.ndarray, axis: int, mode: str = "raise") -> np.ndarray:
    safe, valid = resolve(indices, x.shape[axis], mode, "gather_elements")
    return fill_invalid(np.take_along_axis(x, safe, axis), valid, 0)


def _scatter_elements_add_infer(
    x: TensorType, indices: TensorType, updates: TensorType, axis: int, mode: str = "raise"
) -> tuple[TensorType]:
    require_same_dtype(x, updates)
    _paired_indices(x, indices, axis, mode, "scatter_elements_add")
    if not all(map(dims_equal, indices.shape, updates.shape)) or indices.rank != updates.rank:
        raise ShapeError(
            f"scatter_elements_add: updates {updates.shape} must have the shape of indices {indices.shape}"
        )
    return (x,)


def _scatter_elements_add(
    x: np.ndarray, indices: np.ndarray, updates: np.ndarray, axis: int, mode: str = "raise"
) -> np.ndarray:
    """In mode "fill" the updates at out-of-range indices are dropped."""
    grid = list(np.indices(indices.shape, sparse=True))
    grid[axis], valid = resolve(indices, x.shape[axis], mode, "scatter_elements_add")
    where = tuple(np.broadcast_to(g, indices.shape) for g in grid)
    if valid is not None:
        where, updates = tuple(w[valid] for w in where), updates[valid]
    out = x.copy()
    np.add.at(out, where, updates)
    return out


def _flip_infer(x: TensorType, axes: tuple[int, ...]) -> tuple[TensorType]:
    if tuple(axes) != tuple(sorted({normalize_axis(a, x.rank) for a in axes})):
        raise ShapeError(f"flip: axes {axes} must be sorted, unique and in [0, {x.rank})")
    return (x,)


register_op(
    OpDef(
        "sort",
        _sort_infer,
        _sort,
        1,
        doc="The values of x sorted along `axis`; attrs: axis, descending. Stable (ties keep their order).",
    )
)
register_op(
    OpDef(
        "argsort",
        _argsort_infer,
        lambda x, axis, descending: stable_argsort(x, axis, descending),
        1,
        doc="The int64 indices that sort x along `axis`; attrs: axis, descending. Stable: at ties the first "
        "index comes first.",
    )
)
register_op(
    OpDef(
        "topk",
        _topk_infer,
        _topk,
        1,
        num_outputs=2,
        doc="(values, int64 indices) of the k largest (or smallest) elements along `axis`, in sorted order; "
        "attrs: k, axis, largest. At ties the lower index comes first (as ONNX TopK).",
    )
)
register_op(
    OpDef(
        "gather_elements",
        _gather_elements_infer,
        _gather_elements,
        2,
        doc="out[..., j, ...] = x[..., indices[..., j, ...], ...] along `axis` (torch.gather, ONNX "
        "GatherElements); indices have x's rank and its dims off the axis; attrs: axis, mode (out-of-range "
        "indices: 'raise', 'clip' or 'fill').",
    )
)
register_op(
    OpDef(
        "scatter_elements_add",
        _scatter_elements_add_infer,
        _scatter_elements_add,
        3,
        doc="x with updates[..., j, ...] added at x[..., indices[..., j, ...], ...] along `axis` (repeats "
        "accumulate; torch.scatter_add, ONNX ScatterElements with reduction 'add'); the transpose of "
        "gather_elements; attrs: axis, mode ('fill' drops the updates at out-of-range indices).",
    )
)
register_op(OpDef("flip", _flip_infer, lambda x, axes: np.flip(x, axes), 1, doc="Reverse x along `axes`; attrs: axes."))


def _one_hot_infer(x: TensorType, depth: int, dtype: str, mode: str = "raise") -> tuple[TensorType]:
    if not is_int(x.dtype):
        raise DTypeError(f"indices must be int32 or int64, got {x.dtype}")
    check_mode(mode, "one_hot")
    return (TensorType(as_dtype(dtype), x.shape + (depth,)),)


def _one_hot(x: np.ndarray, depth: int, dtype: str, mode: str = "raise") -> np.ndarray:
    """Class indices are in range in [0, depth); in mode "fill" the others give zero rows."""
    if mode != "fill":
        x = resolve(x, depth, mode, "one_hot", from_end=False)[0]
    return (x[..., None] == np.arange(depth)).astype(dtype)


register_op(
    OpDef(
        "one_hot",
        _one_hot_infer,
        _one_hot,
        1,
        doc="attrs: depth, dtype, mode (class indices outside [0, depth): 'raise', 'clip' or 'fill' (a zero row)).",
    )
)
