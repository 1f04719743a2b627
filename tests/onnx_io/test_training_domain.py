"""The ONNX training domain (`ai.onnx.preview.training`): Gradient, Adagrad, Adam and Momentum
imported onto gradkiln ops, checked against onnx's reference evaluator, torch.optim and
torch.autograd (and finite differences)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.reference
import pytest
import torch
from onnx import TensorProto
from onnx import helper as oh

import gradkiln as gk
from gradkiln.graph import ONNXError
from gradkiln.testing.gradients import numeric_grads

DOMAIN = "ai.onnx.preview.training"
ELEM = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE}
ROLES = {"Adagrad": "XGH", "Adam": "XGVH", "Momentum": "XGV"}
SHAPES = [(3,), (2, 2)]


def _model(nodes, inputs, outputs) -> onnx.ModelProto:
    """`inputs` and `outputs`: (name, elem type, shape) each."""
    graph = oh.make_graph(
        nodes,
        "training_domain",
        [oh.make_tensor_value_info(*i) for i in inputs],
        [oh.make_tensor_value_info(*o) for o in outputs],
    )
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18), oh.make_opsetid(DOMAIN, 1)])


def _optimizer(op: str, dtype=np.float32, shapes=SHAPES, **attrs) -> onnx.ModelProto:
    """One optimizer node over len(shapes) tensors: inputs R, T, X0.., G0.., states; outputs the new X and states."""
    roles, elem = ROLES[op], ELEM[dtype]
    names = {r: [f"{r}{i}" for i in range(len(shapes))] for r in roles}
    inputs = [("R", elem, []), ("T", TensorProto.INT64, [])]
    inputs += [(name, elem, list(s)) for r in roles for name, s in zip(names[r], shapes)]
    outputs = [(f"{name}_new", elem, list(s)) for r in roles if r != "G" for name, s in zip(names[r], shapes)]
    node = oh.make_node(op, [i[0] for i in inputs], [o[0] for o in outputs], domain=DOMAIN, **attrs)
    return _model([node], inputs, outputs)


def _feeds(op: str, dtype, step: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {"R": np.asarray(0.1, dtype), "T": np.asarray(step, np.int64)}
    for r in ROLES[op]:
        for i, shape in enumerate(SHAPES):
            value = rng.standard_normal(shape).astype(dtype)
            feeds[f"{r}{i}"] = np.abs(value) if r == "H" else value  # accumulated squares are non-negative
    return feeds


def _gradkiln(model: onnx.ModelProto, target: str = "numpy"):
    """A function of the feeds returning the outputs by ONNX name."""
    graph, outputs = gk.onnx_io.import_model(model)
    names = list(outputs)
    exe = gk.compile(graph, [outputs[n] for n in names], target=target)
    return lambda **feeds: dict(zip(names, exe(**feeds)))


OPTIMIZER_CASES = {
    "adagrad": ("Adagrad", {"decay_factor": 0.1, "epsilon": 1e-5, "norm_coefficient": 0.01}),
    "adagrad_defaults": ("Adagrad", {}),
    "adam": ("Adam", {"alpha": 0.85, "beta": 0.95, "epsilon": 1e-4, "norm_coefficient": 0.01}),
    "adam_post": ("Adam", {"norm_coefficient_post": 0.05}),
    "momentum": ("Momentum", {"alpha": 0.9, "beta": 0.7, "mode": "standard", "norm_coefficient": 0.01}),
    "nesterov": ("Momentum", {"alpha": 0.9, "beta": 0.7, "mode": "nesterov", "norm_coefficient": 0.01}),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("step", [0, 1, 4])
@pytest.mark.parametrize("case", sorted(OPTIMIZER_CASES))
def test_optimizer_matches_onnx_reference_evaluator(case, step, dtype):
    op, attrs = OPTIMIZER_CASES[case]
    model = _optimizer(op, dtype, **attrs)
    feeds = _feeds(op, dtype, step)
    got = _gradkiln(model)(**feeds)
    names = [o.name for o in model.graph.output]
    expected = dict(zip(names, onnx.reference.ReferenceEvaluator(model).run(names, feeds)))
    for name in names:
        assert got[name].dtype == dtype, name
        # onnx's evaluator forms the scalar factors in float64 (and casts Adam's results to float32)
        np.testing.assert_allclose(got[name], expected[name], rtol=2e-6, atol=1e-7, err_msg=name)


def _torch_steps(make, params: list[np.ndarray], grads: list[list[np.ndarray]]) -> list[np.ndarray]:
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    optimizer = make(tensors)
    for step_grads in grads:
        for t, g in zip(tensors, step_grads):
            t.grad = torch.tensor(g)
        optimizer.step()
    return [t.detach().numpy() for t in tensors]


# Hyperparameters are powers of two (sums of few): ONNX stores attributes as float32, so they
# equal torch's float64 values exactly. Where the definitions differ, the cases pick the values
# at which they coincide:
# - Adagrad: ONNX decays the rate with a 0-based T (R / (1 + T decay)), torch with step - 1: T = step - 1.
# - Adam: torch adds eps to sqrt(v) / sqrt(1 - beta2^t), ONNX to sqrt(v) before the bias correction,
#   so they agree for eps = 0 only; ONNX's T is torch's step (T = 0 would skip the correction).
#   ONNX's norm_coefficient_post scales X after the update, unlike AdamW's decay: left at 0.
# - Momentum: ONNX's beta is torch's 1 - dampening, and beta_adjusted = 1 at T = 0 is torch's first
#   step (buf = g), given V = 0 to start; nesterov (torch needs dampening 0) has beta = 1.
TORCH_CASES = {
    "adagrad": (
        "Adagrad",
        {"decay_factor": 0.0625, "epsilon": 2.0**-20, "norm_coefficient": 0.0078125},
        lambda p: torch.optim.Adagrad(p, lr=0.1, lr_decay=0.0625, weight_decay=0.0078125, eps=2.0**-20),
        0,
    ),
    "adam": (
        "Adam",
        {"alpha": 0.875, "beta": 0.96875, "epsilon": 0.0, "norm_coefficient": 0.0078125},
        lambda p: torch.optim.Adam(p, lr=0.1, betas=(0.875, 0.96875), eps=0.0, weight_decay=0.0078125),
        1,
    ),
    "momentum": (
        "Momentum",
        {"alpha": 0.875, "beta": 0.75, "mode": "standard", "norm_coefficient": 0.0078125},
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.875, dampening=0.25, weight_decay=0.0078125),
        0,
    ),
    "nesterov": (
        "Momentum",
        {"alpha": 0.875, "beta": 1.0, "mode": "nesterov", "norm_coefficient": 0.0078125},
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.875, nesterov=True, weight_decay=0.0078125),
        0,
    ),
}


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_three_optimizer_steps_match_torch_optim(case):
    op, attrs, make, first_t = TORCH_CASES[case]
    run = _gradkiln(_optimizer(op, np.float64, **attrs))
    rng = np.random.default_rng(1)
    params = [rng.standard_normal(s) for s in SHAPES]
    grads = [[rng.standard_normal(s) for s in SHAPES] for _ in range(3)]
    state = {f"{r}{i}": np.zeros(s) for r in ROLES[op][2:] for i, s in enumerate(SHAPES)}
    xs = list(params)
    for step, step_grads in enumerate(grads):
        feeds = {"R": np.asarray(0.1), "T": np.asarray(first_t + step, np.int64), **state}
        feeds |= {f"X{i}": x for i, x in enumerate(xs)} | {f"G{i}": g for i, g in enumerate(step_grads)}
        out = run(**feeds)
        xs = [out[f"X{i}_new"] for i in range(len(SHAPES))]
        state = {name: out[f"{name}_new"] for name in state}
    for got, expected in zip(xs, _torch_steps(make, params, grads)):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


F = TensorProto.FLOAT
DOUBLE = TensorProto.DOUBLE
MLP_NODES = [  # loss = sum(tanh(x @ W + b) ** 2)
    oh.make_node("MatMul", ["x", "W"], ["h"]),
    oh.make_node("Add", ["h", "b"], ["a"]),
    oh.make_node("Tanh", ["a"], ["t"]),
    oh.make_node("Mul", ["t", "t"], ["s"]),
    oh.make_node("ReduceSum", ["s"], ["loss"], keepdims=0),
]
MLP_INPUTS = [("x", DOUBLE, [3, 4]), ("W", DOUBLE, [4, 2]), ("b", DOUBLE, [2])]


def _mlp_feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    return {name: rng.standard_normal(shape) for name, _, shape in MLP_INPUTS}


def _torch_loss(x, w, b):
    return (torch.tanh(x @ w + b) ** 2).sum()


def _leaves(feeds: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, requires_grad=True) for k, v in feeds.items()}


def test_gradient_op_matches_torch_autograd_and_finite_differences():
    gradient = oh.make_node("Gradient", ["W", "b", "x"], ["dW", "db"], domain=DOMAIN, xs=["W", "b"], zs=["x"], y="loss")
    outputs = [("loss", DOUBLE, []), ("dW", DOUBLE, [4, 2]), ("db", DOUBLE, [2])]
    run = _gradkiln(_model([*MLP_NODES, gradient], MLP_INPUTS, outputs))
    feeds = _mlp_feeds()
    got = run(**feeds)
    t = _leaves(feeds)
    loss = _torch_loss(t["x"], t["W"], t["b"])
    d_w, d_b = torch.autograd.grad(loss, [t["W"], t["b"]])
    np.testing.assert_allclose(got["loss"], loss.item(), rtol=1e-12)
    np.testing.assert_allclose(got["dW"], d_w.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got["db"], d_b.numpy(), rtol=1e-12, atol=1e-14)
    numeric = numeric_grads(lambda f: run(**f)["loss"], feeds, ["W", "b"], np.ones(()))
    np.testing.assert_allclose(got["dW"], numeric["W"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(got["db"], numeric["b"], rtol=1e-6, atol=1e-8)


def test_gradient_at_other_values_recomputes_the_named_subgraph():
    """The node's inputs give the values of xs and zs: here W2 stands for W (loss itself stays at W)."""
    gradient = oh.make_node("Gradient", ["W2", "b", "x"], ["dW"], domain=DOMAIN, xs=["W", "b"], zs=["x"], y="loss")
    inputs = [*MLP_INPUTS, ("W2", DOUBLE, [4, 2])]
    outputs = [("loss", DOUBLE, []), ("dW", DOUBLE, [4, 2])]
    feeds = _mlp_feeds() | {"W2": np.random.default_rng(3).standard_normal((4, 2))}
    got = _gradkiln(_model([*MLP_NODES, gradient], inputs, outputs))(**feeds)
    t = _leaves(feeds)
    (d_w2,) = torch.autograd.grad(_torch_loss(t["x"], t["W2"], t["b"]), [t["W2"]])
    np.testing.assert_allclose(got["loss"], _torch_loss(t["x"], t["W"], t["b"]).item(), rtol=1e-12)
    np.testing.assert_allclose(got["dW"], d_w2.numpy(), rtol=1e-12, atol=1e-14)


def test_gradient_with_respect_to_an_intermediate_tensor():
    gradient = oh.make_node("Gradient", ["h"], ["dh"], domain=DOMAIN, xs=["h"], y="loss")
    run = _gradkiln(_model([*MLP_NODES, gradient], MLP_INPUTS, [("dh", DOUBLE, [3, 2])]))
    feeds = _mlp_feeds()
    h = torch.tensor(feeds["x"] @ feeds["W"], requires_grad=True)
    (d_h,) = torch.autograd.grad((torch.tanh(h + torch.tensor(feeds["b"])) ** 2).sum(), [h])
    np.testing.assert_allclose(run(**feeds)["dh"], d_h.numpy(), rtol=1e-12, atol=1e-14)


def test_gradient_of_a_gradient_is_a_hessian_vector_product():
    nodes = [
        *MLP_NODES,
        oh.make_node("Gradient", ["W"], ["dW"], domain=DOMAIN, xs=["W"], y="loss"),
        oh.make_node("Mul", ["dW", "v"], ["dWv"]),
        oh.make_node("ReduceSum", ["dWv"], ["q"], keepdims=0),
        oh.make_node("Gradient", ["W"], ["hvp"], domain=DOMAIN, xs=["W"], y="q"),
    ]
    inputs = [*MLP_INPUTS, ("v", DOUBLE, [4, 2])]
    feeds = _mlp_feeds() | {"v": np.random.default_rng(4).standard_normal((4, 2))}
    got = _gradkiln(_model(nodes, inputs, [("hvp", DOUBLE, [4, 2])]))(**feeds)
    t = _leaves(feeds)
    (d_w,) = torch.autograd.grad(_torch_loss(t["x"], t["W"], t["b"]), [t["W"]], create_graph=True)
    (hvp,) = torch.autograd.grad((d_w * t["v"]).sum(), [t["W"]])
    np.testing.assert_allclose(got["hvp"], hvp.numpy(), rtol=1e-11, atol=1e-13)


def test_gradient_of_an_unused_tensor_is_zero_and_a_skipped_output_leaves_optional_inputs_empty():
    """Output "" skips dy/da; a later Clip's empty min stays absent (it once read the skipped gradient)."""
    nodes = [
        oh.make_node("Mul", ["a", "a"], ["y"]),
        oh.make_node("Gradient", ["a", "u"], ["", "du"], domain=DOMAIN, xs=["a", "u"], y="y"),
        oh.make_node("Clip", ["a", "", "hi"], ["clipped"]),
    ]
    inputs = [("a", F, []), ("u", F, [2]), ("hi", F, [])]
    run = _gradkiln(_model(nodes, inputs, [("du", F, [2]), ("clipped", F, [])]))
    got = run(a=np.float32(5), u=np.ones(2, np.float32), hi=np.float32(20))
    np.testing.assert_array_equal(got["du"], np.zeros(2, np.float32))
    assert got["clipped"] == 5  # 10 (dy/da) if the skipped output had filled the empty min


NAMED_SHAPES = {"W": [4, 2], "h": [3, 2], "c": [2]}


def _gradient_model(xs, y, extra_nodes=()):
    nodes = [*MLP_NODES, *extra_nodes, oh.make_node("Gradient", xs, [f"d{x}" for x in xs], domain=DOMAIN, xs=xs, y=y)]
    return _model(nodes, MLP_INPUTS, [(f"d{x}", DOUBLE, NAMED_SHAPES[x]) for x in xs])


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            _gradient_model(["W"], "t"),
            r"importing Gradient node: y 't' is a f64\[3,2\] tensor; Gradient needs one element",
        ),
        (_gradient_model(["W", "h"], "loss"), r"'h', which is computed from 'W', also named; they must be independent"),
        (_gradient_model(["W"], "nowhere"), r"y names 'nowhere', which is not a tensor computed before this node"),
        (
            _gradient_model(
                ["c"],
                "loss",
                [oh.make_node("Constant", [], ["c"], value=onnx.numpy_helper.from_array(np.ones(2)))],
            ),
            r"xs/zs names 'c', a value known at import time .* make it a graph input",
        ),
    ],
    ids=["non_scalar_y", "dependent_xs", "unknown_name", "constant"],
)
def test_gradient_refuses_what_it_cannot_differentiate(model, message):
    with pytest.raises(ONNXError, match=message):
        gk.onnx_io.import_model(model)


def test_optimizer_errors_name_the_problem():
    with pytest.raises(ONNXError, match=r"mode 'heavy' is not a Momentum mode"):
        gk.onnx_io.import_model(_optimizer("Momentum", alpha=0.9, beta=1.0, mode="heavy", norm_coefficient=0.0))
    model = _optimizer("Adam")
    del model.graph.node[0].input[-1]  # one H missing: not whole groups
    with pytest.raises(ONNXError, match=r"it has 9 inputs; Adam takes R, T, then n tensors each of X, G, V, H"):
        gk.onnx_io.import_model(model)
    model = _optimizer("Adagrad")
    model.graph.input[0].type.tensor_type.shape.dim.add().dim_value = 1  # R of shape (1,)
    with pytest.raises(ONNXError, match=r"the learning rate R is a f32\[1\] tensor; ONNX defines it as a scalar"):
        gk.onnx_io.import_model(model)


@pytest.mark.slow
def test_training_domain_on_llvm_matches_numpy():
    """Every op of the domain compiled with TVM for the CPU (the conformance cases run on llvm in
    benchmarks/onnx_conformance.py only)."""
    cases = ["adagrad", "adam", "nesterov"]
    gradient = oh.make_node("Gradient", ["W", "b", "x"], ["dW", "db"], domain=DOMAIN, xs=["W", "b"], zs=["x"], y="loss")
    models = [_optimizer(*OPTIMIZER_CASES[c][:1], **OPTIMIZER_CASES[c][1]) for c in cases]
    models.append(_model([*MLP_NODES, gradient], MLP_INPUTS, [("dW", DOUBLE, [4, 2]), ("db", DOUBLE, [2])]))
    feeds = [_feeds(OPTIMIZER_CASES[c][0], np.float32, 3) for c in cases] + [_mlp_feeds()]
    for model, feed in zip(models, feeds):
        expected = _gradkiln(model)(**feed)
        got = _gradkiln(model, "llvm")(**feed)
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
