"""Workloads for passes and benchmarks: random graphs (hypothesis), an MLP training step, an
elementwise chain, and a peak-memory measurement."""

from __future__ import annotations

from itertools import pairwise
from typing import Callable, Sequence

import numpy as np

from .. import graph as _graph
from ..graph import builder as gb
from ..symbolic import grad


def random_graph_feeds() -> dict[str, np.ndarray]:
    """Feeds for the graphs of `random_graphs`: x of shape (3, 4) and y of shape (4,)."""
    return {"x": np.linspace(-1.5, 1.5, 12, dtype=np.float32).reshape(3, 4), "y": np.float32([0.5, -1, 2, 0])}


_UNARY = (gb.exp, gb.tanh, gb.sigmoid, gb.relu, gb.neg, gb.abs)


_BINARY = (gb.add, gb.sub, gb.mul, gb.maximum, gb.minimum)


def _bait(kind: str, a: _graph.Tensor) -> _graph.Tensor:
    """An expression over `a` that a simplification rule rewrites (x*1, view chains, ...)."""
    rank = a.ndim
    one, zero = gb.constant(np.float32(1.0)), gb.constant(np.float32(0.0))
    table: dict[str, Callable[[], _graph.Tensor]] = {
        "mul_one": lambda: (a * one) * gb.broadcast_to(one, a.shape) + zero,
        "sub_div": lambda: (a - zero) / one - (a - a),
        "mul_zero": lambda: a * zero + a,
        "neg_neg": lambda: gb.neg(gb.neg(a)),
        "exp_log": lambda: gb.log(gb.exp(gb.tanh(a))) + gb.exp(gb.log(gb.sigmoid(a))),
        "transpose": lambda: gb.transpose(gb.transpose(a)) if rank == 2 else gb.transpose(a),
        "reshape": lambda: gb.reshape(gb.reshape(a, (-1,)), a.shape) + gb.reshape(a, a.shape + (1,))[..., 0],
        "broadcast": lambda: gb.broadcast_to(gb.broadcast_to(a, (1, *a.shape)), (2, *a.shape))[0],
        "sum_broadcast": lambda: gb.sum(gb.broadcast_to(a, (3, *a.shape)), 0) + gb.sum(gb.sum(a, -1, True), 0),
        "cast": lambda: gb.emit("cast", a, dtype="float32"),
        "reassociate": lambda: (a * 2.0) * 3.0 + ((a + 1.5) + 0.25),
    }
    return table[kind]()


def random_graphs(max_ops: int = 12):
    """A hypothesis strategy for random graphs over x[3,4], y[4] and a small constant, with
    repeats (for CSE) and expressions that simplification rules rewrite. Draws (graph, outputs);
    feed with `random_graph_feeds()`. Needs hypothesis (a test dependency)."""
    from hypothesis import strategies as st

    @st.composite
    def graphs(draw: Callable) -> tuple[_graph.Graph, list[_graph.Value]]:
        values = draw(st.lists(st.floats(-2, 2, width=32), min_size=4, max_size=4))
        with _graph.Graph("random") as g:
            pool = [gb.input("x", (3, 4)), gb.input("y", (4,)), gb.constant(np.array(values, np.float32))]
            for _ in range(draw(st.integers(1, max_ops))):
                kind = draw(st.sampled_from(["unary", "binary", "reduce", "matmul", "repeat", "bait"]))
                a = draw(st.sampled_from(pool))
                if kind == "unary":
                    pool.append(draw(st.sampled_from(_UNARY))(a))
                elif kind == "binary":
                    fits = [p for p in pool if p.shape == a.shape or (p.ndim == 1 and a.shape[-1:] == p.shape)]
                    pool.append(draw(st.sampled_from(_BINARY))(a, draw(st.sampled_from(fits))))
                elif kind == "reduce":
                    pool.append(gb.sum(a, 0, keepdims=True) if a.ndim else a)
                elif kind == "matmul" and a.shape == (3, 4):
                    pool.append(a @ gb.transpose(a))
                elif kind == "bait":
                    bait = ["mul_one", "sub_div", "mul_zero", "neg_neg", "exp_log", "transpose", "reshape"]
                    bait += ["broadcast", "sum_broadcast", "cast", "reassociate"]
                    pool.append(_bait(draw(st.sampled_from(bait)), a))
                else:
                    pool.append(gb.tanh(a) * gb.tanh(a))
            outputs = draw(st.lists(st.sampled_from(pool[3:] or pool), min_size=1, max_size=3))
        return g, [o.value for o in outputs]

    return graphs()


def mlp_training_step(widths: Sequence[int] = (30, 64, 64, 10), seed: int = 0):
    """A ReLU MLP with a symbolic batch "N" and a cross-entropy loss: (graph, [loss, gradients of
    every weight and bias]), the workload backends are checked and exported with."""
    rng = np.random.default_rng(seed)
    with _graph.Graph("mlp") as g:
        h, labels = gb.input("x", ("N", widths[0])), gb.input("labels", ("N",), "int64")
        params = []
        for i, (a, b) in enumerate(pairwise(widths)):
            params += [gb.param(f"w{i}", rng.normal(0, a**-0.5, (a, b)).astype("float32"))]
            params += [gb.param(f"b{i}", np.zeros(b, "float32"))]
            h = h @ params[-2] + params[-1]
            h = gb.relu(h) if i < len(widths) - 2 else h
        loss = gb.cross_entropy(h, labels)
    return g, [loss, *grad(loss, params)]


def mlp_feeds(n: int, widths: Sequence[int] = (30, 64, 64, 10)) -> dict[str, np.ndarray]:
    """Inputs for `mlp_training_step`: a batch of `n` rows and labels."""
    rng = np.random.default_rng(n)
    return {"x": rng.normal(size=(n, widths[0])).astype("float32"), "labels": rng.integers(0, widths[-1], n)}


def elementwise_chain(ops: int = 50, shape: tuple[int, int] = (1024, 1024)):
    """tanh, *0.9, +0.1 cycled `ops` times on x[shape], a sum loss: (graph, [loss, d loss / d x]),
    the workload where memory planning and fusion matter most."""
    steps = [gb.tanh, lambda t: t * 0.9, lambda t: t + 0.1]
    with _graph.Graph("chain") as g:
        x = gb.input("x", shape)
        h = x
        for i in range(ops):
            h = steps[i % len(steps)](h)
        loss = gb.sum(h)
    from ..symbolic import grad

    return g, [loss, *grad(loss, [x])]


def measured_peak_bytes(fn: Callable[..., object], feeds: dict[str, np.ndarray]) -> int:
    """The peak bytes tracemalloc sees allocated during one call of `fn(**feeds)`, after a warm-up
    call (which plans and caches outside the measurement)."""
    import tracemalloc

    fn(**feeds)
    tracemalloc.start()
    try:
        fn(**feeds)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
