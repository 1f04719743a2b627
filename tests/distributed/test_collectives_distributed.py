"""The collective ops over 2 and 4 gloo workers on loopback: values against numpy over every
worker's operand, gradients against finite differences of the loss summed over the workers, and
the errors (no group, wrong size, GPU target, ONNX export, a dead worker)."""

import time

import numpy as np
import pytest

import gradkiln as gk
from gradkiln import distributed as dist
from gradkiln.graph import DistributedError, LoweringError, ONNXError

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def operand(rank: int, shape=(4, 3)) -> np.ndarray:
    return np.random.default_rng(rank).normal(size=shape).astype("float32")


def _run_collectives(target: str) -> dict[str, np.ndarray]:
    rank, w = dist.get_rank(), dist.get_world_size()
    with gk.Graph() as g:
        x = gk.input("x", (4, 3))
        outs = {
            "sum": dist.all_reduce(x),
            "mean": dist.all_reduce(x, "mean"),
            "gather": dist.all_gather(x, axis=1),
            "scatter": dist.reduce_scatter(x),
            "broadcast": dist.broadcast(x, root=w - 1),
            "reduce": dist.reduce(x, root=1),
        }
    return {"rank": rank, **gk.compile(g, outs, target=target)(x=operand(rank))}


def _expected(rank: int, w: int) -> dict[str, np.ndarray]:
    xs = [operand(r) for r in range(w)]
    total = np.sum(xs, axis=0)
    return {
        "sum": total,
        "mean": total / w,
        "gather": np.concatenate(xs, axis=1),
        "scatter": total[rank * 4 // w : (rank + 1) * 4 // w],
        "broadcast": xs[w - 1],
        "reduce": total if rank == 1 else np.zeros_like(total),
    }


@pytest.mark.parametrize("target,nprocs", [("numpy", 2), ("numpy", 4), ("llvm", 2)])
def test_collectives_equal_numpy_over_every_workers_operand(target, nprocs):
    for result in dist.spawn(_run_collectives, nprocs, target, timeout=240):
        for key, want in _expected(result["rank"], nprocs).items():
            np.testing.assert_allclose(result[key], want, rtol=1e-6, atol=1e-6, err_msg=key)


def _loss(x: gk.Tensor, w: gk.Tensor) -> gk.Tensor:
    """A worker's loss through every collective: its global sum is what the gradient is of."""
    y = dist.all_reduce(gk.tanh(x) * w, "mean")
    z = dist.reduce_scatter(dist.all_gather(y * y), "sum") + dist.broadcast(x, root=1)
    return gk.sum(gk.sin(z) * w) + gk.sum(dist.reduce(x * x, root=0))


def _gradient_and_finite_differences(eps: float) -> tuple[np.ndarray, np.ndarray]:
    rank, w = dist.get_rank(), dist.get_world_size()
    with gk.Graph() as g:
        x, wt = gk.input("x", (2, 3), "float64"), gk.input("w", (2, 3), "float64")
        loss = _loss(x, wt)
        (dx,) = gk.grad(loss, [x])
        total = dist.all_reduce(loss)  # the loss summed over the workers
    run = gk.compile(g, {"dx": dx, "total": total})
    x0, w0 = operand(rank, (2, 3)).astype("float64"), operand(10 + rank, (2, 3)).astype("float64")
    fd = np.zeros_like(x0)
    for owner in range(w):  # every worker steps in lockstep; `owner` perturbs its own element
        for i in np.ndindex(x0.shape):
            values = []
            for sign in (1, -1):
                xp = x0.copy()
                if rank == owner:
                    xp[i] += sign * eps
                values.append(run(x=xp, w=w0)["total"])
            if rank == owner:
                fd[i] = (values[0] - values[1]) / (2 * eps)
    return run(x=x0, w=w0)["dx"], fd


def test_gradient_of_a_graph_with_collectives_equals_finite_differences():
    for dx, fd in dist.spawn(_gradient_and_finite_differences, 2, 1e-6, timeout=240):
        np.testing.assert_allclose(dx, fd, rtol=1e-6, atol=1e-7)


def test_a_collective_without_a_group_or_of_the_wrong_size_is_a_clear_error():
    with pytest.raises(DistributedError, match="no process group 'world'"):
        with gk.Graph():
            dist.all_reduce(gk.input("x", (3,)))
    with gk.Graph() as g:
        y = dist.all_reduce(gk.input("x", (3,)), world_size=2)
    with pytest.raises(DistributedError, match="init_process_group"):
        gk.compile(g, y)(x=np.ones(3, "float32"))
    with pytest.raises(LoweringError, match=r"collective.*compile for 'llvm'"):
        gk.compile(g, y, target="cuda")
    with pytest.raises(ONNXError, match="collective over 2 workers"):
        gk.onnx_io.export(g, y)


def _wrong_size() -> None:
    with gk.Graph() as g:
        y = dist.all_reduce(gk.input("x", (3,)), world_size=4)
    gk.compile(g, y)(x=np.ones(3, "float32"))


def test_a_graph_built_for_another_world_size_is_refused_by_name():
    with pytest.raises(DistributedError, match="built for 4 workers but process group 'world' has 2"):
        dist.spawn(_wrong_size, 2, timeout=120)


def _one_dies() -> None:
    with gk.Graph() as g:
        y = dist.all_reduce(gk.input("x", (1000,)))
    run = gk.compile(g, y)
    run(x=np.ones(1000, "float32"))
    if dist.get_rank() == 1:
        import os

        os._exit(3)  # dies between collectives
    time.sleep(0.5)
    run(x=np.ones(1000, "float32"))


@pytest.mark.parametrize("nprocs", [2, 4])
def test_a_dead_worker_makes_the_others_fail_naming_the_lost_rank(nprocs):
    start = time.monotonic()
    with pytest.raises(DistributedError) as error:
        dist.spawn(_one_dies, nprocs, timeout=60, collective_timeout=20)
    assert time.monotonic() - start < 40  # within the collective timeout, never a hang
    lines = str(error.value).splitlines()
    assert lines[1] == "worker rank 1: died with exit code 3"
    for rank in [0, *range(2, nprocs)]:
        assert any(line.startswith(f"worker rank {rank}: ") and "lost rank 1" in line for line in lines), lines


def test_communication_report_follows_the_ring_model():
    with gk.Graph() as g:
        x = gk.input("x", (256,))
        outs = [
            dist.all_reduce(x, world_size=4),
            dist.all_gather(x, world_size=4),
            dist.reduce_scatter(x, world_size=4),
        ]
    report = dist.communication(g, outs)
    assert [t.wire_bytes for t in report.transfers] == [2 * 3 * 256, 3 * 1024, 3 * 256]  # 2(W-1)/W n, (W-1) n, ...
    assert report.collectives == 3 and report.seconds(8e9) == report.wire_bytes / 1e9
    flops = gk.cost(g, outs).by_op()
    assert flops["all_reduce"].flops == 192 and flops["all_gather"].flops == 0


def _llvm_all_reduce(world_size=None) -> float:
    with gk.Graph() as g:
        x = gk.input("x", (128, 128))
        y = gk.tanh(x @ x) + dist.all_reduce(x, world_size=world_size)
    return float(gk.compile(g, y, target="llvm")(x=np.ones((128, 128), "float32")).sum())


def test_forked_workers_run_tvm_kernels_after_the_parent_did():
    """A forked worker inherits TVM's thread pool without its threads; spawn makes it run one."""
    parent = _llvm_all_reduce(world_size=1)  # in the parent: starts TVM's thread pool
    assert dist.spawn(_llvm_all_reduce, 2, timeout=120) == [parent + 128 * 128] * 2
