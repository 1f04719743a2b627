"""Symbolic autodiff: gradient graphs derived source to source, as ordinary nodes of the graph.

`grad(outputs, inputs)` and `vjp(outputs, inputs, cotangents)` walk the graph once in reverse
and emit the gradient with the builder API, so gradients of gradients work and every pass,
backend and exporter handles them unchanged. Each op's rule lives in `VJP_RULES` (see
`vjp_rules` for the conventions at ties and kinks); ops without a gradient are listed in
`NON_DIFFERENTIABLE`; `register_vjp(op)` adds the rule of a custom op. Forward mode (`jvp`,
`JVP_RULES`, `register_jvp`) walks the graph once forward. `custom_vjp`, `stop_gradient` and
`checkpoint` shape what reverse mode does. `vmap` (`BATCH_RULES`, `register_batch`) batches a
subgraph, which `jacobian` and `hessian` use; `check_grad` checks gradients numerically.
docs/autodiff.md describes them all.
"""

from ..graph.builder import stop_gradient
from . import nn_rules  # registers the nn ops' vjp, jvp and batching rules
from .batching import BATCH_RULES, BatchRule, register_batch, vmap
from .check import GradCheckReport, InputCheck, check_grad
from .checkpoint import checkpoint
from .custom import custom_vjp
from .forward import jvp
from .higher import hessian, hessian_vector_product, jacobian
from .jvp_rules import JVP_RULES, JVPRule, register_jvp
from .reverse import grad, value_and_grad, vjp
from .vjp_rules import NON_DIFFERENTIABLE, VJP_RULES, VJPRule, register_vjp, unbroadcast, zeros_like

__all__ = [
    "BATCH_RULES",
    "JVP_RULES",
    "NON_DIFFERENTIABLE",
    "VJP_RULES",
    "BatchRule",
    "GradCheckReport",
    "InputCheck",
    "JVPRule",
    "VJPRule",
    "check_grad",
    "checkpoint",
    "custom_vjp",
    "grad",
    "hessian",
    "hessian_vector_product",
    "jacobian",
    "jvp",
    "register_batch",
    "register_jvp",
    "register_vjp",
    "stop_gradient",
    "unbroadcast",
    "value_and_grad",
    "vjp",
    "vmap",
    "zeros_like",
]
