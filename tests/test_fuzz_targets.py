"""The differential target fuzzer (gradkiln/testing/fuzz_targets.py): its comparison, its reproducers,
a bounded run that finds nothing outside the known open classes, and an injected bug that it
finds and minimizes."""

from __future__ import annotations

import contextlib
import dataclasses
import io

import numpy as np
import pytest

from gradkiln.graph import opdef
from gradkiln.testing.fuzz_cases import draw_cases
from gradkiln.testing.fuzz_ops import FAMILIES
from gradkiln.testing.fuzz_targets import (
    KNOWN_OPEN,
    Config,
    compare,
    configurations,
    fuzz,
    minimize,
    ulp_distance,
)

F32_EPS = float(np.finfo("float32").eps)


def test_ulp_distance_counts_floats_between_and_joins_the_zeros():
    x = np.float32([1.0, 0.0, 3.4028235e38, -1e-45])
    y = np.float32([np.nextafter(np.float32(1), np.float32(2)), -0.0, np.inf, 1e-45])
    np.testing.assert_array_equal(ulp_distance(x, y), [1, 0, 1, 2])


def test_compare_wants_nan_positions_infinities_and_zero_signs_equal():
    want = np.float32([np.nan, 1.0, -0.0, np.inf])
    assert compare(want, want.copy(), F32_EPS, 1.0, True) is None
    assert compare(want, np.float32([0.0, 1.0, -0.0, np.inf]), F32_EPS, 1.0, True).kind == "nan"
    assert compare(want, np.float32([np.nan, 1.0, -0.0, 3e38]), F32_EPS, 1.0, True).kind == "inf"
    assert compare(want, np.float32([np.nan, 1.0, 0.0, np.inf]), F32_EPS, 1.0, True).kind == "sign"
    assert compare(want, np.float32([np.nan, 1.0, 0.0, np.inf]), F32_EPS, 1.0, False) is None


def test_compare_tolerates_the_stated_error_and_no_more():
    want = np.float32([1.0, 100.0])
    near = np.float32([1.0 + 2 * F32_EPS, 100.0])
    assert compare(want, near, 2 * F32_EPS, 1.0, True) is None
    assert compare(want, near, F32_EPS, 1.0, True).kind == "value"
    assert compare(want, near, F32_EPS, 100.0, True) is None  # an error of the sub-graph's largest magnitude
    assert compare(np.int32([3]), np.int32([4]), 0.0, 1.0, True).kind == "value"
    assert compare(want, want.astype("float64"), 0.0, 1.0, True).kind == "shape"


def test_cases_cover_every_family_and_print_as_code_that_runs():
    cases = draw_cases(np.random.default_rng(0), 150)
    exprs = "\n".join(s.expr for c in cases for s in c.steps)
    for call in ("gk.conv2d", "gk.sum", "gk.transpose", "gk.gather_elements", "gk.det", "gk.cond", "gk.scan"):
        assert call in exprs
    dtypes = {x.dtype for c in cases for x in c.leaves}
    assert {"float16", "float32", "float64", "int8", "int32", "int64"} <= dtypes
    assert any("N" in x.shape for c in cases for x in c.leaves)
    assert any(0 in x.values.shape for c in cases for x in c.leaves)
    case = next(c for c in cases if len(c.steps) >= 3)
    output = case.outputs[-1]
    code = case.code(output, Config("numpy", "O3"), "a note")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), np.errstate(all="ignore"):
        exec(compile(code, "<reproducer>", "exec"), {})
    assert printed.getvalue().startswith("want\n")


@pytest.mark.slow
def test_a_bounded_run_finds_no_mismatch_outside_the_known_open_classes():
    summary = fuzz(seed=2026, cases=30, configs=configurations(), per_compile=15)
    assert summary.outputs > 40
    assert not summary.unknown, "\n\n".join(m.reproducer() for m in summary.unknown[:5])


@pytest.mark.slow
def test_worker_processes_run_the_same_cases():
    """Batch b draws from (seed, b): a run with two workers compares what one process compares."""
    runs = [fuzz(seed=8, cases=6, configs=[Config("numpy", "O3")], per_compile=2, jobs=jobs) for jobs in (1, 2)]
    assert runs[0].outputs == runs[1].outputs > 0 and runs[0].cases == runs[1].cases == 6
    assert [m.reproducer() for m in runs[0].mismatches] == [m.reproducer() for m in runs[1].mismatches]


@pytest.fixture
def wrong_tanh(monkeypatch):
    """The numpy kernel of tanh returns x itself for x > 1.5."""
    right = opdef.OPS["tanh"]
    wrong = dataclasses.replace(right, compute=lambda x: np.where(x > 1.5, x, np.tanh(x)).astype(x.dtype))
    monkeypatch.setitem(opdef.OPS, "tanh", wrong)


@pytest.mark.slow
def test_an_injected_kernel_bug_is_found_and_minimized(wrong_tanh):
    summary = fuzz(seed=5, cases=20, configs=[Config("llvm", "O0")], families=("unary",), dtypes=("float32",))
    found = [m for m in summary.unknown if "gk.tanh" in m.reproducer()]
    assert found, "the fuzzer missed tanh(x) = x for x > 1.5"
    small = minimize(found[0], tries=30)
    assert [s.expr for s in small.case.steps] == ["gk.tanh(x0)"]
    assert small.case.leaves[0].values.size <= 2
    assert small.difference.kind == "value"
    assert small.known is None


def test_every_family_and_known_class_is_named():
    assert set(FAMILIES) >= {"unary", "reduction", "reshape", "selection", "nn", "linalg", "control"}
    assert all(k.name and k.reason for k in KNOWN_OPEN)
