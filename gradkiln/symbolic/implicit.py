"""Implicit differentiation: solvers whose derivatives come from the implicit function theorem
instead of from unrolling their iterations.

The IR is static (no loop op), so the forward solve is a fixed number of iterations unrolled
in the graph over `stop_gradient` copies of the parameters: no derivative walks through them.
The solution `x` is the output of one `custom_jvp` node whose rule is the linearized
equation at `x`:

- `fixed_point` (x = f(x, p)): the tangent solves t = df/dx t + df/dp dp, by
  `adjoint_iterations` steps of that iteration (it converges where the forward iteration
  does, df/dx being a contraction). Reverse mode transposes it into the adjoint iteration
  u <- g + (df/dx)^T u, dp = (df/dp)^T u: JAX's `fixed_point` recipe, with the loop unrolled.
- `root` (f(x, p) = 0, by Newton's method): t = -(df/dx)^-1 df/dp dp, for `f` elementwise in
  `x` (a diagonal df/dx, read as the jvp of f with a tangent of ones); scalar equations are the
  one-element case.

The derivative rules read `f` at the solution only, so the gradient graph has the same size
for 10 or 1000 forward iterations. The rules are ordinary nodes over the solution and the
parameters (both differentiable), so second derivatives work too.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..graph import GradientError, Tensor, Value
from ..graph import builder as gb
from ..graph.builder import zeros_like
from ..graph.dtypes import is_float
from ..graph.types import same_type
from .custom_jvp import with_jvp_rule
from .forward import jvp
from .walk import next_node_id, nodes_between

Residual = Callable[..., Tensor]


def fixed_point(
    f: Residual,
    x0: Tensor,
    params: Sequence[Tensor] = (),
    iterations: int = 50,
    adjoint_iterations: int | None = None,
) -> Tensor:
    """The fixed point x = f(x, *params), by `iterations` steps of x <- f(x, *params) from `x0`.

    Derivatives with respect to `params` (float Tensors; pass other values by closure) use the
    implicit function theorem, solving the linear equation by `adjoint_iterations` (default:
    `iterations`) steps at the solution; `x0` gets no gradient. `f` must map `x` to a Tensor of
    its type and be a contraction near the solution, as the iteration itself needs.
    """
    adjoint = iterations if adjoint_iterations is None else adjoint_iterations
    rule = _FixedPointRule(
        f, _count(iterations, "fixed_point", "iterations"), _count(adjoint, "fixed_point", "adjoint_iterations")
    )
    return _solve(rule, x0, params)


def root(f: Residual, x0: Tensor, params: Sequence[Tensor] = (), iterations: int = 20) -> Tensor:
    """The root of f(x, *params) = 0 nearest `x0`, by `iterations` Newton steps
    x <- x - f(x) / f'(x).

    `f` must act elementwise on `x` (each output element depends on the same element of `x`
    only; a scalar equation is the one-element case), since f'(x) is read as a diagonal.
    Derivatives with respect to `params` use the implicit function theorem at the root:
    dx = -(df/dp dp) / f'(x). There is no line search: start close enough for Newton's method.
    """
    return _solve(_NewtonRule(f, _count(iterations, "root", "iterations")), x0, params)


class _FixedPointRule:
    def __init__(self, f: Residual, iterations: int, adjoint_iterations: int) -> None:
        self.f, self.iterations, self.adjoint_iterations = f, iterations, adjoint_iterations

    def step(self, x: Tensor, params: Sequence[Tensor]) -> Tensor:
        return self.f(x, *params)

    def tangent(self, params: tuple[Tensor, ...], x: Tensor, tangents: tuple[Tensor, ...]) -> Tensor:
        """t = df/dx t + df/dp dp, iterated from t = df/dp dp."""
        y, copies = _at_solution(self.f, x, params)
        (from_params,) = jvp(y, copies, tangents)
        along_x = _Recorded(lambda t: jvp(y, [x], [t])[0], x)
        t = from_params
        for _ in range(self.adjoint_iterations - 1):
            t = from_params + along_x(t)
        along_x.discard()
        return t

    def __repr__(self) -> str:
        return f"fixed_point({_name(self.f)})"


class _NewtonRule:
    def __init__(self, f: Residual, iterations: int) -> None:
        self.f, self.iterations = f, iterations

    def step(self, x: Tensor, params: Sequence[Tensor]) -> Tensor:
        y = self.f(x, *params)
        return x - y / _slope(y, x)

    def tangent(self, params: tuple[Tensor, ...], x: Tensor, tangents: tuple[Tensor, ...]) -> Tensor:
        """t = -(df/dp dp) / f'(x)."""
        y, copies = _at_solution(self.f, x, params)
        (from_params,) = jvp(y, copies, tangents)
        return -from_params / _slope(y, x)

    def __repr__(self) -> str:
        return f"root({_name(self.f)})"


def _solve(rule: _FixedPointRule | _NewtonRule, x0: Tensor, params: Sequence[Tensor]) -> Tensor:
    params = tuple(params)
    _check_operands(rule, x0, params)

    def iterate(*stopped: Tensor) -> Tensor:
        x = gb.stop_gradient(x0)
        step = _Recorded(lambda x: _checked(rule, x0, rule.step(x, stopped)), x)
        for _ in range(rule.iterations):
            x = step(x)
        step.discard()
        return x

    return with_jvp_rule(rule, iterate, params)


class _Recorded:
    """A map x -> step(x), built once over a placeholder of x's type and replayed (its nodes
    between the placeholder and the result re-emitted) per application: n applications cost n
    copies of the step, where n transformations would each walk all the earlier copies."""

    def __init__(self, step: Callable[[Tensor], Tensor], like: Tensor) -> None:
        self.graph = like.graph
        self.first = next_node_id(self.graph)
        self.placeholder = zeros_like(like)
        self.result = step(self.placeholder)
        self.end = next_node_id(self.graph)
        self.nodes = nodes_between(self.graph, [self.placeholder], [self.result])
        self.replayed_result = self.result.value.node in set(self.nodes)

    def __call__(self, x: Tensor) -> Tensor:
        env: dict[Value, Value] = {self.placeholder.value: x.value}
        for node_id in self.nodes:
            node = self.graph.node(node_id)
            if node.outputs[0] not in env:
                copy = self.graph.add_node(node.op, [env.get(v, v) for v in node.inputs], node.attrs)
                env.update(zip(node.outputs, copy.outputs))
        return Tensor(self.graph, env.get(self.result.value, self.result.value))

    def discard(self) -> None:
        """Remove the recorded nodes that nothing reads (the replays may share some; a result
        that does not depend on x is what the replays return)."""
        kept = set() if self.replayed_result else {self.result.value.node}
        for node_id in range(self.end - 1, self.first - 1, -1):
            if node_id in self.graph.nx and node_id not in kept and not self.graph.nx.out_degree(node_id):
                self.graph.remove_node(node_id)


def _at_solution(f: Residual, x: Tensor, params: tuple[Tensor, ...]) -> tuple[Tensor, list[Tensor]]:
    """f(x, *copies) with `copies` differentiable copies of the parameters: forward mode can
    seed them without walking back into the solver node that computed `x` from `params`."""
    copies = [p * 1.0 for p in params]
    return f(x, *copies), copies


def _slope(y: Tensor, x: Tensor) -> Tensor:
    """df/dx for an f elementwise in x: the jvp with a tangent of ones."""
    ones = gb.broadcast_to(gb.constant(np.ones((), x.dtype), graph=x.graph), x.shape)
    (slope,) = jvp(y, [x], [ones])
    return slope


def _check_operands(rule: object, x0: Tensor, params: tuple[Tensor, ...]) -> None:
    for what, t in [("x0", x0), *((f"params[{i}]", p) for i, p in enumerate(params))]:
        if not isinstance(t, Tensor) or not is_float(t.dtype):
            described = t.type if isinstance(t, Tensor) else type(t).__name__
            raise GradientError(
                f"{rule!r}: {what} is a {described}; x0 and params must be float Tensors (pass other values by closure)"
            )


def _checked(rule: object, x0: Tensor, x: Tensor) -> Tensor:
    if not isinstance(x, Tensor) or not same_type(x.type, x0.type):
        got = x.type if isinstance(x, Tensor) else type(x).__name__
        raise GradientError(f"{rule!r}: an iteration returned {got} for x0 of type {x0.type}; it must keep x's type")
    return x


def _count(n: int, solver: str, what: str) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise GradientError(f"{solver}: {what} must be a positive int, got {n!r}")
    return n


def _name(f: Callable) -> str:
    return getattr(f, "__name__", type(f).__name__)
