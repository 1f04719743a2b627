"""The reductions: sum, mean, max, min, prod, logsumexp, var, std over axes; argmax and argmin
(`axis=None` is numpy's index into `x.ravel()`); running sums and products; softmax and
log_softmax; `size`, the element count over axes."""

from __future__ import annotations

from typing import Any, Sequence

from ..dtypes import DEFAULT_FLOAT, as_dtype
from ..tensor import Tensor
from ..types import normalize_axes, normalize_axis, shape_size
from .core import _unary_operand, constant, emit
from .shape import reshape


def _reduce(op: str, x: Tensor, axis: Any, keepdims: bool, floats: bool, **attrs: Any) -> Tensor:
    x = _unary_operand(x, floats)
    return emit(op, x, axes=normalize_axes(axis, x.ndim), keepdims=bool(keepdims), **attrs)


def _reduction(op: str, doc: str, floats: bool = False):
    def reduce(x: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        return _reduce(op, x, axis, keepdims, floats)

    reduce.__name__, reduce.__doc__ = op, doc
    return reduce


def _moment(op: str, doc: str):
    def moment(x: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False, correction: int = 0):
        return _reduce(op, x, axis, keepdims, True, correction=int(correction))

    moment.__name__, moment.__doc__ = op, doc
    return moment


sum = _reduction("sum", "Sum over `axis` (None: all axes).")
mean = _reduction("mean", "Mean over `axis` (None: all axes).", floats=True)
max = _reduction("max", "Max over `axis`; the gradient is split equally among ties.")
min = _reduction("min", "Min over `axis`; the gradient is split equally among ties.")
prod = _reduction("prod", "Product over `axis`; the gradient is exact also where elements are 0.")
logsumexp = _reduction("logsumexp", "log(sum(exp(x))) over `axis`, computed stably.", floats=True)
var = _moment("var", "Variance over `axis`: squared deviations summed, divided by n - correction (numpy's ddof).")
std = _moment("std", "Standard deviation over `axis`: the square root of `var` with the same correction.")


def cumsum(x: Tensor, axis: int, exclusive: bool = False, reverse: bool = False) -> Tensor:
    """Running sum along `axis`; `reverse` sums from the end, `exclusive` leaves each element out."""
    return emit("cumsum", x, axis=normalize_axis(axis, x.ndim), exclusive=bool(exclusive), reverse=bool(reverse))


def cumprod(x: Tensor, axis: int) -> Tensor:
    """Running product along `axis`; the gradient is exact also where elements are 0."""
    return emit("cumprod", x, axis=normalize_axis(axis, x.ndim))


def size(x: Tensor, axis: int | Sequence[int] | None = None, dtype: Any = DEFAULT_FLOAT) -> Tensor:
    """The number of elements of `x` over `axis` as a scalar: a constant for static dims, else a
    `size` node evaluated at run time (symbolic dims such as a batch "N")."""
    axes = normalize_axes(axis, x.ndim)
    count = shape_size([x.shape[a] for a in axes])
    if isinstance(count, int):
        return constant(count, dtype, graph=x.graph)
    return emit("size", x, axes=axes, dtype=as_dtype(dtype))


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along `axis`, computed stably."""
    return emit("softmax", x, axis=normalize_axis(axis, x.ndim))


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x - logsumexp(x) along `axis`, computed stably."""
    return emit("log_softmax", x, axis=normalize_axis(axis, x.ndim))


def _arg_reduction(op: str, doc: str):
    def arg(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
        if axis is not None:
            return emit(op, x, axis=normalize_axis(axis, x.ndim), keepdims=bool(keepdims))
        index = emit(op, reshape(x, (-1,)), axis=0, keepdims=False)
        return reshape(index, (1,) * x.ndim) if keepdims else index

    arg.__name__, arg.__doc__ = op, doc
    return arg


argmax = _arg_reduction("argmax", "Index (int64) of the first maximum along `axis` (None: of the flattened x).")
argmin = _arg_reduction("argmin", "Index (int64) of the first minimum along `axis` (None: of the flattened x).")
