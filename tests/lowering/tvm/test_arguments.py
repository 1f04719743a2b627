"""numpy arrays into and out of the Relax VM without copies (lowering/tvm/arguments.py): kernels
take numpy's unaligned memory, results are handed over, and nothing aliases what outlives a call."""

import re

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.lowering.tvm.arguments import fresh_outputs

RNG = np.random.default_rng(3)


def unaligned(array: np.ndarray, offset: int = 1) -> np.ndarray:
    """A copy of `array` whose data starts `offset` elements past a 64-byte boundary."""
    itemsize = array.dtype.itemsize
    raw = np.empty(array.size + 64, array.dtype)
    start = (-raw.ctypes.data % 64) // itemsize + offset
    view = raw[start : start + array.size].reshape(array.shape)
    view[...] = array
    assert view.ctypes.data % 64 == offset * itemsize
    return view


def mlp():
    with gk.Graph("mlp") as g:
        x = gk.input("x", ("N", 96))
        w = gk.param("w", RNG.normal(size=(96, 64)).astype(np.float32))
        b = gk.param("b", RNG.normal(size=(64,)).astype(np.float32))
        h = gk.tanh(x @ w + b)
        loss = gk.sum(h * h)
        grads = gk.grad(loss, [w, b])
    return g, [loss, h, *grads]


@pytest.mark.parametrize("offset", [1, 2, 3, 5])
def test_unaligned_inputs_run_in_place_and_agree_with_numpy(offset):
    """AVX-512 kernels used to assume 64-byte-aligned arguments and crash on numpy's memory."""
    g, outputs = mlp()
    exe, reference = gk.compile(g, outputs, target="llvm"), gk.compile(g, outputs, target="numpy")
    x = RNG.normal(size=(33, 96)).astype(np.float32)
    w, b = (unaligned(n.attrs["value"], offset) for n in (g.by_name("w"), g.by_name("b")))
    for _ in range(20):
        got = exe(x=unaligned(x, offset), w=w, b=b)
    for have, want in zip(got, reference(x=x)):
        np.testing.assert_allclose(have, want, rtol=2e-5, atol=2e-5)


def test_kernels_promise_llvm_only_element_alignment():
    g, outputs = mlp()
    exe = gk.compile(g, outputs, target="llvm")
    modules, pending = [], [exe.compiled.mod]
    while pending:
        modules.append(pending.pop())
        pending.extend(modules[-1].imports)
    ir = "".join(m.inspect_source("ll") for m in modules if m.kind == "llvm")
    assert re.search(r"load <\d+ x float>", ir)  # vectorized
    assert not re.search(r"(load|store) <\d+ x float>.*, align 64", ir)


def test_non_contiguous_and_read_only_inputs():
    g, outputs = mlp()
    exe, reference = gk.compile(g, outputs, target="llvm"), gk.compile(g, outputs, target="numpy")
    x = np.asfortranarray(RNG.normal(size=(8, 96)).astype(np.float32))
    w = g.by_name("w").attrs["value"].copy()
    w.flags.writeable = False
    for have, want in zip(exe(x=x, w=w), reference(x=x, w=w)):
        np.testing.assert_allclose(have, want, rtol=2e-5, atol=2e-5)


def test_kernel_results_are_handed_over_and_aliases_copied():
    """Results computed by a kernel are numpy's without a copy; an input returned as it is, a
    constant, and a reshape (a view the VM makes) of either are copied."""
    with gk.Graph("aliases") as g:
        x = gk.input("x", (4, 6))
        c = gk.constant(np.arange(6, dtype=np.float32))
        outputs = [x * 2.0, x, gk.reshape(x, (24,)), c, gk.reshape(c, (2, 3)), gk.exp(c)]
    exe = gk.compile(g, outputs, target="llvm")
    assert fresh_outputs(exe.kernels) == [True, False, False, False, False, False]
    x = RNG.normal(size=(4, 6)).astype(np.float32)
    first = exe(x=x)
    for array in first:
        assert array.flags.writeable
        assert not np.shares_memory(array, x)
        array[...] = -1.0  # the caller owns its results: this must not reach the compiled constants
    second = exe(x=x + 1)
    want = gk.compile(g, outputs, target="numpy")(x=x + 1)
    for have, expected in zip(second, want):
        np.testing.assert_allclose(have, expected, rtol=1e-6)
    assert (first[0] == -1.0).all()  # a later call does not write into an earlier call's results
