"""Samples of the bitwise ops: integer operands (fed, so finite differences never cross a jump)
whose result scales a float input, so each sample has a gradient to check (that of the scale)."""

from __future__ import annotations

import numpy as np

from ..graph import builder as gb
from .sample import OpSample, rand


def bitwise_samples(dtype: str, rng: np.random.Generator) -> list[OpSample]:
    """and, or, xor and not on int32; the shifts on uint32 (what BitShift takes before opset 28)
    by amounts inside the bit width (ONNX defines the others from opset 28 only), scaled by 2**-20
    so that finite differences of the product do not lose the small elements to the large ones."""
    x = rand(rng, (3, 4), dtype, -2.0, 2.0)
    ints = rng.integers(-64, 64, (3, 4)).astype(np.int32)
    naturals = rng.integers(0, 2**20, (3, 4)).astype(np.uint32)
    amounts = np.array([0, 3, 17, 31], np.uint32)

    def scaled(op: str, *operands: object, unit: float = 1.0):
        return lambda x, i: x * (gb.cast(getattr(gb, op)(i, *operands), dtype) * unit)

    samples = [
        OpSample(op, {"x": x, "i": ints}, scaled(op, 0b101101), name=op)
        for op in ("bitwise_and", "bitwise_or", "bitwise_xor")
    ]
    samples.append(OpSample("bitwise_not", {"x": x, "i": ints}, scaled("bitwise_not")))
    samples += [
        OpSample(op, {"x": x, "i": naturals}, scaled(op, amounts, unit=2.0**-20), name=op)
        for op in ("left_shift", "right_shift")
    ]
    return samples
