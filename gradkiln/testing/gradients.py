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
    """Central finite differences of sum(seed * fn(feeds)) with respect to each input in `wrt`.
    A complex input z = x + iy gets dL/dx + i dL/dy (PyTorch's convention): steps along 1 and i."""
    grads = {}
    for name in wrt:
        base = feeds[name]
        steps = (1, 1j) if np.iscomplexobj(base) else (1,)
        g = np.zeros(base.shape, np.complex128 if np.iscomplexobj(base) else np.float64)
        for i in np.ndindex(base.shape):
            for step in steps:
                values = []
                for delta in (eps, -eps):
                    shifted = base.copy()
                    shifted[i] += delta * step
                    values.append(np.sum(seed * fn({**feeds, name: shifted})))
                g[i] += step * (values[0] - values[1]) / (2 * eps)
        grads[name] = g
    return grads
