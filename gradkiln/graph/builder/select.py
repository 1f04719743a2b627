"""Builder functions for selection along an axis (sort, argsort, topk, gather_elements,
scatter_elements_add, flip), seeded dropout, and the shape composites stack, split, tile and
repeat, which expand into expand_dims, concat, slice, broadcast_to and reshape (so they need no
rules of their own and their gradients are those ops' gradients).

Ordering is stable: at ties the first index wins, ascending or descending (PyTorch's
`stable=True`, ONNX TopK).
"""

from __future__ import annotations

from itertools import accumulate, pairwise
from typing import Any, Sequence

from ..dtypes import DEFAULT_FLOAT, as_dtype
from ..errors import GraphError, ShapeError
from ..ops.index_mode import check_mode
from ..tensor import Tensor
from ..types import Dim, as_dim, dims_equal, normalize_axes, normalize_axis
from .core import TensorLike, emit
from .shape import broadcast_to, concat, expand_dims, reshape, slice


def sort(x: Tensor, axis: int = -1, descending: bool = False) -> Tensor:
    """x sorted along `axis` (stable). The gradient goes back to where each value came from."""
    return emit("sort", x, axis=normalize_axis(axis, x.ndim), descending=bool(descending))


def argsort(x: Tensor, axis: int = -1, descending: bool = False) -> Tensor:
    """The int64 indices that sort x along `axis` (stable: equal elements keep their order)."""
    return emit("argsort", x, axis=normalize_axis(axis, x.ndim), descending=bool(descending))


def topk(x: Tensor, k: int, axis: int = -1, largest: bool = True) -> tuple[Tensor, Tensor]:
    """(values, int64 indices) of the k largest (`largest=False`: smallest) elements along `axis`,
    in sorted order; at ties the lower index comes first."""
    return emit("topk", x, k=int(k), axis=normalize_axis(axis, x.ndim), largest=bool(largest))


def gather_elements(x: Tensor, indices: TensorLike, axis: int = 0, mode: str = "raise") -> Tensor:
    """torch.gather / ONNX GatherElements: out[..., j, ...] = x[..., indices[..., j, ...], ...]
    along `axis`; indices (int32/int64, negative from the end) have x's rank and dims off `axis`.
    `mode` treats out-of-range indices: "raise", "clip" or "fill" (docs/autodiff.md, "Index modes")."""
    return emit(
        "gather_elements", x, indices, axis=normalize_axis(axis, x.ndim), mode=check_mode(mode, "gather_elements")
    )


def scatter_elements_add(
    x: Tensor, indices: TensorLike, updates: TensorLike, axis: int = 0, mode: str = "raise"
) -> Tensor:
    """x with each update added at the element of x that gather_elements(x, indices, axis) reads
    at its position (torch.scatter_add); repeated indices accumulate. With mode "clip" out-of-range
    indices are clamped, with "fill" their updates are dropped."""
    mode = check_mode(mode, "scatter_elements_add")
    return emit("scatter_elements_add", x, indices, updates, axis=normalize_axis(axis, x.ndim), mode=mode)


def flip(x: Tensor, axis: int | Sequence[int] | None = None) -> Tensor:
    """Reverse the order of elements along `axis` (None: every axis), like numpy.flip."""
    axes = tuple(range(x.ndim)) if axis is None else normalize_axes(axis, x.ndim)
    return emit("flip", x, axes=axes) if axes else x


def dropout(x: Tensor, rate: float, seed: int, training: bool = True) -> Tensor:
    """Zero each element with probability `rate` and scale the rest by 1 / (1 - rate).

    The mask is a deterministic function of (seed, x's shape): the same graph draws the same mask
    on numpy, TVM and ONNX Runtime, and the gradient is the same mask times 1 / (1 - rate). Pass a
    new seed per step for fresh masks. `training=False` (or rate 0) returns x unchanged.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise GraphError(f"dropout: seed must be an int, got {seed!r}")
    if not training or rate == 0:
        return x
    return emit("dropout", x, rate=float(rate), seed=seed)


def stack(xs: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors of one shape along a new axis `axis` (expand_dims, then concat)."""
    if not xs:
        raise ShapeError("stack needs at least one tensor")
    axis = normalize_axis(axis, xs[0].ndim + 1)
    return concat([expand_dims(x, axis) for x in xs], axis)


def split(x: Tensor, sizes: int | Sequence[Dim], axis: int = 0) -> list[Tensor]:
    """Cut x along `axis` into pieces of the given sizes (which must add up to the axis size),
    or into `sizes` equal pieces when it is an int, like torch.split / numpy.split: one slice each."""
    axis = normalize_axis(axis, x.ndim)
    dim = x.shape[axis]
    if isinstance(sizes, int):
        if sizes < 1 or not isinstance(dim, int) or dim % sizes:
            raise ShapeError(f"split: axis {axis} of {x.shape} cannot be cut into {sizes} equal pieces")
        sizes = [dim // sizes] * sizes
    total = as_dim(sum(sizes, start=0))
    if not dims_equal(total, dim):
        raise ShapeError(f"split: the sizes {list(sizes)} add up to {total}, not to axis {axis} of {x.shape}")
    bounds = [0, *accumulate(sizes)]
    starts, stops = [0] * x.ndim, list(x.shape)
    pieces = []
    for start, stop in pairwise(bounds):
        starts[axis], stops[axis] = start, as_dim(stop)
        pieces.append(x if len(sizes) == 1 else slice(x, starts, stops))
    return pieces


def tile(x: Tensor, reps: int | Sequence[int]) -> Tensor:
    """numpy.tile: x repeated `reps` times along each axis (reps shorter than x.ndim apply to the
    last axes; longer, x gets leading axes). Broadcast over a new axis before each axis, reshaped."""
    reps = (reps,) if isinstance(reps, int) else tuple(reps)
    if any(r < 1 for r in reps):
        raise ShapeError(f"tile: repeats {reps} must be >= 1")
    x = reshape(x, (1,) * (len(reps) - x.ndim) + x.shape) if len(reps) > x.ndim else x
    reps = (1,) * (x.ndim - len(reps)) + reps
    spread = reshape(x, [d for dim in x.shape for d in (1, dim)])
    tiled = broadcast_to(spread, [d for r, dim in zip(reps, x.shape) for d in (r, dim)])
    return reshape(tiled, [as_dim(r * dim) for r, dim in zip(reps, x.shape)])


def repeat(x: Tensor, repeats: int, axis: int = 0) -> Tensor:
    """numpy.repeat with one count: each element repeated `repeats` times in a row along `axis`.
    Broadcast over a new axis after `axis`, reshaped."""
    if not isinstance(repeats, int) or repeats < 1:
        raise ShapeError(f"repeat: repeats must be an int >= 1, got {repeats!r}")
    axis = normalize_axis(axis, x.ndim)
    spread = expand_dims(x, axis + 1)
    wide = broadcast_to(spread, (*x.shape[: axis + 1], repeats, *x.shape[axis + 1 :]))
    return reshape(wide, (*x.shape[:axis], as_dim(x.shape[axis] * repeats), *x.shape[axis + 1 :]))


def one_hot(indices: Tensor, depth: int, dtype: Any = DEFAULT_FLOAT, mode: str = "raise") -> Tensor:
    """One-hot rows of length `depth` for class indices in [0, depth). Others raise on the numpy
    executor (as torch.nn.functional.one_hot), are clamped into range with mode "clip", or give zero
    rows with mode "fill" (as jax.nn.one_hot)."""
    return emit("one_hot", indices, depth=int(depth), dtype=as_dtype(dtype), mode=check_mode(mode, "one_hot"))
