"""The nn ops' numpy references against direct loops, their conventions (max-pool ties, take's
out-of-range indices, scatter_add's repeats), their errors, and the composite layers and losses
against plain numpy formulas."""

import itertools

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.graph import builder as gb
from gradkiln.graph.builder.nn import padding_pairs
from gradkiln.graph.errors import DTypeError, IndexOutOfRangeError, ShapeError
from gradkiln.symbolic import grad
from gradkiln.testing import numeric_grads

RNG = np.random.default_rng(0)
CONVS = [  # (x shape, w shape, stride, padding, dilation, groups)
    ((2, 3, 5, 6), (4, 3, 3, 2), (1, 1), ((0, 0), (0, 0)), (1, 1), 1),
    ((1, 4, 7, 6), (6, 2, 3, 3), (2, 1), ((1, 2), (0, 1)), (1, 2), 2),
    ((2, 6, 6, 5), (3, 2, 2, 3), (3, 2), ((2, 0), (1, 1)), (2, 1), 3),
]


def run(build, **feeds):
    with gk.Graph() as g:
        inputs = {k: gk.input(k, v.shape, v.dtype) for k, v in feeds.items()}
        out = build(**inputs)
    return gk.compile(g, out, target="numpy")(**feeds)


def conv_loop(x, w, stride, padding, dilation, groups):
    n = x.shape[0]
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), *padding))
    ho = (xp.shape[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (xp.shape[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, ho, wo))
    for b, m, i, j in itertools.product(range(n), range(o), range(ho), range(wo)):
        group = m // (o // groups)
        for ci, p, q in itertools.product(range(cg), range(kh), range(kw)):
            pixel = xp[b, group * cg + ci, i * stride[0] + p * dilation[0], j * stride[1] + q * dilation[1]]
            out[b, m, i, j] += pixel * w[m, ci, p, q]
    return out


def conv_transpose_loop(x, w, stride, padding, output_padding, dilation, groups):
    """Scatter every input pixel times the kernel into the full output, then crop."""
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    full = [
        (s - 1) * st + d * (k - 1) + 1 + e
        for s, st, d, k, e in zip((h, wd), stride, dilation, (kh, kw), output_padding)
    ]
    out = np.zeros((n, og * groups, *full))
    for b, ci, i, j in itertools.product(range(n), range(c), range(h), range(wd)):
        group = ci // (c // groups)
        for co, p, q in itertools.product(range(og), range(kh), range(kw)):
            row, col = i * stride[0] + p * dilation[0], j * stride[1] + q * dilation[1]
            out[b, group * og + co, row, col] += x[b, ci, i, j] * w[ci, co, p, q]
    (top, bottom), (left, right) = padding
    return out[:, :, top : full[0] - bottom, left : full[1] - right]


@pytest.mark.parametrize("case", CONVS, ids=range(len(CONVS)))
def test_conv2d_matches_a_direct_loop(case):
    xs, ws, stride, padding, dilation, groups = case
    x, w = RNG.normal(size=xs), RNG.normal(size=ws)
    got = run(lambda x, w: gb.conv2d(x, w, stride, padding, dilation, groups), x=x, w=w)
    np.testing.assert_allclose(got, conv_loop(x, w, stride, padding, dilation, groups), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CONVS, ids=range(len(CONVS)))
def test_conv_transpose2d_matches_a_direct_loop_and_is_the_adjoint_of_conv2d(case):
    xs, ws, stride, padding, dilation, groups = case
    x, w = RNG.normal(size=xs), RNG.normal(size=ws)
    y = conv_loop(x, w, stride, padding, dilation, groups)
    extra = (1, 0) if stride[0] > 1 else (0, 0)
    back = run(lambda y, w: gb.conv_transpose2d(y, w, stride, padding, extra, dilation, groups), y=y, w=w)
    want = conv_transpose_loop(y, w, stride, padding, extra, dilation, groups)
    np.testing.assert_allclose(back, want, rtol=1e-12, atol=1e-12)
    cropped = back[:, :, : x.shape[2], : x.shape[3]]
    np.testing.assert_allclose(np.sum(y * y), np.sum(x[:, :, : cropped.shape[2]] * cropped), rtol=1e-10)


def pool_loop(x, kernel, stride, padding, reduce, fill):
    xp = np.pad(x, ((0, 0), (0, 0), *padding), constant_values=np.nan)
    ho = (xp.shape[2] - kernel[0]) // stride[0] + 1
    wo = (xp.shape[3] - kernel[1]) // stride[1] + 1
    out = np.zeros((*x.shape[:2], ho, wo))
    for i, j in itertools.product(range(ho), range(wo)):
        window = xp[:, :, i * stride[0] : i * stride[0] + kernel[0], j * stride[1] : j * stride[1] + kernel[1]]
        out[:, :, i, j] = reduce(np.where(np.isnan(window), fill, window), np.isnan(window))
    return out


@pytest.mark.parametrize("kernel, stride, padding", [((2, 2), (2, 2), 0), ((3, 2), (1, 2), ((1, 2), (1, 0)))])
def test_pools_match_direct_loops(kernel, stride, padding):
    x = RNG.normal(size=(2, 3, 6, 5))
    pads = padding_pairs(padding)
    got = run(lambda x: gb.max_pool2d(x, kernel, stride, padding), x=x)
    want = pool_loop(x, kernel, stride, pads, lambda w, pad: w.max(axis=(2, 3)), -np.inf)
    np.testing.assert_allclose(got, want)
    counts = {True: lambda w, pad: kernel[0] * kernel[1], False: lambda w, pad: (~pad).sum((2, 3))}
    for include, count in counts.items():
        got = run(lambda x, include=include: gb.avg_pool2d(x, kernel, stride, padding, include), x=x)
        want = pool_loop(x, kernel, stride, pads, lambda w, pad, count=count: w.sum(axis=(2, 3)) / count(w, pad), 0.0)
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=f"count_include_pad={include}")


def test_max_pool_gradient_goes_to_the_first_maximum_of_each_window():
    x = np.array([[[[1.0, 3.0, 3.0, 0.0], [3.0, 2.0, 0.0, 3.0]]]])
    with gk.Graph() as g:
        xi = gk.input("x", x.shape, "float64")
        (dx,) = grad(gb.sum(gb.max_pool2d(xi, 2)), [xi])
    got = gk.compile(g, dx)(x=x)
    np.testing.assert_array_equal(got, [[[[0, 1, 1, 0], [0, 0, 0, 0]]]])
    np.testing.assert_array_equal(gk.compile(g, dx, target="llvm")(x=x), got)


@pytest.mark.parametrize(
    "kernel, stride", [(2, 2), (3, 3), (3, 2), ((2, 3), (2, 3))], ids=["2", "3", "overlapping", "2x3"]
)
def test_max_pool_gradient_with_ties_agrees_with_torch(kernel, stride):
    """Windows that tile the input take the reshaped form of the gradient, others the strided one;
    both send each window's cotangent to its first maximum, on numpy and TVM, as torch does."""
    torch = pytest.importorskip("torch", reason="needs torch (the oracle): pip install -e '.[test]'")
    x = RNG.integers(0, 3, size=(2, 3, 6, 12)).astype(np.float32)  # many ties
    with gk.Graph() as g:
        xi = gk.input("x", ("N", 3, 6, 12))
        pooled = gb.max_pool2d(xi, kernel, stride)
        weights = RNG.normal(size=(1, 3, *pooled.shape[2:])).astype(np.float32)
        (dx,) = grad(gb.sum(pooled * gb.constant(weights)), [xi])
    xt = torch.tensor(x, requires_grad=True)
    (torch.nn.functional.max_pool2d(xt, kernel, stride) * torch.tensor(weights)).sum().backward()
    for target in ("numpy", "llvm"):
        np.testing.assert_allclose(gk.compile(g, dx, target=target)(x=x), xt.grad.numpy(), rtol=1e-6, err_msg=target)


def test_take_follows_numpy_with_negative_indices_and_raises_out_of_range():
    x = RNG.normal(size=(4, 3))
    i = np.array([[3, -1], [0, 0]])
    np.testing.assert_array_equal(run(lambda x, i: gb.take(x, i, 0), x=x, i=i), np.take(x, i, axis=0))
    np.testing.assert_array_equal(run(lambda x, i: gb.embedding(x, i), x=x, i=i), x[i])
    with pytest.raises(IndexOutOfRangeError, match=r"take: index 4 .* out of range \[-4, 3\]"):
        run(lambda x, i: gb.take(x, i, 0), x=x, i=np.array([4]))


def test_scatter_add_accumulates_repeated_indices():
    x, u = np.zeros((3, 2)), np.ones((4, 2))
    got = run(lambda x, u, i: gb.scatter_add(x, i, u, 0), x=x, u=u, i=np.array([0, 2, 0, -1]))
    np.testing.assert_array_equal(got, [[2, 2], [0, 0], [2, 2]])


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: gb.conv2d(gk.input("x", (1, 3, 5, 5)), gk.input("w", (4, 2, 3, 3))), "has 3 channels"),
        (lambda: gb.conv2d(gk.input("x", (1, 4, 5, 5)), gk.input("w", (4, 2, 3, 3)), groups=3), "groups=3"),
        (lambda: gb.conv2d(gk.input("x", (1, 2, 2, 5)), gk.input("w", (4, 2, 3, 3))), "kernel spans 3"),
        (lambda: gb.conv2d(gk.input("x", (1, 2, 5)), gk.input("w", (4, 2, 3, 3))), "rank 4"),
        (lambda: gb.max_pool2d(gk.input("x", (1, 2, 5, 5)), 2, padding=2), "smaller than the kernel"),
        (lambda: gb.conv_transpose2d(gk.input("x", (1, 2, 3, 3)), gk.input("w", (3, 2, 2, 2))), "expects 3"),
        (lambda: gb.scatter_add(gk.input("x", (3, 2)), gk.input("i", (4,), "int64"), gk.input("u", (3, 2))), "updates"),
    ],
)
def test_shape_errors_name_the_shapes(build, message):
    with gk.Graph(), pytest.raises(ShapeError, match=message):
        build()


def test_take_needs_integer_indices():
    with gk.Graph(), pytest.raises(DTypeError, match="int32 or int64"):
        gb.take(gk.input("x", (3, 2)), gk.input("i", (2,)))


def test_conv1d_is_conv2d_over_a_unit_height():
    x, w = RNG.normal(size=(2, 4, 9)), RNG.normal(size=(6, 2, 3))
    got = run(lambda x, w: gb.conv1d(x, w, 2, (1, 0), 2, groups=2), x=x, w=w)
    want = conv_loop(x[:, :, None], w[:, :, None], (1, 2), ((0, 0), (1, 0)), (1, 2), 2)[:, :, 0]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def _norm(x, axes, eps):
    return (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + eps)


def test_normalisations_match_numpy():
    x, w, b = RNG.normal(size=(4, 6, 3, 2)), RNG.normal(size=6), RNG.normal(size=6)
    y, m, v = run(lambda x, w, b: list(gb.batch_norm(x, w, b)), x=x, w=w, b=b)
    np.testing.assert_allclose(y, _norm(x, (0, 2, 3), 1e-5) * w[:, None, None] + b[:, None, None], rtol=1e-10)
    np.testing.assert_allclose(m, x.mean((0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(v, x.var((0, 2, 3), ddof=1), rtol=1e-12)
    rm, rv = RNG.normal(size=6), RNG.uniform(0.5, 2, size=6)
    got = run(lambda x, rm, rv: gb.batch_norm(x, None, None, rm, rv, training=False), x=x, rm=rm, rv=rv)
    np.testing.assert_allclose(got, (x - rm[:, None, None]) / np.sqrt(rv[:, None, None] + 1e-5), rtol=1e-12)
    z, g = RNG.normal(size=(3, 4, 5)), RNG.normal(size=(4, 5))
    np.testing.assert_allclose(run(lambda z, g: gb.layer_norm(z, (4, 5), g), z=z, g=g), _norm(z, (1, 2), 1e-5) * g)
    grouped = _norm(x.reshape(4, 3, -1), 2, 1e-5).reshape(x.shape)
    np.testing.assert_allclose(run(lambda x: gb.group_norm(x, 3), x=x), grouped, rtol=1e-10)
    rms = z / np.sqrt((z * z).mean(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(run(gb.rms_norm, x=z), rms, rtol=1e-12)
    np.testing.assert_allclose(run(gb.global_avg_pool2d, x=x), x.mean((2, 3), keepdims=True), rtol=1e-12)


def test_losses_match_numpy():
    p, t = RNG.normal(size=(5, 3)), RNG.normal(size=(5, 3))
    np.testing.assert_allclose(run(gb.mse_loss, pred=p, target=t), np.mean((p - t) ** 2))
    d = np.abs(p - t)
    huber = np.where(d <= 0.5, 0.5 * d**2, 0.5 * (d - 0.25))
    np.testing.assert_allclose(run(lambda p, t: gb.huber_loss(p, t, 0.5, "none"), p=p, t=t), huber)
    logp, labels = p - np.log(np.exp(p).sum(1, keepdims=True)), np.array([0, 2, 1, 1, 0])
    np.testing.assert_allclose(run(gb.nll_loss, log_probs=logp, labels=labels), -logp[np.arange(5), labels].mean())
    z, y = np.array([-200.0, -1.0, 0.5, 300.0]), np.array([0.0, 1.0, 0.3, 1.0])
    want = np.logaddexp(0, z) - z * y
    np.testing.assert_allclose(run(lambda z, y: gb.bce_with_logits(z, y, "sum"), z=z, y=y), want.sum(), rtol=1e-12)


def _attention(q, k, v, keep):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    s = np.where(keep, s, -np.inf)
    e = np.exp(s - s.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)) @ v


def test_attention_matches_numpy_with_causal_and_boolean_masks():
    q, k, v = RNG.normal(size=(2, 4, 3)), RNG.normal(size=(2, 4, 3)), RNG.normal(size=(2, 4, 5))
    causal = np.tril(np.ones((4, 4), bool))
    got = run(lambda q, k, v: gb.scaled_dot_product_attention(q, k, v, causal=True), q=q, k=k, v=v)
    np.testing.assert_allclose(got, _attention(q, k, v, causal), rtol=1e-12)
    keep = RNG.uniform(size=(4, 4)) > 0.3
    keep[:, 0] = True
    got = run(lambda q, k, v, m: gb.scaled_dot_product_attention(q, k, v, m), q=q, k=k, v=v, m=keep)
    np.testing.assert_allclose(got, _attention(q, k, v, keep), rtol=1e-12)


COMPOSITES = {
    "batch_norm": (lambda x, w: gb.batch_norm(x, w)[0] * x, {"x": (3, 2, 2, 2), "w": (2,)}),
    "group_norm": (lambda x, w: gb.group_norm(x, 2, w) * x, {"x": (2, 4, 2, 1), "w": (4,)}),
    "layer_norm": (lambda x, w: gb.layer_norm(x, 3, w) * x, {"x": (2, 3), "w": (3,)}),
    "attention": (
        lambda x, w: gb.scaled_dot_product_attention(x, w, x * w, causal=True),
        {"x": (3, 2), "w": (3, 2)},
    ),
    "huber": (lambda x, w: gb.huber_loss(x, w, 0.7), {"x": (4,), "w": (4,)}),
}


@pytest.mark.parametrize("name", COMPOSITES)
def test_composite_gradients_match_finite_differences(name):
    build, shapes = COMPOSITES[name]
    feeds = {k: RNG.normal(size=s) for k, s in shapes.items()}
    with gk.Graph() as g:
        inputs = {k: gk.input(k, s, "float64") for k, s in shapes.items()}
        out = gb.sum(build(**inputs))
    grads = gk.compile(g, grad(out, list(inputs.values())))(**feeds)
    want = numeric_grads(gk.compile(g, out), feeds, list(feeds), np.ones(()))
    for k, got in zip(feeds, grads):
        np.testing.assert_allclose(got, want[k], rtol=1e-5, atol=1e-7, err_msg=f"{name}: d/d{k}")


def test_small_cnn_trains_the_same_on_numpy_and_tvm():
    feeds = {"x": RNG.normal(size=(2, 3, 8, 8)).astype("float32"), "y": np.array([1, 0])}
    with gk.Graph() as g:
        x, y = gk.input("x", ("N", 3, 8, 8)), gk.input("y", ("N",), "int64")
        w1 = gk.param("w1", RNG.normal(size=(4, 3, 3, 3)).astype("float32") * 0.3)
        w2 = gk.param("w2", RNG.normal(size=(4, 2)).astype("float32"))
        h, _, _ = gb.batch_norm(gb.relu(gb.conv2d(x, w1, padding=1)))
        h = gb.avg_pool2d(gb.max_pool2d(h, 2), 2, 1, 1, count_include_pad=False)
        logits = gb.reshape(gb.global_avg_pool2d(h), (-1, 4)) @ w2
        loss = gb.nll_loss(gb.log_softmax(logits), y)
        outputs = [loss, *grad(loss, [w1, w2])]
    want = gk.compile(g, outputs, target="numpy")(**feeds)
    got = gk.compile(g, outputs, target="llvm")(**feeds)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_conv_and_pool_agree_with_torch():
    torch = pytest.importorskip("torch", reason="needs torch (the oracle): pip install -e '.[test]'")
    F = torch.nn.functional  # noqa: N806
    x, w = RNG.normal(size=(2, 4, 7, 6)), RNG.normal(size=(6, 2, 3, 3))
    got = run(lambda x, w: gb.conv2d(x, w, (2, 1), (1, 2), (1, 2), 2), x=x, w=w)
    want = F.conv2d(torch.tensor(x), torch.tensor(w), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-10)
    got = run(lambda x: gb.avg_pool2d(x, 3, 2, 1, count_include_pad=False), x=x)
    want = F.avg_pool2d(torch.tensor(x), 3, 2, 1, count_include_pad=False)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-10)
