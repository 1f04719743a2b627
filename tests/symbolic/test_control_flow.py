"""Differentiable control flow: gk.scan, gk.cond and gk.while_loop values against plain numpy
loops; gradients against torch.autograd (float64) and finite differences; grad of grad, jvp,
vmap and jacobian through a scan; cond gradients on both branches; Newton's method as a
bounded while loop."""

import numpy as np
import pytest
import torch

import gradkiln as gk
from gradkiln.testing import numeric_grads

RNG = np.random.default_rng(7)
T, H = 5, 3


def run(graph, outputs, **feeds):
    return gk.compile(graph, outputs, target="numpy")(**feeds)


# -- an RNN written with gk.scan ------------------------------------------------------------------
RNN = {"x": RNG.normal(size=(T, 2, H)), "h0": RNG.normal(size=(2, H)), "w": RNG.normal(size=(H, H)) * 0.6}


def rnn_graph():
    with gk.Graph("rnn") as g:
        x, h0, w = (gk.input(k, v.shape, "float64") for k, v in RNN.items())
        final, ys = gk.scan(lambda h, xt: (gk.tanh(h @ w + xt), gk.sin(h)), h0, x)
        loss = gk.sum(final * final) + gk.sum(ys * ys * 0.5)
    return g, (x, h0, w), final, ys, loss


def rnn_numpy(x, h0, w):
    h, ys = h0, []
    for t in range(len(x)):
        ys.append(np.sin(h))
        h = np.tanh(h @ w + x[t])
    return h, np.stack(ys)


def rnn_torch_grads():
    x, h0, w = (torch.tensor(v, requires_grad=True) for v in RNN.values())
    h, loss = h0, 0.0
    for t in range(T):
        loss = loss + (torch.sin(h) ** 2).sum() * 0.5
        h = torch.tanh(h @ w + x[t])
    loss = loss + (h * h).sum()
    loss.backward()
    return [t.grad.numpy() for t in (x, h0, w)]


def test_scan_values_match_a_numpy_loop():
    g, _, final, ys, _ = rnn_graph()
    got = run(g, [final, ys], **RNN)
    for a, b in zip(got, rnn_numpy(**RNN)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_rnn_gradients_match_torch_autograd():
    g, inputs, _, _, loss = rnn_graph()
    got = run(g, gk.grad(loss, list(inputs)), **RNN)
    for name, a, b in zip(RNN, got, rnn_torch_grads()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=name)


def test_rnn_gradients_match_finite_differences():
    g, inputs, _, _, loss = rnn_graph()
    got = run(g, gk.grad(loss, list(inputs)), **RNN)
    numeric = numeric_grads(lambda f: run(g, loss, **f), dict(RNN), list(RNN), np.ones(()))
    for name, a in zip(RNN, got):
        np.testing.assert_allclose(a, numeric[name], rtol=1e-6, atol=1e-8, err_msg=name)


def lstm_graph(shapes):
    with gk.Graph("lstm") as g:
        x, w_ih, w_hh, b = (gk.input(k, v, "float64") for k, v in shapes.items())

        def cell(carry, xt):
            h, c = carry
            i, f, z, o = gk.split(xt @ gk.transpose(w_ih, (1, 0)) + h @ gk.transpose(w_hh, (1, 0)) + b, 4, axis=-1)
            c = gk.sigmoid(f) * c + gk.sigmoid(i) * gk.tanh(z)
            h = gk.sigmoid(o) * gk.tanh(c)
            return (h, c), h

        zeros = gk.zeros((x.shape[1], w_hh.shape[1]), "float64")
        _, hs = gk.scan(cell, (zeros, zeros), x)
        loss = gk.sum(gk.sin(hs))
    return g, gk.grad(loss, [x, w_ih, w_hh, b])


def test_lstm_scan_gradients_match_torch_nn_lstm():
    lstm = torch.nn.LSTM(2, H, dtype=torch.float64)
    x = torch.tensor(RNG.normal(size=(T, 2, 2)), requires_grad=True)
    torch.sin(lstm(x)[0]).sum().backward()
    feeds = {
        "x": x.detach().numpy(),
        "w_ih": lstm.weight_ih_l0.detach().numpy(),
        "w_hh": lstm.weight_hh_l0.detach().numpy(),
        "b": (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach().numpy(),
    }
    g, grads = lstm_graph({k: v.shape for k, v in feeds.items()})
    want = [x.grad, lstm.weight_ih_l0.grad, lstm.weight_hh_l0.grad, lstm.bias_ih_l0.grad]
    for name, got, ref in zip(feeds, run(g, grads, **feeds), want):
        np.testing.assert_allclose(got, ref.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def test_reverse_scan_runs_backwards_and_keeps_ys_in_index_order():
    with gk.Graph() as g:
        x = gk.input("x", (4,), "float64")
        total, partial = gk.scan(lambda c, xt: (c + xt, c + xt), gk.constant(0.0, "float64"), x, reverse=True)
    xv = np.array([1.0, 2.0, 3.0, 4.0])
    got_total, got_partial = run(g, [total, partial], x=xv)
    np.testing.assert_allclose(got_partial, np.cumsum(xv[::-1])[::-1])
    assert got_total == 10.0


# -- ODE integrators (no xs: a trip count) ----------------------------------------------------------
def rk4_step(f, y, dt):
    k1 = f(y)
    k2 = f(y + dt / 2 * k1)
    k3 = f(y + dt / 2 * k2)
    k4 = f(y + dt * k3)
    return y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def euler_step(f, y, dt):
    return y + dt * f(y)


@pytest.mark.parametrize("step", [euler_step, rk4_step], ids=["euler", "rk4"])
def test_ode_integrator_gradients_match_torch(step):
    y0, a = np.array([0.3, -0.8]), np.array([[0.0, 1.0], [-2.0, -0.3]])
    with gk.Graph() as g:
        y, m = gk.input("y0", (2,), "float64"), gk.input("a", (2, 2), "float64")
        final, _ = gk.scan(lambda c, _: (step(lambda v: gk.tanh(m @ v), c, 0.1), None), y, length=20)
        loss = gk.sum(final * final)
    got = run(g, [loss, *gk.grad(loss, [y, m])], y0=y0, a=a)
    ty, tm = torch.tensor(y0, requires_grad=True), torch.tensor(a, requires_grad=True)
    c = ty
    for _ in range(20):
        c = step(lambda v: torch.tanh(tm @ v), c, 0.1)
    (c * c).sum().backward()
    np.testing.assert_allclose(got[0], (c * c).sum().item(), rtol=1e-12)
    np.testing.assert_allclose(got[1], ty.grad.numpy(), rtol=1e-9)
    np.testing.assert_allclose(got[2], tm.grad.numpy(), rtol=1e-9)


# -- higher order, forward mode, batching ----------------------------------------------------------------
def decay_graph():
    with gk.Graph() as g:
        k = gk.input("k", (), "float64")
        y0 = gk.input("y0", (2,), "float64")
        final, _ = gk.scan(lambda c, _: (c - 0.1 * k * c * c, None), y0, length=4)
    return g, k, y0, final


def decay_numpy(k, y0):
    for _ in range(4):
        y0 = y0 - 0.1 * k * y0 * y0
    return y0


def test_grad_of_grad_through_scan_matches_finite_differences():
    g, k, _, final = decay_graph()
    (dk,) = gk.grad(gk.sum(final), [k])
    (ddk,) = gk.grad(dk, [k])
    yv, kv, eps = np.array([0.5, 1.2]), 2.0, 1e-4
    got = run(g, ddk, k=np.array(kv), y0=yv)
    numeric = (
        decay_numpy(kv + eps, yv).sum() - 2 * decay_numpy(kv, yv).sum() + decay_numpy(kv - eps, yv).sum()
    ) / eps**2
    np.testing.assert_allclose(got, numeric, rtol=1e-5)


def test_jvp_through_scan_matches_finite_differences():
    g, _, y0, final = decay_graph()
    tangent = np.array([0.3, -0.7])
    (out,) = gk.jvp(final, [y0], [tangent])
    yv, eps = np.array([0.5, 1.2]), 1e-6
    numeric = (decay_numpy(2.0, yv + eps * tangent) - decay_numpy(2.0, yv - eps * tangent)) / (2 * eps)
    np.testing.assert_allclose(run(g, out, k=np.array(2.0), y0=yv), numeric, rtol=1e-7)


def test_vmap_and_jacobian_over_a_scan():
    g, _, y0, final = decay_graph()
    with g:
        batch = gk.input("batch", (3, 2), "float64")
    (batched,) = gk.vmap(final, [y0], [batch])
    jac = gk.jacobian(final, y0)
    yv, rows = np.array([0.5, 1.2]), RNG.uniform(0.1, 1.0, (3, 2))
    got_batched, got_jac = run(g, [batched, jac], k=np.array(2.0), y0=yv, batch=rows)
    np.testing.assert_allclose(got_batched, np.stack([decay_numpy(2.0, r) for r in rows]), rtol=1e-12)
    eps = 1e-6
    numeric = np.stack([(decay_numpy(2.0, yv + e) - decay_numpy(2.0, yv - e)) / (2 * eps) for e in np.eye(2) * eps], 1)
    np.testing.assert_allclose(got_jac, numeric, rtol=1e-6)


def test_vmap_of_cond_with_an_unbatched_predicate_stays_a_cond():
    with gk.Graph() as g:
        x, p = gk.input("x", (2,), "float64"), gk.input("p", (), "float64")
        y = gk.cond(p > 0, lambda v: v * 10.0, lambda v: -v, x)
        xs = gk.input("xs", (3, 2), "float64")
    (batched,) = gk.vmap(y, [x], [xs])
    assert batched.node.op == "cond"
    rows = np.arange(6.0).reshape(3, 2)
    np.testing.assert_allclose(run(g, batched, xs=rows, p=np.array(1.0)), rows * 10.0)
    np.testing.assert_allclose(run(g, batched, xs=rows, p=np.array(-1.0)), -rows)


def test_vmap_of_cond_with_a_batched_predicate_selects_per_element():
    with gk.Graph() as g:
        x = gk.input("x", (), "float64")
        y = gk.cond(x > 0, lambda v: v * 10.0, lambda v: -v, x)
        xs = gk.input("xs", (4,), "float64")
    (batched,) = gk.vmap(y, [x], [xs])
    got = run(g, batched, x=np.array(1.0), xs=np.array([-2.0, 3.0, 0.5, -0.1]))
    np.testing.assert_allclose(got, [2.0, 30.0, 5.0, 0.1])


# -- cond ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["true_branch", "false_branch"])
def test_cond_value_and_gradients_on_both_branches(sign):
    with gk.Graph() as g:
        x, p = gk.input("x", (3,), "float64"), gk.input("p", (), "float64")
        y = gk.cond(p > 0, lambda a, b: gk.sin(a) * b, lambda a, b: a * a * b, x, p)
        loss = gk.sum(y)
        grads = gk.grad(loss, [x, p])
    xv, pv = RNG.normal(size=3), np.array(sign * 1.5)
    got = run(g, [y, *grads], x=xv, p=pv)
    expected = np.sin(xv) * pv if sign > 0 else xv * xv * pv
    np.testing.assert_allclose(got[0], expected)
    numeric = numeric_grads(lambda f: run(g, loss, **f), {"x": xv, "p": pv}, ["x", "p"], np.ones(()))
    np.testing.assert_allclose(got[1], numeric["x"], rtol=1e-7)
    np.testing.assert_allclose(got[2], numeric["p"], rtol=1e-7)


def test_cond_jvp_follows_the_branch_taken():
    with gk.Graph() as g:
        x = gk.input("x", (2,), "float64")
        y = gk.cond(gk.sum(x) > 0, lambda a: gk.exp(a), lambda a: a * 3.0, x)
        (ty,) = gk.jvp(y, [x], [np.array([1.0, 2.0])])
    np.testing.assert_allclose(run(g, ty, x=np.array([0.5, 0.1])), np.exp([0.5, 0.1]) * [1.0, 2.0])
    np.testing.assert_allclose(run(g, ty, x=np.array([-0.5, 0.1])), [3.0, 6.0])


# -- while_loop ----------------------------------------------------------------------------------------------
def test_newton_sqrt_as_a_bounded_while_loop_value_and_gradient():
    with gk.Graph() as g:
        a = gk.input("a", (), "float64")
        root = gk.while_loop(lambda y: gk.abs(y * y - a) > 1e-12, lambda y: 0.5 * (y + a / y), a, 40)
        (da,) = gk.grad(root, [a])
        (dda,) = gk.grad(da, [a])
    got = run(g, [root, da, dda], a=np.array(2.0))
    np.testing.assert_allclose(got, [np.sqrt(2.0), 0.5 / np.sqrt(2.0), -0.25 * 2.0**-1.5], rtol=1e-8)


def test_while_loop_stops_at_max_trips_and_keeps_the_state_after_the_condition_fails():
    with gk.Graph() as g:
        s = gk.input("s", (), "float64")
        doubled = gk.while_loop(lambda v: v < 100.0, lambda v: v * 2.0, s, 3)
        until = gk.while_loop(lambda v: v < 5.0, lambda v: v * 2.0, s, 30)
    np.testing.assert_array_equal(run(g, [doubled, until], s=np.array(1.0)), [8.0, 8.0])


def test_jax_agrees_on_scan_gradients_when_installed():
    jax = pytest.importorskip("jax", reason="needs jax (the oracle): pip install -e '.[bench]'")
    jax.config.update("jax_enable_x64", True)

    def loss(x, h0, w):
        def step(h, xt):
            return jax.numpy.tanh(h @ w + xt), jax.numpy.sin(h)

        final, ys = jax.lax.scan(step, h0, x)
        return (final * final).sum() + (ys * ys).sum() * 0.5

    expected = jax.grad(loss, argnums=(0, 1, 2))(*RNN.values())
    g, inputs, _, _, gk_loss = rnn_graph()
    for a, b in zip(run(g, gk.grad(gk_loss, list(inputs)), **RNN), expected):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-9, atol=1e-12)


def test_nested_scans_with_a_cond_inside_differentiate_twice():
    with gk.Graph() as g:
        m, k = gk.input("m", (2, 3), "float64"), gk.input("k", (), "float64")

        def outer(c, row):
            inner, _ = gk.scan(lambda a, v: (gk.sin(a + v * k), None), c, row)
            return gk.cond(inner > 0, lambda q: q * k, lambda q: q * q, inner), inner

        total, partial = gk.scan(outer, gk.constant(0.3, "float64"), m)
        loss = total + gk.sum(partial * partial)
        dm, dk = gk.grad(loss, [m, k])
        (ddk,) = gk.grad(dk, [k])
    feeds = {"m": RNG.normal(size=(2, 3)), "k": np.array(0.7)}
    got = run(g, [dm, dk, ddk], **feeds)
    numeric = numeric_grads(lambda f: run(g, loss, **f), dict(feeds), ["m", "k"], np.ones(()))
    np.testing.assert_allclose(got[0], numeric["m"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got[1], numeric["k"], rtol=1e-6)
    numeric_second = numeric_grads(lambda f: run(g, dk, **f), dict(feeds), ["k"], np.ones(()))
    np.testing.assert_allclose(got[2], numeric_second["k"], rtol=1e-5)
