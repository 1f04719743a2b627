"""Seeded sampling, as jax.random: every function takes a `key` first, a Python int or an integer
tensor (a graph input fed per call, so a compiled step draws fresh noise every step).

All of it composes the one primitive `random_bits` (`graph/ops/random.py`) with elementwise ops, so
each target draws the same integers. The floats are exact too: a float in [0, 1) is the top b bits
of a 31-bit code (b = the dtype's significand width, at most 31) as an integer, cast and scaled by
2**-b, which rounds nowhere; transforms of it (log, cos) round as each target's math library does.

A key tensor of shape S draws a block per element: the result has shape S + shape (a batch of
keys, as from `split`, gives a batch of independent samples). The same key gives the same
samples; `fold_in` and `split` derive new keys, as in JAX.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..dtypes import DEFAULT_FLOAT, as_dtype, is_float
from ..errors import GraphError
from ..tensor import Tensor
from ..types import normalize_axis
from .core import TensorLike, cast, constant, emit, less
from .elementwise import cos, floordiv, log, sqrt
from .reduce import argmax

Key = Tensor | int
CODE_BITS = 31  # random_bits' values lie in [0, 2**31 - 1)
# the `stream` of each use of a key, so that one key's uniform, normal and gumbel draws differ
UNIFORM, NORMAL_RADIUS, NORMAL_ANGLE, GUMBEL, SPLIT, FOLD_IN = range(6)


def _key(key: Key, caller: str) -> Tensor:
    if isinstance(key, Tensor):
        return key
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return constant(np.int64(key))
    raise GraphError(f"{caller}: key must be an int or an integer Tensor (a seed fed per call), got {key!r}")


def _shape(shape: int | Sequence[int], caller: str) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise GraphError(f"{caller}: shape must be non-negative ints (a static shape), got {shape!r}")
    return tuple(int(d) for d in dims)


def _float_dtype(dtype: Any, caller: str) -> str:
    dtype = as_dtype(dtype)
    if not is_float(dtype):
        raise GraphError(f"{caller}: dtype must be a float dtype (float16, float32, float64), got {dtype}")
    return dtype


def _is(value: TensorLike, number: float) -> bool:
    """Whether `value` is the Python number `number` (a Tensor never is: no node is added)."""
    return not isinstance(value, Tensor) and value == number


def random_bits(key: Key, shape: int | Sequence[int] = (), stream: int = 0) -> Tensor:
    """int64 values uniform on [0, 2**31 - 1), shape key.shape + shape: the sampling primitive."""
    return emit("random_bits", _key(key, "random_bits"), shape=_shape(shape, "random_bits"), stream=stream)


def _unit(key: Key, shape: tuple[int, ...], dtype: str, stream: int, open_interval: bool = False) -> Tensor:
    """Exact floats on [0, 1), or (0, 1) with `open_interval` (odd multiples of 2**-b, for logs)."""
    bits = min(CODE_BITS, np.finfo(dtype).nmant + 1) - open_interval
    top = random_bits(key, shape, stream)
    top = top if bits == CODE_BITS else floordiv(top, 2 ** (CODE_BITS - bits))
    if open_interval:
        top, bits = top * 2 + 1, bits + 1
    return cast(top, dtype) * 2.0**-bits


def uniform(
    key: Key,
    shape: int | Sequence[int] = (),
    dtype: Any = DEFAULT_FLOAT,
    low: TensorLike = 0.0,
    high: TensorLike = 1.0,
) -> Tensor:
    """Floats uniform on [low, high) (like jax.random.uniform); exact on [0, 1)."""
    u = _unit(key, _shape(shape, "uniform"), _float_dtype(dtype, "uniform"), UNIFORM)
    return u if _is(low, 0.0) and _is(high, 1.0) else low + (high - low) * u


def normal(
    key: Key, shape: int | Sequence[int] = (), dtype: Any = DEFAULT_FLOAT, mean: TensorLike = 0.0, std: TensorLike = 1.0
) -> Tensor:
    """Normal samples by Box-Muller, sqrt(-2 log u1) cos(2 pi u2) with u1 in (0, 1) (float16 computed
    in float32). Tails reach about sqrt(2 b ln 2): 5.8 standard deviations for float32."""
    dtype, dims = _float_dtype(dtype, "normal"), _shape(shape, "normal")
    work = "float32" if dtype == "float16" else dtype
    radius = sqrt(log(_unit(key, dims, work, NORMAL_RADIUS, open_interval=True)) * -2.0)
    z = cast(radius * cos(_unit(key, dims, work, NORMAL_ANGLE) * (2 * math.pi)), dtype)
    return z if _is(mean, 0.0) and _is(std, 1.0) else mean + std * z


def gumbel(key: Key, shape: int | Sequence[int] = (), dtype: Any = DEFAULT_FLOAT) -> Tensor:
    """Standard Gumbel samples, -log(-log u) with u in (0, 1): always finite."""
    u = _unit(key, _shape(shape, "gumbel"), _float_dtype(dtype, "gumbel"), GUMBEL, open_interval=True)
    return -log(-log(u))


def bernoulli(key: Key, p: TensorLike = 0.5, shape: int | Sequence[int] | None = None) -> Tensor:
    """True with probability p (bool; shape key.shape + `shape`, default p's shape): uniform < p."""
    p_dtype = p.dtype if isinstance(p, Tensor) else DEFAULT_FLOAT
    if not is_float(p_dtype):
        raise GraphError(f"bernoulli: p must be a float probability, got a {p_dtype} tensor")
    if shape is None:
        shape = p.shape if isinstance(p, Tensor) else ()
    return less(uniform(key, shape, p_dtype), p)


def categorical(key: Key, logits: Tensor, axis: int = -1) -> Tensor:
    """Class indices (int64) drawn with probabilities softmax(logits) along `axis` (by Gumbel-max:
    argmax(logits + gumbel)), one per slice: shape key.shape + logits.shape without `axis`."""
    if not isinstance(logits, Tensor) or not is_float(logits.dtype):
        raise GraphError(f"categorical: logits must be a float Tensor, got {logits!r}")
    axis = normalize_axis(axis, logits.ndim) - logits.ndim  # counted from the end: keys add leading axes
    return argmax(logits + gumbel(key, logits.shape, logits.dtype), axis)


def split(key: Key, num: int = 2) -> Tensor:
    """`num` new keys (int64, shape key.shape + (num,)): index one, or pass them all for a batch."""
    return random_bits(key, (num,), SPLIT)


def fold_in(key: Key, data: int) -> Tensor:
    """A new key from `key` and a non-negative int (a layer number, a step): distinct data, distinct keys."""
    if not isinstance(data, int) or isinstance(data, bool) or data < 0:
        raise GraphError(f"fold_in: data must be a non-negative int, got {data!r}")
    return random_bits(key, (), FOLD_IN + data)
