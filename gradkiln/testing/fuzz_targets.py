"""A differential fuzzer of the compile targets: random sub-graphs of every op family, run at each
optimization level on numpy and llvm, compared with the numpy executor at O0 (the reference).

    cases = draw_cases(np.random.default_rng(0), 100)
    for mismatch in run_batch(cases, [Config("llvm", "O3")]).mismatches:
        print(minimize(mismatch).reproducer())

Many independent sub-graphs (`Case`) share one graph and one compile per configuration (an llvm
compile costs 0.3-2 s); results are attributed per sub-graph output, and a compile or run that
fails fails the outputs that need the node it names (or is bisected when it names none). Results
are compared NaN-aware (NaN positions equal, infinities equal, the sign of a zero where every op on
the way defines it) within the error bound summed over the ops on the way (`fuzz_cases`), relative
or of the sub-graph's largest finite magnitude (reassociated sums and fused multiply-adds round
differently).
A mismatch is minimized by delta debugging (earlier outputs, steps bypassed, inputs halved along
an axis) to a small sub-graph that still mismatches the same way, printed as builder code.
Mismatch classes that are open issues are listed in `KNOWN_OPEN`, each with its reason.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import re
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Sequence

import numpy as np

from .. import graph as _graph
from ..graph.dtypes import is_float
from ..graph.errors import GradkilnError
from .fuzz_cases import Case, Step, draw_cases
from .fuzz_ops import FAMILIES, Leaf

LEVELS = ("O0", "O3")
TARGETS = ("numpy", "llvm")


@dataclass(frozen=True)
class Config:
    """A target and an optimization level ("O0" runs no pass)."""

    target: str
    level: str

    def __str__(self) -> str:
        return f"{self.target} {self.level}"


REFERENCE = Config("numpy", "O0")


@dataclass(frozen=True)
class Difference:
    """How a result differs from the reference: kind "nan", "inf", "sign", "value", "shape" or
    "error", and the first place with both values (or the error message)."""

    kind: str
    detail: str


@dataclass
class Mismatch:
    """A case output that differs at `config`; `values` are the reference's step values."""

    case: Case
    output: str
    config: Config
    difference: Difference
    values: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def known(self) -> Known | None:
        return next((k for k in KNOWN_OPEN if k.applies(self)), None)

    def reproducer(self) -> str:
        return self.case.restricted(self.output).code(self.output, self.config, self.difference.detail)


@dataclass
class Report:
    """What `run_batch` found: mismatches, and cases the reference itself rejected (skipped)."""

    mismatches: list[Mismatch] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    outputs: int = 0


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How many representable floats lie between a and b (+0 and -0 count as one; inf is one past
    the largest finite value), as float64."""
    bits = np.dtype(f"int{a.dtype.itemsize * 8}")

    def ordered(x: np.ndarray) -> np.ndarray:
        i = x.view(bits).astype(np.float64)
        return np.where(i < 0, float(np.iinfo(bits).min) - i, i)

    return np.abs(ordered(a) - ordered(b))


def compare(want: np.ndarray, got: np.ndarray, error: float, scale: float, signed_zero: bool) -> Difference | None:
    """The first difference of `got` from `want` beyond the relative `error` (or that error of
    `scale`), NaN-aware; None when they agree."""
    want, got = np.asarray(want), np.asarray(got)
    if got.shape != want.shape or got.dtype != want.dtype:
        return Difference("shape", f"want {want.dtype}{list(want.shape)}, got {got.dtype}{list(got.shape)}")
    if not is_float(want.dtype.name):
        return _first("value", want, got, want != got) if (want != got).any() else None
    nan = np.isnan(want) != np.isnan(got)
    if nan.any():
        return _first("nan", want, got, nan)
    ulps = error / float(np.finfo(want.dtype).eps)
    distance = ulp_distance(want, got)
    finite = np.isfinite(want) & np.isfinite(got)
    inf = ~finite & ~np.isnan(want) & (want != got) & (distance > ulps)
    if inf.any():
        return _first("inf", want, got, inf)
    sign = (want == 0) & (got == 0) & (np.signbit(want) != np.signbit(got))
    if signed_zero and sign.any():
        return _first("sign", want, got, sign)
    with np.errstate(all="ignore"):
        far = np.abs(want.astype(np.float64) - got) > error * scale
    off = finite & (distance > ulps) & far
    return _first("value", want, got, off) if off.any() else None


def _first(kind: str, want: np.ndarray, got: np.ndarray, where: np.ndarray) -> Difference:
    index = tuple(int(i) for i in np.argwhere(where)[0])
    return Difference(kind, f"{kind} at {index}: want {want[index]!r}, got {got[index]!r}")


def _scale(case: Case, values: dict[str, np.ndarray]) -> float:
    """The largest finite magnitude among a case's inputs and step values (1 when all are zero)."""
    arrays = [x.values for x in case.leaves] + [values[s.name] for s in case.steps if s.name in values]
    finite = [np.abs(a[np.isfinite(a)]).max(initial=0) for a in arrays if is_float(a.dtype.name)]
    return float(max(finite, default=1.0, key=float)) or 1.0


def _run(graph: _graph.Graph, outputs: dict, feeds: dict, config: Config) -> tuple[dict, dict[str, str]]:
    """Run `outputs` at `config`: (results, errors by output). When a compile or run fails, the
    outputs that need the node the error names run again apart from the others (the node named can
    be innocent: a failure is attributed by compiling prefixes); an error naming no node is bisected.
    So one bad sub-graph does not hide the others' results, and every error is an output's own."""
    from ..lowering import compile as compile_graph

    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run = compile_graph(graph, outputs, target=config.target, optimize=config.level)
            return dict(run(**feeds)), {}
    except Exception as error:  # every failure is a finding, whatever raised it
        message = f"{type(error).__name__}: {str(error)[:300]}"
        if len(outputs) == 1:
            return {}, dict.fromkeys(outputs, message)
        culprits = _needing(graph, outputs, re.search(r"%(\d+) = ", message))
    results, errors = {}, {}
    for part in [culprits, [n for n in outputs if n not in culprits]] if culprits else _halves(list(outputs)):
        got, failed = _run(graph, {n: outputs[n] for n in part}, feeds, config)
        results.update(got)
        errors.update(failed)
    return results, errors


def _needing(graph: _graph.Graph, outputs: dict, node: re.Match | None) -> list[str]:
    """The outputs that need the node an error names, unless that is all of them (or none)."""
    if node is None:
        return []
    culprits = [n for n, t in outputs.items() if int(node.group(1)) in graph.needed_nodes([t.value])]
    return culprits if len(culprits) < len(outputs) else []


def _halves(names: list[str]) -> list[list[str]]:
    return [names[: len(names) // 2], names[len(names) // 2 :]]


def run_batch(cases: Sequence[Case], configs: Iterable[Config]) -> Report:
    """Build every case into one graph, run it on the reference and each configuration (one
    compile each), and compare every case output."""
    with _graph.Graph("fuzz") as graph:
        tensors = [case.build(f"c{i}_") for i, case in enumerate(cases)]
    feeds = {k: v for i, case in enumerate(cases) for k, v in case.feeds(f"c{i}_").items()}
    every = {f"{i}.{name}": t for i, named in enumerate(tensors) for name, t in named.items()}
    reference, rejected = _run(graph, every, feeds, REFERENCE)
    report = Report(skipped={key.split(".")[0]: message for key, message in rejected.items()})
    wanted = {
        f"{i}.{name}": tensors[i][name]
        for i, case in enumerate(cases)
        if str(i) not in report.skipped
        for name in case.outputs
    }
    report.outputs = len(wanted)
    for config in configs:
        got, errors = _run(graph, wanted, feeds, config)
        for key in wanted:
            i, name = int(key.split(".")[0]), key.split(".")[1]
            case = cases[i]
            values = {s.name: reference[f"{i}.{s.name}"] for s in case.steps}
            if key in errors:
                difference = Difference("error", errors[key])
            else:
                error, signed = case.tolerance(name)
                difference = compare(reference[key], got[key], error, _scale(case, values), signed)
            if difference:
                report.mismatches.append(Mismatch(case, name, config, difference, values))
    return report


def check(case: Case, output: str, config: Config) -> Mismatch | None:
    """The mismatch of one case output at `config`, run alone (None when it agrees or the reference rejects it)."""
    found = run_batch([case.restricted(output)], [config]).mismatches
    return next((m for m in found if m.output == output), None)


def minimize(mismatch: Mismatch, tries: int = 80) -> Mismatch:
    """A smaller mismatch of the same kind and known class: delta debugging over earlier outputs,
    bypassed steps and inputs halved along one axis, each candidate re-run alone (at most `tries`)."""
    current, known = mismatch, mismatch.known
    progress = True
    while progress:
        progress = False
        for candidate in _smaller(current):
            if tries <= 0:
                break
            tries -= 1
            found = check(candidate.case, candidate.output, candidate.config)
            if found and found.difference.kind == mismatch.difference.kind and found.known == known:
                current, progress = found, True
                break
    return replace(current, case=current.case.restricted(current.output))


def _smaller(m: Mismatch) -> Iterable[Mismatch]:
    """Candidates smaller than `m`, smallest first: an earlier output, a step replaced by what it
    reads, an input (or the batch) halved along an axis."""
    case = m.case.restricted(m.output)
    for step in case.steps[:-1]:
        yield replace(m, case=case, output=step.name)
    for i, step in enumerate(case.steps):
        for read in step.reads:
            yield from _built(m, _bypass(case, i, read))
    for j, leaf in enumerate(case.leaves):
        for axis, size in enumerate(leaf.values.shape):
            if leaf.shape[axis] != "N" and size > 1:
                for part in (slice(0, size // 2), slice(size // 2, size)):
                    yield from _built(m, _sliced(case, j, axis, part))
    if case.batch > 1:
        yield from _built(m, _rebatched(case, case.batch // 2))


def _built(m: Mismatch, case: Case | None) -> Iterable[Mismatch]:
    """`case` as a candidate if it still builds (its shapes may no longer fit an op)."""
    if case is None:
        return
    try:
        with _graph.Graph("candidate"):
            case.build()
    except GradkilnError:
        return
    output = m.output if any(s.name == m.output for s in case.steps) else case.steps[-1].name
    yield replace(m, case=case, output=output)


def _bypass(case: Case, index: int, read: str) -> Case | None:
    """The case with step `index` replaced by the value `read` it reads."""
    step = case.steps[index]
    rest = [_renamed(s, step.name, read) for s in case.steps[index + 1 :]]
    if not rest:
        return None
    return replace(case, steps=case.steps[:index] + tuple(rest)).restricted(rest[-1].name)


def _renamed(step: Step, old: str, new: str) -> Step:
    expr = re.sub(rf"\b{old}\b", new, step.expr)
    return replace(step, expr=expr, reads=tuple(sorted({new if r == old else r for r in step.reads})))


def _sliced(case: Case, j: int, axis: int, part: slice) -> Case:
    leaf = case.leaves[j]
    values = leaf.values[(slice(None),) * axis + (part,)]
    shape = tuple(values.shape[i] if i == axis else d for i, d in enumerate(leaf.shape))
    return replace(case, leaves=case.leaves[:j] + (replace(leaf, shape=shape, values=values),) + case.leaves[j + 1 :])


def _rebatched(case: Case, batch: int) -> Case:
    def cut(leaf: Leaf) -> Leaf:
        index = tuple(slice(0, batch) if d == "N" else slice(None) for d in leaf.shape)
        return replace(leaf, values=leaf.values[index])

    return replace(case, leaves=tuple(cut(x) for x in case.leaves), batch=batch)


@dataclass(frozen=True)
class Known:
    """An open mismatch class: `applies(mismatch)` and why it is open."""

    name: str
    reason: str
    applies: Callable[[Mismatch], bool]


def _ops(m: Mismatch) -> set[str]:
    return {op for s in m.case.ancestry(m.output) for op in s.ops}


def _inputs(m: Mismatch) -> list[np.ndarray]:
    return [x.values for x in m.case.restricted(m.output).leaves]


def _any_value(m: Mismatch, test: Callable[[np.ndarray], np.ndarray]) -> bool:
    """Whether `test` holds for an element of an input or (on the reference) of a step on the way."""
    values = _inputs(m) + [m.values[s.name] for s in m.case.ancestry(m.output) if s.name in m.values]
    with np.errstate(all="ignore"):
        return any(np.asarray(test(v)).any() for v in values if is_float(v.dtype.name))


def _when(target: str | None = None, level: str | None = None, kinds: str = "", ops: Iterable[str] = ()) -> Callable:
    """A predicate: the mismatch is on `target` at `level`, of one of `kinds`, after one of `ops`."""
    ops = set(ops)
    return lambda m: (
        target in (None, m.config.target)
        and level in (None, m.config.level)
        and (not kinds or m.difference.kind in kinds.split())
        and (not ops or bool(ops & _ops(m)))
    )


def _both(*tests: Callable[[Mismatch], bool]) -> Callable[[Mismatch], bool]:
    return lambda m: all(t(m) for t in tests)


KNOWN_OPEN: list[Known] = [
    Known(
        "conv_transpose2d with an infinite or NaN operand on llvm",
        "found by this fuzzer: TVM's conv2d_transpose convolves the zero-dilated, zero-padded input with "
        "the flipped kernel, so 0 * inf = NaN reaches outputs that the infinite weight (or input) does not "
        "touch in numpy; an exact form (a sum over the valid taps only) would give up the scheduled conv "
        "kernel that every conv2d input gradient runs on",
        _both(
            _when("llvm", kinds="nan", ops={"conv_transpose2d"}),
            lambda m: _any_value(m, lambda v: ~np.isfinite(v)),
        ),
    ),
]


def signature(m: Mismatch) -> tuple:
    """What tells mismatch classes apart before minimizing: target, level, kind and the ops on the way."""
    return m.config.target, m.difference.kind, tuple(sorted(_ops(m)))


@dataclass
class Summary:
    """A fuzz run: sub-graph outputs compared, mismatches by known class (or unknown), minimized unknown ones."""

    outputs: int = 0
    cases: int = 0
    skipped: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def unknown(self) -> list[Mismatch]:
        return [m for m in self.mismatches if m.known is None]


def fuzz(
    seed: int,
    cases: int,
    configs: Sequence[Config],
    per_compile: int = 25,
    families: Sequence[str] = tuple(FAMILIES),
    dtypes: Sequence[str] = (),
    progress: Callable[[Summary], None] | None = None,
    jobs: int = 1,
) -> Summary:
    """Draw `cases` random cases (of `families`, starting from `dtypes`), `per_compile` per graph,
    and run each batch on `configs`. Batch b draws from the generator seeded (seed, b), so the
    cases do not depend on `jobs`: with `jobs` > 1 the batches run in that many worker processes
    (each compile is CPU-bound and independent of the others)."""
    sizes = [min(per_compile, cases - start) for start in range(0, cases, per_compile)]
    tasks = [_Batch(seed, b, n, tuple(configs), tuple(families), tuple(dtypes)) for b, n in enumerate(sizes)]
    summary = Summary()
    with contextlib.ExitStack() as stack:
        if jobs > 1:
            spawn = multiprocessing.get_context("spawn")  # TVM's threads do not survive a fork
            pool = stack.enter_context(ProcessPoolExecutor(jobs, mp_context=spawn))
            reports = pool.map(_run_task, tasks)
        else:
            reports = map(_run_task, tasks)
        for task, report in zip(tasks, reports):
            summary.cases += task.count
            summary.outputs += report.outputs
            summary.skipped += len(report.skipped)
            summary.mismatches += report.mismatches
            if progress:
                progress(summary)
    return summary


@dataclass(frozen=True)
class _Batch:
    """One batch of a fuzz run: what a worker needs to draw and run it."""

    seed: int
    index: int
    count: int
    configs: tuple[Config, ...]
    families: tuple[str, ...]
    dtypes: tuple[str, ...]


def _run_task(task: _Batch) -> Report:
    rng = np.random.default_rng([task.seed, task.index])
    return run_batch(draw_cases(rng, task.count, task.families, task.dtypes), task.configs)


def configurations(targets: Sequence[str] = TARGETS, levels: Sequence[str] = LEVELS) -> list[Config]:
    """Every (target, level) pair but the reference itself."""
    return [Config(t, lv) for t in targets for lv in levels if Config(t, lv) != REFERENCE]
