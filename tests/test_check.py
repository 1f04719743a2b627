"""check_grad: the public gradient checker passes right gradients and reports the worst element."""

import numpy as np
import pytest

import gradkiln as gk
from gradkiln import check_grad
from gradkiln.symbolic import custom_vjp

rng = np.random.default_rng(0)


def test_check_grad_passes_a_function_with_a_non_scalar_output():
    report = check_grad(lambda x, w: gk.tanh(x @ w), {"x": rng.normal(size=(2, 3)), "w": rng.normal(size=(3, 4))})
    assert report.ok
    assert [c.name for c in report.inputs] == ["x", "w"]
    assert str(report).startswith("check_grad: ok")


def test_check_grad_takes_an_output_tensor_and_leaves_its_graph_alone():
    with gk.Graph() as g:
        x = gk.input("x", ("N", 3), "float64")
        p = gk.param("p", np.linspace(-1, 1, 3))
        loss = gk.mean(gk.sigmoid(x * p))
    size = len(g)
    report = check_grad(loss, {"x": rng.normal(size=(5, 3)), "p": np.linspace(-1, 1, 3)}, wrt=["p"])
    assert report.ok and len(g) == size


def test_a_wrong_gradient_is_reported_with_its_worst_element():
    wrong = custom_vjp(lambda x: x * x)
    wrong.defvjp(lambda x: (x * x, [x]), lambda res, g: [g * res[0] * gk.constant([2.0, 2.0, 2.5], "float64")])
    with pytest.raises(gk.GradientError) as failure:
        check_grad(lambda x: gk.sum(wrong(x)), {"x": np.array([1.0, 2.0, 3.0])})
    message = str(failure.value)
    assert "check_grad: FAILED" in message
    assert "x [3]: FAILED worst at [2]: analytic 7.5, numeric 6" in message

    report = check_grad(lambda x: gk.sum(wrong(x)), {"x": np.array([1.0, 2.0, 3.0])}, raise_on_failure=False)
    assert not report.ok and report.inputs[0].worst_index == (2,)
    assert report.inputs[0].max_abs_error == pytest.approx(1.5)
