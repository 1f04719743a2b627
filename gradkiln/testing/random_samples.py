"""Samples of random_bits through the sampling functions and estimators of `gk.random`: a scalar
int64 seed, and an int32 batch of keys (one block per seed) with a symbolic batch dim."""

from __future__ import annotations

import numpy as np

from ..graph import Tensor
from ..graph import builder as gb
from ..graph.builder import random as gr
from ..symbolic import estimators
from .sample import OpSample, rand


def random_samples(dtype: str, rng: np.random.Generator) -> list[OpSample]:
    def r(*shape: int) -> np.ndarray:
        return rand(rng, shape, dtype)

    def draws(x: Tensor, key: Tensor) -> Tensor:
        noise = gr.uniform(key, (3, 4), dtype) + estimators.reparameterize(key, x, 0.5)
        return x * noise + gb.cast(gr.categorical(gr.fold_in(key, 3), x), dtype)[:, None]

    def keyed(x: Tensor, keys: Tensor) -> Tensor:
        kept = gb.cast(gr.bernoulli(keys, 0.4, (3,)), dtype)
        return estimators.gumbel_softmax(keys, x, 0.5, axis=0) * x + kept[:, None, :]

    return [
        OpSample("random_bits", {"x": r(3, 4), "key": np.array(11)}, draws),
        OpSample(
            "random_bits",
            {"x": r(2, 3), "keys": np.array([5, -3, 2**30], np.int32)},
            keyed,
            shapes={"keys": ("N",)},
            name="random_bits_keys",
        ),
    ]
