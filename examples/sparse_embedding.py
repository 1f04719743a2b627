"""Sparse embedding gradients: a tiny bigram language model trained with a lazy Adam (torch's SparseAdam)
on its embedding table, whose gradient is rows and values (`gk.IndexedSlices`), never a dense array.

    python examples/sparse_embedding.py
"""

import numpy as np

import gradkiln as gk

VOCAB, DIM, BATCH, CONTEXT = 100, 16, 8, 4
rng = np.random.default_rng(0)
successor = rng.permutation(VOCAB)  # the task: each token's next token is a fixed function of it


def batch():
    tokens = rng.integers(0, VOCAB, (BATCH, CONTEXT))
    return {"tokens": tokens, "labels": successor[tokens]}


with gk.Graph("tiny_lm") as g:
    table = gk.param("table", rng.normal(0, 0.1, (VOCAB, DIM)).astype(np.float32))
    head = gk.param("head", rng.normal(0, 0.1, (DIM, VOCAB)).astype(np.float32))
    tokens = gk.input("tokens", (BATCH, CONTEXT), "int64")
    labels = gk.input("labels", (BATCH, CONTEXT), "int64")
    logits = gk.embedding(table, tokens) @ head  # (BATCH, CONTEXT, VOCAB)
    loss = gk.cross_entropy(gk.reshape(logits, (-1, VOCAB)), gk.reshape(labels, (-1,)))
    d_table, d_head = gk.sparse.grad(loss, [table, head])  # IndexedSlices for the table
    state = gk.sparse.adam_state(table, "adam")
    new_table, new_state = gk.sparse.adam(table, d_table, state, lr=0.05)
    outputs = {"loss": loss, "table": new_table, "head": head - 0.5 * d_head}
    outputs |= {"adam.m": new_state.m, "adam.v": new_state.v, "adam.step": new_state.step}
    outputs |= gk.sparse.flatten({"grad.table": d_table})

print(d_table)
step = gk.compile(g, outputs)
params = g.param_values()
losses = []
for i in range(300):
    out = step(**batch(), **params)
    params = {name: out[name] for name in params}
    losses.append(float(out["loss"]))
    if i % 60 == 0 or i == 299:
        print(f"step {i:3d}  loss {losses[-1]:.3f}")

indices, values = out["grad.table.indices"], out["grad.table.values"]
print("table gradient:", indices.dtype, indices.shape, "rows and values", values.shape)
assert indices.shape == (BATCH * CONTEXT,) and values.shape == (BATCH * CONTEXT, DIM)
assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20]), "the loss did not fall"
