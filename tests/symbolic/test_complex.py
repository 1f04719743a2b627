"""Derivatives of complex functions in PyTorch's convention: gradients of real losses against
torch.autograd and against finite differences along 1 and i, jvps against finite differences,
the jvp/vjp adjoint identity Re <J v, u> == Re <v, vjp(u)>, and batching."""

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.testing import complex_samples, numeric_grads

torch = pytest.importorskip("torch", reason="needs torch (the oracle): pip install -e '.[test]'")

RNG = np.random.default_rng(0)
SAMPLES = complex_samples()


def crand(*shape, dtype="complex128"):
    return (RNG.normal(size=shape) + 1j * RNG.normal(size=shape)).astype(dtype)


# name: (gradkiln loss of z, w (both (2, 3)) and m (3, 2); the same loss in torch)
LOSSES = {
    "abs_squared": (lambda z, w, m: gk.sum(gk.square(gk.abs(z))), lambda z, w, m: (z.abs() ** 2).sum()),
    "real_of_product": (lambda z, w, m: gk.sum(gk.real(z * w)), lambda z, w, m: (z * w).real.sum()),
    "abs_of_exp": (lambda z, w, m: gk.sum(gk.abs(gk.exp(z))), lambda z, w, m: z.exp().abs().sum()),
    "angle": (lambda z, w, m: gk.sum(gk.angle(z) * gk.imag(w)), lambda z, w, m: (z.angle() * w.imag).sum()),
    "matmul": (lambda z, w, m: gk.sum(gk.abs(z @ m)), lambda z, w, m: (z @ m).abs().sum()),
    "einsum": (
        lambda z, w, m: gk.sum(gk.imag(gk.einsum("ij,jk->ik", w, m) * 1j)),
        lambda z, w, m: (torch.einsum("ij,jk->ik", w, m) * 1j).imag.sum(),
    ),
    "div_log_reciprocal": (
        lambda z, w, m: gk.sum(gk.abs(gk.log(z) / w + gk.reciprocal(z) - w)),
        lambda z, w, m: (z.log() / w + 1 / z - w).abs().sum(),
    ),
    "conj_mean": (
        lambda z, w, m: gk.real(gk.mean(gk.conj(z) * w * w)),
        lambda z, w, m: (z.conj() * w * w).mean().real,
    ),
    "complex_from_parts": (
        lambda z, w, m: gk.sum(gk.abs(gk.complex(gk.real(z), gk.imag(w)) * z)),
        lambda z, w, m: (torch.complex(z.real, w.imag) * z).abs().sum(),
    ),
    "neg_sub_square": (
        lambda z, w, m: gk.sum(gk.real(gk.square(-z - w) * 1j)),
        lambda z, w, m: ((-z - w) ** 2 * 1j).real.sum(),
    ),
    "linear_ops": (
        lambda z, w, m: gk.sum(
            gk.abs(gk.pad(gk.flip(gk.take(z, np.array([2, 0, 2]), 1), 0), (1, 0), (0, 1)) * gk.reshape(m, (6,))[:4])
        ),
        lambda z, w, m: (torch.nn.functional.pad(z[:, [2, 0, 2]].flip(0), (0, 1, 1, 0)) * m.reshape(6)[:4]).abs().sum(),
    ),
    "from_real_input": (
        lambda z, w, m: gk.sum(gk.abs(gk.cast(gk.real(z), w.dtype) * w)),
        lambda z, w, m: (z.real.to(w.dtype) * w).abs().sum(),
    ),
}


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
@pytest.mark.parametrize("loss", LOSSES)
def test_gradients_of_real_losses_match_torch_autograd(loss, dtype):
    ours, theirs = LOSSES[loss]
    feeds = {"z": crand(2, 3, dtype=dtype), "w": crand(2, 3, dtype=dtype), "m": crand(3, 2, dtype=dtype)}
    with gk.Graph() as g:
        inputs = [gk.input(k, v.shape, dtype) for k, v in feeds.items()]
        out = ours(*inputs)
        grads = gk.grad(out, inputs, allow_unused=True)
    got = gk.compile(g, [out, *grads])(**feeds)
    tensors = [torch.tensor(v, requires_grad=True) for v in feeds.values()]
    want = theirs(*tensors)
    want.backward()
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == "complex64" else {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(got[0], want.item(), **tol)
    for name, ours_grad, t in zip(feeds, got[1:], tensors):
        expected = np.zeros_like(ours_grad) if t.grad is None else t.grad.resolve_conj().numpy()
        assert ours_grad.dtype == np.dtype(dtype)
        np.testing.assert_allclose(ours_grad, expected, **tol, err_msg=f"d{loss}/d{name}")


def _run(sample):
    graph, inputs, out = sample.graph()
    return graph, inputs, out, gk.compile(graph, out)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_vjp_matches_finite_differences_along_1_and_i(sample):
    graph, inputs, out, forward = _run(sample)
    seed = RNG.normal(size=forward(**sample.feeds).shape)
    with graph:
        grads = gk.grad(out, list(inputs.values()), seed=seed)
    got = gk.compile(graph, grads)(**sample.feeds)
    want = numeric_grads(lambda feeds: forward(**feeds), sample.feeds, list(sample.feeds), seed)
    for name, g in zip(sample.feeds, got):
        np.testing.assert_allclose(g, want[name], rtol=1e-6, atol=1e-7, err_msg=f"{sample.name}: d/d{name}")


def _tangents(feeds):
    return {k: crand(*v.shape) if np.iscomplexobj(v) else RNG.normal(size=v.shape) for k, v in feeds.items()}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_jvp_matches_finite_differences(sample):
    graph, inputs, out, forward = _run(sample)
    tangents = _tangents(sample.feeds)
    with graph:
        (tangent,) = gk.jvp(out, list(inputs.values()), list(tangents.values()))
    got = gk.compile(graph, tangent)(**sample.feeds)
    eps = 1e-6
    step = {sign: forward(**{k: v + sign * eps * tangents[k] for k, v in sample.feeds.items()}) for sign in (1, -1)}
    np.testing.assert_allclose(got, (step[1] - step[-1]) / (2 * eps), rtol=1e-6, atol=1e-7)


def _inner(a, b):
    """Re <a, b> = Re sum(conj(a) * b): the real inner product of C^n as R^2n."""
    return np.real(np.vdot(a, b))


# functions with complex outputs too, so that the cotangent u is complex
ADJOINT_CASES = {
    **{s.name: s for s in SAMPLES},
    "holomorphic": lambda z, w: gk.exp(z) * w / (z + 3.0) - gk.log(w),
    "conj_and_parts": lambda z, w: gk.conj(z) * gk.complex(gk.imag(w), gk.angle(z)),
}


@pytest.mark.parametrize("case", ADJOINT_CASES)
def test_jvp_and_vjp_are_adjoint(case):
    sample = ADJOINT_CASES[case]
    if callable(sample):
        sample = gk.testing.OpSample(case, {"z": crand(2, 3), "w": crand(2, 3)}, sample)
    graph, inputs, out, forward = _run(sample)
    xs, tangents = list(inputs.values()), _tangents(sample.feeds)
    shape = forward(**sample.feeds).shape
    u = crand(*shape) if out.dtype.startswith("complex") else RNG.normal(size=shape)
    with graph:
        (jv,) = gk.jvp(out, xs, list(tangents.values()))
        vjps = gk.vjp(out, xs, u.astype(out.dtype))
    jv, *vjps = gk.compile(graph, [jv, *vjps])(**sample.feeds)
    left = _inner(jv, u)
    right = sum(_inner(tangents[k], g) for k, g in zip(sample.feeds, vjps))
    assert left == pytest.approx(right, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_vmap_matches_a_loop(sample):
    graph, inputs, out, forward = _run(sample)
    batches = {k: np.stack([v, 2 * v, v - 1]) for k, v in sample.feeds.items()}
    with graph:
        stacked = [gk.input(f"{k}_batch", b.shape, b.dtype.name) for k, b in batches.items()]
        (batched,) = gk.vmap(out, list(inputs.values()), stacked)
    got = gk.compile(graph, batched)(**{f"{k}_batch": b for k, b in batches.items()}, **sample.feeds)
    want = np.stack([forward(**{k: b[i] for k, b in batches.items()}) for i in range(3)])
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_gradient_descent_on_complex_parameters_converges():
    """The convention's point: -lr * grad is a descent direction (here to the root z = 1 + 2i)."""
    target = np.array([1 + 2j])
    with gk.Graph() as g:
        z = gk.input("z", (1,), "complex128")
        loss = gk.sum(gk.square(gk.abs(z - target)))
        (dz,) = gk.grad(loss, z)
    step = gk.compile(g, dz)
    value = np.zeros(1, np.complex128)
    for _ in range(50):
        value = value - 0.25 * step(z=value)
    np.testing.assert_allclose(value, target, atol=1e-9)


@pytest.mark.slow  # importing jax takes seconds
def test_gradient_is_the_conjugate_of_jax_grad_and_jvp_equals_jax_jvp():
    jax = pytest.importorskip("jax", reason="needs jax (the oracle): pip install -e '.[bench]'")
    jnp = jax.numpy
    z0, v = crand(3), crand(3)
    with gk.Graph() as g:
        z = gk.input("z", (3,), "complex128")
        loss = gk.sum(gk.abs(gk.exp(z) * (2 - 1j)) + gk.angle(z))
        (dz,) = gk.grad(loss, z)
        (tangent,) = gk.jvp(gk.log(z) * z, z, v)
    d, t = gk.compile(g, [dz, tangent])(z=z0)
    x64 = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        jax_grad = jax.grad(lambda z: jnp.sum(jnp.abs(jnp.exp(z) * (2 - 1j)) + jnp.angle(z)))(z0)
        _, jax_tangent = jax.jvp(lambda z: jnp.log(z) * z, (z0,), (v,))
    finally:
        jax.config.update("jax_enable_x64", x64)
    np.testing.assert_allclose(d, np.conj(jax_grad), rtol=1e-12)
    np.testing.assert_allclose(t, jax_tangent, rtol=1e-12)


def test_abs_and_angle_have_gradient_zero_at_zero_like_torch():
    z0 = np.array([0j, 1 - 1j])
    with gk.Graph() as g:
        z = gk.input("z", (2,), "complex128")
        (dz,) = gk.grad(gk.sum(gk.abs(z) + gk.angle(z)), z)
    t = torch.tensor(z0, requires_grad=True)
    (t.abs() + t.angle()).sum().backward()
    np.testing.assert_allclose(gk.compile(g, dz)(z=z0), t.grad.numpy())
    assert gk.compile(g, dz)(z=z0)[0] == 0


def test_mean_over_a_symbolic_batch_matches_torch():
    z0 = crand(4, 3, dtype="complex64")
    with gk.Graph() as g:
        z = gk.input("z", ("N", 3), "complex64")
        (dz,) = gk.grad(gk.abs(gk.mean(z * z)), z)
    t = torch.tensor(z0, requires_grad=True)
    (t * t).mean().abs().backward()
    for memory_plan in (False, True):
        got = gk.compile(g, dz, memory_plan=memory_plan)(z=z0)
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_second_order_matches_torch_double_backward():
    z0 = crand(3)
    with gk.Graph() as g:
        z = gk.input("z", (3,), "complex128")
        (dz,) = gk.grad(gk.sum(gk.square(gk.abs(z)) + gk.real(gk.exp(z) * z)), z)
        (ddz,) = gk.grad(gk.sum(gk.abs(dz)), z)
    t = torch.tensor(z0, requires_grad=True)
    (gz,) = torch.autograd.grad(((t.abs() ** 2) + (t.exp() * t).real).sum(), t, create_graph=True)
    gz.abs().sum().backward()
    np.testing.assert_allclose(gk.compile(g, ddz)(z=z0), t.grad.numpy(), rtol=1e-10)
