"""Which values a caller wants out of a graph: a tensor, a node name, a list or a dict of them.

Every consumer of a graph's outputs (the backends, passes that keep them live, the exporter, the
drawing) reads them through `normalize_outputs` and gives results back in the caller's structure
with `restructure`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .errors import GraphError
from .ir import Graph, Value
from .tensor import Tensor


def normalize_outputs(graph: Graph, outputs: Any) -> tuple[list[Value], Any]:
    """Flatten `outputs` (a tensor, a name, a list or a dict of them) to values plus its structure."""
    if isinstance(outputs, Mapping):
        return [_as_value(graph, o) for o in outputs.values()], tuple(outputs)
    if isinstance(outputs, (list, tuple)) and not isinstance(outputs, Value):  # a Value is a NamedTuple
        return [_as_value(graph, o) for o in outputs], len(outputs)
    return [_as_value(graph, outputs)], None


def restructure(flat: Sequence[Any], structure: Any) -> Any:
    """The inverse of `normalize_outputs`: put flat items back into the user's structure."""
    if structure is None:
        return flat[0]
    if isinstance(structure, tuple):
        return dict(zip(structure, flat))
    return list(flat)


def _as_value(graph: Graph, out: Any) -> Value:
    if isinstance(out, Tensor):
        if out.graph is not graph:
            raise GraphError(f"output {out!r} belongs to graph '{out.graph.name}', not '{graph.name}'")
        return out.value
    if isinstance(out, str):
        return graph.by_name(out).outputs[0]
    if isinstance(out, Value):
        return out
    raise GraphError(f"an output must be a Tensor, a node name or a Value, got {type(out).__name__}")
