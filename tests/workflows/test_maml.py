"""examples/maml.py: MAML's meta-gradient from the gradkiln graph (inner SGD steps as graph nodes,
vmapped over tasks) equals torch.func's over the same weights, tasks, inner steps and learning rate,
second order and first order, on the numpy executor and on llvm."""

import itertools

import numpy as np
import pytest
import torch
from torch.func import functional_call, grad

import gradkiln as gk
from gradkiln.testing.examples import load_example

maml = load_example("maml")
TASKS, SHOTS, QUERIES, STEPS, INNER_LR = 3, 5, 7, 2, 0.05


@pytest.fixture(scope="module")
def problem():
    """float64 weights of the example's 1-40-40-1 network and one meta-batch of sine tasks."""
    rng = np.random.default_rng(3)
    weights = maml.init_weights(rng, np.float64)
    weights = {
        name: w + (0.1 * rng.normal(size=w.shape) if name.startswith("b") else 0.0) for name, w in weights.items()
    }
    return weights, maml.sample_tasks(rng, TASKS, SHOTS, QUERIES, np.float64)


def torch_meta_gradient(weights, tasks, first_order):
    """MAML with torch.func: the inner steps take `grad` of the support loss (detached for first
    order), the meta-gradient is `grad` of the mean query loss of the adapted weights. Returns the
    meta-loss and the meta-gradient under the example's weight names."""
    layers = [torch.nn.Linear(i, o, dtype=torch.float64) for i, o in itertools.pairwise(maml.LAYERS)]
    model = torch.nn.Sequential(*(m for layer in layers for m in (layer, torch.nn.ReLU())))[:-1]
    params = {}
    for i in range(len(layers)):  # nn.Linear holds its weight as (out, in)
        params[f"{2 * i}.weight"] = torch.tensor(weights[f"w{i}"].T)
        params[f"{2 * i}.bias"] = torch.tensor(weights[f"b{i}"])
    data = [torch.tensor(tasks[name]) for name in maml.TASK_INPUTS]

    def loss(p, x, y):
        return torch.mean((functional_call(model, p, (x,)) - y) ** 2)

    def adapted(p, x, y):
        for _ in range(STEPS):
            g = grad(loss)(p, x, y)
            p = {k: p[k] - INNER_LR * (g[k].detach() if first_order else g[k]) for k in p}
        return p

    def meta_loss(p):
        xs, ys, xq, yq = data
        return torch.stack([loss(adapted(p, xs[t], ys[t]), xq[t], yq[t]) for t in range(TASKS)]).mean()

    grads = grad(meta_loss)(params)
    ours = {}
    for i in range(len(layers)):
        ours[f"w{i}"], ours[f"b{i}"] = grads[f"{2 * i}.weight"].T.numpy(), grads[f"{2 * i}.bias"].numpy()
    return meta_loss(params).item(), ours


def gradkiln_meta_gradient(weights, tasks, first_order, target):
    built = maml.build_maml(weights, SHOTS, QUERIES, STEPS, INNER_LR, first_order)
    value, *grads = gk.compile(built.graph, [built.loss_after, *built.meta_grads], target)(**weights, **tasks)
    return float(value), grads


@pytest.mark.parametrize("target", ["numpy", pytest.param("llvm", marks=pytest.mark.slow)])
@pytest.mark.parametrize("first_order", [False, True], ids=["second_order", "first_order"])
def test_meta_gradient_equals_torch_func(problem, first_order, target):
    weights, tasks = problem
    expected_value, expected = torch_meta_gradient(weights, tasks, first_order)
    value, grads = gradkiln_meta_gradient(weights, tasks, first_order, target)
    np.testing.assert_allclose(value, expected_value, rtol=1e-12)
    for name, got in zip(weights, grads):
        np.testing.assert_allclose(got, expected[name], rtol=1e-10, atol=1e-13, err_msg=name)


def test_second_order_terms_change_the_meta_gradient(problem):
    """If second order were silently dropped, both variants would give the same meta-gradient."""
    weights, tasks = problem
    _, second = gradkiln_meta_gradient(weights, tasks, False, "numpy")
    _, first = gradkiln_meta_gradient(weights, tasks, True, "numpy")
    difference = np.sqrt(sum(np.sum((s - f) ** 2) for s, f in zip(second, first)))
    size = np.sqrt(sum(np.sum(s**2) for s in second))
    assert difference > 0.01 * size, (difference, size)


def test_a_meta_batch_of_the_wrong_shape_is_a_shape_error(problem):
    weights, tasks = problem
    built = maml.build_maml(weights, SHOTS, QUERIES)
    step = gk.compile(built.graph, built.loss_after)
    with pytest.raises(gk.ShapeError, match=r"feed 'x_support' has shape \(3, 4, 1\), expected f64\[T,5,1\]"):
        step(**weights, **{**tasks, "x_support": tasks["x_support"][:, :4]})
