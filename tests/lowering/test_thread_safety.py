"""A compiled executable may be called from several threads at once and gives each caller its
own right answer (the numpy executor keeps no state between calls; the TVM VM is guarded)."""

import threading

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.demo import build_mlp


@pytest.mark.parametrize("target", ["numpy", "llvm"])
def test_concurrent_calls_with_different_batch_sizes_agree_with_serial_calls(target):
    graph, t = build_mlp()
    grads = gk.grad(t["loss"], [t[n] for n in ("w1", "b1", "w2", "b2")])
    step = gk.compile(graph, [t["loss"], *grads], target=target)
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(n, 64)).astype(np.float32), rng.integers(0, 10, n)) for n in (3, 8, 17, 32)]
    expected = [step(x=x, labels=y) for x, y in batches]
    failures: list[str] = []

    def work(offset: int) -> None:
        for k in range(25):
            index = (offset + k) % len(batches)
            x, y = batches[index]
            try:
                got = step(x=x, labels=y)
            except Exception as err:  # the failure is reported below, in the main thread
                failures.append(f"thread {offset}, call {k}: {err}")
                continue
            if not all(np.allclose(a, b, rtol=1e-6) for a, b in zip(got, expected[index])):
                failures.append(f"thread {offset}, call {k}: wrong values")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]


def test_concurrent_compiles_from_eight_threads_all_give_the_right_results():
    """TVM's BlockBuilder keeps its function stack in a class attribute: unguarded, 11 to 23 of 40
    concurrent compiles failed with a bare AssertionError."""
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    failures: list[str] = []

    def work(thread: int) -> None:
        for k in range(3):
            weight = np.full((4, 3), thread - k, np.float32)
            with gk.Graph(f"g{thread}.{k}") as g:
                out = gk.relu(gk.input("x", ("N", 4)) @ gk.param("w", weight)) + float(thread)
            try:
                got = gk.compile(g, out, target="llvm")(x)
            except Exception as err:  # reported below, in the main thread
                failures.append(f"thread {thread}, compile {k}: {type(err).__name__}: {err}")
                continue
            if not np.allclose(got, np.maximum(x @ weight, 0) + thread, rtol=1e-5):
                failures.append(f"thread {thread}, compile {k}: wrong values")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]
