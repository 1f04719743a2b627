"""Test helpers users can reuse: one sample graph per op, and finite-difference gradient checks.

`op_samples()` gives, for every op of the table, a small graph that exercises it (with inputs
away from non-differentiable points), so every layer can be checked op by op against the
numpy reference: gradients against finite differences, TVM and ONNX against numpy.
"""

from .gradients import numeric_grads
from .sample import OpSample
from .samples import complex_samples, op_samples
from .workloads import (
    elementwise_chain,
    measured_peak_bytes,
    mlp_feeds,
    mlp_training_step,
    random_graph_feeds,
    random_graphs,
)

__all__ = [
    "OpSample",
    "complex_samples",
    "elementwise_chain",
    "measured_peak_bytes",
    "mlp_feeds",
    "mlp_training_step",
    "numeric_grads",
    "op_samples",
    "random_graph_feeds",
    "random_graphs",
]
