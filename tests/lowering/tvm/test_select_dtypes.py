"""sort, argsort and topk on llvm for dtypes TVM's CPU sort does not implement (it has float16/32/64
and int32/64): each sorts an order-preserving key (`tvm.emitters.select._sort_key`) and gathers
the values, giving numpy's stable order and the exact values, ties and extremes included."""

import numpy as np
import pytest

import gradkiln as gk


def extremes(dtype: str) -> np.ndarray:
    """The dtype's least and greatest values, their neighbours and repeated middles (ties), shuffled."""
    info = np.iinfo(dtype)
    base = [info.min, info.max, info.min + 1, info.max - 1, 0, 1, 7, 7, 7, info.max, info.min, 2]
    values = np.array(base * 3, dtype=dtype)
    return np.random.default_rng(0).permutation(values).reshape(4, 9)


@pytest.mark.parametrize("dtype", ["uint64", "uint32", "uint16", "int16", "int8", "uint8"])
def test_sort_argsort_topk_of_unsorted_dtypes_match_numpy(dtype: str) -> None:
    x = extremes(dtype)
    with gk.Graph() as g:
        xs = gk.input("x", x.shape, dtype)
        top, top_at = gk.topk(xs, 4, axis=1)
        low, low_at = gk.topk(xs, 3, axis=0, largest=False)
        outs = [gk.sort(xs, axis=1), gk.argsort(xs, axis=1, descending=True), top, top_at, low, low_at]
    got = gk.compile(g, outs, target="llvm")(x=x)
    want = gk.compile(g, outs, target="numpy")(x=x)
    order = np.argsort(~x, axis=1, kind="stable")  # ~ reverses the order of every integer dtype exactly
    np.testing.assert_array_equal(got[0], np.sort(x, axis=1))
    np.testing.assert_array_equal(got[1], order)
    np.testing.assert_array_equal(got[2], np.take_along_axis(x, order[:, :4], axis=1))
    for g_out, w_out in zip(got, want):
        assert g_out.dtype == w_out.dtype
        np.testing.assert_array_equal(g_out, w_out)
