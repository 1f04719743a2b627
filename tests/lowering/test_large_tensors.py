"""Tensors of more than 2^31 elements through llvm: TVM indexes them with 64-bit arithmetic, so no
element past 2^31 is read or written at a wrapped (int32) offset."""

import numpy as np
import pytest

import gradkiln as gk

ROWS, COLS = 2**16, 2**15 + 1  # 2^31 + 2^16 elements, 2 GiB of uint8


@pytest.mark.slow
def test_uint8_tensor_past_2_to_the_31_elements_on_llvm() -> None:
    with gk.Graph("big") as g:
        x = gk.input("x", ("R", COLS), "uint8")
        shifted = x + gk.constant(np.uint8(1))
        row_max = gk.max(x, axis=1)  # over uint8 itself: a cast to int64 first made a 16 GiB intermediate
    step = gk.compile(g, [shifted, row_max], target="llvm")
    data = np.zeros((ROWS, COLS), np.uint8)
    data[-1, -1], data[-1, 0], data[ROWS // 2, -1] = 200, 3, 77  # past, at and before element 2^31
    shifted_value, maxima = step(x=data)
    assert shifted_value.shape == (ROWS, COLS) and shifted_value.dtype == np.uint8
    assert (shifted_value[-1, -1], shifted_value[-1, 0], shifted_value[ROWS // 2, -1]) == (201, 4, 78)
    assert shifted_value[-1, 1] == 1 and shifted_value[0, 0] == 1
    assert (maxima[-1], maxima[ROWS // 2], maxima[0]) == (200, 77, 0)
