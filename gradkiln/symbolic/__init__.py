"""Symbolic autodiff: gradient graphs derived source to source, as ordinary nodes of the graph.

`grad(outputs, inputs)` and `vjp(outputs, inputs, cotangents)` walk the graph once in reverse
and emit the gradient with the builder API, so gradients of gradients work and every pass,
backend and exporter handles them unchanged. Each op's rule lives in `VJP_RULES` (see
`vjp_rules` for the conventions at ties and kinks); ops without a gradient are listed in
`NON_DIFFERENTIABLE`; `register_vjp(op)` adds the rule of a custom op. Forward mode (`jvp`,
`JVP_RULES`, `register_jvp`) walks the graph once forward. `custom_vjp`, `custom_jvp`,
`stop_gradient`, `straight_through` and `checkpoint` shape what the derivatives do. `vmap`
(`BATCH_RULES`, `register_batch`) batches a subgraph, which `jacobian` and `hessian` use;
`fixed_point` and `root` differentiate solvers
implicitly; `odeint` solves ODEs, differentiated by the adjoint method or through its steps
(docs/workflows/neural_ode.md); `gradkiln.symbolic.utilities` clips, accumulates and
loss-scales gradients. docs/autodiff.md describes them all.
"""

from ..graph.builder import stop_gradient, zeros_like
from . import (
    collective_rules,  # all_reduce, all_gather, reduce_scatter, broadcast, reduce: their transposes
    complex_rules,  # real, imag, conj, angle, complex and abs of complex operands
    control_rules,  # scan and cond: derivative and batched bodies
    fused_rules,  # the fused elementwise op's rules, derived with sympy
    linalg_rules,  # registers the linear algebra ops' vjp, jvp and batching rules
    nn_rules,  # registers the nn ops' vjp, jvp and batching rules
    random_rules,  # random_bits: batching (non-differentiable)
    resize_rules,  # resize and its transpose resize_grad
    select_rules,  # the selection ops' and dropout's rules
)
from .batching import BATCH_RULES, BatchRule, register_batch, vmap
from .checkpoint import checkpoint
from .custom import custom_vjp, straight_through
from .custom_jvp import custom_jvp
from .forward import jvp
from .higher import hessian, hessian_vector_product, jacobian
from .implicit import fixed_point, root
from .jvp_rules import JVP_RULES, JVPRule, register_jvp
from .odeint import odeint
from .reverse import grad, value_and_grad, vjp
from .utilities import (
    LossScaler,
    ScalerState,
    accumulate_gradients,
    clip_by_global_norm,
    clip_by_value,
    global_norm,
    split_micro_batches,
)
from .vjp_rules import NON_DIFFERENTIABLE, VJP_RULES, VJPRule, register_vjp, unbroadcast

__all__ = [
    "BATCH_RULES",
    "JVP_RULES",
    "NON_DIFFERENTIABLE",
    "VJP_RULES",
    "BatchRule",
    "JVPRule",
    "LossScaler",
    "ScalerState",
    "VJPRule",
    "accumulate_gradients",
    "checkpoint",
    "clip_by_global_norm",
    "clip_by_value",
    "custom_jvp",
    "custom_vjp",
    "fixed_point",
    "global_norm",
    "grad",
    "hessian",
    "hessian_vector_product",
    "jacobian",
    "jvp",
    "odeint",
    "register_batch",
    "register_jvp",
    "register_vjp",
    "root",
    "split_micro_batches",
    "stop_gradient",
    "straight_through",
    "unbroadcast",
    "value_and_grad",
    "vjp",
    "vmap",
    "zeros_like",
]
