"""Sparse vs dense embedding gradients: one SGD step of a 2-layer GPT-2-like model with a 50,257 x 768
token table, in gradkiln (dense gradient; `gk.sparse.grad` rows and values applied in place with
`gk.sparse.apply_sgd`) and in PyTorch eager (`nn.Embedding(sparse=False)` and `sparse=True`, SGD).

    python benchmarks/sparse_embedding.py [--repeats 7] [--target llvm] [--vocab 50257] [--batch 2] [--seq 64]

Model: token and position embeddings, 2 pre-layer-norm blocks (12 heads, d_model 768, FFN 3072,
causal attention, GELU), a final layer norm and an untied LM head (768 x vocab; a tied head reads the
table densely, so its gradient could not be sparse), mean cross entropy over the next tokens; float32,
random weights. One step: loss, every gradient, and SGD (lr 1e-2) applied in place to every
parameter, as torch.optim.SGD does.

Each system runs in a fresh process with one thread (OMP/OpenBLAS/MKL/TVM threads 1,
`torch.set_num_threads(1)`), after the machine's load average fell (`wait_for_idle`). Columns: median
step time over the repeats (`mlp_step.sample_ms`), peak RSS of the process, and the steps' peak
over the RSS after the model was built and compiled, before the first step (Linux:
`/proc/self/clear_refs` resets the peak, VmHWM reads it): the memory the steps allocate on top of
the model. Every system starts from the same weights and batches,
so the first and last losses must agree (checked).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any, Callable

import numpy as np
from mlp_step import sample_ms, wait_for_idle
from train_models import w3_block

SYSTEMS = ("gradkiln dense", "gradkiln sparse", "torch dense", "torch sparse=True")
LAYERS, MODEL, HEADS, FFN, LR = 2, 768, 12, 3072, 1e-2
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TVM_NUM_THREADS")


def make_params(vocab: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    """GPT-2's shapes (N(0, 0.02) weights, unit layer-norm scales), one dict for every system."""
    rng = np.random.default_rng(seed)

    def normal(*shape: int) -> np.ndarray:
        return rng.normal(0, 0.02, shape).astype(np.float32)

    params = {"wte": normal(vocab, MODEL), "wpe": normal(seq, MODEL)}
    for i in range(LAYERS):
        params |= {f"{i}.ln1_w": np.ones(MODEL, np.float32), f"{i}.ln1_b": np.zeros(MODEL, np.float32)}
        params |= {f"{i}.{w}": normal(MODEL, MODEL) for w in ("wq", "wk", "wv", "wo")}
        params |= {f"{i}.ln2_w": np.ones(MODEL, np.float32), f"{i}.ln2_b": np.zeros(MODEL, np.float32)}
        params |= {f"{i}.w1": normal(MODEL, FFN), f"{i}.b1": np.zeros(FFN, np.float32)}
        params |= {f"{i}.w2": normal(FFN, MODEL), f"{i}.b2": np.zeros(MODEL, np.float32)}
    return params | {
        "lnf_w": np.ones(MODEL, np.float32),
        "lnf_b": np.zeros(MODEL, np.float32),
        "head": normal(MODEL, vocab),
    }


def batches(vocab: int, batch: int, seq: int, count: int) -> list[np.ndarray]:
    """Token ids (batch, seq + 1): inputs are [:, :-1], next-token labels [:, 1:]."""
    rng = np.random.default_rng(1)
    return [rng.integers(0, vocab, (batch, seq + 1)) for _ in range(count)]


def forward(tokens: Any, p: dict[str, Any], lib: dict[str, Callable], batch: int, seq: int) -> Any:
    """The model's logits over any array library given its ops (layer_norm, attention, gelu, the
    head split and merge, lookup)."""
    x = lib["lookup"](tokens) + p["wpe"]
    for i in range(LAYERS):
        x = w3_block(x, {k.split(".", 1)[1]: v for k, v in p.items() if k.startswith(f"{i}.")}, lib)
    return lib["layer_norm"](x, p["lnf_w"], p["lnf_b"]) @ p["head"]


def head_ops(reshape: Callable, transpose: Callable, batch: int, seq: int) -> dict[str, Callable]:
    width = MODEL // HEADS
    return {
        "split_heads": lambda t: transpose(reshape(t, (batch, seq, HEADS, width)), (0, 2, 1, 3)),
        "merge_heads": lambda t: reshape(transpose(t, (0, 2, 1, 3)), (batch, seq, MODEL)),
    }


# -- the systems, each run in its own process ------------------------------------------------------
def gradkiln_step(sparse: bool, params: dict[str, np.ndarray], target: str, batch: int, seq: int) -> Callable:
    """The compiled step (loss and gradients; the table's as rows and values when `sparse`) and the
    in-place SGD of its outputs."""
    import gradkiln as gk

    with gk.Graph("gpt2") as g:
        tokens = gk.input("tokens", (batch, seq), "int64")
        labels = gk.input("labels", (batch, seq), "int64")
        p = {name: gk.param(name, value) for name, value in params.items()}
        lib = {
            "lookup": lambda ids: gk.embedding(p["wte"], ids),
            "layer_norm": lambda t, w, b: gk.layer_norm(t, MODEL, w, b),
            "attention": lambda q, k, v: gk.scaled_dot_product_attention(q, k, v, causal=True),
            "gelu": gk.gelu,
            **head_ops(gk.reshape, gk.transpose, batch, seq),
        }
        logits = forward(tokens, p, lib, batch, seq)
        loss = gk.cross_entropy(gk.reshape(logits, (batch * seq, -1)), gk.reshape(labels, (-1,)))
        grads = gk.sparse.grad(loss, list(p.values()), sparse=[p["wte"]] if sparse else [])
        outputs = {"loss": loss} | gk.sparse.flatten(dict(zip(params, grads)))
    exe = gk.compile(g, outputs, target=target)

    def step(ids: np.ndarray) -> float:
        out = exe(tokens=ids[:, :-1], labels=ids[:, 1:], **params)
        for name, value in params.items():
            if name in out:
                value -= np.multiply(out[name], np.float32(LR), out=out[name])
            else:
                gk.sparse.apply_sgd(value, out[f"{name}.indices"], out[f"{name}.values"], LR)
        return float(out["loss"])

    return step


def torch_step(sparse: bool, params: dict[str, np.ndarray], batch: int, seq: int) -> Callable:
    import torch
    import torch.nn.functional as F  # noqa: N812

    torch.set_num_threads(1)
    p = {k: torch.nn.Parameter(torch.from_numpy(v)) for k, v in params.items() if k != "wte"}
    embedding = torch.nn.Embedding(*params["wte"].shape, sparse=sparse, _weight=torch.from_numpy(params["wte"]))
    optimizer = torch.optim.SGD([embedding.weight, *p.values()], lr=LR)
    lib = {
        "lookup": embedding,
        "layer_norm": lambda t, w, b: F.layer_norm(t, (MODEL,), w, b),
        "attention": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "gelu": F.gelu,
        **head_ops(torch.reshape, lambda a, perm: a.permute(perm), batch, seq),
    }

    def step(ids: np.ndarray) -> float:
        ids = torch.from_numpy(ids)
        optimizer.zero_grad(set_to_none=True)
        logits = forward(ids[:, :-1], p, lib, batch, seq)
        loss = F.cross_entropy(logits.reshape(batch * seq, -1), ids[:, 1:].reshape(-1))
        loss.backward()
        assert embedding.weight.grad.is_sparse == sparse
        optimizer.step()
        return loss.item()

    return step


def memory_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def child(system: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time one system's steps in this process; the JSON the parent reads."""
    params = make_params(args.vocab, args.seq)
    data = batches(args.vocab, args.batch, args.seq, args.repeats + 2)
    sparse = system in ("gradkiln sparse", "torch sparse=True")
    if system.startswith("gradkiln"):
        step = gradkiln_step(sparse, params, args.target, args.batch, args.seq)
    else:
        step = torch_step(sparse, params, args.batch, args.seq)
    with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM, the peak RSS, to the current RSS
        f.write("5")
    before = memory_kib("VmRSS")
    losses = [step(data[0])]
    batch = iter(data[1:])
    times = sample_ms(lambda: losses.append(step(next(batch))), args.repeats)
    return {
        "system": system,
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "peak_mib": memory_kib("VmHWM") / 1024,
        "step_mib": (memory_kib("VmHWM") - before) / 1024,
        "losses": losses,
    }


def run_child(system: str, args: argparse.Namespace) -> dict[str, Any]:
    env = os.environ | {name: "1" for name in THREAD_VARIABLES}
    command = [sys.executable, __file__, "--child", system, *sys.argv[1:]]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{system} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--target", default="llvm", help="gradkiln's target: llvm or numpy")
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--idle-timeout", type=float, default=120.0)
    parser.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    table_mib = args.vocab * MODEL * 4 / 2**20
    print(f"2-layer GPT-2-like, vocabulary {args.vocab} (table {table_mib:.0f} MiB), batch {args.batch} x {args.seq}")
    print(f"gradkiln target {args.target}; 1 thread; median of {args.repeats} steps\n")
    print(f"{'system':<20}{'load':>6}{'step ms':>10}{'min ms':>10}{'peak RSS MiB':>14}{'step peak MiB':>15}")
    results = []
    for system in SYSTEMS:
        load = wait_for_idle(timeout=args.idle_timeout)
        r = run_child(system, args)
        results.append(r)
        row = f"{system:<20}{load:>6.2f}{r['median_ms']:>10.1f}{r['min_ms']:>10.1f}"
        print(f"{row}{r['peak_mib']:>14.0f}{r['step_mib']:>15.0f}", flush=True)
    first = results[0]["losses"]
    for r in results[1:]:
        np.testing.assert_allclose(r["losses"], first, rtol=2e-3, err_msg=f"{r['system']} trained differently")
    print(f"\nlosses agree (rtol 2e-3): first {first[0]:.4f}, last {first[-1]:.4f}")


if __name__ == "__main__":
    main()
