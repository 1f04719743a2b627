"""Tracing: build a graph by calling a Python function on symbolic inputs.

Above the IR (it lives beside the public API, not in graph/) because a `Traced` function runs its
graph through `lowering.compile`; graph/ depends on no layer above it."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

from .graph import Graph, Tensor, TensorType
from .graph.builder import input as graph_input
from .lowering import compile as compile_graph


def spec(shape: Sequence[Any], dtype: Any = "float32") -> TensorType:
    """An input specification for `trace`: shape (ints or names like "N") and dtype."""
    return TensorType(dtype, tuple(shape))


class Traced:
    """The result of tracing: the graph, its input tensors (by parameter name) and outputs."""

    def __init__(self, graph: Graph, inputs: dict[str, Tensor], outputs: Any) -> None:
        self.graph = graph
        self.inputs = inputs
        self.outputs = outputs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the traced function with the numpy executor."""
        feeds = dict(zip(self.inputs, args)) | kwargs
        return compile_graph(self.graph, self.outputs, target="numpy")(**feeds)

    def __str__(self) -> str:
        return str(self.graph)


def trace(*specs: TensorType, name: str | None = None, **named_specs: TensorType) -> Callable[[Callable], Traced]:
    """Decorator: `@gk.trace(gk.spec(("N", 4)))` turns a function of tensors into a `Traced` graph.

    Each parameter of the function becomes a graph input named after it; the function may
    create params and constants and returns a tensor, a tuple or a dict of tensors.
    """

    def decorate(fn: Callable) -> Traced:
        names = list(inspect.signature(fn).parameters)
        types = dict(zip(names, specs)) | named_specs
        graph = Graph(name or fn.__name__)
        with graph:
            inputs = {n: graph_input(n, types[n].shape, types[n].dtype) for n in names}
            outputs = fn(**inputs)
        return Traced(graph, inputs, outputs)

    return decorate
