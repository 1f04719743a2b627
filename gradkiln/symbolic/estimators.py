"""Gradient estimators for stochastic computation graphs: the three ways to differentiate an
expectation E_z[f(z)] whose distribution depends on parameters.

- `reparameterize`: z = mean + std * eps with eps ~ N(0, 1) drawn from a key; the gradient flows
  through z (the pathwise estimator of VAEs): low variance, continuous z only.
- `reinforce`: the score-function estimator as a surrogate whose value is the reward and whose
  gradient is (reward - baseline) * d log p(z) (+ the reward's own pathwise gradient), for any z,
  discrete included; a baseline that does not depend on z lowers the variance without bias.
- `gumbel_softmax`: a relaxed one-hot sample softmax((logits + g) / temperature) (Jang et al.,
  Maddison et al.); `hard=True` returns the exact one-hot of its argmax in the forward pass with the
  relaxed sample's gradient (straight-through, `custom.straight_through`).
"""

from __future__ import annotations

from ..graph import Tensor
from ..graph import builder as gb
from ..graph.builder.random import Key, gumbel, normal
from ..graph.dtypes import is_float
from ..graph.errors import GraphError
from ..graph.types import normalize_axis
from .custom import straight_through


def _float_tensor(x: object, caller: str, name: str) -> Tensor:
    if not isinstance(x, Tensor) or not is_float(x.dtype):
        raise GraphError(f"{caller}: {name} must be a float Tensor, got {x!r}")
    return x


def reparameterize(key: Key, mean: Tensor, std: Tensor | float) -> Tensor:
    """A sample of N(mean, std**2) as mean + std * eps, eps ~ N(0, 1) of mean's shape drawn from
    `key`: differentiable in mean and std (d z / d mean = 1, d z / d std = eps)."""
    mean = _float_tensor(mean, "reparameterize", "mean")
    return mean + std * normal(key, mean.shape, mean.dtype)


def reinforce(log_prob: Tensor, reward: Tensor, baseline: Tensor | float = 0.0) -> Tensor:
    """The REINFORCE (score-function) surrogate: its value is `reward`, its gradient
    stop_gradient(reward - baseline) * d log_prob + d reward. `log_prob` is log p(z) of the drawn
    sample under the parameters; average the result over samples and differentiate it as the
    expected reward. The baseline (a constant or a learned value not depending on z) is read
    through stop_gradient: fit it with a loss of its own, e.g. (reward - baseline) ** 2."""
    log_prob = _float_tensor(log_prob, "reinforce", "log_prob")
    reward = _float_tensor(reward, "reinforce", "reward")
    advantage = gb.stop_gradient(reward - baseline)
    return reward + (log_prob - gb.stop_gradient(log_prob)) * advantage


def gumbel_softmax(key: Key, logits: Tensor, temperature: float = 1.0, hard: bool = False, axis: int = -1) -> Tensor:
    """A relaxed categorical sample along `axis`: softmax((logits + gumbel) / temperature). With
    `hard`, the one-hot of its argmax (an exact categorical sample) whose gradient is the relaxed
    sample's (straight-through). Lower temperatures are closer to one-hot, with noisier gradients."""
    logits = _float_tensor(logits, "gumbel_softmax", "logits")
    if not temperature > 0:
        raise GraphError(f"gumbel_softmax: temperature must be positive, got {temperature!r}")
    axis = normalize_axis(axis, logits.ndim) - logits.ndim  # from the end: a key's axes come first
    soft = gb.softmax((logits + gumbel(key, logits.shape, logits.dtype)) / temperature, axis)
    return straight_through(soft, lambda y: _one_hot_of_argmax(y, axis)) if hard else soft


def _one_hot_of_argmax(y: Tensor, axis: int) -> Tensor:
    """1 at the first maximum of each slice along `axis` (< 0), 0 elsewhere, in y's dtype."""
    hot = gb.one_hot(gb.argmax(y, axis), y.shape[axis], y.dtype)
    last = y.ndim - 1
    perm = [*range(last + axis + 1), last, *range(last + axis + 1, last)]
    return hot if axis == -1 else gb.transpose(hot, perm)
