"""random_bits: counter-based random integers over a seed tensor, the one sampling primitive.

`random_bits(seed; shape, stream)` gives, for every element of the integer tensor `seed` (any
shape S), a block of `shape` independent integers uniform on [0, 2**31 - 1): an int64 tensor of
shape S + shape. The seed is an operand, not an attribute, so it can be a graph input fed on every
call (a step counter, a JAX-style key): a compiled training step draws fresh noise each step
without recompiling. Sampling (uniform, normal, bernoulli, categorical; `graph/builder/random.py`)
composes this op with elementwise ones, so every other layer needs rules for this op only.

It reuses dropout's keyed permutation of the integers modulo P = 2**31 - 1 (`dropout.keep_round`),
with round keys that are computed from the seed at run time: the seed is reduced modulo P (seeds
equal modulo P draw the same values), and round key r is the seed after r + 1 rounds of the
fixed-key cipher of `stream` (dropout's cipher with the key `stream * ROUNDS + SALT`). Each
element's code is its flat index within the block through the rounds with those keys. Only int64
+, * and mod with products below 2**62 are used, written once over Python operators (`seed_keys`,
`keyed_code`), so numpy, TIR and ONNX compute the same integers: no 64-bit wraparound, which
TVM's simplifier and ONNX need not honour. Distinct
seeds modulo P give distinct first keys; `stream` separates draws from one seed (normal's two
uniforms, `fold_in`). A block repeats after P elements.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..dtypes import is_int
from ..errors import GraphError
from ..opdef import OpDef, register_op
from ..types import TensorType
from .dropout import PRIME, ROUNDS, Code, keep_round, round_keys

SALT = 0x5EED  # separates the key-derivation ciphers from dropout's seeds


Round = Callable[[Code, Code], Code]


def seed_keys(seed_code: Code, stream: int, apply_round: Round = keep_round) -> list[Code]:
    """The round keys of seeds already reduced modulo PRIME: key r is the seed through the first
    r + 1 rounds of the fixed-key cipher of `stream` (a chain: ROUNDS cipher rounds in all).
    `apply_round(x, key)` is one round (a TVM kernel of its own on that backend)."""
    keys, key = [], seed_code
    for fixed in round_keys(stream * ROUNDS + SALT):
        key = apply_round(key, fixed)
        keys.append(key)
    return keys


def keyed_code(index: Code, keys: Sequence[Code], apply_round: Round = keep_round) -> Code:
    """The keyed permutation of `index` (values in [0, PRIME)) with run-time keys."""
    for key in keys:
        index = apply_round(index, key)
    return index


def random_codes(seed: np.ndarray, shape: tuple[int, ...], stream: int) -> np.ndarray:
    """The int64 values of random_bits, computed with numpy."""
    seed_code = seed.astype(np.int64).reshape(seed.shape + (1,) * len(shape)) % PRIME
    index = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape) % PRIME
    return keyed_code(index, seed_keys(seed_code, stream))


def _check_attrs(shape: tuple[int, ...], stream: int) -> None:
    if not isinstance(shape, tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise GraphError(f"random_bits: shape must be a tuple of non-negative ints, got {shape!r}")
    if not isinstance(stream, int) or isinstance(stream, bool) or stream < 0:
        raise GraphError(f"random_bits: stream must be a non-negative int, got {stream!r}")


def _random_bits_infer(seed: TensorType, shape: tuple[int, ...], stream: int) -> tuple[TensorType]:
    if not is_int(seed.dtype) or seed.dtype == "uint64":
        raise GraphError(
            f"random_bits: seed must be an integer tensor other than uint64 (int32 or int64 for a "
            f"step counter or key), got {seed.dtype}; cast it with gk.cast(seed, 'int64')"
        )
    _check_attrs(shape, stream)
    return (TensorType("int64", (*seed.shape, *shape)),)


def _random_bits(seed: np.ndarray, shape: tuple[int, ...], stream: int) -> np.ndarray:
    return random_codes(seed, shape, stream)


register_op(
    OpDef(
        "random_bits",
        _random_bits_infer,
        _random_bits,
        1,
        doc="int64 values uniform on [0, 2**31 - 1), a block of `shape` per seed element: the flat index "
        "through dropout's keyed permutation with keys derived from seed mod (2**31 - 1) at run time; "
        "attrs: shape, stream.",
    )
)
