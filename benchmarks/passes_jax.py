"""JAX/XLA's numbers for the workloads of benchmarks/passes.py: the same training steps written
in jax.numpy, jitted as value_and_grad, and what XLA reports about them: the HLO instruction
count before optimization (the lowered module) and after (the compiled entry computation, whose
instructions are fusions and library calls), and `memory_analysis()`'s argument, output and
temp sizes. jax is not a dependency: `xla_report` returns None when it is not installed.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

import numpy as np
import train_models

MIB = 2**20
INSTRUCTION = re.compile(r"^\s+(ROOT )?%?[\w.\-]+ = ", re.MULTILINE)


def _mlp_loss(jax: Any, jnp: Any) -> Callable[..., Any]:
    def loss(p: dict[str, Any], x: Any, labels: Any) -> Any:
        layers, h = len(p) // 2, x
        for i in range(layers):
            h = h @ p[f"w{i}"] + p[f"b{i}"]
            h = jax.nn.relu(h) if i < layers - 1 else h
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(h), labels[:, None], axis=1))

    return loss


def _chain_loss(jax: Any, jnp: Any) -> Callable[..., Any]:
    steps = [jnp.tanh, lambda t: t * 0.9, lambda t: t + 0.1]

    def loss(p: dict[str, Any]) -> Any:  # the gradient is with respect to the input, passed as p["x"]
        h = p["x"]
        for i in range(50):
            h = steps[i % 3](h)
        return jnp.sum(h)

    return loss


def _w2_loss(jax: Any, jnp: Any) -> Callable[..., Any]:
    def conv(h: Any, w: Any) -> Any:
        return jax.lax.conv_general_dilated(h, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW"))

    def loss(p: dict[str, Any], x: Any, labels: Any) -> Any:
        h = x
        for i in range(3):
            h = jax.nn.relu(conv(h, p[f"conv{i}"]) + p[f"bias{i}"][:, None, None])
            if i == 1:
                h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        logits = h.mean((2, 3)) @ p["fc"] + p["fc_bias"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))

    return loss


def _w3_loss(jax: Any, jnp: Any) -> Callable[..., Any]:
    def layer_norm(t: Any, w: Any, b: Any) -> Any:
        mean = t.mean(-1, keepdims=True)
        return (t - mean) / jnp.sqrt(((t - mean) ** 2).mean(-1, keepdims=True) + 1e-5) * w + b

    def attention(q: Any, k: Any, v: Any) -> Any:
        return jax.nn.softmax(q @ jnp.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1]), axis=-1) @ v

    ops = {
        "layer_norm": layer_norm,
        "attention": attention,
        "gelu": lambda t: jax.nn.gelu(t, approximate=False),
        "split_heads": train_models._heads(True, jnp.reshape, jnp.transpose),
        "merge_heads": train_models._heads(False, jnp.reshape, jnp.transpose),
    }

    def loss(p: dict[str, Any], x: Any, target: Any) -> Any:
        return jnp.mean((train_models.w3_block(x, p, ops) - target) ** 2)

    return loss


LOSSES: dict[str, Callable[[Any, Any], Callable[..., Any]]] = {
    "mlp": _mlp_loss,
    "chain": _chain_loss,
    "w2": _w2_loss,
    "w3": _w3_loss,
}


def xla_report(kind: str, params: dict[str, np.ndarray], feeds: dict[str, np.ndarray]) -> dict[str, float] | None:
    """XLA's numbers for the workload `kind` (a key of LOSSES) at these parameters and inputs
    (feeds in the order the loss takes them), or None without jax. `loss` is XLA's loss, for a
    check against gradkiln's."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    step = jax.jit(jax.value_and_grad(LOSSES[kind](jax, jnp)))
    lowered = step.lower(params, *feeds.values())
    compiled = lowered.compile()
    memory = compiled.memory_analysis()
    entry = compiled.as_text().split("\nENTRY ", 1)[1]
    return {
        "hlo_before": len(INSTRUCTION.findall(lowered.as_text(dialect="hlo"))),
        "hlo_after": len(INSTRUCTION.findall(entry)),
        "argument_mib": memory.argument_size_in_bytes / MIB,
        "output_mib": memory.output_size_in_bytes / MIB,
        "temp_mib": memory.temp_size_in_bytes / MIB,
        "loss": float(compiled(params, *feeds.values())[0]),
    }
