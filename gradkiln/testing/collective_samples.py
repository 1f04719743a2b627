"""Sample graphs of the collective ops over a group of one worker (the identity, which every
backend runs without a process group), for every layer's tests; several workers are exercised by
tests/distributed/, which spawns them."""

from __future__ import annotations

import numpy as np

from ..graph import builder as gb
from ..graph.builder import collective as c
from .sample import OpSample, rand


def collective_samples(dtype: str, rng: np.random.Generator) -> list[OpSample]:
    def r(*shape: int) -> np.ndarray:
        return rand(rng, shape, dtype, -2.0, 2.0)

    one = {"world_size": 1}
    return [
        OpSample("all_reduce", {"x": r(3, 4)}, lambda x: gb.tanh(c.all_reduce(x, **one)) * x, shapes={"x": ("N", 4)}),
        OpSample("all_reduce", {"x": r(3, 4)}, lambda x: c.all_reduce(x * x, "mean", **one), name="all_reduce_mean"),
        OpSample("all_gather", {"x": r(3, 4)}, lambda x: gb.sin(c.all_gather(x, axis=1, **one))),
        OpSample("reduce_scatter", {"x": r(4, 3)}, lambda x: c.reduce_scatter(x, "mean", **one) * x),
        OpSample("broadcast", {"x": r(2, 3)}, lambda x: gb.exp(c.broadcast(x, **one))),
        OpSample("reduce", {"x": r(2, 3)}, lambda x: c.reduce(x, **one) * x),
    ]
