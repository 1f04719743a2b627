"""Kernels that write a node's result into a preallocated buffer, for the planned numpy executor.

A planned run gives every value a buffer in its arena; a kernel here fills that buffer without
allocating a temporary as large as the value, so the memory a run uses is the planned peak.
Two kinds:

- `OUT_KERNELS`: numpy functions with an `out=` argument (ufuncs, matmul, reductions), and
  copies into the buffer for reshapes of non-contiguous values.
- `BLOCKWISE`: ops whose numpy semantics have no `out=` form (erf and gelu call Python per
  element, softmax and convolutions build temporaries) but whose result splits along leading
  axes: the op's own `compute` runs on blocks of about `BLOCK_ELEMENTS` output elements and
  each block is copied into its slice of the buffer. Temporaries then stay block-sized, and the
  results are the op's own, computed the same way on smaller operands: bit-identical to the
  unplanned executor (tests/lowering/numpy/test_backend.py checks every op).
"""

from __future__ import annotations

from math import prod
from typing import Any, Callable, Iterator, Mapping, NamedTuple

import numpy as np

from ...graph import get_op
from ...graph.ops.elementwise import BINARY, COMPARE, UNARY
from ...graph.types import normalize_axis

BLOCK_ELEMENTS = 1 << 13  # output elements per block: temporaries of a few hundred KiB


def _ufunc_kernel(fn: np.ufunc) -> Callable[..., Any]:
    return lambda out, *args: fn(*args, out=out)


def _reduce_kernel(fn: Callable[..., Any]) -> Callable[..., Any]:
    return lambda out, x, axes, keepdims: fn(x, axis=axes, keepdims=keepdims, out=out)


def _reshape_kernel(out: np.ndarray, x: np.ndarray, shape: Any) -> None:
    """A reshape of a non-contiguous value (a view cannot express it): copy in C order."""
    np.copyto(out.reshape(x.shape), x)


# op -> kernel(out, *arrays, **attrs) writing the result into `out` without a temporary
OUT_KERNELS: dict[str, Callable[..., Any]] = {
    **{name: _ufunc_kernel(fn) for name, (fn, _) in {**UNARY, **BINARY}.items() if isinstance(fn, np.ufunc)},
    **{name: _ufunc_kernel(fn) for name, fn in COMPARE.items()},
    "relu": lambda out, x: np.maximum(x, np.zeros((), x.dtype), out=out),
    "cast": lambda out, x, dtype: np.copyto(out, x, casting="unsafe"),
    "matmul": _ufunc_kernel(np.matmul),
    "sum": _reduce_kernel(np.sum),
    "mean": _reduce_kernel(np.mean),
    "max": _reduce_kernel(np.max),
    "reshape": _reshape_kernel,
}


class Blockwise(NamedTuple):
    """How an op's result splits: `split_axes(attrs, rank)` leading axes of the output may be
    cut, and the first `sliced` operands (None: all, broadcast to the output) are cut with it;
    the other operands (weights) go whole to every block. `window(attrs, args)` is how many
    temporary elements each element of the first operand makes (a convolution's im2col
    repeats it once per kernel offset), so blocks are sized by their temporaries."""

    split_axes: Callable[[Mapping[str, Any], int], int]
    sliced: int | None
    window: Callable[[Mapping[str, Any], tuple[np.ndarray, ...]], int] = lambda attrs, args: 1


def _all_axes(attrs: Mapping[str, Any], rank: int) -> int:
    return rank


def _batch_axis(attrs: Mapping[str, Any], rank: int) -> int:
    return 1


def _before_axis(attrs: Mapping[str, Any], rank: int) -> int:
    return normalize_axis(attrs["axis"], rank)


def _unpadded_leading_axes(attrs: Mapping[str, Any], rank: int) -> int:
    padded = [any(side) for side in zip(attrs["low"], attrs["high"], attrs["interior"])]
    return padded.index(True) if True in padded else rank


def _kernel_area(attrs: Mapping[str, Any], args: tuple[np.ndarray, ...]) -> int:
    return prod(attrs["kernel"])


def _weight_area(attrs: Mapping[str, Any], args: tuple[np.ndarray, ...]) -> int:
    return prod(args[1].shape[2:])


_ELEMENTWISE = Blockwise(_all_axes, None)
BLOCKWISE: dict[str, Blockwise] = {
    "fused": _ELEMENTWISE,  # sympy expressions evaluated elementwise, one or more outputs of one shape
    "conv2d": Blockwise(_batch_axis, 1, _weight_area),
    "conv_transpose2d": Blockwise(_batch_axis, 1),
    "max_pool2d": Blockwise(_batch_axis, 1, _kernel_area),
    "avg_pool2d": Blockwise(_batch_axis, 1, _kernel_area),
    "softmax": Blockwise(_before_axis, 1),
    "log_softmax": Blockwise(_before_axis, 1),
    "pad": Blockwise(_unpadded_leading_axes, 1),
}


def _blockwise_rule(op: str) -> Blockwise | None:
    """The op's entry in BLOCKWISE; any other elementwise op without an out= kernel splits anywhere."""
    opdef = get_op(op)
    if op in BLOCKWISE:
        return BLOCKWISE[op]
    return _ELEMENTWISE if opdef.elementwise and op not in OUT_KERNELS and opdef.num_inputs is not None else None


def blocks(shape: tuple[int, ...], split_axes: int, row_elements: int | None = None) -> Iterator[tuple[Any, ...]]:
    """Index tuples that cut an array of `shape`, along its first `split_axes` axes only, into
    C-order blocks of about `BLOCK_ELEMENTS` elements (more when one row of the last split
    axis is larger), a row counting `row_elements` when given."""
    axis = split_axes
    inner = max(prod(shape[split_axes:]), row_elements or 0)
    while axis > 0 and inner * shape[axis - 1] <= BLOCK_ELEMENTS:
        axis -= 1
        inner *= shape[axis]
    if axis == 0:
        yield (Ellipsis,)
        return
    step = max(1, BLOCK_ELEMENTS // inner)
    for outer in np.ndindex(*shape[: axis - 1]):
        rows = tuple(slice(i, i + 1) for i in outer)  # slices, not ints: blocks keep the rank
        for start in range(0, shape[axis - 1], step):
            yield (*rows, slice(start, start + step))


def blockwise_kernel(op: str, attrs: Mapping[str, Any], rank: int) -> Callable[..., Any] | None:
    """A kernel(out, *arrays, **attrs) that runs `op`'s own compute block by block into `out`
    (a tuple of buffers of one shape for an op with several outputs), or None when `op` does
    not split."""
    rule = _blockwise_rule(op)
    if rule is None:
        return None
    compute, split_axes = get_op(op).compute, rule.split_axes(attrs, rank)

    def kernel(out: np.ndarray | tuple[np.ndarray, ...], *args: np.ndarray, **attrs: Any) -> None:
        outs = out if isinstance(out, tuple) else (out,)
        shape = outs[0].shape
        cut = len(args) if rule.sliced is None else rule.sliced
        sliced = [np.broadcast_to(a, shape) if rule.sliced is None else a for a in args[:cut]]
        row = prod(args[0].shape[split_axes:]) * rule.window(attrs, args) if rule.sliced is not None else None
        for index in blocks(shape, split_axes, row):
            result = compute(*(a[index] for a in sliced), *args[cut:], **attrs)
            for buffer, part in zip(outs, result if isinstance(result, tuple) else (result,)):
                np.copyto(buffer[index], part, casting="unsafe")

    return kernel
