"""Implicit differentiation: solvers whose derivatives come from the implicit function theorem
instead of from differentiating their iterations.

Every solve is one loop node (`gk.while_loop`: a bounded `scan`), so a graph has the same
nodes for 10 or 10,000 iterations. A loop stops early once a step changes no element by more
than `tol` (the steps left keep the state), and runs `iterations` steps at most. The forward
solve iterates over `stop_gradient` copies of the parameters: no derivative walks through it.
The solution `x` is the output of one `custom_jvp` node whose rule is the linearized equation
at `x`:

- `fixed_point` (x = f(x, p)): the tangent t solves (I - df/dx) t = df/dp dp, by the loop
  t <- df/dp dp + df/dx t of Jacobian-vector products (it converges where the forward iteration
  does, df/dx being a contraction). Reverse mode has its own rule, the transpose: u solves
  (I - df/dx)^T u = g by the loop u <- g + (df/dx)^T u of vector-Jacobian products at the
  solution, then dp = (df/dp)^T u (JAX's `fixed_point` recipe). No Jacobian is materialized.
- `root` (f(x, p) = 0, by Newton's method): t = -(df/dx)^-1 df/dp dp, for `f` elementwise in
  `x` (a diagonal df/dx, read as the jvp of f with a tangent of ones); scalar equations are the
  one-element case. Reverse mode transposes that formula.

The derivative rules read `f` at the solution only, so the gradient graph has the same size
whatever the iteration counts. The rules are ordinary nodes over the solution and the
parameters (both differentiable), so second derivatives work too: they differentiate the
rules' loops as written.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..graph import GradientError, Tensor
from ..graph import builder as gb
from ..graph.body import open_body
from ..graph.builder import zeros_like
from ..graph.dtypes import is_float
from ..graph.types import same_type
from .custom_jvp import with_jvp_rule
from .forward import jvp
from .reverse import vjp

Residual = Callable[..., Tensor]


def fixed_point(
    f: Residual,
    x0: Tensor,
    params: Sequence[Tensor] = (),
    iterations: int = 50,
    adjoint_iterations: int | None = None,
    tol: float = 0.0,
) -> Tensor:
    """The fixed point x = f(x, *params), by at most `iterations` steps of x <- f(x, *params)
    from `x0`, stopping once a step changes no element by more than `tol` (the default 0.0 runs
    until x = f(x) exactly, so in practice all `iterations`).

    Derivatives with respect to `params` (float Tensors; pass other values by closure) use the
    implicit function theorem: each solves its linear equation at the solution by a loop of at
    most `adjoint_iterations` (default: `iterations`) Jacobian-vector products (forward mode) or
    vector-Jacobian products (reverse mode), with the same `tol` on each step's change. `x0` gets
    no gradient. `f` must map `x` to a Tensor of its type and be a contraction near the
    solution, as the iteration itself needs.
    """
    adjoint = iterations if adjoint_iterations is None else adjoint_iterations
    rule = _FixedPointRule(
        f,
        _count(iterations, "fixed_point", "iterations"),
        _count(adjoint, "fixed_point", "adjoint_iterations"),
        _tolerance(tol, "fixed_point"),
    )
    return _solve(rule, x0, params)


def root(f: Residual, x0: Tensor, params: Sequence[Tensor] = (), iterations: int = 20, tol: float = 0.0) -> Tensor:
    """The root of f(x, *params) = 0 nearest `x0`, by at most `iterations` Newton steps
    x <- x - f(x) / f'(x), stopping once a step changes no element by more than `tol`.

    `f` must act elementwise on `x` (each output element depends on the same element of `x`
    only; a scalar equation is the one-element case), since f'(x) is read as a diagonal.
    Derivatives with respect to `params` use the implicit function theorem at the root:
    dx = -(df/dp dp) / f'(x). There is no line search: start close enough for Newton's method.
    """
    return _solve(_NewtonRule(f, _count(iterations, "root", "iterations"), _tolerance(tol, "root")), x0, params)


class _FixedPointRule:
    def __init__(self, f: Residual, iterations: int, adjoint_iterations: int, tol: float) -> None:
        self.f, self.iterations, self.adjoint_iterations, self.tol = f, iterations, adjoint_iterations, tol

    def step(self, x: Tensor, params: Sequence[Tensor]) -> Tensor:
        return self.f(x, *params)

    def tangent(self, params: tuple[Tensor, ...], x: Tensor, tangents: tuple[Tensor, ...]) -> Tensor:
        """t = df/dx t + df/dp dp, iterated from t = 0: one loop of jvps at the solution."""
        y, copies = _at_solution(self.f, x, params)
        (from_params,) = jvp(y, copies, tangents)

        def step(t: Tensor) -> Tensor:
            inside, at_inside = self._inside(x, params)
            return from_params + jvp(at_inside, [inside], [t])[0]

        return _iterate(step, zeros_like(from_params), self.adjoint_iterations, self.tol)

    def transpose(self, params: tuple[Tensor, ...], x: Tensor, g: Tensor) -> list[Tensor]:
        """The reverse-mode rule: dp = (df/dp)^T u, with u = g + (df/dx)^T u iterated from
        u = 0 (one loop of vjps at the solution): the transpose of `tangent`."""

        def step(u: Tensor) -> Tensor:
            inside, at_inside = self._inside(x, params)
            return g + vjp(at_inside, [inside], u)[0]

        u = _iterate(step, zeros_like(g), self.adjoint_iterations, self.tol)
        y, copies = _at_solution(self.f, x, params)
        return vjp(y, copies, u, allow_unused=True)

    def _inside(self, x: Tensor, params: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """In a loop body being traced: the solution as the body's own input, and f there (each
        trip evaluates f at the solution again, the point its jvp or vjp linearizes at)."""
        inside = open_body().capture(x)
        return inside, self.f(inside, *params)

    def __repr__(self) -> str:
        return f"fixed_point({_name(self.f)})"


class _NewtonRule:
    def __init__(self, f: Residual, iterations: int, tol: float) -> None:
        self.f, self.iterations, self.tol = f, iterations, tol

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
        def step(x: Tensor) -> Tensor:
            return _checked(rule, x0, rule.step(x, stopped))

        return _iterate(step, gb.stop_gradient(x0), rule.iterations, rule.tol)

    return with_jvp_rule(rule, iterate, params)


def _iterate(step: Callable[[Tensor], Tensor], start: Tensor, trips: int, tol: float) -> Tensor:
    """x <- step(x) from `start`, at most `trips` times, until a step changes no element by more
    than `tol`: one `while_loop` node whatever `trips`. The state carries that change, so each
    trip evaluates `step` once."""

    def body(state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x, _ = state
        new = step(x)
        return new, gb.max(gb.abs(new - x))

    never = gb.constant(np.array(np.inf, start.dtype), graph=start.graph)
    x, _ = gb.while_loop(lambda state: state[1] > tol, body, (start, never), max_trips=trips)
    return x


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


def _tolerance(tol: float, solver: str) -> float:
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise GradientError(
            f"{solver}: tol must be a float >= 0 (the largest change a converged step makes), got {tol!r}"
        )
    return float(tol)


def _name(f: Callable) -> str:
    return getattr(f, "__name__", type(f).__name__)
