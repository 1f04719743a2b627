"""dropout with an explicit seed: the mask is a pure function of (seed, shape, rate), so numpy,
TVM and an exported ONNX model draw the very same mask, and the gradient reuses it.

Each element's flat (row-major) index goes through a small keyed permutation of the integers
modulo the prime P = 2**31 - 1: four rounds of `x -> (x + key_r) ** 5 mod P`, a MiMC-style
cipher (x**5 permutes the field because gcd(5, P - 1) = 1). The element is kept when the result
is at least `round(rate * P)`, so it is kept with probability 1 - rate. Only integer +, * and
mod on int64 are needed (products stay below 2**62), which every backend has: `keep_code`
is written once over Python's operators and run on numpy arrays, TIR expressions and ONNX
values alike (TVM stores the values a round reads several times: one expression tree of all
four rounds would copy them and grow exponentially). The mask repeats after P elements.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import numpy as np

from ..errors import GraphError
from ..opdef import OpDef, register_op
from ..types import TensorType
from .common import require_float

PRIME = 2**31 - 1
ROUNDS = 4
Code = TypeVar("Code")


def _itself(value: Code) -> Code:
    return value


def round_keys(seed: int) -> list[int]:
    """The per-round keys of `seed`, each in [0, PRIME): splitmix64 outputs of the seed."""
    keys, state = [], seed % 2**64
    for _ in range(ROUNDS):
        state = (state + 0x9E3779B97F4A7C15) % 2**64
        z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
        keys.append((z ^ (z >> 31)) % PRIME)
    return keys


def keep_round(x: Code, key: int, stage: Callable[[Code], Code] = _itself) -> Code:
    """One round, (x + key) ** 5 mod PRIME, on anything with + * % by ints. `stage` marks the
    values read more than once (TVM stores them, where an expression tree would copy them)."""
    y: Any = stage((x + key) % PRIME)
    square = stage(y * y % PRIME)
    return square * square % PRIME * y % PRIME


def keep_code(index: Code, seed: int, stage: Callable[[Code], Code] = _itself) -> Code:
    """The keyed permutation of `index` (int64 values in [0, PRIME)): every round in turn."""
    for key in round_keys(seed):
        index = keep_round(index, key, stage)
    return index


def keep_threshold(rate: float) -> int:
    """Codes at or above this are kept: a fraction 1 - rate of [0, PRIME)."""
    return round(rate * PRIME)


def keep_mask(shape: tuple[int, ...], seed: int, rate: float) -> np.ndarray:
    """The boolean keep mask of a tensor of `shape`."""
    index = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape) % PRIME
    return keep_code(index, seed) >= keep_threshold(rate)


def _dropout_infer(x: TensorType, rate: float, seed: int) -> tuple[TensorType]:
    require_float(x)
    if not 0.0 <= rate < 1.0:
        raise GraphError(f"dropout: rate {rate!r} must be in [0, 1); rate 1 would drop everything")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise GraphError(f"dropout: seed must be an int, got {seed!r}")
    return (x,)


def _dropout(x: np.ndarray, rate: float, seed: int) -> np.ndarray:
    scale = np.asarray(1.0 / (1.0 - rate), x.dtype)
    return np.where(keep_mask(x.shape, seed, rate), x * scale, np.zeros((), x.dtype))


register_op(
    OpDef(
        "dropout",
        _dropout_infer,
        _dropout,
        1,
        doc="x * mask / (1 - rate), the mask a deterministic function of (seed, shape): kept where the "
        "keyed hash of an element's flat index is at least round(rate * (2**31 - 1)); attrs: rate, seed.",
    )
)
