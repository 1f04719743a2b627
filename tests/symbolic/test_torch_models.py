"""Whole models against PyTorch (an independent implementation, float64): a small CNN, a pre-LN
transformer block with causal multi-head attention and an LSTM unrolled over time are built once
with gradkiln's builder API and once with torch.nn.functional from the same weights; the losses,
the gradients with respect to every parameter and the input, and (for the LSTM) Hessian-vector
products must agree to 1e-5 relative."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

import gradkiln as gk

RTOL = 1e-5
RNG = np.random.default_rng(2026)


def normal(*shape, scale=0.5):
    return RNG.normal(scale=scale, size=shape)


# --- the models, once per framework: p maps parameter names to tensors, x is the input ---

CNN_WEIGHTS = {
    "conv1.w": normal(4, 3, 3, 3),
    "conv1.b": normal(4),
    "conv2.w": normal(6, 2, 3, 3),
    "conv2.b": normal(6),
    "fc.w": normal(6, 3),
    "fc.b": normal(3),
}
CNN_INPUT = normal(3, 3, 8, 8, scale=1.0)
CNN_LABELS = np.array([0, 2, 1])


def gk_cnn(p, x):
    h = gk.relu(gk.conv2d(x, p["conv1.w"], padding=1) + gk.reshape(p["conv1.b"], (4, 1, 1)))
    h = gk.relu(gk.conv2d(h, p["conv2.w"], stride=2, padding=1, groups=2) + gk.reshape(p["conv2.b"], (6, 1, 1)))
    h = gk.global_avg_pool2d(gk.max_pool2d(h, 2))
    logits = gk.reshape(h, (3, 6)) @ p["fc.w"] + p["fc.b"]
    return gk.cross_entropy(logits, gk.constant(CNN_LABELS))


def torch_cnn(p, x):
    h = F.relu(F.conv2d(x, p["conv1.w"], p["conv1.b"], padding=1))
    h = F.relu(F.conv2d(h, p["conv2.w"], p["conv2.b"], stride=2, padding=1, groups=2))
    h = F.adaptive_avg_pool2d(F.max_pool2d(h, 2), 1)
    logits = h.flatten(1) @ p["fc.w"] + p["fc.b"]
    return F.cross_entropy(logits, torch.tensor(CNN_LABELS))


BATCH, SEQ, D, HEADS, FFN = 2, 5, 8, 2, 16
TRANSFORMER_WEIGHTS = {
    "ln1.w": 1.0 + normal(D, scale=0.1),
    "ln1.b": normal(D, scale=0.1),
    **{f"attn.{name}": normal(D, D) for name in ("wq", "wk", "wv", "wo")},
    **{f"attn.{name}": normal(D, scale=0.1) for name in ("bq", "bk", "bv", "bo")},
    "ln2.w": 1.0 + normal(D, scale=0.1),
    "ln2.b": normal(D, scale=0.1),
    "ffn.w1": normal(D, FFN),
    "ffn.b1": normal(FFN, scale=0.1),
    "ffn.w2": normal(FFN, D),
    "ffn.b2": normal(D, scale=0.1),
}
TRANSFORMER_INPUT = normal(BATCH, SEQ, D, scale=1.0)
TRANSFORMER_TARGET = normal(BATCH, SEQ, D, scale=1.0)


def gk_transformer(p, x):
    def heads(t):  # (B, S, D) -> (B, H, S, D / H)
        return gk.transpose(gk.reshape(t, (BATCH, SEQ, HEADS, D // HEADS)), (0, 2, 1, 3))

    h = gk.layer_norm(x, D, p["ln1.w"], p["ln1.b"])
    q, k, v = (heads(h @ p[f"attn.w{n}"] + p[f"attn.b{n}"]) for n in "qkv")
    attended = gk.scaled_dot_product_attention(q, k, v, causal=True)
    merged = gk.reshape(gk.transpose(attended, (0, 2, 1, 3)), (BATCH, SEQ, D))
    x = x + merged @ p["attn.wo"] + p["attn.bo"]
    h = gk.gelu(gk.layer_norm(x, D, p["ln2.w"], p["ln2.b"]) @ p["ffn.w1"] + p["ffn.b1"])
    x = x + h @ p["ffn.w2"] + p["ffn.b2"]
    return gk.mse_loss(x, gk.constant(TRANSFORMER_TARGET))


def torch_transformer(p, x):
    def heads(t):
        return t.reshape(BATCH, SEQ, HEADS, D // HEADS).transpose(1, 2)

    h = F.layer_norm(x, (D,), p["ln1.w"], p["ln1.b"])
    q, k, v = (heads(h @ p[f"attn.w{n}"] + p[f"attn.b{n}"]) for n in "qkv")
    attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    x = x + attended.transpose(1, 2).reshape(BATCH, SEQ, D) @ p["attn.wo"] + p["attn.bo"]
    h = F.gelu(F.layer_norm(x, (D,), p["ln2.w"], p["ln2.b"]) @ p["ffn.w1"] + p["ffn.b1"])
    x = x + h @ p["ffn.w2"] + p["ffn.b2"]
    return F.mse_loss(x, torch.tensor(TRANSFORMER_TARGET))


STEPS, LSTM_BATCH, IN, HIDDEN = 6, 2, 3, 4
LSTM_WEIGHTS = {"w_ih": normal(IN, 4 * HIDDEN), "w_hh": normal(HIDDEN, 4 * HIDDEN), "b": normal(4 * HIDDEN)}
LSTM_INPUT = normal(STEPS, LSTM_BATCH, IN, scale=1.0)


def lstm(p, x, ops):
    """An LSTM (gates i, f, g, o, as torch.nn.LSTM orders them) unrolled over the time axis 0 of x;
    `ops` supplies the framework: sigmoid, tanh, split(t, n), stack, mean, sum and an indexer."""
    h = c = ops.zeros((LSTM_BATCH, HIDDEN))
    outputs = []
    for t in range(STEPS):
        gates = ops.step(x, t) @ p["w_ih"] + h @ p["w_hh"] + p["b"]
        i, f, g, o = ops.split(gates, 4)
        c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
        h = ops.sigmoid(o) * ops.tanh(c)
        outputs.append(h)
    return ops.sum(h * h) + ops.mean(ops.stack(outputs))


class GradkilnOps:
    sigmoid, tanh, stack, sum, mean = gk.sigmoid, gk.tanh, gk.stack, gk.sum, gk.mean

    @staticmethod
    def zeros(shape):
        return gk.constant(np.zeros(shape))

    @staticmethod
    def step(x, t):
        return gk.reshape(gk.slice(x, (t, 0, 0), (t + 1, LSTM_BATCH, IN)), (LSTM_BATCH, IN))

    @staticmethod
    def split(gates, n):
        return gk.split(gates, n, axis=-1)


class TorchOps:
    sigmoid, tanh, stack, sum, mean = torch.sigmoid, torch.tanh, torch.stack, torch.sum, torch.mean

    @staticmethod
    def zeros(shape):
        return torch.zeros(shape, dtype=torch.float64)

    @staticmethod
    def step(x, t):
        return x[t]

    @staticmethod
    def split(gates, n):
        return gates.chunk(n, dim=-1)


def gk_lstm(p, x):
    return lstm(p, x, GradkilnOps)


def torch_lstm(p, x):
    return lstm(p, x, TorchOps)


MODELS = {
    "cnn": (gk_cnn, torch_cnn, CNN_WEIGHTS, CNN_INPUT),
    "transformer": (gk_transformer, torch_transformer, TRANSFORMER_WEIGHTS, TRANSFORMER_INPUT),
    "lstm": (gk_lstm, torch_lstm, LSTM_WEIGHTS, LSTM_INPUT),
}


# --- running them ---


def build_gradkiln(model, weights, x0):
    """The graph of `model` with its weights as params and x as an input; returns the graph, the
    parameter and input tensors in the order of `weights` then x, and the loss."""
    with gk.Graph() as g:
        params = {name: gk.param(name, value) for name, value in weights.items()}
        x = gk.input("x", x0.shape, "float64")
        loss = model(params, x)
    return g, [*params.values(), x], loss


def gradkiln_loss_and_grads(model, weights, x0, target="numpy"):
    g, wrt, loss = build_gradkiln(model, weights, x0)
    with g:
        grads = gk.grad(loss, wrt)
    value, *grad_values = gk.compile(g, [loss, *grads], target=target)(x=x0)
    return value, dict(zip([*weights, "x"], grad_values))


def torch_leaves(weights, x0):
    """float64 leaf tensors that record gradients, the parameters by name and then x."""
    params = {name: torch.tensor(value, requires_grad=True) for name, value in weights.items()}
    return params, torch.tensor(x0, requires_grad=True)


def torch_loss_and_grads(model, weights, x0):
    params, x = torch_leaves(weights, x0)
    loss = model(params, x)
    loss.backward()
    grads = {name: t.grad.numpy() for name, t in params.items()}
    return loss.item(), {**grads, "x": x.grad.numpy()}


def assert_same_grads(got, want):
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=RTOL, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("name", MODELS)
def test_loss_and_gradients_equal_torch(name):
    gk_model, torch_model, weights, x0 = MODELS[name]
    loss, grads = gradkiln_loss_and_grads(gk_model, weights, x0)
    want_loss, want_grads = torch_loss_and_grads(torch_model, weights, x0)
    np.testing.assert_allclose(loss, want_loss, rtol=RTOL)
    assert_same_grads(grads, want_grads)


@pytest.mark.parametrize("name", MODELS)
def test_the_gradients_are_not_trivially_zero(name):
    """Guards the comparison above: every gradient has a nonzero entry, except the key bias's,
    which is 0 exactly (it adds q . b_k to a whole row of scores, and softmax ignores that)."""
    _, torch_model, weights, x0 = MODELS[name]
    _, grads = torch_loss_and_grads(torch_model, weights, x0)
    nonzero = {key: np.abs(value).max() > 1e-6 for key, value in grads.items()}
    assert nonzero == {key: key != "attn.bk" for key in grads}


def test_a_wrong_weight_is_caught():
    """The comparison can fail: one weight changed by 1e-3 on gradkiln's side is detected."""
    weights = {**CNN_WEIGHTS, "fc.b": CNN_WEIGHTS["fc.b"] + [1e-3, 0.0, 0.0]}
    _, grads = gradkiln_loss_and_grads(gk_cnn, weights, CNN_INPUT)
    _, want = torch_loss_and_grads(torch_cnn, CNN_WEIGHTS, CNN_INPUT)
    with pytest.raises(AssertionError):
        assert_same_grads(grads, want)


def test_the_torch_lstm_reference_is_torch_nn_lstm():
    """The hand-unrolled torch reference computes what torch.nn.LSTM does with the same weights."""
    lstm_module = torch.nn.LSTM(IN, HIDDEN, dtype=torch.float64)
    w = {name: torch.tensor(value) for name, value in LSTM_WEIGHTS.items()}
    with torch.no_grad():
        lstm_module.weight_ih_l0.copy_(w["w_ih"].T)
        lstm_module.weight_hh_l0.copy_(w["w_hh"].T)
        lstm_module.bias_ih_l0.copy_(w["b"])
        lstm_module.bias_hh_l0.zero_()
        outputs, (h_n, _) = lstm_module(torch.tensor(LSTM_INPUT))
        want = (h_n * h_n).sum() + outputs.mean()
        np.testing.assert_allclose(torch_lstm(w, torch.tensor(LSTM_INPUT)).item(), want.item(), rtol=1e-12)


def test_lstm_hessian_vector_products_equal_torch():
    vectors = [normal(*value.shape, scale=1.0) for value in (*LSTM_WEIGHTS.values(), LSTM_INPUT)]
    g, wrt, loss = build_gradkiln(gk_lstm, LSTM_WEIGHTS, LSTM_INPUT)
    with g:
        products = gk.hessian_vector_product(loss, wrt, vectors)
    got = gk.compile(g, products)(x=LSTM_INPUT)

    def loss_of(*leaves):
        return torch_lstm(dict(zip(LSTM_WEIGHTS, leaves)), leaves[-1])

    primals = tuple(torch.tensor(value) for value in (*LSTM_WEIGHTS.values(), LSTM_INPUT))
    _, want = torch.autograd.functional.hvp(loss_of, primals, tuple(torch.tensor(v) for v in vectors))
    for name, a, b in zip([*LSTM_WEIGHTS, "x"], got, want):
        np.testing.assert_allclose(a, b.numpy(), rtol=RTOL, atol=1e-12, err_msg=name)


def test_transformer_gradients_compiled_with_tvm_equal_torch():
    loss, grads = gradkiln_loss_and_grads(gk_transformer, TRANSFORMER_WEIGHTS, TRANSFORMER_INPUT, target="llvm")
    want_loss, want_grads = torch_loss_and_grads(torch_transformer, TRANSFORMER_WEIGHTS, TRANSFORMER_INPUT)
    np.testing.assert_allclose(loss, want_loss, rtol=RTOL)
    assert_same_grads(grads, want_grads)
