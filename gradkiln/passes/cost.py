"""Cost analysis: FLOP and byte estimates per node, from one rule table keyed by op name.

An analysis, not a rewrite: `cost(graph)` reads the graph and returns a `CostReport`. Each rule
maps (input shapes, output shape, attrs) to a FLOP count; bytes are the same for every op: the
bytes of its inputs read plus its outputs written. Sources (inputs, params, constants) cost
nothing themselves; their bytes count where they are read. Users register rules for their ops
in `COST_RULES`; a coverage test checks every op in `gradkiln.graph.OPS` has one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

from ..graph import OPS, Graph, GraphError, TensorType, UnsupportedOpError
from ..graph.ops.bitwise import BINARY as BITWISE
from ..graph.ops.collective import COLLECTIVES, ring_traffic
from ..graph.ops.dropout import ROUNDS as DROPOUT_ROUNDS
from ..graph.ops.elementwise import BINARY, COMPARE, UNARY, UNARY_WITH_ATTRS
from ..graph.ops.elementwise_table import BINARY_ROWS, TRANSCENDENTAL, UNARY_ROWS
from ..graph.ops.fused import fold, symbols
from ..graph.ops.linalg import letter_dims
from ..graph.ops.resize import AxisTable, grad_tables, tables
from ..graph.outputs import normalize_outputs

Shape = tuple[int, ...]
# (input shapes, shape of output 0, attrs) -> FLOPs
CostRule = Callable[[Sequence[Shape], Shape, Mapping[str, Any]], int]

# FLOPs per output element of each elementwise op (1 unless listed): the table rows' `flops`, and
# the unary ops with attributes
ELEMENTWISE_FLOPS: dict[str, int] = {
    **{row.name: row.flops for row in (*UNARY_ROWS, *BINARY_ROWS) if row.flops != 1},
    "gelu": TRANSCENDENTAL + 5,
    "elu": TRANSCENDENTAL + 2,
    "leaky_relu": 2,
    "clip": 2,
    "stop_gradient": 0,
}

# FLOPs per input element of each reduction-like op
REDUCTION_FLOPS: dict[str, int] = {
    **dict.fromkeys(("sum", "mean", "max", "min", "prod", "argmax", "argmin", "cumsum", "cumprod"), 1),
    "var": 3,
    "std": 3,
    "logsumexp": TRANSCENDENTAL + 2,
    "softmax": TRANSCENDENTAL + 4,
    "log_softmax": TRANSCENDENTAL + 4,
}

# ops that move or select data without arithmetic
DATA_MOVEMENT = (
    "input param constant reshape transpose broadcast_to expand_dims squeeze concat slice pad take one_hot size "
    "custom_vjp custom_jvp"
).split()


def per_element(weight: int) -> CostRule:
    """`weight` FLOPs per output element (an elementwise op's rule, with its ELEMENTWISE_FLOPS)."""
    return lambda ins, out, attrs: weight * math.prod(out)


def _reduction(weight: int) -> CostRule:
    return lambda ins, out, attrs: weight * math.prod(ins[0])


def _matmul(ins: Sequence[Shape], out: Shape, attrs: Mapping[str, Any]) -> int:
    """2*M*N*K per batch: one multiply and one add per term."""
    return 2 * math.prod(out) * ins[0][-1]


def _conv2d(ins: Sequence[Shape], out: Shape, attrs: Mapping[str, Any]) -> int:
    """2*N*Cout*Hout*Wout * (Cin/groups)*kh*kw; the weight is (Cout, Cin/groups, kh, kw)."""
    return 2 * math.prod(out) * math.prod(ins[1][1:])


def _conv_transpose2d(ins: Sequence[Shape], out: Shape, attrs: Mapping[str, Any]) -> int:
    """Each input element scatters into (Cout/groups)*kh*kw outputs; the weight is (Cin, Cout/groups, kh, kw)."""
    return 2 * math.prod(ins[0]) * math.prod(ins[1][1:])


def _pool(ins: Sequence[Shape], out: Shape, attrs: Mapping[str, Any]) -> int:
    return math.prod(out) * math.prod(attrs["kernel"])


def _comparison_sort(ins: Sequence[Shape], out: Shape, attrs: Mapping[str, Any]) -> int:
    """n * log2(m) comparisons: sorting (m the axis size) or keeping the top m = k elements."""
    kept = attrs["k"] if "k" in attrs else ins[0][attrs["axis"]]
    return math.prod(ins[0]) * max(1, math.ceil(math.log2(max(kept, 1))))


# dropout's integer hash per element: each round an add, three multiplies and four mods; then a
# compare and the scaling multiply
DROPOUT_FLOPS = 8 * DROPOUT_ROUNDS + 2


def _einsum(ins: Sequence[Shape], out: Shape, attrs: Mapping[str, Any]) -> int:
    """One multiply per extra operand and one add for each combination of the letters' values."""
    dims = letter_dims(attrs["subscripts"], [tuple(s) for s in ins])
    return len(ins) * math.prod(dims.values())


def _factorization(flops_per_matrix: Callable[[int], float]) -> CostRule:
    """A rule charging `flops_per_matrix(n)` per (n, n) matrix of input 0, plus 2 n per output
    element for the right-hand side's substitutions (solve, triangular_solve)."""

    def rule(ins: Sequence[Shape], out: Shape, attrs: Mapping[str, Any]) -> int:
        n = ins[0][-1]
        substitution = 2 * n * math.prod(out) if len(ins) == 2 else 0
        return int(math.prod(ins[0][:-2]) * flops_per_matrix(n)) + substitution

    return rule


# LU (det, slogdet, solve) 2n^3/3, Gauss-Jordan inverse 2n^3, Cholesky n^3/3; trace adds the diagonal
LINALG_FLOPS: dict[str, CostRule] = {
    "einsum": _einsum,
    "det": _factorization(lambda n: 2 * n**3 / 3),
    "slogdet": _factorization(lambda n: 2 * n**3 / 3 + n * TRANSCENDENTAL),
    "solve": _factorization(lambda n: 2 * n**3 / 3),
    "inverse": _factorization(lambda n: 2 * n**3),
    "cholesky": _factorization(lambda n: n**3 / 3 + n * TRANSCENDENTAL),
    "triangular_solve": _factorization(lambda n: 0),
    "trace": lambda ins, out, attrs: math.prod(out) * min(ins[0][-2:]),
}


def _fused(ins: Sequence[Shape], out: Shape, attrs: Mapping[str, Any]) -> int:
    """Each operation of the expressions once per output element (shared subexpressions once)."""
    applied: list[str] = []
    leaves = dict(zip(symbols(len(ins)), ins))
    fold(attrs["exprs"], leaves.__getitem__, float, lambda op, args: applied.append(op))
    return math.prod(out) * sum(ELEMENTWISE_FLOPS.get(op, 1) for op in applied)


def _fused_reduce(ins: Sequence[Shape], out: Shape, attrs: Mapping[str, Any]) -> int:
    """The expression at the inputs' broadcast shape, then one FLOP per element it reduces."""
    mapped = tuple(np.broadcast_shapes(*ins))
    return _fused(ins, mapped, attrs) + REDUCTION_FLOPS[attrs["reduce"]] * math.prod(mapped)


def _fused_matmul(ins: Sequence[Shape], out: Shape, attrs: Mapping[str, Any]) -> int:
    """The matmul's FLOPs (2*M*N*K, K read past a transposed first operand's flag), then the
    epilogue's over its output (x0 is the product)."""
    inner = ins[0][-2] if attrs.get("transpose_a") else ins[0][-1]
    return 2 * math.prod(out) * inner + _fused([out, *ins[2:]], out, attrs)


def _body_flops(body: Any, shapes: Sequence[Shape]) -> int:
    """The FLOPs of one run of a control-flow body, its symbolic dims bound from `shapes`."""
    dims = [(d, n) for t, shape in zip(body.input_types, shapes) for d, n in zip(t.shape, shape)]
    sizes = {d.name: n for d, n in dims if getattr(d, "is_Symbol", False)}
    return cost(body.graph, list(body.outputs), sizes).flops


def _scan(ins: Sequence[Shape], out: Shape, attrs: Mapping[str, Any]) -> int:
    """The body's cost times the trip count."""
    carry, xs = attrs["num_carry"], attrs["num_xs"]
    steps = [*ins[:carry], *(s[1:] for s in ins[carry : carry + xs]), *ins[carry + xs :]]
    return attrs["length"] * _body_flops(attrs["body"], steps)


def _cond(ins: Sequence[Shape], out: Shape, attrs: Mapping[str, Any]) -> int:
    """The costlier branch (the numpy executor runs one branch; TVM lowering runs both)."""
    return max(_body_flops(attrs[side], ins[1:]) for side in ("true_body", "false_body"))


def _gathers(shape: Shape, axis_tables: Sequence[AxisTable]) -> int:
    """A multiply and an add per tap of each element each axis's gather-sum writes (nearest's pure
    gathers: none)."""
    flops, shape = 0, list(shape)
    for table in axis_tables:
        shape[table.axis] = len(table.weights)
        taps = table.weights.shape[1]
        flops += 0 if taps == 1 and (table.weights == 1).all() else 2 * taps * math.prod(shape)
    return flops


def _resize_grad(ins: Sequence[Shape], out: Shape, attrs: Mapping[str, Any]) -> int:
    rest = {k: v for k, v in attrs.items() if k != "input_sizes"}
    return _gathers(ins[0], grad_tables(tuple(ins[0]), attrs["input_sizes"], rest))


COST_RULES: dict[str, CostRule] = {
    **{
        op: per_element(ELEMENTWISE_FLOPS.get(op, 1))
        for op in [*UNARY, *UNARY_WITH_ATTRS, *BINARY, *COMPARE, *BITWISE, "bitwise_not", "where", "cast"]
        + ["stop_gradient"]
    },
    **{op: _reduction(weight) for op, weight in REDUCTION_FLOPS.items()},
    **{op: per_element(0) for op in DATA_MOVEMENT},
    "scatter_add": lambda ins, out, attrs: math.prod(ins[2]),
    "matmul": _matmul,
    "conv2d": _conv2d,
    "conv_transpose2d": _conv_transpose2d,
    "max_pool2d": _pool,
    "avg_pool2d": _pool,
    **LINALG_FLOPS,
    **dict.fromkeys(("sort", "argsort", "topk"), _comparison_sort),
    **{op: per_element(0) for op in ("gather_elements", "flip")},
    "scatter_elements_add": lambda ins, out, attrs: math.prod(ins[2]),
    "dropout": per_element(DROPOUT_FLOPS),
    "random_bits": per_element(8 * DROPOUT_ROUNDS),  # dropout's rounds; keys are per seed, not per element
    "resize": lambda ins, out, attrs: _gathers(ins[0], tables(tuple(ins[0]), attrs)),
    "resize_grad": _resize_grad,
    "fused": _fused,
    "fused_reduce": _fused_reduce,
    "fused_matmul": _fused_matmul,
    "scan": _scan,
    "cond": _cond,
    # complex parts: real, imag and complex move data, conj negates, angle is an atan2
    **{op: per_element(0) for op in ("real", "imag", "complex")},
    "conj": per_element(1),
    "angle": per_element(TRANSCENDENTAL),
    # collectives: a worker's additions in the ring algorithm (bytes on the wire: passes/communication.py)
    **{
        op: lambda ins, out, attrs, op=op: ring_traffic(op, math.prod(ins[0]), attrs["world_size"])[1]
        for op in COLLECTIVES
    },
}


class NodeCost(NamedTuple):
    """The estimated cost of one node."""

    label: str
    op: str
    role: str
    flops: int
    bytes: int


class OpCost(NamedTuple):
    """The cost of every node of one op type together."""

    count: int
    flops: int
    bytes: int


@dataclass(frozen=True)
class CostReport:
    """Per-node FLOP and byte estimates with totals and a per-op-type summary."""

    nodes: list[NodeCost]

    @property
    def flops(self) -> int:
        return sum(n.flops for n in self.nodes)

    @property
    def bytes(self) -> int:
        return sum(n.bytes for n in self.nodes)

    def by_op(self) -> dict[str, OpCost]:
        """Op type -> summed cost, the most FLOPs first (then the most bytes)."""
        totals: dict[str, OpCost] = {}
        for n in self.nodes:
            count, flops, size = totals.get(n.op, OpCost(0, 0, 0))
            totals[n.op] = OpCost(count + 1, flops + n.flops, size + n.bytes)
        return dict(sorted(totals.items(), key=lambda item: (-item[1].flops, -item[1].bytes, item[0])))

    def table(self) -> str:
        """The per-op-type summary as an aligned text table with a total row."""
        rows = [(op, c.count, c.flops, c.bytes) for op, c in self.by_op().items()]
        rows.append(("total", len(self.nodes), self.flops, self.bytes))
        width = max(len(r[0]) for r in rows)
        lines = [f"{'op':<{width}}  {'nodes':>6}  {'FLOPs':>15}  {'share':>6}  {'bytes':>15}"]
        for op, count, flops, size in rows:
            share = flops / self.flops if self.flops else 0.0
            lines.append(f"{op:<{width}}  {count:>6}  {flops:>15,}  {share:>6.1%}  {size:>15,}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def cost(graph: Graph, outputs: Any = None, bindings: Mapping[str, int] | None = None) -> CostReport:
    """Estimate the FLOPs and bytes of each node that `outputs` need (all nodes if None).

    `outputs` takes what `gk.compile` takes; symbolic dims need sizes in `bindings` ({"N": 64}).
    """
    node_ids = (
        graph.topological_order() if outputs is None else graph.needed_nodes(normalize_outputs(graph, outputs)[0])
    )
    sizes = dict(bindings or {})
    report = []
    for node_id in node_ids:
        node = graph.node(node_id)
        if node.op not in COST_RULES:
            raise UnsupportedOpError(f"no cost rule for op '{node.op}': add one to gradkiln.passes.cost.COST_RULES")
        if OPS[node.op].source:
            report.append(NodeCost(node.label, node.op, node.role, 0, 0))
            continue
        in_types = [graph.type_of(v) for v in node.inputs]
        ins = [_concrete(t, sizes, graph.label_of(v)) for t, v in zip(in_types, node.inputs)]
        outs = [_concrete(t, sizes, node.label) for t in node.types]
        moved = sum(_nbytes(t, s) for t, s in zip([*in_types, *node.types], [*ins, *outs]))
        report.append(
            NodeCost(node.label, node.op, node.role, int(COST_RULES[node.op](ins, outs[0], node.attrs)), moved)
        )
    return CostReport(report)


def _concrete(t: TensorType, sizes: Mapping[str, int], label: str) -> Shape:
    """The shape of `t` with its symbolic dims replaced by their sizes; an unbound one is an error."""
    shape = []
    for dim in t.shape:
        if not isinstance(dim, int):
            dim = dim.subs({s: sizes[s.name] for s in dim.free_symbols if s.name in sizes})
            if dim.free_symbols:
                names = sorted(str(s) for s in dim.free_symbols)
                raise GraphError(
                    f"{label}: {t} has symbolic dims {names}; pass their sizes, e.g. bindings={{'{names[0]}': 64}}"
                )
        shape.append(int(dim))
    return tuple(shape)


def _nbytes(t: TensorType, shape: Shape) -> int:
    return math.prod(shape) * np.dtype(t.dtype).itemsize
