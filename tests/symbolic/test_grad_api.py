"""The public API: seeds, several outputs, intermediate inputs, roles, errors and custom rules."""

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.graph import OpDef, register_op
from gradkiln.symbolic import grad, register_vjp, vjp


def test_gradient_nodes_have_role_grad_and_none_is_dead():
    with gk.Graph() as g:
        x, w = gk.input("x", (2, 3)), gk.param("w", np.ones((3, 4), np.float32))
        loss = gk.mean(gk.tanh(x @ w))
        forward = set(g.node_ids())
        (dw,) = grad(loss, [w])
    added = [n for n in g.nodes() if n.id not in forward]
    assert added and all(n.role == "grad" for n in added)
    assert all(g.node(i).role == "forward" for i in forward)
    # matmul's rule also emits the cotangent of x, which nothing asked for: it is removed again
    assert {n.id for n in added} <= set(g.needed_nodes([dw.value]))


def test_vjp_takes_array_cotangents_and_several_outputs_are_summed():
    x0 = np.array([0.5, -1.0, 2.0])
    with gk.Graph() as g:
        x = gk.input("x", (3,), "float64")
        (by_vjp,) = vjp(gk.exp(x), [x], np.array([1.0, 2.0, 3.0]))
        (summed,) = grad([gk.sum(x * x), gk.sum(3.0 * x)], [x])
        (seeded,) = grad([x * x, gk.sum(x)], [x], seed=[np.ones(3), None])
    got_vjp, got_summed, got_seeded = gk.compile(g, [by_vjp, summed, seeded])(x=x0)
    np.testing.assert_allclose(got_vjp, [1, 2, 3] * np.exp(x0))
    np.testing.assert_allclose(got_summed, 2 * x0 + 3)
    np.testing.assert_allclose(got_seeded, 2 * x0 + 1)


def test_one_output_takes_its_cotangent_alone_or_in_a_list_and_a_ragged_one_is_a_gradient_error():
    x0 = np.array([0.5, -1.0, 2.0])
    with gk.Graph() as g:
        x, ct = gk.input("x", (3,), "float64"), gk.input("ct", (3,), "float64")
        (listed,) = vjp(gk.sin(x), [x], [ct])  # as torch.autograd.grad(y, x, [ct]) takes it
        (alone,) = vjp(gk.sin(x), [x], ct)
        with pytest.raises(gk.GradientError, match=r"seed for .* must be a f64\[3\] Tensor or array"):
            vjp(gk.sin(x), [x], [[1.0, 2.0], [3.0]])
    got_listed, got_alone = gk.compile(g, [listed, alone])(x=x0, ct=np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(got_listed, [1, 2, 3] * np.cos(x0))
    np.testing.assert_allclose(got_alone, got_listed)


def test_gradient_with_respect_to_an_intermediate_and_its_source_is_total():
    with gk.Graph() as g:
        x = gk.input("x", (), "float64")
        h = gk.tanh(x)
        dh, dx = grad(h * x, [h, x])
    got_dh, got_dx = gk.compile(g, [dh, dx])(x=np.array(0.7))
    np.testing.assert_allclose(got_dh, 0.7)
    np.testing.assert_allclose(got_dx, np.tanh(0.7) + 0.7 * (1 - np.tanh(0.7) ** 2))


def test_non_scalar_output_needs_a_seed():
    with gk.Graph():
        x = gk.input("x", ("N", 3))
        y = gk.tanh(x)
        with pytest.raises(gk.GradientError, match=r"output .* has shape f32\[N,3\].*seed="):
            grad(y, [x])
        with pytest.raises(gk.GradientError, match="seed it with a Tensor"):
            grad(y, [x], seed=np.ones((2, 3)))


def test_unused_input_is_an_error_unless_allowed_then_zeros():
    with gk.Graph() as g:
        x, unused = gk.input("x", (2,)), gk.input("unused", (4, 3))
        loss = gk.sum(x * x)
        with pytest.raises(gk.GradientError, match=r"do not depend on input unused .*allow_unused=True"):
            grad(loss, [x, unused])
        _, zeros = grad(loss, [x, unused], allow_unused=True)
    assert zeros.shape == unused.shape and zeros.node.op == "broadcast_to"
    np.testing.assert_array_equal(gk.compile(g, zeros)(), np.zeros((4, 3)))


def test_input_reached_only_through_non_differentiable_ops_gets_zeros():
    with gk.Graph() as g:
        x = gk.input("x", (3,), "float64")
        (dx,) = grad(gk.sum(gk.sign(x) + gk.cast(x > 0, "float64")), [x])
    np.testing.assert_array_equal(gk.compile(g, dx)(x=np.array([-1.0, 0.0, 2.0])), np.zeros(3))


def test_integer_outputs_and_inputs_cannot_be_differentiated():
    with gk.Graph():
        i = gk.input("i", (3,), "int64")
        x = gk.input("x", (3,))
        with pytest.raises(gk.GradientError, match=r"input i .* must be a float tensor"):
            grad(gk.sum(x), [i], allow_unused=True)
        with pytest.raises(gk.GradientError, match=r"output .* must be a float tensor"):
            grad(gk.sum(i), [x])


@pytest.fixture
def cube_op():
    """A custom op `test_cube` (x**3) registered for one test, without a gradient rule."""
    name = "test_cube"
    register_op(OpDef(name, lambda x: (x,), lambda x: x**3, 1, elementwise=True))
    return name  # tests/conftest.py restores the op and rule tables afterwards


def test_custom_op_without_rule_raises_then_works_once_registered(cube_op):
    with gk.Graph() as g:
        x = gk.input("x", (3,), "float64")
        y = gk.emit(cube_op, x, name="cubed")
        with pytest.raises(gk.UnsupportedOpError, match=r"'test_cube' \(node %cubed\).*register_vjp\('test_cube'\)"):
            grad(gk.sum(y), [x])

        @register_vjp(cube_op)
        def _cube(inputs, out, g):
            return (g * 3.0 * inputs[0] * inputs[0],)

        (dx,) = grad(gk.sum(y), [x])
    np.testing.assert_allclose(gk.compile(g, dx)(x=np.array([1.0, -2.0, 3.0])), [3.0, 12.0, 27.0])


def test_custom_rule_returning_a_wrong_shape_is_reported(cube_op):
    register_vjp(cube_op)(lambda inputs, out, g: (gk.sum(g),))
    with gk.Graph():
        x = gk.input("x", (3,), "float64")
        with pytest.raises(gk.GradientError, match=r"rule of 'test_cube' .* type f64\[\] for input 0"):
            grad(gk.sum(gk.emit(cube_op, x)), [x])


@pytest.fixture
def split_op():
    """A custom two-output op `test_split` (2x, 3x) registered for one test, with its rule."""
    name = "test_split"
    register_op(OpDef(name, lambda x: (x, x), lambda x: (2 * x, 3 * x), 1, num_outputs=2))

    @register_vjp(name)
    def _split(inputs, outs, cotangents):
        twice, thrice = cotangents
        return (twice * 2.0 + thrice * 3.0,)

    return name


def test_multi_output_rule_gets_zeros_for_an_output_without_gradient(split_op):
    with gk.Graph() as g:
        x = gk.input("x", (2,), "float64")
        twice, thrice = gk.emit(split_op, x)
        (only_thrice,) = grad(gk.sum(thrice), [x])
        (both,) = grad(gk.sum(twice * thrice), [x])
    got_thrice, got_both = gk.compile(g, [only_thrice, both])(x=np.array([1.0, -2.0]))
    np.testing.assert_array_equal(got_thrice, [3.0, 3.0])
    np.testing.assert_array_equal(got_both, [12.0, -24.0])


def test_a_rule_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="already has a gradient rule"):
        register_vjp("tanh")(lambda inputs, out, g: (g,))
