"""Sparse gradients of embedding tables (`gk.sparse`): the gradient of `take`/`embedding` with respect
to a large table as `IndexedSlices` (rows and values), clipped and applied without a dense gradient.

PyTorch asks per module (`nn.Embedding(sparse=True)`); here `gk.sparse.grad(loss, params)` returns
IndexedSlices for each param whose every read on the way to the loss is a `take` along axis 0
(`gk.embedding` is one) and a dense Tensor for the others; `sparse=[...]` names the tables that must
be sparse and refuses, naming the node, one that is also read densely. Several lookups of one table
concatenate their slices. The rows come from the ordinary reverse walk: the gradient with respect to
each lookup's *output* (ids.shape + row) is exactly the values of its slices, so no rule changes and
no (vocabulary, dim) array is built. The indices are the lookups' ids as the take's `mode` reads
them: negative ids count from the end, "clip" clamps, "fill" drops out-of-range ones (index 0 with
zero values).

Clipping (`global_norm`, `clip_by_global_norm`) takes dense and sparse gradients together; a sparse
one counts the norm of its coalesced rows, so the result equals the dense gradients' norm. The
updates that scatter into the table (`sgd`, `adam` as torch.optim.SparseAdam) are in `optimizers`.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..graph import GradientError, Graph, Node, Tensor
from ..graph import builder as gb
from ..graph.ops.index_mode import mode_of
from . import utilities
from .indexed_slices import Coalesced, IndexedSlices, add, coalesce, flatten, host_dense, to_dense
from .optimizers import AdamState, adam, adam_state, apply_sgd, sgd
from .reverse import grad as dense_grad
from .walk import as_list, common_graph, nodes_between

Gradient = Tensor | IndexedSlices

__all__ = [
    "AdamState",
    "Coalesced",
    "IndexedSlices",
    "adam",
    "adam_state",
    "add",
    "apply_sgd",
    "clip_by_global_norm",
    "coalesce",
    "flatten",
    "global_norm",
    "grad",
    "host_dense",
    "sgd",
    "to_dense",
]


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    seed: Any = None,
    sparse: Sequence[Tensor] | None = None,
    allow_unused: bool = False,
) -> list[Gradient]:
    """`gk.grad` with IndexedSlices for tables read by rows.

    `sparse=None`: every input whose reads on the way to the outputs are all `take` along axis 0
    gets IndexedSlices, the others dense Tensors. `sparse=[tables]`: those tables get IndexedSlices
    (a GradientError if one is read otherwise, naming the read), the others dense Tensors.
    """
    wrt = as_list(inputs)
    graph = common_graph([*as_list(outputs), *wrt])
    on_path = set(nodes_between(graph, wrt, as_list(outputs)))
    lookups = [_row_reads(graph, x, on_path) for x in wrt]
    wanted = _wanted(wrt, lookups, sparse)
    targets = [x for x, w in zip(wrt, wanted) if not w]
    targets += [Tensor(graph, node.outputs[0]) for w, reads in zip(wanted, lookups) if w for node in reads]
    results = iter(dense_grad(outputs, targets, seed=seed, allow_unused=allow_unused) if targets else [])
    dense = [None if w else next(results) for w in wanted]
    with graph, graph.building_as("grad"):
        return [
            _slices(x, reads, [next(results) for _ in reads]) if w else d
            for x, w, reads, d in zip(wrt, wanted, lookups, dense)
        ]


def _row_reads(graph: Graph, x: Tensor, on_path: set[int]) -> list[Node] | Node:
    """The take nodes that read `x` by rows on the way to the outputs, or the first other reader."""
    reads = []
    for user, slot in graph.users_of(x.value):
        if user not in on_path:
            continue
        node = graph.node(user)
        if node.op != "take" or slot != 0 or node.attrs["axis"] != 0:
            return node
        reads.append(node)
    return reads


def _wanted(wrt: list[Tensor], lookups: list, sparse: Sequence[Tensor] | None) -> list[bool]:
    """Which inputs get IndexedSlices: as asked, else those read by rows only; an input the outputs
    do not read stays with `gk.grad` (an error, or zeros with allow_unused)."""
    if sparse is None:
        return [isinstance(reads, list) and bool(reads) for reads in lookups]
    asked = {t.value for t in as_list(sparse)}
    unknown = [t.name for t in as_list(sparse) if t.value not in {x.value for x in wrt}]
    if unknown:
        raise GradientError(
            f"sparse.grad: sparse= names {unknown}, which are not among the inputs; list tables you differentiate"
        )
    for x, reads in zip(wrt, lookups):
        if x.value in asked and not isinstance(reads, list):
            raise GradientError(
                f"sparse.grad: {x.name} ({x.type}) is read by {reads.label} ({reads.op}), not only by take/embedding "
                "along axis 0, so its gradient is not rows of the table; drop it from sparse= to get a dense gradient"
            )
    return [x.value in asked and bool(reads) for x, reads in zip(wrt, lookups)]  # unread: as gk.grad


def _slices(table: Tensor, reads: list[Node], row_grads: list[Tensor]) -> Gradient:
    """The IndexedSlices of the lookups' gradients, concatenated."""
    parts = [_lookup_slices(table, node, g) for node, g in zip(reads, row_grads)]
    total = parts[0]
    for part in parts[1:]:
        total = add(total, part)
    return total


def _lookup_slices(table: Tensor, node: Node, row_grad: Tensor) -> IndexedSlices:
    """One lookup's slices: its ids flattened and resolved as its mode reads them, its gradient's rows."""
    graph = table.graph
    rows = table.shape[0]
    ids = gb.cast(gb.reshape(Tensor(graph, node.inputs[1]), (-1,)), "int64")
    values = gb.reshape(row_grad, (-1, *table.shape[1:]))
    mode = mode_of(node.attrs)
    if mode == "clip":
        return IndexedSlices(gb.clip(ids, 0, rows - 1), values, table.shape)
    wrapped = gb.where(gb.less(ids, 0), ids + rows, ids)
    if mode == "raise":
        return IndexedSlices(wrapped, values, table.shape)
    valid = gb.bitwise_and(gb.greater_equal(ids, -rows), gb.less(ids, rows))
    kept = gb.where(gb.reshape(valid, (-1, *[1] * (table.ndim - 1))), values, gb.zeros_like(values))
    return IndexedSlices(gb.where(valid, wrapped, gb.zeros_like(ids)), kept, table.shape)


def global_norm(grads: Sequence[Gradient]) -> Tensor:
    """sqrt of the sum of squares of every gradient, dense or sparse; a sparse one is coalesced first,
    so its rows count as in its dense form (torch.nn.utils.clip_grad_norm_ on the dense gradients)."""
    grads = _checked("global_norm", grads)
    with _values(grads[0]).graph:
        return utilities.global_norm([_norm_rows(g) for g in grads])


def clip_by_global_norm(grads: Sequence[Gradient], max_norm: float, eps: float = 1e-6) -> tuple[list[Gradient], Tensor]:
    """`(clipped, norm)` as `gk.clip_by_global_norm` (torch.nn.utils.clip_grad_norm_'s formula) over
    dense and sparse gradients; sparse ones stay sparse (their values are scaled)."""
    if not max_norm > 0:
        raise GradientError(f"sparse.clip_by_global_norm: max_norm must be positive, got {max_norm}")
    grads = _checked("clip_by_global_norm", grads)
    norm = global_norm(grads)
    with norm.graph:
        factor = utilities.clip_factor(norm, max_norm, eps)
        return [_scaled(g, factor) for g in grads], norm


def _values(g: Gradient) -> Tensor:
    return g.values if isinstance(g, IndexedSlices) else g


def _norm_rows(g: Gradient) -> Tensor:
    return coalesce(g).slices.values if isinstance(g, IndexedSlices) else g


def _scaled(g: Gradient, factor: Tensor) -> Gradient:
    if isinstance(g, IndexedSlices):
        return g.with_values(g.values * gb.cast(factor, g.dtype))
    return g * gb.cast(factor, g.dtype)


def _checked(what: str, grads: Sequence[Gradient]) -> list[Gradient]:
    kinds, described = (Tensor, IndexedSlices), "float Tensors or IndexedSlices"
    return utilities.checked_gradients(f"sparse.{what}", grads, kinds, described)
