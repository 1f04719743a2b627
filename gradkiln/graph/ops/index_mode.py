"""What index ops do with an index outside their axis: the `mode` attribute of take, scatter_add,
gather_elements, scatter_elements_add and one_hot (JAX's `mode=` argument; user guide: docs/autodiff.md,
"Index modes").

For an axis of size n, an index i is in range when -n <= i < n (negative ones count from the end, as
numpy.take); one_hot's class indices are in range when 0 <= i < depth (as torch.nn.functional.one_hot).

- "raise" (the default): the numpy executor raises `IndexOutOfRangeError` naming the op, the node, the
  first offending index and the valid range. Compiled kernels (TVM, ONNX Runtime) cannot raise: there
  an out-of-range index behaves as in "fill", and `detect_anomaly` checks the indices on every target.
- "clip": the index is clamped into [0, n - 1] before use, negative ones to 0 (numpy.take's and
  jax.numpy.take's "clip": clipping disables counting from the end).
- "fill": a read at an out-of-range index gives `fill_value(dtype)` (NaN for floats, as JAX), a scatter
  drops the update at it (JAX's "drop"), and one_hot gives a zero row (as jax.nn.one_hot).

The same functions run in the numpy references and in anomaly detection, so they agree by construction.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from ..errors import GraphError, IndexOutOfRangeError

MODES = ("raise", "clip", "fill")


def check_mode(mode: str, op: str) -> str:
    """`mode` if it is one of MODES, else a GraphError naming the op and the choices."""
    if mode not in MODES:
        raise GraphError(f"{op}: mode={mode!r} is not one of {MODES} (how out-of-range indices are treated)")
    return mode


def mode_of(attrs: Mapping[str, object]) -> str:
    """The mode of an index op's node (nodes built before modes existed read as "raise")."""
    return str(attrs.get("mode", "raise"))


def fill_value(dtype: np.dtype | str) -> bool | int | float | complex:
    """What a "fill" read gives, as JAX: NaN for floats (and complex), the most negative value for
    signed integers, the largest for unsigned ones, True for bool."""
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return np.nan
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return int(info.min if dtype.kind == "i" else info.max)
    return True


def valid_range(size: int, from_end: bool) -> tuple[int, int]:
    """The lowest and highest index in range along an axis of `size`."""
    return (-size if from_end else 0), size - 1


def resolve(
    indices: np.ndarray, size: int, mode: str, op: str, from_end: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """(int64 indices in [0, size), the mask of in-range positions or None when every one is): the
    indices as `mode` reads them. In "fill" mode the out-of-range positions hold 0 and a False mask."""
    indices = np.asarray(indices).astype(np.int64, copy=False)
    low, high = valid_range(size, from_end)
    if mode == "clip":
        return np.clip(indices, 0, max(size - 1, 0)), None
    valid = (indices >= low) & (indices <= high)
    if mode == "raise" and not valid.all():
        raise IndexOutOfRangeError(out_of_range_message(op, indices, valid, size, from_end))
    wrapped = np.where(indices < 0, indices + size, indices) if from_end else indices
    if valid.all():
        return wrapped, None
    return np.where(valid, wrapped, 0), valid


def fill_invalid(out: np.ndarray, valid: np.ndarray | None, at: int) -> np.ndarray:
    """`out` with `fill_value` wherever `valid` (the indices' mask, whose axes start at axis `at` of
    `out`) is False."""
    if valid is not None:
        out[(slice(None),) * at + (~valid,)] = fill_value(out.dtype)
    return out


_FILL_DOES = {"one_hot": "give a zero row", "scatter_add": "drop the update", "scatter_elements_add": "drop the update"}


def out_of_range_message(op: str, indices: np.ndarray, valid: np.ndarray, size: int, from_end: bool) -> str:
    """The first offending index, its position, how many there are and the valid range, with the fix."""
    bad = np.argwhere(~valid)
    low, high = valid_range(size, from_end)
    first = indices[tuple(bad[0])]
    read = _FILL_DOES.get(op, "read NaN for floats")
    return (
        f"{op}: index {first} at position {tuple(int(i) for i in bad[0])} of the indices is out of range "
        f"[{low}, {high}] for an axis of size {size} ({len(bad)} of {indices.size} indices out of range); "
        f"fix the indices, or pass mode='clip' (clamp into range) or mode='fill' ({read}) to the op"
    )


IndexOperand = Callable[[Sequence[np.ndarray], Mapping[str, object]], tuple[np.ndarray, int, bool]]

# op -> (arrays, attrs) -> (its indices, the size of the indexed axis, whether negatives count from the end)
INDEX_OPERANDS: dict[str, IndexOperand] = {
    **{
        op: lambda args, attrs: (args[1], args[0].shape[attrs["axis"]], True)
        for op in ("take", "scatter_add", "gather_elements", "scatter_elements_add")
    },
    "one_hot": lambda args, attrs: (args[0], int(attrs["depth"]), False),
}


def check_indices(op: str, args: Sequence[np.ndarray], attrs: Mapping[str, object]) -> None:
    """Raise `IndexOutOfRangeError` if `op` runs in mode "raise" with an index out of range (a no-op
    for other ops and modes): what anomaly detection checks on compiled targets."""
    if op in INDEX_OPERANDS and mode_of(attrs) == "raise":
        indices, size, from_end = INDEX_OPERANDS[op](args, attrs)
        resolve(indices, size, "raise", op, from_end)
