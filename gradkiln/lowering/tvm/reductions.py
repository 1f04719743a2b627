"""Reductions over axes that are empty at run time (a symbolic dim bound to 0), as numpy does them.

TVM writes a reduction's initial value inside the reduction loop (`if k == 0: acc = init`), so
when that loop runs zero times the output keeps whatever the memory held: the sum of a (0, 3)
array was garbage, not 0. `initialize_before_reducing` moves the initialisation of every
reduction whose length is not a known positive constant in front of its loops, so an empty sum is
0, an empty product 1 and an empty mean 0 / 0 = NaN, as in numpy.

max, min, argmax, argmin and logsumexp have no initial value: numpy raises for them, and so does
`check_nonempty` before a call whose bound sizes make one of their axes empty (TVM would return
-inf, inf or an index into nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import sympy
import tvm
from tvm import s_tir, tirx

from ...graph import Node, ShapeError, TensorType
from ...graph.ops.fused_reduce import map_type

REDUCE = 2  # tirx.IterVar kind of a reduction iterator
NO_IDENTITY = ("max", "min", "argmax", "argmin", "logsumexp")


def _blocks(sch: s_tir.Schedule, parent: Any) -> list[Any]:
    """Every block under `parent`, nested ones included."""
    children = sch.get_child_blocks(parent)
    return [b for child in children for b in (child, *_blocks(sch, child))]


def _maybe_empty(sch: s_tir.Schedule, block: Any) -> bool:
    """Whether the block reduces and one of its reduction extents is not a known positive constant."""
    stmt = sch.get(block)
    extents = [iv.dom.extent for iv in stmt.iter_vars if int(iv.iter_type) == REDUCE]
    return stmt.init is not None and any(not (isinstance(e, tirx.IntImm) and e.value > 0) for e in extents)


@tirx.transform.prim_func_pass(opt_level=0, name="InitializeBeforeReducing")
def initialize_before_reducing(func: tirx.PrimFunc, _mod: tvm.IRModule, _ctx: Any) -> tirx.PrimFunc:
    """Reductions that may run over zero elements get their initialisation as a loop nest of its
    own in front of them (`decompose_reduction` at the outermost loop), which runs whatever their length."""
    sch = s_tir.Schedule(func)
    try:
        root = sch.get_sblock("root")
    except Exception:  # a function without blocks (already lowered): nothing to do
        return func
    for block in _blocks(sch, root):
        loops = sch.get_loops(block)
        if loops and _maybe_empty(sch, block):
            sch.decompose_reduction(block, loops[0])
    return sch.mod["main"]


@dataclass(frozen=True)
class NonemptyCheck:
    """A node without an identity element and the sizes of the axes it reduces (sympy, in the
    graph's symbolic dims)."""

    node: Node
    sizes: tuple[Any, ...]


def nonempty_checks(nodes: Sequence[Node]) -> list[NonemptyCheck]:
    """The reductions among `nodes` that have no identity and reduce a symbolic axis (static empty
    axes are refused when the node is built)."""
    checks = []
    for node in nodes:
        if _reduction(node) not in NO_IDENTITY:
            continue
        shape = _reduced_type(node).shape
        axes = node.attrs["axes"] if "axes" in node.attrs else (node.attrs["axis"],)
        sizes = tuple(shape[a] for a in axes)
        if any(isinstance(s, sympy.Expr) and not s.is_number for s in sizes):
            checks.append(NonemptyCheck(node, sizes))
    return checks


def _reduction(node: Node) -> str:
    """The reduction a node computes: its op, or a fused_reduce's `reduce`."""
    return node.attrs["reduce"] if node.op == "fused_reduce" else node.op


def _reduced_type(node: Node) -> TensorType:
    """The type of the value a node reduces (a fused_reduce's expression over its inputs)."""
    inputs = tuple(node.graph.type_of(v) for v in node.inputs)
    return map_type(inputs, node.attrs["exprs"]) if node.op == "fused_reduce" else inputs[0]


def check_nonempty(checks: Sequence[NonemptyCheck], bindings: dict[sympy.Symbol, int]) -> None:
    """Raise a ShapeError naming the node when the bound sizes make one of its reduced axes empty."""
    for check in checks:
        sizes = [int(s.subs(bindings)) if isinstance(s, sympy.Expr) else int(s) for s in check.sizes]
        if 0 in sizes:
            node = check.node
            operands = ", ".join(str(node.graph.type_of(v)) for v in node.inputs)
            bound = ", ".join(f"{k}={v}" for k, v in sorted(bindings.items(), key=lambda kv: str(kv[0])))
            raise ShapeError(
                f"{node.label} = {node.op}({operands}) reduces axes of sizes {sizes} at {bound}: "
                f"{_reduction(node)} of zero elements has no value (numpy raises too); feed a non-empty batch "
                "or mask the empty rows out before reducing"
            )
