"""A deep MLP with its gradient graph: names scoped like a torch module ("layer3.linear.weight")."""

import numpy as np
import pytest

import gradkiln as gk

LAYERS, WIDTH = 20, 8


def build_deep_mlp(layers: int = LAYERS):
    rng = np.random.default_rng(0)
    with gk.Graph("deep_mlp") as g:
        x = gk.input("x", ("N", WIDTH))
        y = gk.input("y", ("N",), "int64")
        h, params = x, []
        for i in range(layers):
            w = gk.param(f"layer{i}.linear.weight", rng.normal(size=(WIDTH, WIDTH)).astype(np.float32) / WIDTH)
            b = gk.param(f"layer{i}.linear.bias", np.zeros(WIDTH, np.float32))
            h = gk.relu(h @ w + b)
            params += [w, b]
        loss = gk.cross_entropy(h, y)
        grads = gk.grad(loss, params)
    return g, loss, params, grads


@pytest.fixture(scope="module")
def deep_mlp():
    return build_deep_mlp()
