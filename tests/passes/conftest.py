"""Exactness helpers for pass tests: passes must not change a result, so their tests compare with
the unoptimized graph on the numpy executor (the oracle) bit for bit, on inputs full of the
values rewrites get wrong (NaN, +-Inf, -0.0, overflowing and subnormal magnitudes)."""

import numpy as np
import pytest

SPECIAL = [0.0, -0.0, 1.0, -1.5, 3e38, -3e38, 1e20, 1e-45, np.inf, -np.inf, np.nan, 0.3, -2.0, 7.0, 1e-20]


def special_array(shape, dtype="float32", shift=0):
    """An array of `shape` cycling through SPECIAL (from position `shift`), cast to `dtype`; integers get -5..4."""
    size = int(np.prod(shape))
    if np.dtype(dtype).kind in "iu":
        return (np.arange(size) % 10 - 5 + shift).astype(dtype).reshape(shape)
    with np.errstate(over="ignore"):
        return np.resize(np.roll(np.array(SPECIAL), shift), size).astype(dtype).reshape(shape)


def assert_identical(got, want):
    """Equal element for element with NaN equal to NaN, and the same sign on every zero."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    np.testing.assert_array_equal(got, want)
    if want.dtype.kind in "fc":
        for part in (np.real, np.imag) if want.dtype.kind == "c" else (np.asarray,):
            zeros = part(want) == 0
            np.testing.assert_array_equal(np.signbit(part(got))[zeros], np.signbit(part(want))[zeros], "sign of zero")


@pytest.fixture(scope="session")
def identical():
    return assert_identical


@pytest.fixture(scope="session")
def special():
    return special_array
