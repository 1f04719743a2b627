"""A QP layer in a small network (OptNet, Amos & Kolter 2017): the network's last layer is the
projection onto a capped simplex, {z : 0 <= z <= u, sum z = 1}, of scores W x,

    z = argmin 1/2 |z|^2 - (W x)^T z   subject to   -z <= 0,  z <= u,  1^T z = 1,

and training learns both the scores' weights W (the QP's linear term) and the cap u (its
constraint bound h), through gradients from the KKT conditions. The targets come from a
teacher of the same form, so they are sparse distributions with capped entries, which a softmax
layer trained the same way cannot produce. Checked against an independent projection (numpy
bisection on the threshold), and against finite differences of the loss.

    python examples/qp_layer.py
"""

import numpy as np

import gradkiln as gk

D, K, BATCH, STEPS, ITERATIONS = 5, 6, 64, 120, 15


def project(scores: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """The oracle: the capped-simplex projection is clip(scores - tau, 0, cap) with the tau
    that makes each row sum to 1, found by bisection."""
    low, high = scores.min(1, keepdims=True) - 1.0, scores.max(1, keepdims=True)
    for _ in range(100):
        tau = (low + high) / 2
        over = np.clip(scores - tau, 0, cap).sum(1, keepdims=True) > 1
        low, high = np.where(over, tau, low), np.where(over, high, tau)
    return np.clip(scores - (low + high) / 2, 0, cap)


def training_step(layer: str) -> gk.lowering.Executable:
    """The loss of a batch, its gradients with respect to the layer's parameters, and the layer's
    output, for the QP layer (parameters w and v, the caps being softplus(v) + 1/K) or a softmax
    layer (w)."""
    with gk.Graph(layer) as g:
        x, target = gk.input("x", (BATCH, D), "float64"), gk.input("target", (BATCH, K), "float64")
        params = [gk.param("w", np.zeros((K, D)))]
        scores = x @ gk.transpose(params[0])
        if layer == "qp":
            params.append(gk.param("v", np.zeros(K)))
            cap = gk.softplus(params[1]) + 1.0 / K  # the caps sum to more than 1: always feasible
            rows = np.concatenate([-np.eye(K), np.eye(K)])
            bounds = gk.concat([gk.zeros((K,), "float64"), cap])
            z = gk.qp(np.eye(K), -scores, rows, bounds, np.ones((1, K)), np.ones(1), iterations=ITERATIONS)
        else:
            z = gk.softmax(scores, -1)
        loss = gk.sum((z - target) ** 2) / BATCH
        grads = gk.grad(loss, params)
    return gk.compile(g, [loss, *grads, z])


def train(step: gk.lowering.Executable, params: dict, x: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Adam on `params` (updated in place); the loss before and after."""
    moments = {k: (np.zeros_like(p), np.zeros_like(p)) for k, p in params.items()}
    first = None
    for t in range(1, STEPS + 1):
        loss, *grads, _ = step(x=x, target=target, **params)
        first = loss if first is None else first
        for (name, p), g in zip(params.items(), grads):
            m, s = moments[name]
            m, s = 0.9 * m + 0.1 * g, 0.999 * s + 0.001 * g * g
            moments[name] = (m, s)
            p -= 0.1 * (m / (1 - 0.9**t)) / (np.sqrt(s / (1 - 0.999**t)) + 1e-8)
    return float(first), float(step(x=x, target=target, **params)[0])


def softplus_inverse(y: np.ndarray) -> np.ndarray:
    return np.log(np.expm1(y))


rng = np.random.default_rng(0)
teacher_w, teacher_cap = rng.normal(size=(K, D)), np.full(K, 0.35)
x = rng.normal(size=(BATCH, D))
target = project(x @ teacher_w.T, teacher_cap)

qp_step = training_step("qp")
teacher_v = softplus_inverse(teacher_cap - 1.0 / K)
layer_error = np.abs(qp_step(x=x, target=target, w=teacher_w, v=teacher_v)[3] - target).max()
print(f"QP layer vs bisection projection, max |difference|: {layer_error:.1e}")
assert layer_error < 1e-9

loss, dw, dv, _ = qp_step(x=x, target=target, w=0.5 * teacher_w, v=teacher_v - 0.5)
eps, direction = 1e-6, rng.normal(size=(K, D))
shifted = [qp_step(x=x, target=target, w=0.5 * teacher_w + s * eps * direction, v=teacher_v - 0.5)[0] for s in (1, -1)]
numeric = (shifted[0] - shifted[1]) / (2 * eps)
print(f"derivative along a random direction: gradient {np.sum(dw * direction):.8f}, finite differences {numeric:.8f}")
assert abs(np.sum(dw * direction) - numeric) < 1e-6 * max(1.0, abs(numeric))

start_w = 0.5 * np.random.default_rng(1).normal(size=(K, D))
qp_params = {"w": start_w.copy(), "v": np.full(K, softplus_inverse(0.25 - 1.0 / K))}  # caps start at 0.25
qp_before, qp_after = train(qp_step, qp_params, x, target)
softmax_before, softmax_after = train(training_step("softmax"), {"w": start_w.copy()}, x, target)
caps = np.log1p(np.exp(qp_params["v"])) + 1.0 / K
print(f"QP layer:      loss {qp_before:.4f} -> {qp_after:.6f}, learned caps {np.round(caps, 3)} (teacher 0.35)")
print(f"softmax layer: loss {softmax_before:.4f} -> {softmax_after:.6f}")
assert qp_after < 0.05 * qp_before and qp_after < 0.2 * softmax_after
