"""The linear algebra ops against torch.linalg (values, gradients, second order), the norms
against torch and finite differences, TVM's small-matrix kernels and ONNX's unrolled exports
against numpy, and the errors bad input gets."""

import math
import re
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch
import tvm

import gradkiln as gk
from gradkiln.testing import numeric_grads

RNG = np.random.default_rng(7)


def conditioned(*shape):
    return 2.0 * np.eye(shape[-1]) + RNG.uniform(-0.5, 0.5, shape)


def spd(*shape):
    x = RNG.normal(size=shape)
    return x @ np.swapaxes(x, -1, -2) + shape[-1] * np.eye(shape[-1])


def _torch_solve_triangular(a, b, lower, transpose):
    upper = not lower
    if transpose:
        a, upper = a.mT, lower
    return torch.linalg.solve_triangular(a, b, upper=upper)


# name -> (gradkiln function, torch function, feeds)
CASES = {
    "inv": (gk.inv, torch.linalg.inv, {"a": conditioned(2, 4, 4)}),
    "det": (gk.det, torch.linalg.det, {"a": conditioned(3, 3, 3) * [[[1.0]], [[-1.0]], [[1.0]]]}),
    "slogdet_logabs": (lambda a: gk.slogdet(a)[1], lambda a: torch.linalg.slogdet(a)[1], {"a": -conditioned(2, 3, 3)}),
    "slogdet_sign": (
        lambda a: gk.slogdet(a)[0] * a[..., 0, 0],
        lambda a: torch.linalg.slogdet(a)[0] * a[..., 0, 0],
        {"a": -conditioned(3, 3)},
    ),
    "solve": (gk.solve, torch.linalg.solve, {"a": conditioned(2, 3, 3), "b": RNG.normal(size=(3, 2))}),
    "solve_vector": (gk.solve, torch.linalg.solve, {"a": conditioned(4, 4), "b": RNG.normal(size=4)}),
    "cholesky": (gk.cholesky, torch.linalg.cholesky, {"a": spd(2, 4, 4)}),
    "triangular_solve": (
        gk.triangular_solve,
        lambda a, b: _torch_solve_triangular(a, b, True, False),
        {"a": conditioned(4, 4), "b": RNG.normal(size=(2, 4, 3))},
    ),
    "triangular_solve_upper_transposed": (
        lambda a, b: gk.triangular_solve(a, b, lower=False, transpose=True),
        lambda a, b: _torch_solve_triangular(a, b, False, True),
        {"a": conditioned(2, 4, 4), "b": RNG.normal(size=(4, 2))},
    ),
    "trace": (
        gk.linalg.trace,
        lambda x: torch.diagonal(x, dim1=-2, dim2=-1).sum(-1),
        {"x": RNG.normal(size=(2, 3, 5))},
    ),
    "einsum": (
        lambda a, b: gk.einsum("bij,jk->bki", a, b),
        lambda a, b: torch.einsum("bij,jk->bki", a, b),
        {"a": RNG.normal(size=(2, 3, 4)), "b": RNG.normal(size=(4, 5))},
    ),
    "einsum_diagonal_implicit": (
        lambda a, b: gk.einsum("...ii,i", a, b),
        lambda a, b: torch.einsum("...ii,i", a, b),
        {"a": RNG.normal(size=(2, 3, 3)), "b": RNG.normal(size=3)},
    ),
    "norm_2": (gk.norm, torch.linalg.norm, {"x": RNG.normal(size=(3, 4))}),
}


def _build(fn, feeds):
    with gk.Graph() as g:
        xs = [gk.input(k, v.shape, "float64") for k, v in feeds.items()]
        out = fn(*xs)
    return g, xs, out


@pytest.mark.parametrize("name", CASES)
def test_values_and_gradients_match_torch(name):
    fn, torch_fn, feeds = CASES[name]
    g, xs, out = _build(fn, feeds)
    with g:
        seed = gk.input("seed", out.shape, "float64")
    grads = gk.grad(out, xs, seed=seed)
    cotangent = RNG.normal(size=tuple(out.shape))
    value, *got = gk.compile(g, [out, *grads])(**feeds, seed=cotangent)

    ts = [torch.tensor(v, requires_grad=True) for v in feeds.values()]
    want = torch_fn(*ts)
    np.testing.assert_allclose(value, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    want_grads = torch.autograd.grad(want, ts, torch.tensor(cotangent))
    for k, a, b in zip(feeds, got, want_grads):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-9, atol=1e-11, err_msg=f"{name}: d/d{k}")


@pytest.mark.parametrize("name", ["inv", "det", "slogdet_logabs", "cholesky", "solve"])
def test_second_order_matches_torch_double_backward(name):
    """The gradient of <grad f, V>: gradient rules built from the ops differentiate again."""
    fn, torch_fn, feeds = CASES[name]
    g, xs, out = _build(fn, feeds)
    with g:
        directions = [gk.input(f"v_{k}", x.shape, "float64") for k, x in zip(feeds, xs)]
        first = gk.grad(gk.sum(out * out), xs)
        second = gk.grad(sum((gk.sum(d * v) for d, v in zip(first, directions)), gk.constant(0.0, "float64")), xs)
    vs = {f"v_{k}": RNG.normal(size=v.shape) for k, v in feeds.items()}
    got = gk.compile(g, second)(**feeds, **vs)

    ts = [torch.tensor(v, requires_grad=True) for v in feeds.values()]
    first_t = torch.autograd.grad((torch_fn(*ts) ** 2).sum(), ts, create_graph=True)
    inner = sum((d * torch.tensor(vs[f"v_{k}"])).sum() for d, k in zip(first_t, feeds))
    for k, a, b in zip(feeds, got, torch.autograd.grad(inner, ts)):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-8, atol=1e-10, err_msg=f"{name}: d/d{k}")


def test_cholesky_gradient_is_symmetric_and_matches_finite_differences_through_a_symmetric_input():
    with gk.Graph() as g:
        x = gk.input("x", (4, 4), "float64")
        out = gk.sum(gk.cholesky(x @ gk.linalg.matrix_transpose(x) + 4.0 * np.eye(4)) ** 3)
        (dx,) = gk.grad(out, [x])
        (da,) = gk.grad(gk.sum(gk.cholesky(x) ** 3), [x])
    feeds = {"x": RNG.normal(size=(4, 4))}
    got = gk.compile(g, dx)(**feeds)
    want = numeric_grads(gk.compile(g, out), feeds, ["x"], np.ones(()))["x"]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    sym_grad = gk.compile(g, da)(x=spd(4, 4))
    np.testing.assert_allclose(sym_grad, sym_grad.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "ord, axis",
    [
        (None, None),
        (1, 1),
        (3, 0),
        (0.5, 1),
        (math.inf, 1),
        (-math.inf, 0),
        (0, 1),
        ("fro", (0, 1)),
        (1, (0, 1)),
        (-1, (0, 1)),
        (math.inf, (0, 1)),
        (-math.inf, (1, 0)),
    ],
)
@pytest.mark.parametrize("keepdims", [False, True])
def test_norms_match_torch_and_their_gradients_finite_differences(ord, axis, keepdims):
    x = RNG.normal(size=(3, 4))
    g, (t,), out = _build(lambda t: gk.norm(t, ord, axis, keepdims), {"x": x})
    (dx,) = gk.grad(gk.sum(out * out), [t])
    value, got = gk.compile(g, [out, dx])(x=x)
    want = torch.linalg.norm(torch.tensor(x), ord, axis, keepdims)
    np.testing.assert_allclose(value, want.numpy(), rtol=1e-12)
    if ord != 0:
        numeric = numeric_grads(gk.compile(g, gk.sum(out * out)), {"x": x}, ["x"], np.ones(()))["x"]
        np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("ord", [None, 2, 3])
def test_norm_gradient_at_zero_is_zero_like_torch(ord):
    g, (t,), out = _build(lambda t: gk.norm(t, ord, axis=1), {"x": np.zeros((2, 3))})
    (dx,) = gk.grad(gk.sum(out), [t])
    x = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 2.0]])
    xt = torch.tensor(x, requires_grad=True)
    torch.linalg.vector_norm(xt, 2 if ord is None else ord, dim=1).sum().backward()
    np.testing.assert_allclose(gk.compile(g, dx)(x=x), xt.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("target", [pytest.param("llvm", marks=pytest.mark.slow), "onnxruntime"])
def test_kernels_agree_with_numpy_on_larger_batched_matrices(target):
    """n = 7 with a symbolic batch of 5 (TVM's serial-loop kernels, ONNX's unrolled steps),
    including a matrix that needs row swaps and one with a negative determinant."""
    n = 7
    a = 3.0 * RNG.normal(size=(5, n, n))  # not diagonally dominant: pivoting picks rows all over
    a[0] = np.roll(np.eye(n), 1, axis=0) + 0.1 * a[0]  # a zero-ish diagonal: partial pivoting must swap
    feeds = {"a": a, "b": RNG.normal(size=(5, n, 2)), "s": spd(5, n, n)}
    with gk.Graph() as g:
        ta = gk.input("a", ("N", n, n), "float64")
        tb = gk.input("b", ("N", n, 2), "float64")
        ts = gk.input("s", ("N", n, n), "float64")
        sign, logabs = gk.slogdet(ta)
        outs = [gk.inv(ta), gk.det(ta), sign, logabs, gk.solve(ta, tb), gk.cholesky(ts)]
        outs += [
            gk.triangular_solve(ta, tb, lower, transpose) for lower in (True, False) for transpose in (True, False)
        ]
    want = gk.compile(g, outs)(**feeds)
    if target == "llvm":
        got = gk.compile(g, outs, target="llvm")(**feeds)
    else:
        model = gk.onnx_io.export(g, outs)
        got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    np.testing.assert_allclose(want[1], np.linalg.det(a), rtol=1e-10)
    for k, (x, y) in enumerate(zip(got, want)):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-10, err_msg=f"output {k}")


@pytest.mark.parametrize("target", [pytest.param("llvm", marks=pytest.mark.slow), "onnxruntime"])
def test_a_singular_matrix_has_det_zero_and_log_abs_det_minus_inf_like_numpy(target):
    a = np.array(
        [[[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0, 1.0, 5.0]], [[0.0, 1.0, 2.0], [0.0, 3.0, 1.0], [0.0, 2.0, 2.0]]]
    )
    with gk.Graph() as g:
        x = gk.input("a", (2, 3, 3), "float64")
        outs = [gk.det(x), *gk.slogdet(x)]
    if target == "llvm":
        got = gk.compile(g, outs, target="llvm")(a=a)
    else:
        model = gk.onnx_io.export(g, outs)
        got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"a": a})
    for x, y in zip(got, [np.linalg.det(a), *np.linalg.slogdet(a)]):
        np.testing.assert_array_equal(x, np.where(np.abs(y) < 1e-12, 0.0, y))


def test_onnx_unrolls_up_to_16_and_refuses_larger_matrices_by_name():
    with gk.Graph() as g:
        small, big = gk.input("small", (16, 16), "float64"), gk.input("big", (17, 17), "float64")
        inv_small, inv_big = gk.inv(small), gk.inv(big)
    a = conditioned(16, 16)
    model = gk.onnx_io.export(g, inv_small)
    (got,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"small": a})
    np.testing.assert_allclose(got, np.linalg.inv(a), rtol=1e-9, atol=1e-12)
    with pytest.raises(gk.ONNXError, match=r"inverse .*\(17, 17\).* n <= 16"):
        gk.onnx_io.export(g, inv_big)


def test_vmap_and_jacobian_through_linear_algebra():
    a = conditioned(3, 3)
    with gk.Graph() as g:
        x = gk.input("a", (3, 3), "float64")
        jacobians = [gk.jacobian(gk.inv(x), x, mode) for mode in ("fwd", "rev")]
    want = torch.autograd.functional.jacobian(torch.linalg.inv, torch.tensor(a)).numpy()
    for got in gk.compile(g, jacobians)(a=a):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: gk.inv(gk.input("a", (3, 4))), r"inverse.*square matrices.*\(3, 4\)"),
        (lambda: gk.det(gk.input("a", ("N", "N"))), r"det.*must be a static int"),
        (lambda: gk.solve(gk.input("a", (3, 3)), gk.input("b", (4, 2))), r"solve.*\(\.\.\., 3, k\)"),
        (lambda: gk.einsum("ij,jk->ik", gk.input("a", (2, 3)), gk.input("b", (4, 5))), r"'j' is 3 .* and 4"),
        (lambda: gk.einsum("ij->iz", gk.input("a", (2, 3))), r"has one no operand has"),
        (lambda: gk.einsum("ij,jk", gk.input("a", (2, 3))), r"names 2 operands, got 1"),
        (lambda: gk.triangular_solve(gk.input("a", (2, 2)), gk.input("b", (2,))), r"\(\.\.\., 2, k\)"),
        (lambda: gk.norm(gk.input("a", (2, 3, 4)), 1), r"norm: ord=1 needs axis"),
        (lambda: gk.cholesky(gk.input("a", (2, 2), "float16")), r"cholesky: float16 .* cast to float32"),
    ],
)
def test_bad_input_raises_a_clear_error_naming_op_and_shapes(build, message):
    with gk.Graph(), pytest.raises(gk.GradkilnError, match=message):
        build()


def test_nuclear_norm_is_refused_with_what_to_use_instead():
    with gk.Graph(), pytest.raises(gk.UnsupportedOpError, match=r"SVD.*'fro'"):
        gk.norm(gk.input("a", (3, 3)), "nuc")


@pytest.mark.slow
def test_kernels_compile_for_cuda_with_one_thread_per_matrix():
    """dlight binds the per-matrix blocks to GPU threads; the CUDA C compiles to PTX where nvcc is."""
    with gk.Graph() as g:
        a, b = gk.input("a", ("N", 3, 3)), gk.input("b", ("N", 3, 2))
        outs = [gk.inv(a), gk.det(a), gk.slogdet(a)[1], gk.cholesky(a), gk.triangular_solve(a, b, False, True)]
    source = gk.compile(g, outs, target={"kind": "cuda", "arch": "sm_90"}).source()
    for kernel in ("solve", "slogdet", "cholesky", "triangular_solve"):
        assert re.search(rf'extern "C" __global__ void .*{kernel}_float32\w*_kernel\(', source), kernel
    if shutil.which("nvcc"):
        from tvm.support import nvcc

        with tvm.target.Target({"kind": "cuda", "arch": "sm_90"}):
            assert ".entry" in nvcc.compile_cuda(source, target_format="ptx", arch="sm_90", compiler="nvcc").decode()
