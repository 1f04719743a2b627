"""`op_samples()`: one or more sample graphs for every op of the table."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .. import graph as _graph
from ..graph import builder as gb
from .bitwise_samples import bitwise_samples
from .collective_samples import collective_samples
from .control_samples import control_samples
from .families import custom_jvp_samples, fused_samples, linalg_samples, math_samples, nn_samples, select_samples
from .random_samples import random_samples
from .resize_samples import resize_samples
from .sample import OpSample, away_from_zero, rand


def op_samples(dtype: str = "float64", seed: int = 0) -> list[OpSample]:
    """One or more sample graphs per op of the table, in floating dtype `dtype`."""
    rng = np.random.default_rng(seed)

    def r(*shape: int, low: float = -2.0, high: float = 2.0) -> np.ndarray:
        return rand(rng, shape, dtype, low, high)

    def nz(*shape: int) -> np.ndarray:
        return away_from_zero(rng, shape, dtype)

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
        OpSample("one_hot", {"x": r(4, 3), "i": np.array([0, 2, 1, 2])}, lambda x, i: x * gb.one_hot(i, 3, dtype)),
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
        + index_mode_samples(dtype, rng)
        + math_samples(dtype, rng)
        + nn_samples(dtype, rng)
        + custom_jvp_samples(dtype, rng)
        + linalg_samples(dtype, rng)
        + select_samples(dtype, rng)
        + resize_samples(dtype, rng)
        + random_samples(dtype, rng)
        + fused_samples(dtype, rng)
        + control_samples(dtype, rng)
        + bitwise_samples(dtype, rng)
        + collective_samples(dtype, rng)
    )


def index_mode_samples(dtype: str, rng: np.random.Generator) -> list[OpSample]:
    """The index ops in modes "clip" and "fill" with indices out of range on both sides. A "fill"
    read is NaN there, so those samples keep only the in-range positions (`kept`): outputs and
    gradients stay finite, which finite differences need."""

    def r(*shape: int) -> np.ndarray:
        return rand(rng, shape, dtype, -2.0, 2.0)

    i = np.array([0, 5, -1, -7, 2])  # axis of size 4: in range, above, negative in range, below, in range
    kept = np.array([True, False, True, False, True])
    j = np.array([[0, 3, -1], [-6, 1, 4], [2, -3, 9], [1, 1, 0]])  # gather_elements along axis 1 (size 3)
    kept_j = (j >= -3) & (j < 3)
    return [
        OpSample("take", {"x": r(4, 3), "i": i}, lambda x, i: gb.take(x, i, 0, "clip"), name="take_clip"),
        OpSample(
            "take",
            {"x": r(3, 4), "i": i},
            lambda x, i: gb.where(kept, gb.take(x, i, 1, "fill"), 0.0),
            name="take_fill",
        ),
        OpSample(
            "scatter_add",
            {"x": r(4, 3), "upd": r(5, 3), "i": i},
            lambda x, upd, i: gb.scatter_add(x, i, upd, 0, "clip") * gb.scatter_add(x, i, upd, 0, "fill"),
            name="scatter_add_modes",
        ),
        OpSample(
            "gather_elements",
            {"x": r(4, 3), "j": j},
            lambda x, j: (
                gb.gather_elements(x, j, 1, "clip") + gb.where(kept_j, gb.gather_elements(x, j, 1, "fill"), 0.0)
            ),
            name="gather_elements_modes",
        ),
        OpSample(
            "scatter_elements_add",
            {"x": r(4, 3), "upd": r(4, 3), "j": j},
            lambda x, upd, j: (
                gb.scatter_elements_add(x, j, upd, 1, "clip") * gb.scatter_elements_add(x, j, upd, 1, "fill")
            ),
            name="scatter_elements_add_modes",
        ),
        OpSample(
            "one_hot",
            {"x": r(5, 4), "i": i},
            lambda x, i: x * gb.one_hot(i, 4, dtype, "clip") + x * gb.one_hot(i, 4, dtype, "fill"),
            name="one_hot_modes",
        ),
    ]


def complex_samples(dtype: str = "complex128", seed: int = 0) -> list[OpSample]:
    """Samples of the complex ops (real, imag, conj, angle, complex, abs of a complex tensor) with
    complex inputs and a real output. They run on the numpy executor only (TVM and ONNX have no
    complex arithmetic), so they are kept out of `op_samples()`, whose samples every backend runs."""
    rng = np.random.default_rng(seed)

    def c(*shape: int) -> np.ndarray:
        return (away_from_zero(rng, shape, "float64") + 1j * rand(rng, shape, "float64")).astype(dtype)

    part = c(3, 4).real.dtype.name
    return [
        OpSample("real", {"z": c(3, 4)}, lambda z: gb.real(z * z)),
        OpSample("imag", {"z": c(3, 4)}, lambda z: gb.imag(gb.exp(z))),
        OpSample("conj", {"z": c(3, 4), "w": c(4)}, lambda z, w: gb.real(gb.conj(z) * w)),
        OpSample("angle", {"z": c(3, 4)}, lambda z: gb.angle(z / (1.0 + 0.5j))),
        OpSample("abs", {"z": c(3, 4)}, lambda z: gb.abs(gb.log(z)), name="abs_complex"),
        OpSample(
            "complex",
            {"a": rand(rng, (3, 4), part), "b": rand(rng, (4,), part)},
            lambda a, b: gb.abs(gb.reciprocal(gb.complex(a, b) + 2.0)),
        ),
        OpSample(
            "matmul",
            {"a": c(2, 3), "b": c(3, 4)},
            lambda a, b: gb.abs(gb.mean(gb.square(a @ b), 1) - gb.sum(a, 1) / 3.0),
            name="matmul_complex",
        ),
    ]


def _softplus_with_rule() -> Callable[[_graph.Tensor], _graph.Tensor]:
    """log(1 + e**x) whose gradient comes from a custom_vjp rule: g * sigmoid(x)."""
    from ..symbolic import custom_vjp

    def softplus(x: _graph.Tensor) -> _graph.Tensor:
        return gb.log(1.0 + gb.exp(x))

    return custom_vjp(softplus).defvjp(lambda x: (softplus(x), [x]), lambda res, g: [g * gb.sigmoid(res[0])])
