"""Data-parallel W1 step on local gloo workers, and its projection to larger clusters.

    python benchmarks/distributed.py [--workers 2] [--steps 20] [--target llvm]

Trains the W1 MLP (784-512-512-10, softmax cross entropy, SGD) with a global batch of 64 on one
process and data-parallel on `--workers` local processes, and prints per step: the time of the
step, the time spent in collectives (the step waits on them: the collectives run after the
backward, so none of it overlaps), the number of collectives and the bytes each worker sends
(ring model). Then it projects the step time at 8, 64 and 512 workers on 100 and 400 Gb/s links
with the ring all-reduce cost model: a worker's compute at a fixed per-worker batch (measured on
one process here) plus, per bucket, 2 (W - 1) latency hops and 2 (W - 1) / W of its bytes at the
link bandwidth. Numbers from a shared machine are noisy; run it on an idle one to quote them.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import gradkiln as gk
from gradkiln import distributed as dist
from gradkiln.graph.ops.collective import communicator
from gradkiln.testing import mlp_training_step

WIDTHS, BATCH = [784, 512, 512, 10], 64
LATENCY = 5e-6  # seconds per ring hop (an assumption: a fast datacenter network)
LINKS = {"100 Gb/s": 100e9, "400 Gb/s": 400e9}
CLUSTERS = (8, 64, 512)


def w1_step() -> tuple[gk.Graph, dict, list, dict]:
    """The W1 SGD step: (graph, outputs {"loss", "<param>": new value}, gradients, initial params)."""
    g, (loss, *grads) = mlp_training_step(WIDTHS)
    params = g.params()
    with g:
        new = {p.name: gk.Tensor(g, p.outputs[0]) - 0.01 * gr for p, gr in zip(params, grads)}
    return g, {"loss": loss, **new}, grads, {p.name: p.attrs["value"] for p in params}


def batch() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"x": rng.normal(size=(BATCH, WIDTHS[0])).astype("float32"), "labels": rng.integers(0, 10, BATCH)}


def timed_steps(run, feeds: dict, params: dict, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        out = run(**feeds, **params)
        times.append(time.perf_counter() - start)
        params = {k: out[k] for k in params}
    return times


def one_process(target: str, steps: int, rows: int = BATCH) -> float:
    g, outputs, _, params = w1_step()
    feeds = {k: v[:rows] for k, v in batch().items()}
    return statistics.median(timed_steps(gk.compile(g, outputs, target=target), feeds, params, steps))


def worker(target: str, steps: int, bucket_bytes: int) -> dict:
    g, outputs, grads, params = w1_step()
    step = dist.data_parallel(g, outputs, grads, bucket_bytes=bucket_bytes)
    run = step.compile(target)
    feeds = {k: dist.shard(v) for k, v in batch().items()}
    timed_steps(run, feeds, params, 2)  # warm up
    comm = communicator("world", dist.get_world_size())
    calls, seconds = comm.calls, comm.seconds
    times = timed_steps(run, feeds, params, steps)
    report = step.communication({"N": BATCH // dist.get_world_size()})
    return {
        "step": statistics.median(times),
        "wait": (comm.seconds - seconds) / steps,
        "collectives": (comm.calls - calls) / steps,
        "wire": report.wire_bytes,
        "buckets": report.collectives,
        "operand": sum(t.operand_bytes for t in report.transfers),
    }


def project(compute: float, operand_bytes: int, buckets: int) -> list[str]:
    lines = [f"{'workers':>8} " + " ".join(f"{name + ' step ms':>18} {'comm share':>10}" for name in LINKS)]
    for w in CLUSTERS:
        cells = []
        for bandwidth in LINKS.values():
            comm = buckets * 2 * (w - 1) * LATENCY + 2 * (w - 1) / w * operand_bytes * 8 / bandwidth
            cells.append(f"{(compute + comm) * 1e3:>18.3f} {comm / (compute + comm):>10.0%}")
        lines.append(f"{w:>8} " + " ".join(cells))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--target", default="llvm", choices=["numpy", "llvm"])
    args = parser.parse_args()
    single = one_process(args.target, args.steps)
    per_worker = one_process(args.target, args.steps, BATCH // args.workers)
    print(f"W1 step, global batch {BATCH}, target {args.target}")
    print(f"1 process: {single * 1e3:.2f} ms per step; at the per-worker batch {per_worker * 1e3:.2f} ms")
    for name, bucket_bytes in [("one all_reduce per gradient", 0), ("25 MiB buckets", 25 * 2**20)]:
        results = dist.spawn(worker, args.workers, args.target, args.steps, bucket_bytes, timeout=600)
        r = max(results, key=lambda r: r["step"])
        print(
            f"{args.workers} workers, {name}: {r['step'] * 1e3:.2f} ms per step, {r['wait'] * 1e3:.2f} ms in "
            f"collectives ({r['wait'] / r['step']:.0%}, not overlapped), {r['collectives']:.0f} collectives, "
            f"{r['operand']:,} B reduced, {r['wire']:,} B sent per worker"
        )
    print(f"\nprojected step (ring all_reduce, {LATENCY * 1e6:.0f} us per hop, compute at the per-worker batch above):")
    print("\n".join(project(per_worker, r["operand"], r["buckets"])))


if __name__ == "__main__":
    main()
