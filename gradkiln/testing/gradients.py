"""Central finite differences, the oracle of the gradient tests."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def numeric_grads(
    fn: Callable[[dict[str, np.ndarray]], np.ndarray],
    feeds: dict[str, np.ndarray],
    wrt: Sequence[str],
    seed: np.ndarray,
    eps: float = 1e-6,
) -> dict[str, np.ndarray]:
    """Central finite differences of sum(seed * fn(feeds)) with respect to each input in `wrt`."""
    grads = {}
    for name in wrt:
        base = feeds[name]
        g = np.zeros_like(base, dtype=np.float64)
        for i in np.ndindex(base.shape):
            values = []
            for delta in (eps, -eps):
                shifted = base.copy()
                shifted[i] += delta
                values.append(np.sum(seed * fn({**feeds, name: shifted})))
            g[i] = (values[0] - values[1]) / (2 * eps)
        grads[name] = g
    return grads
