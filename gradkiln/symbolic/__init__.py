"""Symbolic autodiff: gradient graphs derived source to source, as ordinary nodes of the graph.

`grad(outputs, inputs)` and `vjp(outputs, inputs, cotangents)` walk the graph once in reverse
and emit the gradient with the builder API, so gradients of gradients work and every pass,
backend and exporter handles them unchanged. Each op's rule lives in `VJP_RULES` (see
`vjp_rules` for the conventions at ties and kinks); ops without a gradient are listed in
`NON_DIFFERENTIABLE`; `register_vjp(op)` adds the rule of a custom op.
"""

from .reverse import grad, vjp
from .vjp_rules import NON_DIFFERENTIABLE, VJP_RULES, VJPRule, register_vjp, unbroadcast, zeros_like

__all__ = ["NON_DIFFERENTIABLE", "VJP_RULES", "VJPRule", "grad", "register_vjp", "unbroadcast", "vjp", "zeros_like"]
