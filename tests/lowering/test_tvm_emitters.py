"""Emitters of the elementwise table on llvm (lowering/tvm_emitters.py) against the numpy executor:
float16 transcendental ops computed in float32 and rounded once, as numpy's float16 loops do, and
tanh exact near 0 in every float dtype (oracle: numpy)."""

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.graph.ops.elementwise_table import BINARY_ROWS, UNARY_ROWS

TRANSCENDENTAL = [row for row in (*UNARY_ROWS, *BINARY_ROWS) if row.rounding == "transcendental"]
VALUES = np.array([-0.0, 0.0, 1e-5, -1e-5, 0.5, -0.75, 2.0, -3.0, 0.9, 11.0, 60000.0, np.inf, -np.inf, np.nan])


def _apply(row, x, y):
    return getattr(gk, row.name)(x, y) if row in BINARY_ROWS else getattr(gk, row.name)(x)


@pytest.mark.parametrize("row", TRANSCENDENTAL, ids=lambda row: row.name)
def test_float16_transcendental_ops_compute_in_float32_as_numpy(row):
    """asin, cosh, atan2 ... of float16 failed to compile on llvm (no float16 libm call), and sigmoid,
    silu and tanh rounded each step to float16 (tanh(1e-5) gave 0, tanh(-0.0) +0.0). Each now equals
    numpy's float16 result bit for bit, zeros' signs included."""
    x = np.resize(VALUES, 48).astype(np.float16)  # past a vector width
    feeds = {"x": x, "y": np.roll(x, 5)}
    with gk.Graph() as g:
        out = _apply(row, gk.input("x", [48], "float16"), gk.input("y", [48], "float16"))
    with np.errstate(all="ignore"):
        want = gk.compile(g, out, target="numpy")(**feeds)
    got = gk.compile(g, out, target="llvm")(**feeds)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, want)
    zeros = want == 0
    np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(want[zeros]))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_tanh_keeps_tiny_arguments_and_the_sign_of_zero(dtype):
    """1 - 2 / (e**2x + 1) gave 0 for tanh(-1e-30) in float64 and +0.0 for tanh(-0.0)."""
    tiny = np.finfo(dtype).tiny
    x = np.array([-0.0, 0.0, tiny, -1e-30, 1e-7, -1e-4, 0.3, 20.0, -np.inf, np.nan], dtype)
    with gk.Graph() as g:
        out = gk.tanh(gk.input("x", [10], dtype))
    got = gk.compile(g, out, target="llvm", optimize="O3")(x=x)
    want = np.tanh(x)
    np.testing.assert_allclose(got, want, rtol=2 * np.finfo(dtype).eps, atol=0)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
