"""Higher-order derivatives by composing the transformations: Hessian-vector products
(forward over reverse), and Jacobians and Hessians as one batched graph (`vmap` of a vjp or a
jvp over the rows of an identity matrix) instead of one gradient graph per row."""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np

from ..graph import GradientError, Tensor
from ..graph import builder as gb
from ..graph.builder import zeros_like
from ..graph.types import shape_size
from .batching import vmap
from .forward import jvp
from .reverse import grad, vjp
from .walk import remove_unneeded

Mode = Literal["auto", "fwd", "rev"]


def hessian_vector_product(output: Tensor, inputs: Tensor | Sequence[Tensor], vectors: Any) -> list[Tensor]:
    """H v for a scalar `output`: the jvp of its gradient along `vectors` (one per input, or one
    array or Tensor for a single input), so it costs about two gradients, however many inputs."""
    first_new = output.graph.next_node_id
    results = jvp(grad(output, inputs), inputs, vectors)
    remove_unneeded(output.graph, first_new, results)
    return results


def jacobian(output: Tensor, input: Tensor, mode: Mode = "auto") -> Tensor:
    """d output / d input, of shape `(*output.shape, *input.shape)` (static shapes only).

    "rev" batches a vjp over the output's elements, "fwd" a jvp over the input's elements;
    "auto" picks the one with the smaller batch (forward for tall Jacobians, as in JAX).
    """
    if not (output.type.is_static and input.type.is_static):
        raise GradientError(f"jacobian needs static shapes, got {output.type} and {input.type}")
    n_out, n_in = shape_size(output.shape), shape_size(input.shape)
    if mode == "auto":
        mode = "fwd" if n_in < n_out else "rev"
    if mode not in ("fwd", "rev"):
        raise GradientError(f"jacobian mode must be 'auto', 'fwd' or 'rev', got {mode!r}")
    graph = output.graph
    first_new = graph.next_node_id
    with graph, graph.building_as("grad"):
        if mode == "rev":
            seed = zeros_like(output)  # a placeholder, replaced by the identity's rows
            (row,) = vjp(output, [input], seed, allow_unused=True)
            (rows,) = vmap(row, seed, _identity_rows(output))
            result = gb.reshape(rows, (*output.shape, *input.shape))
        else:
            tangent = zeros_like(input)
            (column,) = jvp(output, [input], [tangent])
            (columns,) = vmap(column, tangent, _identity_rows(input))
            moved = gb.transpose(columns, (*range(1, output.ndim + 1), 0))
            result = gb.reshape(moved, (*output.shape, *input.shape))
    remove_unneeded(graph, first_new, [result])
    return result


def hessian(output: Tensor, input: Tensor, mode: Mode = "fwd") -> Tensor:
    """d^2 output / d input^2 for a scalar output, of shape `(*input.shape, *input.shape)`: the
    Jacobian of the gradient, forward over reverse by default."""
    graph = output.graph
    first_new = graph.next_node_id
    result = jacobian(grad(output, [input])[0], input, mode)
    remove_unneeded(graph, first_new, [result])
    return result


def _identity_rows(x: Tensor) -> Tensor:
    """The rows of the identity matrix over x's elements, each shaped like x: `(n, *x.shape)`."""
    n = shape_size(x.shape)
    return gb.constant(np.eye(n, dtype=x.dtype).reshape((n, *x.shape)), graph=x.graph)
