"""`gk.random`: seeded sampling and the gradient estimators of stochastic computation graphs.

Sampling as jax.random (`uniform`, `normal`, `bernoulli`, `categorical`, `gumbel`, `split`,
`fold_in`, `random_bits`; keys are Python ints or integer tensors fed per call), from
`graph/builder/random.py`; estimators (`reparameterize`, `reinforce`, `gumbel_softmax`) from
`symbolic/estimators.py`. User guide: docs/workflows/stochastic.md.
"""

from .graph.builder.random import bernoulli, categorical, fold_in, gumbel, normal, random_bits, split, uniform
from .symbolic.estimators import gumbel_softmax, reinforce, reparameterize

__all__ = [
    "bernoulli",
    "categorical",
    "fold_in",
    "gumbel",
    "gumbel_softmax",
    "normal",
    "random_bits",
    "reinforce",
    "reparameterize",
    "split",
    "uniform",
]
