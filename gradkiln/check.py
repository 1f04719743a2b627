"""`check_grad`: gradkiln's gradients of a user's function against central finite differences."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from .graph import GradientError, Graph, Tensor
from .graph import builder as gb
from .graph.dtypes import is_float
from .lowering import compile as compile_graph
from .symbolic.reverse import grad
from .testing import numeric_grads


@dataclass(frozen=True)
class InputCheck:
    """The comparison for one input: where the analytic gradient is furthest from the numeric one."""

    name: str
    shape: tuple[int, ...]
    passed: bool
    worst_index: tuple[int, ...]
    analytic: float
    numeric: float
    max_abs_error: float

    def __str__(self) -> str:
        verdict = "ok    " if self.passed else "FAILED"
        where = f"[{','.join(map(str, self.worst_index))}]"
        return (
            f"{self.name} {list(self.shape)}: {verdict} worst at {where}: analytic {self.analytic:.9g}, "
            f"numeric {self.numeric:.9g}, |error| {self.max_abs_error:.2e}"
        )


@dataclass(frozen=True)
class GradCheckReport:
    """What `check_grad` found; `str(report)` is a readable summary, `report.ok` the verdict."""

    inputs: tuple[InputCheck, ...]
    eps: float
    rtol: float
    atol: float

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.inputs)

    def __str__(self) -> str:
        head = (
            f"check_grad: {'ok' if self.ok else 'FAILED'} (central differences, eps={self.eps:g}; "
            f"passes where |analytic - numeric| <= {self.atol:g} + {self.rtol:g} * |numeric|)"
        )
        return "\n".join([head, *(f"  {c}" for c in self.inputs)])


def check_grad(
    fn_or_output: Callable[..., Tensor] | Tensor,
    inputs: Mapping[str, np.ndarray],
    wrt: Sequence[str] | None = None,
    *,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    raise_on_failure: bool = True,
) -> GradCheckReport:
    """Compare gradkiln's gradient with central finite differences, input by input.

    `fn_or_output` is a function of Tensors named like the keys of `inputs` (it is traced with
    float64 inputs), or an output Tensor of an existing graph whose inputs and params `inputs`
    feeds (checked on a copy of its graph; build it in float64 for tight tolerances). A
    non-scalar output is contracted with a fixed random seed, so a vector-Jacobian product is
    checked. `wrt` defaults to every float input. Raises a GradientError carrying the report
    when some element fails, unless `raise_on_failure` is False.
    """
    feeds = {k: np.asarray(v) for k, v in inputs.items()}
    graph, out = _traced(fn_or_output, feeds)
    names = [k for k, v in feeds.items() if is_float(v.dtype.name)] if wrt is None else list(wrt)
    forward = compile_graph(graph, out)
    out_shape = np.shape(forward(**feeds))
    seed = np.random.default_rng(0).normal(size=out_shape) if out_shape else np.ones(())
    with graph:
        seed_input = gb.input("check_grad_seed", out.shape, out.dtype)
    grads = grad(out, [Tensor(graph, graph.by_name(k).outputs[0]) for k in names], seed=seed_input)
    analytic = compile_graph(graph, grads)(**feeds, check_grad_seed=seed.astype(out.dtype))
    numeric = numeric_grads(forward, feeds, names, seed, eps=eps)
    report = GradCheckReport(
        tuple(_compare(k, a, numeric[k], rtol, atol) for k, a in zip(names, analytic)), eps, rtol, atol
    )
    if raise_on_failure and not report.ok:
        raise GradientError(str(report))
    return report


def _traced(fn_or_output: Callable[..., Tensor] | Tensor, feeds: dict[str, np.ndarray]) -> tuple[Graph, Tensor]:
    """The graph to check (a fresh float64 trace, or a copy of the output's graph) and its output."""
    if isinstance(fn_or_output, Tensor):
        copy = fn_or_output.graph.copy()
        return copy, Tensor(copy, fn_or_output.value)
    for k, v in feeds.items():
        if is_float(v.dtype.name):
            feeds[k] = v.astype(np.float64)
    with Graph("check_grad") as graph:
        out = fn_or_output(**{k: gb.input(k, v.shape, v.dtype.name) for k, v in feeds.items()})
    if not isinstance(out, Tensor):
        raise GradientError(f"check_grad: the function must return one Tensor, got {type(out).__name__}")
    return graph, out


def _compare(name: str, analytic: np.ndarray, numeric: np.ndarray, rtol: float, atol: float) -> InputCheck:
    error = np.abs(analytic - numeric)
    excess = error - (atol + rtol * np.abs(numeric))
    worst = np.unravel_index(np.argmax(excess), excess.shape) if excess.size else ()
    worst = tuple(int(i) for i in worst)
    return InputCheck(
        name=name,
        shape=tuple(analytic.shape),
        passed=bool(np.all(excess <= 0)),
        worst_index=worst,
        analytic=float(analytic[worst]) if excess.size else 0.0,
        numeric=float(numeric[worst]) if excess.size else 0.0,
        max_abs_error=float(error.max(initial=0.0)),
    )
