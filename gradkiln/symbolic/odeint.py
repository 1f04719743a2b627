"""Ordinary differential equations: `odeint(f, y0, t, params)` solves y' = f(y, t, *params) and
returns y at every time in `t`, with two ways to differentiate the solution.

The solver is graph nodes like any other: one `scan` (fixed-step "rk4") or one bounded
`while_loop` (adaptive "dopri5", Dormand-Prince 5(4) with error control) per interval of `t`,
so the graph grows with len(t) but not with the number of steps. Both methods share one
explicit Runge-Kutta step driven by a Butcher tableau (data, below).

- `adjoint=False`: reverse mode walks through the solver (backprop through the scans), which
  keeps every step's state for the backward pass: memory grows with the step count.
- `adjoint=True`: the solution is the output of a `custom_vjp` node whose backward pass is the
  adjoint method of Chen et al. (2018), as in JAX's `odeint`: from the last time back to the
  first, it integrates the augmented system [y, a, a_t, a_params] backward over each interval
  (y recomputed backward from the saved output, a' = -a df/dy, a_params' = -a df/dparams),
  then adds the output's own cotangent at that time. Only the outputs are kept: memory does
  not depend on the step count. The vjp of f is traced once into a `Body` and inlined at each
  stage, so it treats y, t and the parameters as independent leaves.

Tensors that `f` reads by closure (a network's weights) are found by tracing `f` once and get
gradients with `adjoint=True` too, as extra operands of the `custom_vjp` node. An interval
that dopri5 does not finish within `max_steps` attempts, or a `t` that is not increasing at
run time, gives NaN: never a silently wrong number.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import numpy as np

from ..graph import GraphError, ShapeError, Tensor
from ..graph import builder as gb
from ..graph.body import Body
from ..graph.builder.control import body_outputs, inline, trace_body
from ..graph.dtypes import is_float
from ..graph.types import TensorType, same_type
from .custom import custom_vjp
from .reverse import vjp

Dynamics = Callable[..., Tensor]
State = list[Tensor]
Field = Callable[[State, Tensor], State]


@dataclass(frozen=True)
class Tableau:
    """An explicit Runge-Kutta method: stage times `c`, stage weights `a` (row i weighs the
    stages before stage i), solution weights `b`, and `error` = b - b_hat of an embedded
    lower-order solution (empty for a method without error control)."""

    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    error: tuple[float, ...] = ()


RK4 = Tableau(c=(0, 1 / 2, 1 / 2, 1), a=((), (1 / 2,), (0, 1 / 2), (0, 0, 1)), b=(1 / 6, 1 / 3, 1 / 3, 1 / 6))
_DOPRI5_B = (35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0)
_DOPRI5_B_HAT = (5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
DOPRI5 = Tableau(
    c=(0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1),
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        _DOPRI5_B[:6],
    ),
    b=_DOPRI5_B,
    error=tuple(b - b_hat for b, b_hat in zip(_DOPRI5_B, _DOPRI5_B_HAT)),
)


@dataclass(frozen=True)
class Options:
    """How to integrate: `method` "rk4" takes `steps` equal steps per interval; "dopri5" adapts
    its steps to `rtol` and `atol`, at most `max_steps` attempts per interval."""

    method: str
    steps: int
    rtol: float
    atol: float
    max_steps: int


def odeint(
    f: Dynamics,
    y0: Tensor,
    t: Tensor | np.ndarray | Sequence[float],
    params: Sequence[Tensor] = (),
    *,
    method: str = "rk4",
    adjoint: bool = False,
    steps: int = 10,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    max_steps: int = 100,
) -> Tensor:
    """The solution of y' = f(y, t, *params), y(t[0]) = y0, at every time of `t`: a Tensor of
    shape (len(t), *y0.shape), row 0 being y0 (JAX's `odeint`; torchdiffeq's `odeint` and
    `odeint_adjoint`).

    `t` is a 1-D float Tensor (or array) of strictly increasing times, len(t) >= 2; `y0` and
    `params` are float Tensors, and `f(y, t, *params)` returns a Tensor of y's type (tensors it
    reads by closure are parameters too). `method="rk4"` takes `steps` steps per interval of
    `t`; `"dopri5"` chooses its steps to meet `rtol` and `atol`, with at most `max_steps`
    attempts per interval (NaN if that is not enough). `adjoint=True` differentiates by the
    adjoint method (memory independent of the step count), else by reverse mode through the
    solver's steps.
    """
    options = _options(method, steps, rtol, atol, max_steps)
    y0, t, params = _operands(y0, t, params)
    if adjoint:
        traced, captured = _trace_vjp(f, y0, t, params)
        solve = _Solver(f, options, len(params), traced, captured)
        operands = [*params, *(c for c in captured if is_float(c.dtype))]
        ys = custom_vjp(solve.forward).defvjp(solve.forward_with_residuals, solve.backward)(y0, t, *operands)
    else:
        ys = _Solver(f, options, len(params)).forward(y0, t, *params)
    return ys if _known_times(t) is not None else gb.where(gb.min(t[1:] - t[:-1]) > 0, ys, np.nan)


class _Solver:
    """The forward solve and the adjoint backward pass of one `odeint` call; the operands after
    (y0, t) are the parameters, then (in the backward pass) the float tensors `f` reads by
    closure; `traced` is f and its vjp as a body over (y, t, a, *params, *captured), which only
    the backward pass needs."""

    def __init__(
        self,
        f: Dynamics,
        options: Options,
        num_params: int,
        traced: Body | None = None,
        captured: Sequence[Tensor] = (),
    ) -> None:
        self.f, self.options, self.num_params = f, options, num_params
        self.traced, self.captured = traced, captured
        self.integrate = _rk4_interval if options.method == "rk4" else _dopri5_interval

    def forward(self, y0: Tensor, t: Tensor, *operands: Tensor) -> Tensor:
        params = operands[: self.num_params]
        ys = [y0]
        for i in range(t.shape[0] - 1):
            (y,) = self.integrate(self._field(params), [ys[-1]], t[i], t[i + 1], self.options)
            ys.append(y)
        return gb.stack(ys)

    def _field(self, params: Sequence[Tensor]) -> Field:
        return lambda state, tau: [_checked(self.f, self.f(state[0], tau, *params), state[0])]

    def forward_with_residuals(self, y0: Tensor, t: Tensor, *operands: Tensor) -> tuple[Tensor, list[Tensor]]:
        ys = self.forward(y0, t, *operands)
        return ys, [ys, t, *operands]

    def backward(self, residuals: tuple[Tensor, ...], g: Tensor) -> list[Tensor]:
        """The adjoint pass, interval by interval from the last: the cotangents of y0, t and
        each operand."""
        ys, t, *operands = residuals
        params = operands[: self.num_params]
        y_bar, t0_bar, op_bars = g[t.shape[0] - 1], gb.zeros_like(t[0]), [gb.zeros_like(p) for p in operands]
        t_bars = []
        for i in range(t.shape[0] - 1, 0, -1):
            t_bar = gb.sum(g[i] * self.f(ys[i], t[i], *params))  # moving t[i] moves the output
            t_bars.append(t_bar)
            state = [ys[i], y_bar, t0_bar - t_bar, *op_bars]
            _, y_bar, t0_bar, *op_bars = self.integrate(self._augmented(params), state, -t[i], -t[i - 1], self.options)
            y_bar = y_bar + g[i - 1]
        return [y_bar, gb.stack([t0_bar, *reversed(t_bars)]), *op_bars]

    def _augmented(self, params: Sequence[Tensor]) -> Field:
        """The augmented system in reversed time s = -t: d[y, a, a_t, a_ops]/ds =
        [-f, a df/dy, a df/dt, a df/dops] (Chen et al. 2018, appendix B)."""

        def field(state: State, s: Tensor) -> State:
            dy, *cotangents = inline(self.traced, [state[0], -s, state[1], *params, *self.captured])
            return [-dy, *cotangents]

        return field


def _trace_vjp(f: Dynamics, y0: Tensor, t: Tensor, params: Sequence[Tensor]) -> tuple[Body, list[Tensor]]:
    """f and its vjp traced once into a body over (y, t, a, *params, *closure tensors), returning
    (f, a df/dy, a df/dt, a df/dparams..., a df/dclosure... for the float ones); and the tensors
    of the enclosing graph that f reads by closure."""

    def f_and_vjp(y: Tensor, time: Tensor, a: Tensor, *ps: Tensor) -> list[Tensor]:
        dy = _checked(f, f(y, time, *ps), y)
        body = y.graph
        closure = [body.capture(c) for c in body.captured_tensors() if is_float(c.dtype)]
        return [dy, *vjp(dy, [y, time, *ps, *closure], [a], allow_unused=True)]

    scalar_t = SimpleNamespace(type=TensorType(t.dtype, ()))
    body, result, inputs = trace_body(f_and_vjp, [y0, scalar_t, y0, *params], "odeint_vjp")
    outputs = body_outputs(body, result)
    made = Body.make(body, [x.value for x in inputs] + body.captured_inputs(), [o.value for o in outputs])
    return made, body.captured_tensors()


def _rk4_interval(field: Field, state: State, t0: Tensor, t1: Tensor, options: Options) -> State:
    """`options.steps` classical Runge-Kutta steps from t0 to t1, as one scan."""
    h = (t1 - t0) / options.steps
    counts = gb.constant(np.arange(options.steps, dtype=t0.dtype), graph=t0.graph)
    final, _ = gb.scan(lambda s, k: (_rk_step(field, RK4, s, t0 + k * h, h)[0], None), list(state), counts)
    return final


def _dopri5_interval(field: Field, state: State, t0: Tensor, t1: Tensor, options: Options) -> State:
    """Adaptive Dormand-Prince steps from t0 to t1, at most `options.max_steps` attempts (a
    bounded while_loop): a step is kept where the error ratio is <= 1, and the next step size is
    the usual 0.9 * ratio**-1/5, clipped to [0.2, 10] times the last. The step sizes are chosen
    under stop_gradient, so reverse mode differentiates the steps taken, not the choice. NaN
    where t1 is not reached."""

    def body(carry: tuple[Tensor, Tensor, State]) -> tuple[Tensor, Tensor, State]:
        tau, h, s = carry
        last = h >= t1 - tau
        h = gb.minimum(h, t1 - tau)
        new, error = _rk_step(field, DOPRI5, s, tau, h)
        ratio = gb.stop_gradient(_error_ratio(error, s, new, options))
        accept = ratio <= 1.0
        tau = gb.where(accept, gb.where(last, t1, tau + h), tau)  # land on t1 exactly
        kept = [gb.where(accept, n, old) for n, old in zip(new, s)]
        factor = gb.minimum(gb.maximum(0.9 * gb.maximum(ratio, 1e-10) ** -0.2, 0.2), 10.0)
        return tau, gb.stop_gradient(h * factor), kept

    h0 = gb.stop_gradient(_initial_step(field, state, t0, options))
    tau, _, final = gb.while_loop(lambda c: c[0] < t1, body, (t0, h0, list(state)), options.max_steps)
    return [gb.where(tau >= t1, s, np.nan) for s in final]


def _rk_step(field: Field, tableau: Tableau, state: State, tau: Tensor, h: Tensor) -> tuple[State, State]:
    """One explicit Runge-Kutta step of size h from (state, tau): the new state and the
    embedded error estimate (empty without one)."""
    stages: list[State] = []
    for c, row in zip(tableau.c, tableau.a):
        stages.append(field(_combine(state, h, row, stages), tau + c * h if c else tau))
    new = _combine(state, h, tableau.b, stages)
    error = _combine([gb.zeros_like(s) for s in state], h, tableau.error, stages) if tableau.error else []
    return new, error


def _combine(state: State, h: Tensor, weights: Sequence[float], stages: Sequence[State]) -> State:
    """state + h * sum_j weights[j] * stages[j], leaf by leaf (zero weights skipped)."""
    terms = [(w, k) for w, k in zip(weights, stages) if w]
    if not terms:
        return list(state)
    out = []
    for i, s in enumerate(state):
        total = terms[0][0] * terms[0][1][i]
        for w, k in terms[1:]:
            total = total + w * k[i]
        out.append(s + h * total)
    return out


def _rms_scaled(values: State, scales: State) -> Tensor:
    """The largest root mean square of values / scales over the leaves (torchdiffeq's mixed
    norm: each leaf, a parameter cotangent say, is judged on its own scale)."""
    norms = [gb.sqrt(gb.mean(gb.square(v / s))) for v, s in zip(values, scales)]
    out = norms[0]
    for n in norms[1:]:
        out = gb.maximum(out, n)
    return out


def _error_ratio(error: State, old: State, new: State, options: Options) -> Tensor:
    scales = [options.atol + options.rtol * gb.maximum(gb.abs(a), gb.abs(b)) for a, b in zip(old, new)]
    return _rms_scaled(error, scales)


def _initial_step(field: Field, state: State, t0: Tensor, options: Options) -> Tensor:
    """The first step size (Hairer, Norsett and Wanner's heuristic, as JAX and scipy start):
    small enough that an Euler step changes y by about 1% of its scale and f by a little."""
    scales = [options.atol + options.rtol * gb.abs(s) for s in state]
    f0 = field(state, t0)
    d0, d1 = _rms_scaled(state, scales), _rms_scaled(f0, scales)
    h0 = gb.where(gb.minimum(d0, d1) < 1e-5, 1e-6, 0.01 * d0 / gb.maximum(d1, 1e-30))
    f1 = field([s + h0 * k for s, k in zip(state, f0)], t0 + h0)
    d2 = _rms_scaled([b - a for a, b in zip(f0, f1)], scales) / h0
    largest = gb.maximum(d1, d2)
    h1 = gb.where(largest <= 1e-15, gb.maximum(h0 * 1e-3, 1e-6), (0.01 / gb.maximum(largest, 1e-30)) ** 0.2)
    return gb.minimum(100.0 * h0, h1)


def _options(method: str, steps: int, rtol: float, atol: float, max_steps: int) -> Options:
    if method not in ("rk4", "dopri5"):
        raise GraphError(f"odeint: unknown method {method!r}; use 'rk4' (fixed steps) or 'dopri5' (adaptive)")
    for name, n in (("steps", steps), ("max_steps", max_steps)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise GraphError(f"odeint: {name} must be a positive int, got {n!r}")
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not isinstance(tol, (int, float)) or not tol >= 0:
            raise GraphError(f"odeint: {name} must be a number >= 0, got {tol!r}")
    if rtol == 0 and atol == 0:
        raise GraphError("odeint: rtol and atol are both 0; give one of them a positive value")
    return Options(method, steps, float(rtol), float(atol), max_steps)


def _operands(y0: Any, t: Any, params: Sequence[Any]) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """y0, t (as a Tensor of y0's dtype) and params, checked."""
    if not isinstance(y0, Tensor) or not is_float(y0.dtype):
        got = y0.type if isinstance(y0, Tensor) else type(y0).__name__
        raise GraphError(f"odeint: y0 is a {got}; it must be a float Tensor")
    params = tuple(params)
    for i, p in enumerate(params):
        if not isinstance(p, Tensor) or not is_float(p.dtype):
            got = p.type if isinstance(p, Tensor) else type(p).__name__
            raise GraphError(f"odeint: params[{i}] is a {got}; params must be float Tensors (other values by closure)")
    if not isinstance(t, Tensor):
        t = gb.constant(np.asarray(t, dtype=y0.dtype), graph=y0.graph)
    if t.ndim != 1 or not isinstance(t.shape[0], int) or t.shape[0] < 2:
        raise ShapeError(f"odeint: t has type {t.type}; it must be 1-D with a static length >= 2 (the output times)")
    if not is_float(t.dtype):
        raise GraphError(f"odeint: t is {t.type}; it must be a float Tensor")
    values = _known_times(t)
    if values is not None and not np.all(np.diff(values) > 0):
        raise GraphError(f"odeint: t must be strictly increasing, got {values.tolist()}")
    return y0, gb.cast(t, y0.dtype), params


def _known_times(t: Tensor) -> np.ndarray | None:
    """The values of `t` when they are known while building (a constant, maybe cast)."""
    node = t.graph.node(t.value.node)
    while node.op == "cast":
        node = t.graph.node(node.inputs[0].node)
    return np.asarray(node.attrs["value"]) if node.op == "constant" else None


def _checked(f: Dynamics, dy: Any, y: Tensor) -> Tensor:
    if not isinstance(dy, Tensor) or not same_type(dy.type, y.type):
        got = dy.type if isinstance(dy, Tensor) else type(dy).__name__
        raise ShapeError(f"odeint: f ({_name(f)}) returned {got} for y of type {y.type}; it must return y's type")
    return dy


def _name(f: Callable) -> str:
    return getattr(f, "__name__", type(f).__name__)
