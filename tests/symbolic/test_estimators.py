"""The gradient estimators of gk.random against closed forms and torch.autograd, and the
autodiff rules of random_bits (non-differentiable, batched by vmap as separate calls)."""

import numpy as np
import pytest

import gradkiln as gk

torch = pytest.importorskip("torch")


def test_reparameterized_gradient_of_e_z_squared_is_two_mu_and_two_sigma():
    """E[z^2] = mu^2 + s^2 for z ~ N(mu, s^2): d/dmu = 2 mu, d/ds = 2 s, averaged over 20000 draws."""
    n = 20000
    with gk.Graph() as g:
        mu, s = gk.input("mu", (), "float64"), gk.input("s", (), "float64")
        z = gk.random.reparameterize(gk.input("key", (), "int64"), gk.broadcast_to(mu, (n,)), s)
        d_mu, d_s = gk.grad(gk.mean(z * z), [mu, s])
    f = gk.compile(g, [d_mu, d_s, z])
    got_mu, got_s, samples = f(mu=np.float64(0.7), s=np.float64(1.3), key=np.int64(4))
    # the estimate is 2 mean(z) and 2 mean(z eps): standard errors from the samples themselves
    eps = (samples - 0.7) / 1.3
    assert abs(got_mu - 1.4) < 4 * np.std(2 * samples) / np.sqrt(n)
    assert abs(got_s - 2.6) < 4 * np.std(2 * samples * eps) / np.sqrt(n)
    np.testing.assert_allclose([got_mu, got_s], [2 * samples.mean(), 2 * np.mean(samples * eps)], rtol=1e-12)


def test_reparameterized_jvp_moves_the_sample_with_the_mean():
    with gk.Graph() as g:
        mu = gk.input("mu", (5,), "float64")
        z = gk.random.reparameterize(3, mu, 2.0)
        (tangent,) = gk.jvp(z, [mu], [gk.ones_like(mu)])
    np.testing.assert_array_equal(gk.compile(g, tangent)(mu=np.zeros(5)), np.ones(5))


def bernoulli_reinforce(baseline):
    """theta -> p = sigmoid(theta), b ~ Bernoulli(p), reward (b - 0.3)^2: the REINFORCE surrogate's
    value and gradient over n samples drawn from a runtime key."""
    n = 4000
    with gk.Graph() as g:
        theta, key = gk.input("theta", (), "float64"), gk.input("key", (), "int64")
        p = gk.sigmoid(theta)
        b = gk.cast(gk.random.bernoulli(key, gk.broadcast_to(p, (n,))), "float64")
        log_prob = b * theta - gk.softplus(theta)  # log p^b (1 - p)^(1 - b)
        reward = (b - 0.3) * (b - 0.3)
        surrogate = gk.random.reinforce(log_prob, reward, baseline)
        loss = gk.mean(surrogate)
        (d_theta,) = gk.grad(loss, [theta])
    return gk.compile(g, [loss, d_theta, gk.mean(reward)])


def test_reinforce_gradient_matches_the_closed_form_and_its_value_is_the_reward():
    theta = 0.4
    p = 1 / (1 + np.exp(-theta))
    exact = p * (1 - p) * (0.7**2 - 0.3**2)  # d/dtheta [p 0.49 + (1 - p) 0.09]
    f = bernoulli_reinforce(0.0)
    estimates = []
    for key in range(20):
        loss, d_theta, mean_reward = f(theta=np.float64(theta), key=np.int64(key))
        assert loss == mean_reward
        estimates.append(d_theta)
    assert abs(np.mean(estimates) - exact) < 4 * np.std(estimates) / np.sqrt(len(estimates))


def test_a_baseline_keeps_reinforce_unbiased_and_lowers_its_variance():
    theta = np.float64(0.4)
    p = 1 / (1 + np.exp(-theta))
    exact = p * (1 - p) * 0.4
    plain, centred = bernoulli_reinforce(0.0), bernoulli_reinforce(0.27)  # about E[reward]
    without = [plain(theta=theta, key=np.int64(k))[1] for k in range(20)]
    with_baseline = [centred(theta=theta, key=np.int64(k))[1] for k in range(20)]
    assert abs(np.mean(with_baseline) - exact) < 4 * np.std(with_baseline) / np.sqrt(20)
    assert np.std(with_baseline) < 0.5 * np.std(without)


def gumbel_softmax_graph(hard, temperature=0.5):
    with gk.Graph() as g:
        logits = gk.input("logits", (6, 4), "float64")
        weights = gk.input("weights", (6, 4), "float64")
        key = gk.input("key", (), "int64")
        y = gk.random.gumbel_softmax(key, logits, temperature, hard=hard)
        (d_logits,) = gk.grad(gk.sum(y * weights), [logits])
        noise = gk.random.gumbel(key, (6, 4), "float64")
    return g, y, d_logits, noise


FEEDS = {
    "logits": np.random.default_rng(0).normal(size=(6, 4)),
    "weights": np.random.default_rng(1).normal(size=(6, 4)),
    "key": np.int64(9),
}


def test_gumbel_softmax_soft_sample_and_gradient_match_torch_with_the_same_noise():
    g, y, d_logits, noise = gumbel_softmax_graph(hard=False)
    got_y, got_d, g_noise = gk.compile(g, [y, d_logits, noise])(**FEEDS)
    logits = torch.tensor(FEEDS["logits"], requires_grad=True)
    expected = torch.softmax((logits + torch.tensor(g_noise)) / 0.5, -1)
    (expected * torch.tensor(FEEDS["weights"])).sum().backward()
    np.testing.assert_allclose(got_y, expected.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(got_d, logits.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_hard_gumbel_softmax_is_one_hot_forward_with_the_soft_gradient():
    g, y, d_logits, noise = gumbel_softmax_graph(hard=True)
    soft = gumbel_softmax_graph(hard=False)
    hard_y, hard_d, g_noise = gk.compile(g, [y, d_logits, noise])(**FEEDS)
    soft_y, soft_d = gk.compile(soft[0], [soft[1], soft[2]])(**FEEDS)
    np.testing.assert_array_equal(hard_y, np.eye(4)[np.argmax(FEEDS["logits"] + g_noise, -1)])
    np.testing.assert_array_equal(np.argmax(hard_y, -1), np.argmax(soft_y, -1))
    np.testing.assert_allclose(hard_d, soft_d, rtol=1e-12)


def test_hard_gumbel_softmax_along_axis_zero_is_one_hot_down_the_columns():
    with gk.Graph() as g:
        y = gk.random.gumbel_softmax(5, gk.constant(np.zeros((3, 7))), hard=True, axis=0)
    out = gk.compile(g, y)()
    np.testing.assert_array_equal(out.sum(0), np.ones(7))
    assert set(np.unique(out)) == {0.0, 1.0}


def test_gumbel_softmax_rejects_a_non_positive_temperature():
    with gk.Graph(), pytest.raises(gk.GraphError, match="temperature must be positive"):
        gk.random.gumbel_softmax(0, gk.input("l", (3,)), 0.0)


def test_random_bits_is_not_differentiable_and_an_int_key_takes_no_gradient():
    with gk.Graph() as g:
        x = gk.input("x", (4,), "float64")
        y = gk.sum(x * gk.random.uniform(gk.input("key", (), "int64"), (4,), "float64"))
        (dx,) = gk.grad(y, [x])
    u = gk.compile(g, dx)(x=np.ones(4), key=np.int64(2))
    with gk.Graph() as h:
        expected = gk.random.uniform(2, (4,), "float64")
    np.testing.assert_array_equal(u, gk.compile(h, expected)())


def test_vmap_over_keys_draws_what_separate_calls_draw():
    with gk.Graph() as g:
        key, keys = gk.input("key", (), "int64"), gk.input("keys", (3,), "int64")
        z = gk.random.normal(key, (2, 5))
        (batched,) = gk.vmap(z, [key], [keys])
    got = gk.compile(g, batched)(keys=np.array([1, 2, 3]))
    single = gk.compile(g, z)
    np.testing.assert_array_equal(got, np.stack([single(key=np.int64(k)) for k in (1, 2, 3)]))
