"""The random sub-graphs of the target fuzzer (`fuzz_targets.py`): a `Case` is inputs with values and
steps of builder code drawn from the op families of `fuzz_ops.py`; each step carries the relative
error its nodes may add between backends (none for exact ops, an ulp for correctly rounded ones, the
transcendental bound, the number of terms of an accumulation), summed into an output's tolerance."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .. import graph as _graph
from ..graph import builder as gb
from ..graph.dtypes import is_float
from ..graph.errors import GradkilnError
from ..graph.ir import Node
from ..graph.ops.elementwise_table import BINARY_ROWS, UNARY_ROWS
from .fuzz_ops import FAMILIES, Draw, Leaf, Var

if TYPE_CHECKING:
    from .fuzz_targets import Config

NAMESPACE = {"gk": gb, "np": np, "nan": np.nan, "inf": np.inf}
# the dtypes a case starts from, with their odds, and the transcendental ulp bound of each float dtype
DTYPE_WEIGHTS = {"float32": 7, "float64": 4, "float16": 3, "int32": 2, "int64": 2, "int8": 1, "uint8": 1}
DTYPES = {"float32": 4, "float64": 2, "float16": 2}
# ops whose error is a few ulps (the table rows' `rounding`, and the ops outside the table)
TRANSCENDENTAL = {row.name for row in (*UNARY_ROWS, *BINARY_ROWS) if row.rounding == "transcendental"}
TRANSCENDENTAL |= {"gelu", "elu"}
ROUNDS_ONCE = {row.name for row in (*UNARY_ROWS, *BINARY_ROWS) if row.rounding == "once"}
ROUNDS_ONCE |= {"leaky_relu"}
ACCUMULATES = {"sum", "mean", "prod", "logsumexp", "var", "std", "cumsum", "cumprod", "softmax", "log_softmax"}
ACCUMULATES |= {"matmul", "einsum", "conv2d", "conv_transpose2d", "avg_pool2d", "det", "inverse", "solve", "scan"}
ACCUMULATES |= {"scatter_add", "scatter_elements_add"}
# ops after which the sign of a zero is not defined (IEEE max/min of +-0, sums from a +0 accumulator)
SIGNLESS = ACCUMULATES | {"maximum", "minimum", "relu", "clip", "max", "min", "max_pool2d", "sort", "topk", "cond"}


@dataclass(frozen=True)
class Step:
    """One builder expression of a case: `name = expr`, with what it reads, the ops of the nodes it
    added and the relative error they may add (ulps times epsilon of each node's dtype)."""

    name: str
    expr: str
    reads: tuple[str, ...]
    ops: tuple[str, ...]
    error: float


@dataclass(frozen=True)
class Case:
    """A random sub-graph: inputs with values (at `batch` rows on each "N" axis) and steps."""

    leaves: tuple[Leaf, ...]
    steps: tuple[Step, ...]
    batch: int

    @property
    def outputs(self) -> list[str]:
        """The steps no other step reads."""
        read = {r for s in self.steps for r in s.reads}
        return [s.name for s in self.steps if s.name not in read]

    def ancestry(self, name: str) -> list[Step]:
        """The steps `name` depends on, itself included, in order."""
        by_name, wanted, stack = {s.name: s for s in self.steps}, set(), [name]
        while stack:
            step = by_name.get(stack.pop())
            if step and step.name not in wanted:
                wanted.add(step.name)
                stack.extend(step.reads)
        return [s for s in self.steps if s.name in wanted]

    def restricted(self, output: str) -> Case:
        """The case computing only `output`."""
        steps = self.ancestry(output)
        read = {r for s in steps for r in s.reads}
        return replace(self, leaves=tuple(x for x in self.leaves if x.name in read), steps=tuple(steps))

    def build(self, prefix: str = "") -> dict[str, _graph.Tensor]:
        """Emit the case into the current graph (inputs named `prefix` + leaf name): step tensors by name."""
        env = {x.name: gb.input(prefix + x.name, x.shape, x.dtype) for x in self.leaves}
        for step in self.steps:
            env[step.name] = eval(step.expr, NAMESPACE, env)  # the fuzzer's own builder code
        return {s.name: env[s.name] for s in self.steps}

    def feeds(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {prefix + x.name: x.values for x in self.leaves}

    def tolerance(self, output: str) -> tuple[float, bool]:
        """(relative error, whether the sign of a zero is compared) of `output`."""
        steps = self.ancestry(output)
        return sum(s.error for s in steps), not any(SIGNLESS.intersection(s.ops) for s in steps)

    def code(self, output: str, config: Config, note: str) -> str:
        """A self-contained Python reproducer: the graph, its inputs, and both runs."""
        lines = ["import numpy as np", "", "import gradkiln as gk", "", "nan, inf = np.nan, np.inf", "feeds = {"]
        lines += [f"    {x.name!r}: {_array_code(x.values)}," for x in self.leaves]
        lines += ["}", 'with gk.Graph("repro") as g:']
        lines += [f"    {x.name} = gk.input({x.name!r}, {x.shape!r}, {x.dtype!r})" for x in self.leaves]
        lines += [f"    {s.name} = {s.expr}" for s in self.steps]
        lines += [f'want = gk.compile(g, {output}, target="numpy")(**feeds)']
        lines += [f"got = gk.compile(g, {output}, target={config.target!r}, optimize={config.level!r})(**feeds)"]
        lines += [f'print("want", want, "got", got, sep="\\n")  # {config}: {note}']
        return "\n".join(lines)


def _array_code(values: np.ndarray) -> str:
    items = ", ".join(repr(float(v)) if is_float(values.dtype.name) else repr(int(v)) for v in values.ravel())
    return f"np.array([{items}], {values.dtype.name!r}).reshape({values.shape})"


def _node_error(node: Node) -> float:
    """The relative error one node may add between backends, in epsilons of its dtype: none for
    exact ops, 1 for correctly rounded ones, twice the transcendental ulp bound of the dtype, and
    for accumulations 4 plus the number of terms summed."""
    dtype = node.types[0].dtype
    eps = float(np.finfo(dtype).eps) if is_float(dtype) else 0.0
    if node.op in ACCUMULATES:
        sizes = [_size(node.graph.type_of(v).shape) for v in node.inputs] or [1]
        return eps * (4 + max(sizes) // max(1, _size(node.types[0].shape)))
    if node.op in TRANSCENDENTAL:
        return eps * 2 * DTYPES[dtype]
    return eps * (node.op in ROUNDS_ONCE)


def _size(shape: tuple) -> int:
    return int(np.prod([d if isinstance(d, int) else 4 for d in shape]))


def draw_case(
    rng: np.random.Generator, batch: int, families: Sequence[str] = tuple(FAMILIES), dtypes: Sequence[str] = ()
) -> Case:
    """A random case of 1 to 4 steps from `families`, on a first input of a random dtype (of
    `dtypes` when given) and shape (zero and one sizes, a symbolic "N" leading dim, NCHW shapes)."""
    draw = Draw(rng, batch)
    weights = np.array([DTYPE_WEIGHTS[t] for t in dtypes or DTYPE_WEIGHTS])
    dtype = str(rng.choice(list(dtypes or DTYPE_WEIGHTS), p=weights / weights.sum()))
    rank = int(rng.choice([0, 1, 2, 3, 4], p=[0.1, 0.25, 0.3, 0.15, 0.2]))
    shape = tuple(int(rng.choice([0, 1, 2, 3, 4, 5], p=[0.05, 0.2, 0.25, 0.25, 0.15, 0.1])) for _ in range(rank))
    if rank and rng.random() < 0.3:
        shape = ("N", *shape[1:])
    first = draw.fresh(shape, dtype)
    variables, made = [Var(first, shape, dtype, True)], []
    with _graph.Graph("draw") as graph:
        env = {first: gb.input(first, shape, dtype)}
        for _ in range(int(rng.integers(1, 5))):
            step = _draw_step(draw, graph, env, variables, families, f"v{len(made)}")
            made += [step] if step else []
    return Case(tuple(draw.leaves), tuple(made), batch)


def _draw_step(draw: Draw, graph: _graph.Graph, env: dict, variables: list[Var], families, name: str) -> Step | None:
    """One step of a random family on a random value; None after a few operands that do not fit."""
    for _ in range(8):
        a, known = draw.pick(variables), len(draw.leaves)
        expr = FAMILIES[draw.pick(list(families))](draw, a)
        before = max(n.id for n in graph.nodes())
        if expr is None:
            del draw.leaves[known:]
            continue
        try:
            env.update({x.name: gb.input(x.name, x.shape, x.dtype) for x in draw.leaves[known:]})
            tensor = eval(expr, NAMESPACE, env)  # the fuzzer's own builder code
        except GradkilnError:
            del draw.leaves[known:]
            continue
        env[name] = tensor
        added = [n for n in graph.nodes() if n.id > before and n.op != "input"]
        reads = tuple(sorted(set(re.findall(r"\b[xv]\d+\b", expr))))
        error = sum(_node_error(n) for n in added)
        rounds = sum(_node_error(n) > 0 for n in added)
        exact = (
            rounds <= 1
            and error <= float(np.finfo("float16").eps)
            and all(v.exact for v in variables if v.name in reads)
        )
        shape = tuple(d if isinstance(d, int) else str(d) for d in tensor.shape)
        variables.append(Var(name, shape, tensor.dtype, exact))
        return Step(name, expr, reads, tuple(sorted({n.op for n in added})), error)
    return None


def draw_cases(
    rng: np.random.Generator, count: int, families: Sequence[str] = tuple(FAMILIES), dtypes: Sequence[str] = ()
) -> list[Case]:
    """`count` random cases sharing one batch size for "N" (1, 2 or 3)."""
    batch = int(rng.integers(1, 4))
    return [draw_case(rng, batch, families, dtypes) for _ in range(count)]
