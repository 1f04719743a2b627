"""Gradients are graphs, so gradients of gradients work: a Hessian-vector product by
differentiating the gradient, checked against finite differences of the gradient.

    python examples/second_order.py
"""

import numpy as np

import gradkiln as gk

with gk.Graph("hvp") as g:
    x = gk.input("x", (5,), "float64")
    v = gk.input("v", (5,), "float64")
    f = gk.sum(gk.tanh(x) * x**3)
    (df,) = gk.grad(f, [x])
    (hvp,) = gk.grad(gk.sum(df * v), [x])  # d/dx <grad f(x), v> = H(x) v

run = gk.compile(g, [df, hvp])
rng = np.random.default_rng(0)
x0, v0 = rng.normal(size=5), rng.normal(size=5)
gradient, hessian_v = run(x=x0, v=v0)
eps = 1e-6
numeric = (run(x=x0 + eps * v0, v=v0)[0] - run(x=x0 - eps * v0, v=v0)[0]) / (2 * eps)
print("H v        ", hessian_v)
print("finite diff", numeric)
assert np.allclose(hessian_v, numeric, rtol=1e-6, atol=1e-8)
