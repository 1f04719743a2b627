"""examples/vae.py: the VAE's negative ELBO and its gradient for every weight equal torch.autograd's
on the same weights, digits and noise (eps drawn by gk.random.normal from the same seed, which is
what reparameterize draws), on the numpy executor and on llvm; a new seed moves the loss."""

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.testing.examples import load_example

torch = pytest.importorskip("torch")

BATCH = 16


vae = load_example("vae")


def torch_loss(weights, x, eps):
    w = {name: torch.tensor(value, dtype=torch.float64, requires_grad=True) for name, value in weights.items()}
    x = torch.tensor(x, dtype=torch.float64)
    h = torch.tanh(x @ w["w_enc"] + w["b_enc"])
    mean, logvar = h @ w["w_mean"] + w["b_mean"], h @ w["w_logvar"] + w["b_logvar"]
    z = mean + torch.exp(0.5 * logvar) * torch.tensor(eps, dtype=torch.float64)
    logits = torch.tanh(z @ w["w_dec"] + w["b_dec"]) @ w["w_out"] + w["b_out"]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
    kl = 0.5 * (torch.exp(logvar) + mean**2 - 1 - logvar).sum(1)
    loss = (bce + kl).mean()
    loss.backward()
    return loss.item(), [w[name].grad.numpy() for name in vae.SHAPES]


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(5)
    weights = vae.init_weights(rng)
    weights = {name: w + np.float32(0.1) * rng.normal(size=w.shape).astype(np.float32) for name, w in weights.items()}
    x = vae.load_digits()[0][:BATCH]
    with gk.Graph() as g:
        eps = gk.random.normal(gk.input("seed", (), "int64"), (BATCH, vae.LATENT))
    return weights, x, gk.compile(g, eps)(seed=np.int64(42))


@pytest.mark.parametrize("target", ["numpy", "llvm"])
def test_negative_elbo_and_gradients_match_torch_with_the_same_noise(problem, target):
    weights, x, eps = problem
    model = vae.build_vae(BATCH)
    loss, *grads = gk.compile(model.graph, [model.loss, *model.grads], target=target)(x=x, seed=np.int64(42), **weights)
    expected_loss, expected_grads = torch_loss(weights, x, eps)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    for name, got, want in zip(vae.SHAPES, grads, expected_grads):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4, err_msg=name)


def test_each_seed_draws_new_noise_in_one_compiled_step(problem):
    weights, x, _ = problem
    model = vae.build_vae(BATCH)
    step = gk.compile(model.graph, model.loss)
    losses = [float(step(x=x, seed=np.int64(s), **weights)) for s in (1, 1, 2)]
    assert losses[0] == losses[1] != losses[2]
