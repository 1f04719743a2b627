"""Sample graphs of the control-flow ops: scan (an RNN, a reverse scan without xs, a batch
axis of symbolic size), cond (taking either branch) and while_loop (a bounded scan)."""

from __future__ import annotations

import numpy as np

from ..graph import builder as gb
from .sample import OpSample, rand


def control_samples(dtype: str, rng: np.random.Generator) -> list[OpSample]:
    """Samples of scan and cond, each differentiable in every float input."""

    def r(*shape: int, low: float = -1.0, high: float = 1.0) -> np.ndarray:
        return rand(rng, shape, dtype, low, high)

    def rnn(h, x, w):
        final, ys = gb.scan(lambda c, xt: (gb.tanh(c @ w + xt), c * c), h, x)
        return final * gb.sum(ys, 0)

    def euler(y, k):
        final, _ = gb.scan(lambda c, _: (c - 0.2 * k * c * c, None), y, length=3, reverse=True)
        return final

    def branches(x, p):
        return gb.cond(gb.sum(p) > 0, lambda a, b: gb.sin(a) * b, lambda a, b: a * a - b, x, p)

    def halving(x):
        return gb.while_loop(lambda s: gb.sum(s * s) > 0.5, lambda s: s * 0.5, x, 4)

    return [
        OpSample("scan", {"h": r(2, 3), "x": r(4, 2, 3), "w": r(3, 3)}, rnn),
        OpSample(
            "scan",
            {"h": r(2, 3), "x": r(4, 2, 3), "w": r(3, 3)},
            rnn,
            shapes={"h": ("N", 3), "x": (4, "N", 3)},
            name="scan_symbolic",
        ),
        OpSample("scan", {"y": r(3, low=0.2), "k": r(3, low=0.5)}, euler, name="scan_reverse_no_xs"),
        OpSample("cond", {"x": r(3, 4), "p": r(4, low=0.1)}, branches, name="cond_true"),
        OpSample("cond", {"x": r(3, 4), "p": r(4, low=-1.0, high=-0.1)}, branches, name="cond_false"),
        OpSample("scan", {"x": r(3, low=0.5)}, halving, name="while_loop"),
    ]
