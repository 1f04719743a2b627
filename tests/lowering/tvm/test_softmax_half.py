"""float16 softmax and log_softmax on llvm give numpy's (and ONNX's reference Softmax's) values to
the bit: each elementwise step rounds to float16 and the sum accumulates in float32
(`tvm.emitters.nn._half_sum_exp`). Relax's own float16 softmax was off by up to 2 ulps."""

import numpy as np
import pytest

import gradkiln as gk


def scores() -> np.ndarray:
    """Attention-like float16 scores: wide and narrow rows, a masked (-inf) entry and a fully masked row."""
    x = np.random.default_rng(1).standard_normal((6, 40)) * np.array([[0.1], [1.0], [4.0], [8.0], [2.0], [1.0]])
    x[4, ::3] = -np.inf
    x[5] = -np.inf
    return x.astype(np.float16)


def numpy_steps(x: np.ndarray, log: bool) -> np.ndarray:
    """The ONNX reference's float16 computation, step by step in numpy."""
    with np.errstate(invalid="ignore"):
        shifted = x - x.max(axis=-1, keepdims=True)
        total = np.exp(shifted).sum(axis=-1, keepdims=True)
        return shifted - np.log(total) if log else np.exp(shifted) / total


@pytest.mark.parametrize("op,log", [(gk.softmax, False), (gk.log_softmax, True)])
def test_half_softmax_on_llvm_is_numpys_to_the_bit(op, log: bool) -> None:
    x = scores()
    with gk.Graph() as g:
        out = op(gk.input("x", x.shape, "float16"), -1)
    got = gk.compile(g, out, target="llvm")(x=x)
    want = numpy_steps(x, log)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, want)  # NaN where numpy has NaN (the fully masked row)
    assert np.isnan(got[5]).all() and not np.isnan(got[:5]).any()
