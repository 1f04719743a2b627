"""Issue 7's W2 (CNN) and W3 (transformer block) training steps, as gradkiln graphs and as PyTorch
modules with the same parameters, for benchmarks/train_step.py.

W2: batch 16, 3x32x32, conv3x3(16)-relu-conv3x3(32)-relu-maxpool2-conv3x3(64)-relu-global
    avgpool-linear10, softmax cross entropy. W3: batch 8, seq 128, d_model 256, 4 heads, FFN 1024
    (GELU), pre-layer-norm residual block, MSE loss. Each step computes the loss and every
    parameter gradient in float32.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any, Callable

import numpy as np

import gradkiln as gk

W2_BATCH, W2_CHANNELS = 16, [3, 16, 32, 64]
W3_BATCH, W3_SEQ, W3_MODEL, W3_HEADS, W3_FFN = 8, 128, 256, 4, 1024


def w2_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    params = {}
    for i, (c_in, c_out) in enumerate(pairwise(W2_CHANNELS)):
        params[f"conv{i}"] = rng.normal(0, np.sqrt(2 / (9 * c_in)), (c_out, c_in, 3, 3)).astype(np.float32)
        params[f"bias{i}"] = np.zeros(c_out, np.float32)
    params["fc"] = rng.normal(0, np.sqrt(1 / W2_CHANNELS[-1]), (W2_CHANNELS[-1], 10)).astype(np.float32)
    params["fc_bias"] = np.zeros(10, np.float32)
    return params


def w2_inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"x": rng.normal(size=(W2_BATCH, 3, 32, 32)).astype(np.float32), "labels": rng.integers(0, 10, W2_BATCH)}


def w2_graph(params: dict[str, np.ndarray]) -> tuple[gk.Graph, list[gk.Tensor]]:
    with gk.Graph("cnn") as g:
        h = gk.input("x", ("N", 3, 32, 32))
        labels = gk.input("labels", ("N",), "int64")
        p = {name: gk.param(name, value) for name, value in params.items()}
        for i in range(3):
            h = gk.relu(gk.conv2d(h, p[f"conv{i}"], padding=1) + gk.reshape(p[f"bias{i}"], (-1, 1, 1)))
            h = gk.max_pool2d(h, 2) if i == 1 else h
        logits = gk.reshape(gk.global_avg_pool2d(h), ("N", W2_CHANNELS[-1])) @ p["fc"] + p["fc_bias"]
        loss = gk.cross_entropy(logits, labels)
        grads = gk.grad(loss, list(p.values()))
    return g, [loss, *grads]


def w3_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    def dense(n_in: int, n_out: int) -> np.ndarray:
        return rng.normal(0, np.sqrt(1 / n_in), (n_in, n_out)).astype(np.float32)

    d, f = W3_MODEL, W3_FFN
    ones, zeros = np.ones(d, np.float32), np.zeros(d, np.float32)
    return {
        "ln1_w": ones, "ln1_b": zeros, "wq": dense(d, d), "wk": dense(d, d), "wv": dense(d, d), "wo": dense(d, d),
        "ln2_w": ones.copy(), "ln2_b": zeros.copy(), "w1": dense(d, f), "b1": np.zeros(f, np.float32),
        "w2": dense(f, d), "b2": zeros.copy(),
    }  # fmt: skip


def w3_inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    shape = (W3_BATCH, W3_SEQ, W3_MODEL)
    return {"x": rng.normal(size=shape).astype(np.float32), "target": rng.normal(size=shape).astype(np.float32)}


def w3_block(x: Any, p: dict[str, Any], ops: dict[str, Callable]) -> Any:
    """The transformer block over any array library given its ops (layer_norm, attention, gelu,
    split_heads/merge_heads)."""
    h = ops["layer_norm"](x, p["ln1_w"], p["ln1_b"])
    q, k, v = (ops["split_heads"](h @ p[w]) for w in ("wq", "wk", "wv"))
    x = x + ops["merge_heads"](ops["attention"](q, k, v)) @ p["wo"]
    h = ops["layer_norm"](x, p["ln2_w"], p["ln2_b"])
    return x + ops["gelu"](h @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]


def _heads(split: bool, reshape: Callable, transpose: Callable) -> Callable:
    head_dim = W3_MODEL // W3_HEADS
    if split:
        return lambda t: transpose(reshape(t, (W3_BATCH, W3_SEQ, W3_HEADS, head_dim)), (0, 2, 1, 3))
    return lambda t: reshape(transpose(t, (0, 2, 1, 3)), (W3_BATCH, W3_SEQ, W3_MODEL))


def w3_graph(params: dict[str, np.ndarray]) -> tuple[gk.Graph, list[gk.Tensor]]:
    ops = {
        "layer_norm": lambda t, w, b: gk.layer_norm(t, W3_MODEL, w, b),
        "attention": gk.scaled_dot_product_attention,
        "gelu": gk.gelu,
        "split_heads": _heads(True, gk.reshape, gk.transpose),
        "merge_heads": _heads(False, gk.reshape, gk.transpose),
    }
    with gk.Graph("transformer_block") as g:
        x = gk.input("x", (W3_BATCH, W3_SEQ, W3_MODEL))
        target = gk.input("target", (W3_BATCH, W3_SEQ, W3_MODEL))
        p = {name: gk.param(name, value) for name, value in params.items()}
        loss = gk.mse_loss(w3_block(x, p, ops), target)
        grads = gk.grad(loss, list(p.values()))
    return g, [loss, *grads]


def torch_step(model: str, params: dict[str, np.ndarray], inputs: dict[str, np.ndarray]) -> Callable[[], Any] | None:
    """The same step in PyTorch eager (None when torch is not installed)."""
    try:
        import torch
        import torch.nn.functional as F  # noqa: N812
    except ImportError:
        return None
    p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    t = {k: torch.from_numpy(v) for k, v in inputs.items()}

    def w2_loss() -> Any:
        h = t["x"]
        for i in range(3):
            h = F.relu(F.conv2d(h, p[f"conv{i}"], p[f"bias{i}"], padding=1))
            h = F.max_pool2d(h, 2) if i == 1 else h
        return F.cross_entropy(h.mean((2, 3)) @ p["fc"] + p["fc_bias"], t["labels"])

    def w3_loss() -> Any:
        ops = {
            "layer_norm": lambda a, w, b: F.layer_norm(a, (W3_MODEL,), w, b),
            "attention": F.scaled_dot_product_attention,
            "gelu": F.gelu,
            "split_heads": _heads(True, torch.reshape, lambda a, perm: a.permute(perm)),
            "merge_heads": _heads(False, torch.reshape, lambda a, perm: a.permute(perm)),
        }
        return F.mse_loss(w3_block(t["x"], p, ops), t["target"])

    loss_fn = {"W2": w2_loss, "W3": w3_loss}[model]

    def step() -> list[Any]:
        loss = loss_fn()
        return [loss.detach().numpy(), *(g.numpy() for g in torch.autograd.grad(loss, list(p.values())))]

    return step
