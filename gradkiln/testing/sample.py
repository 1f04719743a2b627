"""One sample graph of an op (`OpSample`) and the random inputs samples are drawn with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .. import graph as _graph
from ..graph import builder as gb
from ..graph.dtypes import is_float


@dataclass
class OpSample:
    """A graph exercising `op`: `build(**inputs)` maps input tensors to one output tensor.

    `feeds` holds the input arrays; `shapes` optionally overrides an input's declared shape
    (to use symbolic dims such as "N"); `wrt` lists the inputs to differentiate.
    """

    op: str
    feeds: dict[str, np.ndarray]
    build: Callable[..., _graph.Tensor]
    shapes: dict[str, tuple] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or self.op

    @property
    def wrt(self) -> list[str]:
        return [k for k, v in self.feeds.items() if is_float(v.dtype.name)]

    def feeds_at(self, batch: int) -> dict[str, np.ndarray]:
        """The feeds with every symbolic axis tiled (or cut) to `batch`, so labels stay valid."""
        feeds = dict(self.feeds)
        for name, shape in self.shapes.items():
            for axis, dim in enumerate(shape):
                if isinstance(dim, str):
                    feeds[name] = np.take(feeds[name], np.arange(batch) % feeds[name].shape[axis], axis=axis)
        return feeds

    def with_gradients(
        self, batch: int | None = None
    ) -> tuple[_graph.Graph, dict[str, _graph.Tensor], dict[str, np.ndarray]]:
        """The sample's graph plus the vector-Jacobian products of its output with a `seed`
        input (fed with random values) for every float input: (graph, outputs by name
        "out" / "d_<input>", feeds, at `batch` rows on symbolic axes when given). Forward and
        gradient nodes are checked together."""
        from ..lowering import compile as compile_graph
        from ..symbolic import grad

        graph, inputs, out = self.graph()
        with graph:
            seed = gb.input("seed", out.shape, out.dtype)
        grads = grad(out, [inputs[name] for name in self.wrt], seed=seed)
        outputs = {"out": out} | {f"d_{name}": g for name, g in zip(self.wrt, grads)}
        feeds = self.feeds_at(batch) if batch else dict(self.feeds)
        out_shape = np.shape(compile_graph(graph, out)(**feeds))
        feeds["seed"] = np.random.default_rng(1).normal(size=out_shape).astype(out.dtype)
        return graph, outputs, feeds

    def graph(self) -> tuple[_graph.Graph, dict[str, _graph.Tensor], _graph.Tensor]:
        """Build a fresh graph: (graph, input tensors by name, output tensor)."""
        with _graph.Graph(self.name) as g:
            inputs = {k: gb.input(k, self.shapes.get(k, v.shape), v.dtype.name) for k, v in self.feeds.items()}
            out = self.build(**inputs)
        return g, inputs, out


def rand(
    rng: np.random.Generator, shape: Sequence[int], dtype: str, low: float = -2.0, high: float = 2.0
) -> np.ndarray:
    return rng.uniform(low, high, shape).astype(dtype)


def away_from_zero(rng: np.random.Generator, shape: Sequence[int], dtype: str) -> np.ndarray:
    x = rng.uniform(0.3, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    return x.astype(dtype)


def off_grid(rng: np.random.Generator, shape: Sequence[int], dtype: str) -> np.ndarray:
    """Values at least 0.1 away from integers and from halves (for floor, ceil and round)."""
    x = rng.integers(-3, 3, shape) + rng.uniform(0.1, 0.4, shape) * rng.choice([-1.0, 1.0], shape)
    return x.astype(dtype)
