"""Differentiable quadratic programs: `qp`, a batched QP layer (OptNet, Amos & Kolter 2017).

For each batch element, `qp(Q, p, G, h, A, b)` solves

    minimize 1/2 z^T Q z + p^T z   subject to   A z = b,  G z <= h

with Q positive definite (its symmetric part is used), by a primal-dual interior point method:
Mehrotra's predictor-corrector on the KKT conditions with slacks s = h - G z >= 0 and
multipliers lam >= 0, y, from the CVXOPT starting point, for a fixed number of iterations (one
`gk.scan` step each, so the graph has one copy of the step however many run). A batch element
keeps its iterate once its duality measure mu = s.lam / m is below `tol` times its value at the
start (1e-13 in float64): that leaves the solution and its gradient accurate to about 1e-10
relative, and stops before the KKT matrix turns singular in floating point where the active
constraints are dependent (a constraint given twice, or a vertex with more active constraints
than variables: their rows then differ only by ratios s_i / lam_i near the rounding error; a
float64 `tol` of 1e-16 already fails on such a vertex). Without inequality constraints the
problem is one linear solve.

Each Newton step solves one KKT system in (dz, dlam, dy), with ds eliminated:

    [[ Q,            G^T,   A^T ],   [dz  ]     [ -r_d              ]
     [ -diag(lam) G, diag(s), 0  ], . [dlam]  =  [ lam * r_p - r_c   ]
     [ A,            0,      0  ]]   [dy  ]     [ -r_e              ]

(r_d = Qz + p + G^T lam + A^T y, r_p = Gz + s - h, r_c = s * lam - sigma mu, r_e = Az - b). Its
entries stay bounded as s or lam go to 0 at the solution, and the solve pivots, so it stays
well conditioned where strict complementarity and independent active constraints hold.

Derivatives come from the KKT conditions at the solution, not from the iterations: the solver's
output x = (z, s, lam, y) is one `custom_jvp` node (`with_jvp_rule`, as `fixed_point` uses)
whose tangent is the same Newton system at x, its right side the differentials of the
residuals with respect to (Q, p, G, h, A, b) and r_c = 0: the implicit function theorem.
Reverse mode transposes that rule, so a gradient costs one transposed KKT solve and gives
OptNet's formulas (dL/dp = d_z, dL/dh = -lam * d_lam, ...); forward mode, vmap and second
derivatives (the rule reads x, whose own tangent is this rule) work as well.

What cannot be checked when the graph is built: a Q that is not positive definite, an
infeasible problem, dependent rows of A. A batch element whose last iterate is not a solution
(KKT residuals above CONVERGED[dtype] relative to the data, or mu not reduced that far) comes out
NaN, as does its gradient, rather than a plausible wrong z; so does one that needed more than
`iterations` steps. Where a KKT matrix is exactly singular on the way (an indefinite or singular
Q with a direction the constraints do not bound), the numpy executor raises `LoweringError`
("Singular matrix") and compiled targets give NaN. `gk.detect_anomaly` names the first NaN. At a
degenerate solution (an active constraint with a zero multiplier) the derivative is not defined
and the gradient is that of the last iterate; a feasible set without interior (a single point)
leaves the KKT matrix singular there.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..graph import DTypeError, GradientError, GraphError, ShapeError, Tensor
from ..graph import builder as gb
from ..graph.builder.linalg import matrix_transpose
from ..graph.types import Dim, dims_equal
from .custom_jvp import with_jvp_rule

STEP_FRACTION = 0.99  # of the way to the boundary s, lam >= 0 that a step goes at most
DEFAULT_TOL = {"float64": 1e-13, "float32": 1e-10}  # mu / mu at the start, where an element stops
CONVERGED = {"float64": 1e-6, "float32": 1e-3}  # relative KKT residuals that count as a solution


class Problem(NamedTuple):
    """The data of a batch of QPs, every part with a leading batch axis; G, h, A, b may be None."""

    Q: Tensor
    p: Tensor
    G: Tensor | None
    h: Tensor | None
    A: Tensor | None
    b: Tensor | None


def qp(
    Q: Any,  # noqa: N803 - OptNet's and qpth's names
    p: Any,
    G: Any = None,  # noqa: N803
    h: Any = None,
    A: Any = None,  # noqa: N803
    b: Any = None,
    iterations: int = 20,
    tol: float | None = None,
) -> Tensor:
    """The minimizer z of 1/2 z^T Q z + p^T z subject to A z = b and G z <= h, per batch element.

    Q (n, n), p (n,), G (m, n), h (m,), A (e, n), b (e,): each either shared or with a leading
    batch dim (one common size, possibly symbolic); z is (batch, n) if any input is batched, else
    (n,). G, h and A, b come in pairs and may be left out; n, m, e are static. Float32 or float64,
    Tensors or arrays. `iterations` interior point steps run (20 reach float64 accuracy on
    well-scaled problems); a batch element stops changing once its duality measure is below
    `tol` times its starting value (default 1e-13 for float64, 1e-10 for float32; see the module
    docstring). A batch element that did not converge (infeasible, Q not positive definite, too
    few iterations) is NaN. Gradients with respect to every input come from the KKT conditions at
    the solution.
    """
    problem, batched = _problem(Q, p, G, h, A, b)
    layout = _Layout(problem)
    steps, tolerance = _settings(iterations, tol, problem.Q.dtype)
    present = [t for t in problem if t is not None]
    x = with_jvp_rule(_KKTRule(layout), lambda *data: _solve(layout.problem(data), layout, steps, tolerance), present)
    z = x[..., : layout.n]
    return z if batched else gb.squeeze(z, 0)


class _Layout:
    """Where (z, s, lam, y) sit in the solver's output and which data parts are present."""

    def __init__(self, problem: Problem) -> None:
        self.present = [t is not None for t in problem]
        self.n = problem.Q.shape[-1]
        self.m = 0 if problem.G is None else problem.G.shape[-2]
        self.e = 0 if problem.A is None else problem.A.shape[-2]

    def problem(self, tensors: tuple[Tensor, ...]) -> Problem:
        parts = iter(tensors)
        return Problem(*(next(parts) if here else None for here in self.present))

    def split(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
        n, m, e = self.n, self.m, self.e
        s, lam = (x[..., n : n + m], x[..., n + m : n + 2 * m]) if m else (None, None)
        return x[..., :n], s, lam, x[..., n + 2 * m :] if e else None


def _join(*parts: Tensor | None) -> Tensor:
    present = [t for t in parts if t is not None]
    return gb.concat(present, -1) if len(present) > 1 else present[0]


class _KKTRule:
    """The tangent of x = (z, s, lam, y): the Newton system at x with the residuals' differentials."""

    def __init__(self, layout: _Layout) -> None:
        self.layout = layout

    def tangent(self, primals: tuple[Tensor, ...], x: Tensor, tangents: tuple[Tensor, ...]) -> Tensor:
        system = _KKTSystem(_symmetric(self.layout.problem(primals)))
        z, s, lam, y = self.layout.split(x)
        r_d, r_p, r_e = _residuals(_symmetric(self.layout.problem(tangents)), z, lam, y)
        return _join(*system.newton(system.matrix(s, lam), lam, r_d, r_p, None, r_e))

    def __repr__(self) -> str:
        return "qp"


# -- the KKT system --------------------------------------------------------------------------------
def _mv(a: Tensor, v: Tensor) -> Tensor:
    return gb.einsum("...ij,...j->...i", a, v)


def _mtv(a: Tensor, v: Tensor) -> Tensor:
    return gb.einsum("...ji,...j->...i", a, v)


def _symmetric(data: Problem) -> Problem:
    """The data with Q replaced by its symmetric part, the matrix of the objective z^T Q z."""
    return data._replace(Q=0.5 * (data.Q + matrix_transpose(data.Q)))


def _residuals(
    data: Problem, z: Tensor, lam: Tensor | None, y: Tensor | None
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """(Qz + p + G^T lam + A^T y, Gz - h, Az - b): linear in the data, so the same function gives
    the Newton step's residuals (at the problem) and their differentials (at its tangents)."""
    r_d = _mv(data.Q, z) + data.p
    r_p = r_e = None
    if data.G is not None:
        r_d, r_p = r_d + _mtv(data.G, lam), _mv(data.G, z) - data.h
    if data.A is not None:
        r_d, r_e = r_d + _mtv(data.A, y), _mv(data.A, z) - data.b
    return r_d, r_p, r_e


class _KKTSystem:
    """The Newton system of the module docstring for one problem (Q symmetric). The block rows
    that do not change, [Q, G^T, A^T] and [A, 0, 0], are built once, outside the iteration; only
    the rows of G read (s, lam)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        q, g, a = problem.Q, problem.G, problem.A
        self.n, self.m, self.e = q.shape[-1], 0 if g is None else g.shape[-2], 0 if a is None else a.shape[-2]
        self.top = _join(q, None if g is None else matrix_transpose(g), None if a is None else matrix_transpose(a))
        self.bottom = None if a is None else _join(a, self._zeros(self.e, self.m), self._zeros(self.e, self.e))
        self.eye = gb.constant(np.eye(self.m, dtype=q.dtype), graph=q.graph) if self.m else None

    def _zeros(self, rows: int, cols: int) -> Tensor | None:
        q = self.problem.Q
        if not rows * cols:
            return None
        return gb.broadcast_to(gb.constant(np.zeros((), q.dtype), graph=q.graph), (*q.shape[:-2], rows, cols))

    def matrix(self, s: Tensor | None, lam: Tensor | None) -> Tensor:
        """The (batch, n + m + e) square KKT matrix at (s, lam)."""
        middle = None
        if self.m:
            scaled = -gb.expand_dims(lam, -1) * self.problem.G
            middle = _join(scaled, gb.expand_dims(s, -1) * self.eye, self._zeros(self.m, self.e))
        rows = [r for r in (self.top, middle, self.bottom) if r is not None]
        return gb.concat(rows, -2) if len(rows) > 1 else rows[0]

    def newton(
        self,
        kkt: Tensor,
        lam: Tensor | None,
        r_d: Tensor,
        r_p: Tensor | None,
        r_c: Tensor | None,
        r_e: Tensor | None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
        """(dz, ds, dlam, dy) from one solve with `kkt`; ds = -r_p - G dz. r_c None is 0."""
        middle = None
        if self.m:
            middle = lam * r_p if r_c is None else lam * r_p - r_c
        rhs = _join(-r_d, middle, None if r_e is None else -r_e)
        d = gb.squeeze(gb.solve(kkt, gb.expand_dims(rhs, -1)), -1)
        n, m = self.n, self.m
        dz, dy = d[..., :n], d[..., n + m :] if self.e else None
        if not m:
            return dz, None, None, dy
        return dz, -r_p - _mv(self.problem.G, dz), d[..., n : n + m], dy


# -- the interior point iteration ------------------------------------------------------------------
def _solve(problem: Problem, layout: _Layout, iterations: int, tol: float) -> Tensor:
    """x = (z, s, lam, y) at the solution: one solve without inequalities, else the iteration."""
    system = _KKTSystem(_symmetric(problem))
    r_d, r_p, r_e = problem.p, None if problem.h is None else -problem.h, None if problem.b is None else -problem.b
    if problem.G is None:
        dz, _, _, dy = system.newton(system.matrix(None, None), None, r_d, None, None, r_e)
        return _join(dz, dy)
    ones = gb.ones_like(problem.h)
    dz, ds, dlam, dy = system.newton(system.matrix(ones, ones), ones, r_d, r_p, None, r_e)
    s, lam = _at_least_one(ds), _at_least_one(dlam)
    mu_start = gb.mean(s * lam, -1, keepdims=True)
    stop = tol * mu_start

    def step(x: Tensor, _: None) -> tuple[Tensor, None]:
        return _mehrotra_step(system, layout, x, stop), None

    final, _ = gb.scan(step, _join(dz, s, lam, dy), length=iterations)
    return _nan_unless_converged(system, layout, final, mu_start)


def _nan_unless_converged(system: _KKTSystem, layout: _Layout, x: Tensor, mu_start: Tensor) -> Tensor:
    """x where the iteration converged, NaN where it did not (an infeasible problem, a Q that is
    not positive definite, too few iterations): the KKT residuals, relative to 1 + the largest
    |p|, |h|, |b|, and mu, relative to its start, must be below CONVERGED[dtype]."""
    problem = system.problem
    z, s, lam, y = layout.split(x)
    r_d, r_p, r_e = _residuals(problem, z, lam, y)
    residuals = [gb.abs(r) for r in (r_d, r_p + s, r_e) if r is not None]
    data = [gb.abs(t) for t in (problem.p, problem.h, problem.b) if t is not None]
    scale = 1.0 + gb.max(gb.concat(data, -1), -1, keepdims=True)
    error = gb.maximum(
        gb.max(gb.concat(residuals, -1), -1, keepdims=True) / scale, gb.mean(s * lam, -1, keepdims=True) / mu_start
    )
    return gb.where(error <= CONVERGED[x.dtype], x, np.nan)


def _at_least_one(v: Tensor) -> Tensor:
    """v shifted up so that its smallest element is at least 1 (a strictly positive start)."""
    return v + gb.relu(1.0 - gb.min(v, -1, keepdims=True))


def _mehrotra_step(system: _KKTSystem, layout: _Layout, x: Tensor, stop: Tensor) -> Tensor:
    """One predictor-corrector step; a batch element whose mu is at most `stop` keeps its iterate."""
    z, s, lam, y = layout.split(x)
    r_d, r_p, r_e = _residuals(system.problem, z, lam, y)
    r_p = r_p + s
    kkt = system.matrix(s, lam)
    mu = gb.mean(s * lam, -1, keepdims=True)
    _, ds, dlam, _ = system.newton(kkt, lam, r_d, r_p, s * lam, r_e)
    alpha = _step_to_boundary(s, ds, lam, dlam, 1.0)
    mu_affine = gb.mean((s + alpha * ds) * (lam + alpha * dlam), -1, keepdims=True)
    positive = mu > 0.0
    sigma = gb.where(positive, gb.clip((mu_affine / gb.where(positive, mu, 1.0)) ** 3, 0.0, 1.0), 0.0)
    r_c = s * lam + ds * dlam - sigma * mu
    step = system.newton(kkt, lam, r_d, r_p, r_c, r_e)
    alpha = STEP_FRACTION * _step_to_boundary(s, step[1], lam, step[2], 1.0 / STEP_FRACTION)
    return gb.where(mu <= stop, x, x + alpha * _join(*step))


def _step_to_boundary(s: Tensor, ds: Tensor, lam: Tensor, dlam: Tensor, limit: float) -> Tensor:
    """The largest alpha <= limit with s + alpha ds >= 0 and lam + alpha dlam >= 0, per batch row."""
    v, dv = gb.concat([s, lam], -1), gb.concat([ds, dlam], -1)
    falling = dv < 0.0
    ratio = gb.where(falling, v / gb.where(falling, -dv, 1.0), limit)
    return gb.min(gb.concat([ratio, gb.full_like(ratio[..., :1], limit)], -1), -1, keepdims=True)


# -- arguments ---------------------------------------------------------------------------------------
_NAMES = ("Q", "p", "G", "h", "A", "b")
_RANKS = (2, 1, 2, 1, 2, 1)


def _problem(*data: Any) -> tuple[Problem, bool]:
    """The data as Tensors of one graph and dtype, checked, each with the common batch axis."""
    tensors = _as_tensors(data)
    for (first, second), present in (((2, 3), tensors[2:4]), ((4, 5), tensors[4:6])):
        if (present[0] is None) != (present[1] is None):
            missing = _NAMES[first] if present[0] is None else _NAMES[second]
            raise ShapeError(f"qp: {_NAMES[first]} and {_NAMES[second]} come together; {missing} is missing")
    batch = _batch_dim(tensors)
    n, m, e = _sizes(tensors)
    expected = [(n, n), (n,), (m, n), (m,), (e, n), (e,)]
    for name, t, shape in zip(_NAMES, tensors, expected):
        if t is not None and not all(dims_equal(d, w) for d, w in zip(t.shape[-len(shape) :], shape)):
            raise ShapeError(
                f"qp: {name} has shape {t.type}, expected {shape} (with n={n} variables, m={m} inequalities, "
                f"e={e} equalities), optionally after a batch dim"
            )
    if e > n:
        raise ShapeError(f"qp: {e} equality constraints on {n} variables; A must have at most n rows (full row rank)")
    size = 1 if batch is None else batch
    full = [None if t is None else _with_batch(t, base, size) for t, base in zip(tensors, _RANKS)]
    return Problem(*full), batch is not None


def _as_tensors(data: tuple[Any, ...]) -> list[Tensor | None]:
    graphs = {id(t.graph): t.graph for t in data if isinstance(t, Tensor)}
    if len(graphs) > 1:
        raise GraphError("qp: the inputs come from different graphs; build the layer in one graph")
    graph = next(iter(graphs.values()), None)
    tensors = [v if v is None or isinstance(v, Tensor) else gb.constant(np.asarray(v), graph=graph) for v in data]
    dtypes = {t.dtype for t in tensors if t is not None}
    if len(dtypes) > 1 or not dtypes <= set(DEFAULT_TOL):
        described = ", ".join(f"{n}: {t.dtype}" for n, t in zip(_NAMES, tensors) if t is not None)
        raise DTypeError(f"qp: the inputs must all be float32 or all float64, got {described}; cast them (gk.cast)")
    for name, t, rank in zip(_NAMES, tensors, _RANKS):
        if t is not None and t.ndim not in (rank, rank + 1):
            raise ShapeError(f"qp: {name} has shape {t.type}; it must have rank {rank}, or {rank + 1} with a batch dim")
    return tensors


def _batch_dim(tensors: list[Tensor | None]) -> Dim | None:
    dims = [(name, t.shape[0]) for name, t, rank in zip(_NAMES, tensors, _RANKS) if t is not None and t.ndim > rank]
    for name, dim in dims[1:]:
        if not dims_equal(dim, dims[0][1]):
            raise ShapeError(f"qp: batch dims differ: {dims[0][0]} has {dims[0][1]}, {name} has {dim}")
    return dims[0][1] if dims else None


def _sizes(tensors: list[Tensor | None]) -> tuple[int, int, int]:
    sizes = (tensors[0].shape[-1], 0 if tensors[2] is None else tensors[2].shape[-2])
    sizes += (0 if tensors[4] is None else tensors[4].shape[-2],)
    if not all(isinstance(d, int) for d in sizes):
        raise ShapeError(f"qp: n, m, e = {sizes} must be static (the KKT matrix is n + m + e square)")
    return sizes


def _with_batch(t: Tensor, rank: int, size: Dim) -> Tensor:
    return t if t.ndim > rank else gb.broadcast_to(t, (size, *t.shape))


def _settings(iterations: int, tol: float | None, dtype: str) -> tuple[int, float]:
    if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1:
        raise GradientError(f"qp: iterations must be a positive int, got {iterations!r}")
    tol = DEFAULT_TOL[dtype] if tol is None else tol
    if not isinstance(tol, (int, float)) or not tol >= 0:
        raise GradientError(f"qp: tol must be a non-negative number, got {tol!r}")
    return iterations, float(tol)
