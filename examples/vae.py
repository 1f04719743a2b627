"""A variational autoencoder (Kingma and Welling 2014) on scikit-learn's digits, trained with the
reparameterized estimator and a fresh noise draw every step from a runtime seed.

The encoder maps a digit x (64 pixels in [0, 1]) to the mean and log-variance of q(z | x) over 8
latent dims; z = mean + exp(logvar / 2) * eps is drawn by `gk.random.reparameterize` from the
seed fed with each call (the step number), so the one compiled step draws new eps each step
without recompiling, and the gradient flows through z to the encoder. The decoder maps z to the
logits of 64 Bernoulli pixels. The loss is the negative ELBO per example,
BCE(logits, x) summed over pixels + KL(q(z | x) || N(0, I)), and Adam (in numpy) applies its gradients.

    python examples/vae.py [--target llvm] [--epochs 20]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

import gradkiln as gk
from gradkiln.demo import load_digits

PIXELS, HIDDEN, LATENT = 64, 128, 8
BATCH = 128
SHAPES = {
    "w_enc": (PIXELS, HIDDEN),
    "b_enc": (HIDDEN,),
    "w_mean": (HIDDEN, LATENT),
    "b_mean": (LATENT,),
    "w_logvar": (HIDDEN, LATENT),
    "b_logvar": (LATENT,),
    "w_dec": (LATENT, HIDDEN),
    "b_dec": (HIDDEN,),
    "w_out": (HIDDEN, PIXELS),
    "b_out": (PIXELS,),
}


def init_weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Glorot-scaled matrices, zero biases (float32)."""
    return {
        name: (rng.normal(0, np.sqrt(1 / shape[0]), shape) if len(shape) == 2 else np.zeros(shape)).astype(np.float32)
        for name, shape in SHAPES.items()
    }


@dataclass(frozen=True)
class VAEGraph:
    """Inputs: `x` (batch, 64), `seed` (int64 scalar) and the weights by name; outputs: the mean
    negative ELBO over the batch and its gradient for each weight (in `SHAPES` order)."""

    graph: gk.Graph
    loss: gk.Tensor
    grads: list[gk.Tensor]


def build_vae(batch: int) -> VAEGraph:
    """The VAE over a batch of `batch` digits (static: the noise has the batch's shape)."""
    with gk.Graph("vae") as g:
        x, seed = gk.input("x", (batch, PIXELS)), gk.input("seed", (), "int64")
        w = {name: gk.input(name, shape) for name, shape in SHAPES.items()}
        h = gk.tanh(x @ w["w_enc"] + w["b_enc"])
        mean, logvar = h @ w["w_mean"] + w["b_mean"], h @ w["w_logvar"] + w["b_logvar"]
        z = gk.random.reparameterize(seed, mean, gk.exp(0.5 * logvar))
        logits = gk.tanh(z @ w["w_dec"] + w["b_dec"]) @ w["w_out"] + w["b_out"]
        reconstruction = gk.sum(gk.bce_with_logits(logits, x, reduction="none"), 1)
        kl = 0.5 * gk.sum(gk.exp(logvar) + mean * mean - 1.0 - logvar, 1)
        loss = gk.mean(reconstruction + kl)
        grads = gk.grad(loss, list(w.values()))
    return VAEGraph(g, loss, grads)


def adam(
    step: gk.Executable, weights: dict[str, np.ndarray], x: np.ndarray, epochs: int, lr: float = 3e-3
) -> dict[str, np.ndarray]:
    """Adam over shuffled batches of `BATCH` (the last partial batch dropped); the seed of each
    call is the step number, so each step draws fresh noise. Prints the mean loss per few epochs."""
    moments = {name: (np.zeros_like(v), np.zeros_like(v)) for name, v in weights.items()}
    rng, t = np.random.default_rng(1), 0
    for epoch in range(epochs):
        order, losses = rng.permutation(len(x)), []
        for start in range(0, len(order) - BATCH + 1, BATCH):
            t += 1
            loss, *grads = step(x=x[order[start : start + BATCH]], seed=np.int64(t), **weights)
            for (name, value), g in zip(weights.items(), grads):
                m, v = moments[name]
                m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
                moments[name] = (m, v)
                weights[name] = value - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
            losses.append(loss)
        if epoch % 10 == 9 or epoch == epochs - 1:
            print(f"epoch {epoch + 1}  mean training -ELBO {np.mean(losses):.2f}")
    return weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="numpy", help="numpy or llvm")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()

    x_train, _, x_test, _ = load_digits()
    start = time.perf_counter()
    train_vae, test_vae = build_vae(BATCH), build_vae(len(x_test))
    step = gk.compile(train_vae.graph, [train_vae.loss, *train_vae.grads], target=args.target)
    evaluate = gk.compile(test_vae.graph, test_vae.loss, target=args.target)
    print(f"compiled for {args.target} in {time.perf_counter() - start:.1f} s")

    def elbo(weights: dict[str, np.ndarray]) -> float:
        """The test ELBO per digit, averaged over 8 noise draws (seeds 0-7, the same every time)."""
        return -float(np.mean([evaluate(x=x_test, seed=np.int64(s), **weights) for s in range(8)]))

    weights = init_weights(np.random.default_rng(0))
    before = elbo(weights)
    print(f"test ELBO before training {before:.2f} nats per digit")
    start = time.perf_counter()
    weights = adam(step, weights, x_train, args.epochs)
    print(f"{args.epochs} epochs in {time.perf_counter() - start:.1f} s")
    after = elbo(weights)
    print(f"test ELBO after training  {after:.2f} nats per digit")
    assert after > before + 10, (before, after)


if __name__ == "__main__":
    main()
