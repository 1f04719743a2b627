"""The numpy reference executor: runs each node's numpy semantics in topological order."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import sympy

from ..graph import GradkilnError, Graph, LoweringError, get_op
from ..graph.types import is_symbolic
from .executable import Executable, resolve


class NumpyExecutable(Executable):
    """Interprets the graph with numpy; frees each value after its last use."""

    target = "numpy"

    def __init__(self, graph: Graph, outputs: Any) -> None:
        super().__init__(graph, outputs)
        position = {node_id: i for i, node_id in enumerate(self.node_ids)}
        keep = {v.node for v in self.output_values}
        self.last_use = {}
        for node_id in self.node_ids:
            users = [position[u] for u in graph.nx.successors(node_id) if u in position]
            self.last_use[node_id] = len(self.node_ids) if node_id in keep else max(users, default=-1)
        self.steps = [(node_id, graph.node(node_id), graph.inputs_of(node_id)) for node_id in self.node_ids]
        self.symbolic_attrs = {n.id for _, n, _ in self.steps if any(map(is_symbolic, n.attrs.values()))}

    def run(self, feeds: dict[str, np.ndarray], bindings: dict[sympy.Symbol, int]) -> Sequence[np.ndarray]:
        env: dict[int, tuple[np.ndarray, ...]] = {}
        free_at: dict[int, list[int]] = {}
        for node_id, last in self.last_use.items():
            free_at.setdefault(last, []).append(node_id)
        for step, (node_id, node, inputs) in enumerate(self.steps):
            if node.op in ("input", "param"):
                env[node_id] = (feeds[node.name],)
            else:
                attrs = node.attrs
                if node_id in self.symbolic_attrs:
                    attrs = {k: resolve(v, bindings) for k, v in attrs.items()}
                env[node_id] = self._compute(node, attrs, [env[v.node][v.index] for v in inputs])
            for dead in free_at.get(step, ()):
                env.pop(dead, None)
        return [env[v.node][v.index] for v in self.output_values]

    @staticmethod
    def _compute(node: Any, attrs: dict, args: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        try:
            with np.errstate(all="ignore"):
                result = get_op(node.op).compute(*args, **attrs)
        except GradkilnError:
            raise
        except Exception as err:  # numpy's own error, reported with the node that raised it
            shapes = ", ".join(str(a.shape) for a in args)
            raise LoweringError(f"numpy: {node.label} = {node.op}({shapes}) failed: {err}") from err
        results = result if isinstance(result, tuple) else (result,)
        return tuple(np.asarray(r, dtype=t.dtype) for r, t in zip(results, node.types))
