"""Test helpers users can reuse: one sample graph per op, and finite-difference gradient checks.

`op_samples()` gives, for every op of the table, a small graph that exercises it (with inputs
away from non-differentiable points), so every layer can be checked op by op against the
numpy reference: gradients against finite differences, TVM and ONNX against numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Callable, Sequence

import numpy as np

from . import graph as _graph
from .graph import builder as gb
from .graph.dtypes import is_float


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
        from .lowering import compile as compile_graph
        from .symbolic import grad

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


def _rand(
    rng: np.random.Generator, shape: Sequence[int], dtype: str, low: float = -2.0, high: float = 2.0
) -> np.ndarray:
    return rng.uniform(low, high, shape).astype(dtype)


def _away_from_zero(rng: np.random.Generator, shape: Sequence[int], dtype: str) -> np.ndarray:
    x = rng.uniform(0.3, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    return x.astype(dtype)


def _off_grid(rng: np.random.Generator, shape: Sequence[int], dtype: str) -> np.ndarray:
    """Values at least 0.1 away from integers and from halves (for floor, ceil and round)."""
    x = rng.integers(-3, 3, shape) + rng.uniform(0.1, 0.4, shape) * rng.choice([-1.0, 1.0], shape)
    return x.astype(dtype)


def _math_samples(dtype: str, rng: np.random.Generator) -> list[OpSample]:
    """Samples of the math family: elementwise math, binary mod/floordiv/atan2, reductions."""

    def r(*shape: int, low: float = -2.0, high: float = 2.0) -> np.ndarray:
        return _rand(rng, shape, dtype, low, high)

    def nz(*shape: int) -> np.ndarray:
        return _away_from_zero(rng, shape, dtype)

    distinct = (rng.permutation(12).reshape(3, 4) * 0.37 - 2).astype(dtype)
    ints = {"i": np.array([7, -7, 6, -5]), "j": np.array([3, 3, -4, -2])}
    unary = {
        "exp2": r(3, 4),
        "log1p": r(3, 4, low=-0.5),
        "expm1": r(3, 4),
        "sin": r(3, 4),
        "cos": r(3, 4),
        "tan": r(3, 4, low=-1.2, high=1.2),
        "asin": r(3, 4, low=-0.8, high=0.8),
        "acos": r(3, 4, low=-0.8, high=0.8),
        "atan": r(3, 4),
        "sinh": r(3, 4),
        "cosh": r(3, 4),
        "erf": r(3, 4),
        "softplus": r(3, 4),
        "silu": r(3, 4),
        "reciprocal": nz(3, 4),
        "rsqrt": r(3, 4, low=0.3),
        "square": r(3, 4),
    }
    samples = [OpSample(op, {"x": x}, getattr(gb, op)) for op, x in unary.items()]
    samples += [
        OpSample(op, {"x": _off_grid(rng, (3, 4), dtype)}, lambda x, op=op: getattr(gb, op)(x) * x)
        for op in ("floor", "ceil", "round")
    ]
    return samples + [
        OpSample("gelu", {"x": r(3, 4)}, gb.gelu),
        OpSample("gelu", {"x": r(3, 4)}, lambda x: gb.gelu(x, "tanh"), name="gelu_tanh"),
        OpSample("leaky_relu", {"x": nz(3, 4)}, lambda x: gb.leaky_relu(x, 0.1)),
        OpSample("elu", {"x": nz(3, 4)}, lambda x: gb.elu(x, 1.5)),
        OpSample("clip", {"x": np.linspace(-2, 2, 12, dtype=dtype).reshape(3, 4)}, lambda x: gb.clip(x, -1.0, 1.0)),
        OpSample("clip", {"x": np.linspace(-2, 2, 12, dtype=dtype)}, lambda x: gb.clip(x, hi=0.5), name="clip_hi"),
        OpSample("atan2", {"a": r(3, 4), "b": nz(4)}, gb.atan2),
        OpSample("mod", {"a": r(3, 4, low=-3, high=3), "b": nz(4)}, gb.mod),
        OpSample("mod", {"x": r(4), **ints}, lambda x, i, j: x * gb.cast(gb.mod(i, j), dtype), name="mod_int"),
        OpSample("floordiv", {"a": r(3, 4, low=-3, high=3), "b": nz(4)}, lambda a, b: gb.floordiv(a, b) * a),
        OpSample(
            "floordiv", {"x": r(4), **ints}, lambda x, i, j: x * gb.cast(gb.floordiv(i, j), dtype), name="floordiv_int"
        ),
        OpSample("min", {"x": distinct}, lambda x: gb.min(x, 1)),
        OpSample("prod", {"x": nz(3, 4)}, lambda x: gb.prod(x, 1)),
        OpSample("prod", {"x": nz(3, 4)}, lambda x: gb.prod(x, 0, keepdims=True), name="prod_keepdims"),
        OpSample("logsumexp", {"x": r(3, 4)}, lambda x: gb.logsumexp(x, 1)),
        OpSample("var", {"x": r(3, 4)}, lambda x: gb.var(x, 1, correction=1)),
        OpSample("var", {"x": r(3, 4)}, lambda x: gb.var(x, 0), shapes={"x": ("N", 4)}, name="var_symbolic"),
        OpSample("std", {"x": r(3, 4)}, lambda x: gb.std(x, 0, keepdims=True)),
        OpSample("argmax", {"x": distinct}, lambda x: x * gb.cast(gb.argmax(x, 1, keepdims=True), dtype)),
        OpSample("argmin", {"x": distinct}, lambda x: gb.sum(x, 0) * gb.cast(gb.argmin(x, 0), dtype)),
        OpSample("cumsum", {"x": r(3, 4)}, lambda x: gb.cumsum(x, 1)),
        OpSample("cumsum", {"x": r(3, 4)}, lambda x: gb.cumsum(x, 0, True, True), name="cumsum_exclusive_reverse"),
        OpSample("cumprod", {"x": nz(3, 4)}, lambda x: gb.cumprod(x, 1)),
    ]


def op_samples(dtype: str = "float64", seed: int = 0) -> list[OpSample]:
    """One or more sample graphs per op of the table, in floating dtype `dtype`."""
    rng = np.random.default_rng(seed)

    def r(*shape: int, low: float = -2.0, high: float = 2.0) -> np.ndarray:
        return _rand(rng, shape, dtype, low, high)

    def nz(*shape: int) -> np.ndarray:
        return _away_from_zero(rng, shape, dtype)

    distinct = (rng.permutation(12).reshape(3, 4) * 0.37 - 2).astype(dtype)  # no ties for max
    samples = [
        OpSample("neg", {"x": r(3, 4)}, lambda x: -x),
        OpSample("abs", {"x": nz(3, 4)}, lambda x: gb.abs(x)),
        OpSample("sign", {"x": nz(3, 4)}, lambda x: gb.sign(x) * x),
        OpSample("relu", {"x": nz(3, 4)}, gb.relu),
        OpSample("exp", {"x": r(3, 4)}, gb.exp),
        OpSample("log", {"x": r(3, 4, low=0.2)}, gb.log),
        OpSample("sqrt", {"x": r(3, 4, low=0.2)}, gb.sqrt),
        OpSample("tanh", {"x": r(3, 4)}, gb.tanh),
        OpSample("sigmoid", {"x": r(3, 4)}, gb.sigmoid),
        OpSample("add", {"a": r(3, 4), "b": r(4)}, lambda a, b: a + b),
        OpSample("sub", {"a": r(3, 1), "b": r(1, 4)}, lambda a, b: a - b),
        OpSample("mul", {"a": r(2, 3, 4), "b": r(3, 1)}, lambda a, b: a * b),
        OpSample("div", {"a": r(3, 4), "b": r(3, 4, low=0.5)}, lambda a, b: a / b),
        OpSample("pow", {"a": r(3, 4, low=0.3), "b": r(4, low=-1.5, high=1.5)}, lambda a, b: a**b),
        OpSample("maximum", {"a": r(3, 4), "b": r(3, 4) + 5 * np.sign(r(3, 4))}, gb.maximum),
        OpSample("minimum", {"a": r(3, 4), "b": r(4) + 5 * np.sign(r(4))}, gb.minimum),
        OpSample("where", {"a": r(3, 4), "b": r(4), "c": r(3, 1)}, lambda a, b, c: gb.where(c > 0, a, b)),
        OpSample("cast", {"x": r(3, 4)}, lambda x: gb.cast(gb.cast(x, "float32"), dtype) * x),
        OpSample("sum", {"x": r(2, 3, 4)}, lambda x: gb.sum(x, (0, 2))),
        OpSample("sum", {"x": r(2, 3, 4)}, lambda x: gb.sum(x, 1, keepdims=True), name="sum_keepdims"),
        OpSample("mean", {"x": r(2, 3, 4)}, lambda x: gb.mean(x, -1)),
        OpSample("max", {"x": distinct}, lambda x: gb.max(x, 1)),
        OpSample("max", {"x": distinct}, lambda x: gb.max(x, 0, keepdims=True), name="max_keepdims"),
        OpSample("size", {"x": r(3, 4)}, lambda x: gb.sum(x) / gb.size(x, 0), shapes={"x": ("N", 4)}),
        OpSample("softmax", {"x": r(3, 5)}, lambda x: gb.softmax(x) * x),
        OpSample("log_softmax", {"x": r(3, 5)}, lambda x: gb.log_softmax(x, 0) * x),
        OpSample("reshape", {"x": r(2, 3, 4)}, lambda x: gb.reshape(x, (4, -1)) * gb.reshape(x, (4, 6))),
        OpSample("transpose", {"x": r(2, 3, 4)}, lambda x: gb.transpose(x, (2, 0, 1))),
        OpSample("broadcast_to", {"x": r(3, 1)}, lambda x: gb.broadcast_to(x, (2, 3, 4))),
        OpSample("expand_dims", {"x": r(3, 4)}, lambda x: gb.expand_dims(x, (0, 2))),
        OpSample("squeeze", {"x": r(3, 1, 4)}, lambda x: gb.squeeze(x, 1)),
        OpSample("concat", {"a": r(2, 3), "b": r(4, 3)}, lambda a, b: gb.concat([a, b, a], 0)),
        OpSample("slice", {"x": r(5, 6)}, lambda x: x[1:4, ::2]),
        OpSample("slice", {"x": r(3, 6)}, lambda x: x[:, 2:], shapes={"x": ("N", 6)}, name="slice_symbolic"),
        OpSample("pad", {"x": r(3, 4)}, lambda x: gb.pad(x, (1, 0), (2, 1), (0, 2))),
        OpSample("matmul", {"a": r(3, 4), "b": r(4, 5)}, lambda a, b: a @ b),
        OpSample("matmul", {"a": r(2, 3, 4), "b": r(4, 5)}, lambda a, b: a @ b, name="matmul_batched"),
        OpSample(
            "one_hot",
            {"x": r(4, 3), "i": np.array([0, 2, 1, 5])},
            lambda x, i: x * gb.one_hot(i, 3, dtype),
        ),
        OpSample("constant", {"x": r(3)}, lambda x: x * gb.constant(np.arange(3, dtype=dtype))),
        OpSample("param", {"x": r(3)}, lambda x: x * gb.param("p", np.linspace(-1, 1, 3).astype(dtype))),
        OpSample("input", {"x": r(3)}, lambda x: x * 1.0),
        OpSample("stop_gradient", {"x": nz(3, 4)}, lambda x: gb.stop_gradient(gb.sign(x)) * x),
        OpSample("custom_vjp", {"x": r(3, 4)}, lambda x: _softplus_with_rule()(x) * x),
        OpSample(
            "cross_entropy",
            {"z": r(4, 5), "y": np.array([0, 3, 4, 1])},
            lambda z, y: gb.cross_entropy(z, y),
            shapes={"z": ("N", 5), "y": ("N",)},
        ),
    ]
    samples += [
        OpSample(op, {"a": r(3, 4), "b": r(4)}, lambda a, b, op=op: gb.where(gb.emit(op, a, b), a, b), name=op)
        for op in ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal")
    ]
    return (
        samples
        + _math_samples(dtype, rng)
        + _nn_samples(dtype, rng)
        + _custom_jvp_samples(dtype, rng)
        + _linalg_samples(dtype, rng)
        + _select_samples(dtype, rng)
        + _fused_samples(dtype, rng)
    )


def _nn_samples(dtype: str, rng: np.random.Generator) -> list[OpSample]:
    """Samples of the nn family: convolutions and pools with stride, padding, dilation and
    groups, and take/scatter_add with repeated and negative indices."""

    def r(*shape: int) -> np.ndarray:
        return _rand(rng, shape, dtype)

    distinct = (rng.permutation(2 * 3 * 5 * 5).reshape(2, 3, 5, 5) * 0.05 - 3).astype(dtype)  # no ties
    ids = {"i": np.array([[0, 4], [2, -1]]), "j": np.array([2, 0, 2], "int32")}
    conv = {"stride": (2, 1), "padding": ((1, 0), (1, 2)), "dilation": (1, 2), "groups": 2}
    return [
        OpSample("conv2d", {"x": r(2, 4, 5, 5), "w": r(6, 2, 3, 3)}, lambda x, w: gb.conv2d(x, w, **conv)),
        OpSample(
            "conv2d", {"x": r(2, 3, 4, 4), "w": r(2, 3, 2, 2)}, gb.conv2d, shapes={"x": ("N", 3, 4, 4)}, name="conv2d_n"
        ),
        OpSample(
            "conv_transpose2d",
            {"x": r(2, 4, 3, 3), "w": r(4, 3, 2, 2)},
            lambda x, w: gb.conv_transpose2d(x, w, 2, 1, 1, groups=2),
        ),
        OpSample("max_pool2d", {"x": distinct}, lambda x: gb.max_pool2d(x, 3, 2, 1)),
        OpSample("avg_pool2d", {"x": r(2, 3, 5, 5)}, lambda x: gb.avg_pool2d(x, (2, 3), (1, 2), ((1, 1), (1, 0)))),
        OpSample(
            "avg_pool2d",
            {"x": r(2, 3, 5, 4)},
            lambda x: gb.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
            name="avg_pool2d_exclude_pad",
        ),
        OpSample("take", {"x": r(5, 3), "i": ids["i"]}, lambda x, i: gb.embedding(x, i)),
        OpSample("take", {"x": r(3, 4), "j": ids["j"]}, lambda x, j: gb.take(x, j, 1), name="take_axis1"),
        OpSample(
            "scatter_add", {"x": r(4, 3), "upd": r(3, 3), "j": ids["j"]}, lambda x, upd, j: gb.scatter_add(x, j, upd)
        ),
    ]


def _softplus_with_rule() -> Callable[[_graph.Tensor], _graph.Tensor]:
    """log(1 + e**x) whose gradient comes from a custom_vjp rule: g * sigmoid(x)."""
    from .symbolic import custom_vjp

    def softplus(x: _graph.Tensor) -> _graph.Tensor:
        return gb.log(1.0 + gb.exp(x))

    return custom_vjp(softplus).defvjp(lambda x: (softplus(x), [x]), lambda res, g: [g * gb.sigmoid(res[0])])


def numeric_grads(
    fn: Callable[[dict[str, np.ndarray]], np.ndarray],
    feeds: dict[str, np.ndarray],
    wrt: Sequence[str],
    seed: np.ndarray,
    eps: float = 1e-6,
) -> dict[str, np.ndarray]:
    """Central finite differences of sum(seed * fn(feeds)) with respect to each input in `wrt`."""
    grads = {}
    for name in wrt:
        base = feeds[name]
        g = np.zeros_like(base, dtype=np.float64)
        for i in np.ndindex(base.shape):
            values = []
            for delta in (eps, -eps):
                shifted = base.copy()
                shifted[i] += delta
                values.append(np.sum(seed * fn({**feeds, name: shifted})))
            g[i] = (values[0] - values[1]) / (2 * eps)
        grads[name] = g
    return grads


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
    from .symbolic import grad  # imported here: symbolic.check imports this module

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
    from .symbolic import grad

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


def _custom_jvp_samples(dtype: str, rng: np.random.Generator) -> list[OpSample]:
    """custom_jvp: a * tanh(b) (b broadcast) whose derivatives, in both modes, come from its jvp rule."""
    from .symbolic import custom_jvp

    def scaled_tanh(a: _graph.Tensor, b: _graph.Tensor) -> _graph.Tensor:
        return a * gb.tanh(b)

    def scaled_tanh_jvp(primals: tuple, tangents: tuple) -> tuple:
        (a, b), (ta, tb) = primals, tangents
        return scaled_tanh(a, b), ta * gb.tanh(b) + a * (1.0 - gb.tanh(b) ** 2) * tb

    rule = custom_jvp(scaled_tanh).defjvp(scaled_tanh_jvp)
    feeds = {"a": _rand(rng, (3, 4), dtype), "b": _rand(rng, (4,), dtype)}
    return [OpSample("custom_jvp", feeds, lambda a, b: rule(a, b) * a)]


def _linalg_samples(dtype: str, rng: np.random.Generator) -> list[OpSample]:
    """Samples of the linear algebra ops: well-conditioned matrices (the identity times 2 or 3 plus
    small noise), symmetric positive definite ones for cholesky (x x^T + 3 I, so that finite
    differences through x see the symmetric gradient), batches, broadcasting and symbolic batch dims."""

    def r(*shape: int) -> np.ndarray:
        return _rand(rng, shape, dtype, -0.5, 0.5)

    def conditioned(*shape: int, scale: float = 2.0) -> np.ndarray:
        return (scale * np.eye(shape[-1]) + r(*shape)).astype(dtype)

    def spd(x: _graph.Tensor) -> _graph.Tensor:
        return x @ gb.linalg.matrix_transpose(x) + gb.constant(3 * np.eye(x.shape[-1], dtype=dtype))

    flipped = conditioned(3, 3, 3) * np.array([1.0, -1.0, 1.0], dtype)[:, None, None]  # one negative det
    return [
        OpSample("einsum", {"a": r(2, 3), "b": r(3, 4), "c": r(4)}, lambda a, b, c: gb.einsum("ij,jk,k->ik", a, b, c)),
        OpSample("einsum", {"x": r(2, 3, 3)}, lambda x: gb.einsum("bii->bi", x), name="einsum_diagonal"),
        OpSample(
            "einsum",
            {"x": r(3, 2, 3), "w": r(3, 4)},
            lambda x, w: gb.einsum("...ij,jk", x, w),
            shapes={"x": ("N", 2, 3)},
            name="einsum_ellipsis",
        ),
        OpSample("inverse", {"a": conditioned(2, 3, 3)}, gb.inv),
        OpSample("det", {"a": conditioned(2, 3, 3)}, gb.det, shapes={"a": ("N", 3, 3)}),
        OpSample("slogdet", {"a": flipped}, lambda a: (lambda s, logabs: s * logabs + logabs)(*gb.slogdet(a))),
        OpSample("solve", {"a": conditioned(2, 3, 3), "b": r(3, 2)}, gb.solve),
        OpSample("solve", {"a": conditioned(4, 4), "b": r(4)}, gb.solve, name="solve_vector"),
        OpSample("cholesky", {"x": r(2, 3, 3)}, lambda x: gb.cholesky(spd(x))),
        OpSample("triangular_solve", {"a": conditioned(3, 3), "b": r(3, 2)}, gb.triangular_solve),
        OpSample(
            "triangular_solve",
            {"a": conditioned(3, 3, scale=3.0), "b": r(2, 3, 2)},
            lambda a, b: gb.triangular_solve(a, b, lower=False, transpose=True),
            name="triangular_solve_upper_transposed",
        ),
        OpSample("trace", {"x": r(2, 3, 4)}, gb.linalg.trace),
    ]


def _select_samples(dtype: str, rng: np.random.Generator) -> list[OpSample]:
    """Samples of the selection ops and dropout: distinct values for sort and topk (finite
    differences need no ties), repeated and negative indices for gather/scatter, symbolic batch
    dims, and the shape composites stack, split, tile and repeat together."""

    def r(*shape: int) -> np.ndarray:
        return _rand(rng, shape, dtype)

    def distinct(*shape: int) -> np.ndarray:
        return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.25 - 2).astype(dtype)

    index = {"i": np.array([[0, -1], [2, 2], [1, 0], [-3, 1]]), "j": np.array([[3, 0], [0, 0], [1, -1]], "int32")}

    def top(x: _graph.Tensor, **kw: object) -> _graph.Tensor:
        values, indices = gb.topk(x, 3, **kw)
        return values * gb.cast(indices + 1, dtype)

    def composites(x: _graph.Tensor) -> _graph.Tensor:
        first, second = gb.split(x, [1, 2], 1)
        return gb.stack([gb.tile(first, (1, 2)), gb.repeat(second[:, 1:], 2, 1)], 0) * gb.repeat(x[:, :2], 2, 0)[1:4]

    return [
        OpSample("sort", {"x": distinct(3, 5)}, lambda x: gb.sort(x, 1)),
        OpSample("sort", {"x": distinct(4, 3)}, lambda x: gb.sort(x, 0, True), name="sort_descending"),
        OpSample("argsort", {"x": distinct(3, 5)}, lambda x: x * gb.cast(gb.argsort(x, 1, True), dtype)),
        OpSample("topk", {"x": distinct(3, 5)}, top),
        OpSample(
            "topk", {"x": distinct(4, 3)}, lambda x: top(x, largest=False), shapes={"x": ("N", 3)}, name="topk_min"
        ),
        OpSample("gather_elements", {"x": r(4, 3), "i": index["i"]}, lambda x, i: gb.gather_elements(x, i, 1)),
        OpSample(
            "scatter_elements_add",
            {"x": r(4, 3), "upd": r(3, 2), "j": index["j"]},
            lambda x, upd, j: gb.scatter_elements_add(x, gb.transpose(j), gb.transpose(upd), 0),
        ),
        OpSample("flip", {"x": r(2, 3, 4)}, lambda x: gb.flip(x, (0, 2)) * x),
        OpSample("dropout", {"x": r(4, 6)}, lambda x: gb.dropout(x, 0.3, 11) * x),
        OpSample("dropout", {"x": r(3, 5)}, lambda x: gb.dropout(x, 0.5, 2), shapes={"x": ("N", 5)}, name="dropout_n"),
        OpSample("concat", {"x": r(3, 3)}, composites, name="stack_split_tile_repeat"),
    ]


def _fused_samples(dtype: str, rng: np.random.Generator) -> list[OpSample]:
    """Fused nodes: one output with broadcasting, and two outputs sharing a subexpression, over
    most heads of the expression language (away from the kinks of relu, abs and sign)."""
    import sympy

    from .graph.ops.fused import FUNCTIONS

    x0, x1, x2 = sympy.symbols("x0 x1 x2")
    shared = sympy.tanh(x0 * x1 + 0.5)
    two = [
        shared * sympy.sin(x2) + sympy.exp(x1) / (1 + x2**2),
        shared**2 - sympy.sqrt(x2**2 + 1) * sympy.erf(x0) + 2**x1,
    ]
    one = sympy.log(1 + sympy.cosh(x0)) * sympy.atan(x1) - x0 / sympy.sqrt(x1 + 3)
    heads = [
        fn(x0) for fn in (sympy.cos, sympy.tan, sympy.asin, sympy.acos, sympy.sinh, sympy.exp, sympy.sin, sympy.cosh)
    ]
    custom = [FUNCTIONS[op](x0 * 0.5) for op in ("sigmoid", "relu", "abs", "log1p", "expm1", "softplus")]
    every_head = sum(heads + custom) + FUNCTIONS["sign"](x0) * x0

    def r(*shape: int) -> np.ndarray:
        return _rand(rng, shape, dtype, -0.9, 0.9)

    return [
        OpSample("fused", {"a": r(3, 4), "b": r(4)}, lambda a, b: gb.fused(one, a, b), name="fused_broadcast"),
        OpSample(
            "fused",
            {"a": r(3, 4), "b": r(3, 1), "c": r(4)},
            lambda a, b, c: gb.mul(*gb.fused(two, a, b, c)),
            shapes={"a": ("N", 4), "b": ("N", 1)},
            name="fused_two_outputs",
        ),
        OpSample("fused", {"a": _away_from_zero(rng, (2, 3), dtype) * 0.4}, lambda a: gb.fused(every_head, a)),
    ]
