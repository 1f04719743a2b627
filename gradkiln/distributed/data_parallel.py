"""`data_parallel`: a training step made data-parallel, as a graph-to-graph pass.

Every worker runs the same step on its own shard of the batch (`shard`). The pass inserts, after
the gradients and before everything that reads them (clipping, loss-scale checks, the optimizer),
an all_reduce of the gradients over the group, so each worker continues with the gradient of the
whole batch: the mean over workers (`average=True`, for a loss that is a mean over the batch:
equal shards make it the full batch's gradient) or the sum.

Gradients travel in buckets, as in PyTorch's DistributedDataParallel: in the order the backward
produces them (the last layer's first), flattened and concatenated up to `bucket_bytes` per bucket
(one dtype each), one all_reduce per bucket, then sliced back. Fewer, larger messages amortize
each collective's latency; `bucket_bytes=0` gives one all_reduce per gradient.

What the step already does composes: accumulation over micro-batches reduces once per step (the
accumulated gradient); a loss scaler's overflow check reads the reduced gradient, so every worker
skips the same steps; clipping by global norm (in the step, or `clip_norm=`) sees the norm of the
reduced gradient. Batch-norm running statistics stay local to each worker. Collectives run when the
executor reaches them, after the backward (the numpy executor and llvm keep one thread of
execution), so communication does not yet overlap the backward.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..graph import Graph, GraphError, Tensor, Value
from ..graph import builder as gb
from ..graph.builder import collective as collectives
from ..graph.dtypes import is_float
from ..graph.outputs import normalize_outputs, restructure
from ..lowering import compile as compile_graph
from ..lowering.executable import Executable
from ..onnx_io.training import TrainingGraph
from ..passes.communication import CommunicationReport, communication
from ..symbolic.utilities import clip_by_global_norm

DEFAULT_BUCKET_BYTES = 25 * 2**20  # DistributedDataParallel's default bucket_cap_mb


@dataclass
class DataParallelStep:
    """The data-parallel step: `graph` and `outputs` (the structure given, the gradients now
    reduced), and the gradient labels of each bucket in the order their all_reduce runs."""

    graph: Graph
    outputs: Any
    buckets: list[list[str]]
    world_size: int

    def compile(self, target: Any = "numpy", **options: Any) -> Executable:
        """`gk.compile` of the step ("numpy" or "llvm"; every worker compiles the same graph)."""
        return compile_graph(self.graph, self.outputs, target=target, **options)

    def communication(self, bindings: dict[str, int] | None = None) -> CommunicationReport:
        """The step's collectives and the bytes each worker sends (ring model)."""
        return communication(self.graph, self.outputs, bindings)


def data_parallel(
    step: Graph | TrainingGraph,
    outputs: Any = None,
    gradients: Sequence[Tensor | str] | None = None,
    *,
    group: str = "world",
    world_size: int | None = None,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    average: bool = True,
    clip_norm: float | None = None,
    average_outputs: Sequence[str] = (),
) -> Any:
    """The data-parallel form of a training step (on a copy; the step is unchanged).

    `step` is a graph with its `outputs` (what `gk.compile` takes) and `gradients` (Tensors of it,
    or names of dict outputs), or an `onnx_io.training_graph` result, whose `grad.<param>` outputs
    are the gradients (a TrainingGraph is returned then, else a `DataParallelStep`).
    `world_size` defaults to the registered group's size. `clip_norm`: clip the reduced gradients
    by their global norm before anything reads them. `average_outputs`: names of dict outputs
    (a loss) to report as their mean over the workers instead of the local value.
    """
    if isinstance(step, TrainingGraph):
        grads = [f"grad.{p}" for p in step.params]
        result = data_parallel(
            step.graph, step.outputs, grads, group=group, world_size=world_size, bucket_bytes=bucket_bytes,
            average=average, clip_norm=clip_norm, average_outputs=average_outputs,
        )  # fmt: skip
        return dataclasses.replace(step, graph=result.graph, outputs=result.outputs)
    size = collectives.resolve_world_size("data_parallel", group, world_size)
    graph = step.copy()
    values, structure = normalize_outputs(step, outputs)
    grads = _gradient_values(graph, values, structure, gradients)
    users = {v: [u for u, _ in graph.users_of(v)] for v in grads}
    reduced: dict[Value, Value] = {}
    buckets = _buckets(graph, grads, bucket_bytes)
    reduction = "mean" if average else "sum"
    with graph:
        for bucket in buckets:
            reduced |= _all_reduce_bucket(graph, bucket, reduction, group, size)
        if clip_norm is not None:
            clipped, _ = clip_by_global_norm([Tensor(graph, reduced[v]) for v in grads], clip_norm)
            reduced = {v: t.value for v, t in zip(grads, clipped)}
        for name in average_outputs:
            old = _named_output(values, structure, name)
            reduced[old] = collectives.all_reduce(Tensor(graph, old), "mean", group, size).value
    for v in grads:
        graph.replace_uses_in(users[v], v, reduced[v])
    new_outputs = restructure([Tensor(graph, reduced.get(v, v)) for v in values], structure)
    labels = [[graph.label_of(v) for v in bucket] for bucket in buckets]
    return DataParallelStep(graph, new_outputs, labels, size)


def _named_output(values: list[Value], structure: Any, name: str) -> Value:
    names = {k: i for i, k in enumerate(structure)} if isinstance(structure, tuple) else {}
    if name not in names:
        raise GraphError(f"data_parallel: no output named {name!r}; the outputs are {sorted(names)}")
    return values[names[name]]


def _gradient_values(graph: Graph, values: list[Value], structure: Any, gradients: Any) -> list[Value]:
    """The gradients as Values, in the order the backward produces them, each once."""
    if not gradients:
        raise GraphError("data_parallel: pass the gradients to reduce (Tensors of the step, or output names)")
    found = []
    for g in gradients:
        value = _named_output(values, structure, g) if isinstance(g, str) else g.value
        if not is_float(graph.type_of(value).dtype):
            raise GraphError(
                f"data_parallel: gradient {graph.label_of(value)} is {graph.type_of(value)}; pass float gradients"
            )
        found.append(value)
    position = {node: i for i, node in enumerate(graph.topological_order())}
    return sorted(dict.fromkeys(found), key=lambda v: (position[v.node], v.index))


def _buckets(graph: Graph, grads: list[Value], bucket_bytes: int) -> list[list[Value]]:
    """Consecutive gradients grouped up to `bucket_bytes` (one dtype per bucket; a gradient with
    symbolic dims or larger than the bound alone)."""
    buckets: list[list[Value]] = []
    size = 0
    for v in grads:
        t = graph.type_of(v)
        nbytes = int(np.prod(t.shape)) * np.dtype(t.dtype).itemsize if t.is_static else None
        fits = buckets and nbytes is not None and size + nbytes <= bucket_bytes
        if fits and graph.type_of(buckets[-1][0]).dtype == t.dtype and graph.type_of(buckets[-1][0]).is_static:
            buckets[-1].append(v)
            size += nbytes
        else:
            buckets.append([v])
            size = nbytes or 0
    return buckets


def _all_reduce_bucket(graph: Graph, bucket: list[Value], reduction: str, group: str, size: int) -> dict[Value, Value]:
    """One all_reduce of the bucket's gradients, flattened and concatenated; the reduced ones."""
    tensors = [Tensor(graph, v) for v in bucket]
    if len(tensors) == 1:
        return {bucket[0]: collectives.all_reduce(tensors[0], reduction, group, size).value}
    flat = collectives.all_reduce(gb.concat([gb.reshape(t, (-1,)) for t in tensors]), reduction, group, size)
    reduced, start = {}, 0
    for v, t in zip(bucket, tensors):
        count = int(np.prod(t.shape))
        reduced[v] = gb.reshape(flat[start : start + count], t.shape).value
        start += count
    return reduced
