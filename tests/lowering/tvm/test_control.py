"""TVM lowering of control flow: a scan is unrolled (its gradient, a reverse scan, too) and a
cond computes both branches and selects, so a NaN in the branch not taken does not leak."""

import numpy as np
import pytest

import gradkiln as gk


@pytest.mark.slow  # about 6 s: TVM compiles the unrolled forward and backward scans
def test_unrolled_scan_and_selecting_cond_agree_with_numpy_on_llvm():
    rng = np.random.default_rng(5)
    with gk.Graph() as g:
        x = gk.input("x", (4, "N", 3), "float32")
        w = gk.param("w", (rng.normal(size=(3, 3)) * 0.5).astype("float32"))
        h0 = gk.input("h0", ("N", 3), "float32")
        final, ys = gk.scan(lambda h, xt: (gk.tanh(h @ w + xt), h * h), h0, x)
        loss = gk.sum(final) + gk.sum(ys)
        p = gk.input("p", (), "float32")
        safe = gk.cond(p > 0, lambda v: gk.sqrt(v), lambda v: v * 0.0, p)  # sqrt(-1) is NaN, not taken
        outputs = [loss, *gk.grad(loss, [w, x, h0]), safe, *gk.grad(safe, [p])]
    feeds = {"x": rng.normal(size=(4, 2, 3)).astype("float32"), "h0": rng.normal(size=(2, 3)).astype("float32")}
    numpy_run, tvm_run = (gk.compile(g, outputs, target=t) for t in ("numpy", "llvm"))
    for p in (4.0, -1.0):
        feeds["p"] = np.array(p, "float32")
        for got, expected in zip(tvm_run(**feeds), numpy_run(**feeds)):
            np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)
    assert tvm_run(**feeds)[4] == 0.0 and np.isfinite(tvm_run(**feeds)[5])


def test_a_scan_too_long_to_unroll_is_refused_naming_its_size():
    with gk.Graph() as g:
        h0 = gk.input("h0", (3,), "float32")
        final, _ = gk.scan(lambda h, _: (h * 0.5 + 1.0, None), h0, None, length=2**40)
    with pytest.raises(gk.LoweringError, match=r"scan of 1099511627776 steps .* past its limit of 200000"):
        gk.compile(g, [final], target="llvm")
