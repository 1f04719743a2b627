"""Gradient utilities as graph-building functions: clipping, accumulation over micro-batches and
dynamic loss scaling for mixed precision.

They build ordinary nodes (with the builder API) over gradient Tensors, so a training step
that clips, accumulates or loss-scales compiles, exports and renders like any graph. State that
lives across steps (the loss scale and its good-step counter) is graph inputs and outputs: the
caller feeds the state in and reads the next state out, as with any optimizer state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from ..graph import GradientError, Tensor
from ..graph import builder as gb
from ..graph.dtypes import is_float
from .reverse import grad


def clip_by_value(grads: Sequence[Tensor], lo: float, hi: float) -> list[Tensor]:
    """Each gradient clipped elementwise to [lo, hi] (torch.nn.utils.clip_grad_value_ uses
    lo = -hi)."""
    if not lo <= hi:
        raise GradientError(f"clip_by_value: lo={lo} is greater than hi={hi}; pass lo <= hi")
    return [gb.clip(g, lo, hi) for g in checked_gradients("clip_by_value", grads)]


def global_norm(grads: Sequence[Tensor]) -> Tensor:
    """sqrt of the sum of the squares of every element of every gradient (a scalar)."""
    squares = [gb.sum(gb.square(g)) for g in checked_gradients("global_norm", grads)]
    total = squares[0]
    for s in squares[1:]:
        total = total + s
    return gb.sqrt(total)


def clip_by_global_norm(grads: Sequence[Tensor], max_norm: float, eps: float = 1e-6) -> tuple[list[Tensor], Tensor]:
    """`(clipped, norm)`: the gradients scaled by min(1, max_norm / (norm + eps)), where `norm`
    is their `global_norm` before clipping; the formula of torch.nn.utils.clip_grad_norm_
    (which returns the same norm). Their directions are kept, unlike `clip_by_value`."""
    if not max_norm > 0:
        raise GradientError(f"clip_by_global_norm: max_norm must be positive, got {max_norm}")
    grads = checked_gradients("clip_by_global_norm", grads)
    norm = global_norm(grads)
    factor = clip_factor(norm, max_norm, eps)
    return [g * gb.cast(factor, g.dtype) for g in grads], norm


def clip_factor(norm: Tensor, max_norm: float, eps: float = 1e-6) -> Tensor:
    """min(1, max_norm / (norm + eps)): what torch.nn.utils.clip_grad_norm_ scales gradients by."""
    return gb.minimum(max_norm / (norm + eps), 1.0)


def split_micro_batches(tensors: Sequence[Tensor], count: int) -> list[tuple[Tensor, ...]]:
    """Split each tensor along axis 0 into `count` equal parts: one tuple per micro-batch, for
    `accumulate_gradients`. Axis 0 must be static and divisible by `count`."""
    batches = []
    for t in tensors:
        rows = t.shape[0] if t.ndim else None
        if not isinstance(rows, int) or count < 1 or rows % count:
            raise GradientError(
                f"split_micro_batches: {t.name} has type {t.type}; axis 0 must be a static size divisible "
                f"by count={count}"
            )
        step = rows // count
        batches.append([t[i * step : (i + 1) * step] for i in range(count)])
    return list(zip(*batches))


def accumulate_gradients(
    loss_fn: Callable[..., Tensor],
    params: Sequence[Tensor],
    micro_batches: Sequence[Sequence[Tensor]],
    average: bool = True,
) -> tuple[Tensor, list[Tensor]]:
    """`(loss, grads)` summed over micro-batches: `loss_fn(*batch)` (a scalar) and its gradient
    with respect to `params` for each batch, divided by their number when `average` (then, for
    a mean loss over equal micro-batches, they equal the full batch's loss and gradient). Each
    micro-batch gets its own forward and gradient subgraph over its slice of the data."""
    if not micro_batches:
        raise GradientError("accumulate_gradients: no micro-batches; pass at least one tuple of Tensors")
    total_loss, total = None, None
    for batch in micro_batches:
        loss = loss_fn(*batch)
        grads = grad(loss, list(params))
        total_loss = loss if total_loss is None else total_loss + loss
        total = grads if total is None else [a + b for a, b in zip(total, grads)]
    if not average:
        return total_loss, total
    count = len(micro_batches)
    return total_loss / count, [g / count for g in total]


class ScalerState(NamedTuple):
    """The state of dynamic loss scaling: the scale (float32 scalar) and the number of
    consecutive steps without an overflow since it last changed (int64 scalar)."""

    scale: Tensor
    good_steps: Tensor


@dataclass(frozen=True)
class LossScaler:
    """Dynamic loss scaling for mixed precision, with the rules of torch.amp.GradScaler: scale
    the loss up so that small float16 gradients do not flush to zero, unscale the gradients, and
    skip the update of a step whose gradients have an Inf or NaN while halving the scale
    (`backoff_factor`); after `growth_interval` steps in a row without one, double it
    (`growth_factor`, kept if finite).

    Build a step with `state = scaler.inputs()`, `scaler.scale(loss, state)`,
    `grads, found_inf = scaler.unscale(grads, state)`, `scaler.skip_if_overflow(new_params,
    params, found_inf)` and `scaler.update(state, found_inf)`; feed `scaler.initial_state()`
    first, then each step's returned state.
    """

    init_scale: float = 2.0**16
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    growth_interval: int = 2000

    def __post_init__(self) -> None:
        if not (self.init_scale > 0 and self.growth_factor > 1 and 0 < self.backoff_factor < 1):
            raise GradientError(
                f"{self}: needs init_scale > 0, growth_factor > 1 and 0 < backoff_factor < 1 (as GradScaler)"
            )
        if not (isinstance(self.growth_interval, int) and self.growth_interval >= 1):
            raise GradientError(f"{self}: growth_interval must be a positive int")

    def inputs(self, prefix: str = "") -> ScalerState:
        """The state as graph inputs named `{prefix}loss_scale` and `{prefix}good_steps`."""
        return ScalerState(gb.input(f"{prefix}loss_scale", (), "float32"), gb.input(f"{prefix}good_steps", (), "int64"))

    def initial_state(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The feeds of the first step, keyed by the input names of `inputs(prefix)`."""
        return {f"{prefix}loss_scale": np.float32(self.init_scale), f"{prefix}good_steps": np.int64(0)}

    def scale(self, loss: Tensor, state: ScalerState) -> Tensor:
        """The loss times the scale: differentiate this one. A float16 loss is promoted to
        float32 first (2**16 is not a float16), as GradScaler does; its cotangent is cast back
        to float16, where a too-large scale overflows."""
        return loss * state.scale

    def unscale(self, grads: Sequence[Tensor], state: ScalerState) -> tuple[list[Tensor], Tensor]:
        """`(grads / scale, found_inf)`: found_inf (a bool scalar) is true when any element of
        the scaled gradients is an Inf or a NaN."""
        inverse = gb.reciprocal(state.scale)
        unscaled = [g * gb.cast(inverse, g.dtype) for g in checked_gradients("LossScaler.unscale", grads)]
        return unscaled, gb.greater(_non_finite_count(grads), 0.0)

    @staticmethod
    def skip_if_overflow(updated: Sequence[Tensor], previous: Sequence[Tensor], found_inf: Tensor) -> list[Tensor]:
        """The updated values, or the previous ones where the step overflowed (a skipped step)."""
        return [gb.where(found_inf, old, new) for new, old in zip(updated, previous)]

    def update(self, state: ScalerState, found_inf: Tensor) -> ScalerState:
        """The next state: backoff and reset on overflow; growth (if finite) and reset after
        `growth_interval` good steps; otherwise one more good step."""
        scale, good = state
        counted = good + 1
        grow = gb.greater_equal(counted, self.growth_interval)
        grown = scale * self.growth_factor
        grown = gb.where(_finite(grown), grown, scale)
        next_scale = gb.where(found_inf, scale * self.backoff_factor, gb.where(grow, grown, scale))
        zero = gb.constant(np.int64(0), graph=good.graph)
        next_good = gb.where(found_inf, zero, gb.where(grow, zero, counted))
        return ScalerState(next_scale, next_good)


def _finite(x: Tensor) -> Tensor:
    """|x| <= the largest finite value: false for Inf and NaN (a comparison with NaN is false)."""
    return gb.less_equal(gb.abs(x), float(np.finfo(x.dtype).max))


def _non_finite_count(grads: Sequence[Tensor]) -> Tensor:
    counts = [gb.sum(gb.where(_finite(g), 0.0, 1.0)) for g in grads]
    total = gb.cast(counts[0], "float32")
    for c in counts[1:]:
        total = total + gb.cast(c, "float32")
    return total


def checked_gradients(
    what: str, grads: Sequence[Any], kinds: tuple[type, ...] = (Tensor,), described: str = "float Tensors"
) -> list[Any]:
    """`grads` as a list, checked to be a non-empty sequence of float `kinds` (`described` in errors)."""
    grads = list(grads)
    if not grads:
        raise GradientError(f"{what}: no gradients given; pass a list of {described}")
    for i, g in enumerate(grads):
        if not isinstance(g, kinds) or not is_float(g.dtype):
            got = g.type if isinstance(g, Tensor) else type(g).__name__
            raise GradientError(f"{what}: gradient {i} is {got}; pass {described}")
    return grads
