"""Rules of random_bits: it is in `NON_DIFFERENTIABLE` (integer-valued, and no gradient flows to a
seed), and it batches for free: a seed of shape S already draws one block per element, so a
batched seed (B, *S) gives (B, *S, *shape), the block of each batch element's own seed, as B
separate calls would."""

from __future__ import annotations

from ..graph import Tensor
from ..graph import builder as gb
from ..graph.types import Dim
from .batching import register_batch


@register_batch("random_bits")
def _random_bits_batch(
    inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, shape: tuple[int, ...], stream: int
) -> Tensor:
    return gb.emit("random_bits", inputs[0], shape=shape, stream=stream)
