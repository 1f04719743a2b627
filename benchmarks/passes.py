"""What the optimizer does to gradient graphs: nodes and time per pass, and memory plans.

    python benchmarks/passes.py [--scaling [NODES ...]]

For the gradient graph of each workload: the O2 pipeline's records (nodes before -> after and
milliseconds per pass); the memory plan of the graph before and after O2 under the topological
and the greedy schedule: planned peak, the part of it that is output buffers (a run holds them
from its start; the lower bound counts them from when they are computed), no-reuse baseline
and lower bound; and the peak tracemalloc measures while the planned and the plain numpy
executors run one step. With --scaling, also the O2 time on chain gradient graphs of 1k, 10k
and 100k nodes and its growth exponent.

Beside gradkiln's numbers, JAX/XLA's for the same step (benchmarks/passes_jax.py; skipped when jax
is not installed): HLO instructions before and after XLA's optimization (the entry computation,
fusions counting one each) next to gradkiln's nodes before and after O2, and XLA's temp + output
bytes next to gradkiln's planned peak (both leave out the arguments: inputs and parameters).

The remat section: for each training graph, the planned peak before and after rematerialization
with the "sqrt" strategy (no budget) and the "greedy" one at half the activation memory (budget =
peak - activation bytes / 2, the activations being the forward buffers the backward reads), the
FLOPs recomputed as a multiple of the forward pass's, and the peak tracemalloc measures while the
planned numpy executor runs the step before and after.
"""

from __future__ import annotations

import argparse
import statistics
import time
from itertools import pairwise
from typing import Callable

import numpy as np
from passes_jax import xla_report

import gradkiln as gk
from gradkiln.graph.outputs import normalize_outputs
from gradkiln.passes import optimize, plan_memory, rematerialize
from gradkiln.testing import elementwise_chain, measured_peak_bytes

MIB = 2**20
Workload = Callable[[], tuple[gk.Graph, list[gk.Tensor], dict[str, np.ndarray], dict[str, int]]]


def mlp(widths: tuple[int, ...] = (784, 512, 512, 10), batch: int = 64):
    """An MLP with cross entropy; outputs: the loss and the gradient of every parameter."""
    rng = np.random.default_rng(0)
    with gk.Graph("mlp") as g:
        h, labels = gk.input("x", ("N", widths[0])), gk.input("labels", ("N",), "int64")
        params = []
        for i, (a, b) in enumerate(pairwise(widths)):
            w = gk.param(f"w{i}", rng.normal(0, np.sqrt(2 / a), (a, b)).astype(np.float32))
            bias = gk.param(f"b{i}", np.zeros(b, np.float32))
            params += [w, bias]
            h = h @ w + bias
            h = gk.relu(h) if i < len(widths) - 2 else h
        loss = gk.cross_entropy(h, labels)
        grads = gk.grad(loss, params)
    feeds = {"x": rng.normal(size=(batch, widths[0])).astype(np.float32), "labels": rng.integers(0, 10, batch)}
    return g, [loss, *grads], feeds, {"N": batch}


def chain_workload(ops: int = 50, shape: tuple[int, int] = (1024, 1024)):
    """The elementwise chain of gradkiln.testing with its feeds."""
    g, outputs = elementwise_chain(ops, shape)
    return g, outputs, {"x": np.random.default_rng(0).normal(size=shape).astype(np.float32)}, {}


def train_model(model: str) -> Workload:
    """benchmarks/train_models.py's W2 (CNN, batch 16) or W3 (transformer block, batch 8, seq 128)
    training step."""

    def build():
        import train_models

        rng = np.random.default_rng(0)
        graph, outputs = getattr(train_models, f"{model}_graph")(getattr(train_models, f"{model}_params")(rng))
        feeds = getattr(train_models, f"{model}_inputs")(rng)
        sizes = {  # symbolic dims (the batch) take their sizes from the inputs
            str(dim): feeds[node.name].shape[axis]
            for node in graph.inputs()
            for axis, dim in enumerate(node.types[0].shape)
            if not isinstance(dim, int)
        }
        return graph, outputs, feeds, sizes

    return build


WORKLOADS: dict[str, tuple[str, Workload]] = {  # name: (key of passes_jax.LOSSES, workload)
    "MLP 784-512-512-10, batch 64": ("mlp", mlp),
    "elementwise chain, 50 ops, 1024x1024": ("chain", chain_workload),
    "CNN (W2: three 3x3 convs, max pool, global average pool, linear), batch 16": ("w2", train_model("w2")),
    "transformer block (W3), batch 8, seq 128, d_model 256": ("w3", train_model("w3")),
}


def median_ms(fn: Callable[..., object], feeds: dict[str, np.ndarray], repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(**feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def report(name: str, kind: str, workload: Workload) -> str:
    """Print the workload's section; returns its row of the gradkiln-beside-XLA table."""
    graph, outputs, feeds, bindings = workload()
    values, _ = normalize_outputs(graph, outputs)
    optimized, new_values, manager = optimize(graph, values, "O2")
    print(f"\n## {name}\n\nO2 pipeline ({len(graph)} -> {len(optimized)} nodes):\n{manager.table()}\n")
    print(
        f"{'graph':10} {'schedule':12} {'peak MiB':>9} {'outputs':>8} {'no reuse':>9} {'bound':>9} "
        f"{'buffers':>8} {'in place':>9}"
    )
    for label, g, outs in (("original", graph, values), ("O2", optimized, new_values)):
        for schedule in ("topological", "greedy"):
            start = time.perf_counter()
            plan = plan_memory(g, outs, schedule=schedule, bindings=bindings)
            seconds = time.perf_counter() - start
            outputs_mib = (plan.peak_bytes - plan.arena_bytes) / MIB
            print(
                f"{label:10} {schedule:12} {plan.peak_bytes / MIB:9.2f} {outputs_mib:8.2f} "
                f"{plan.baseline_bytes / MIB:9.2f} {plan.lower_bound_bytes / MIB:9.2f} "
                f"{len(plan.buffer_bytes):8} {len(plan.inplace):9}"
                f"   (planned in {seconds * 1e3:.0f} ms)"
            )
    print(f"\n{'executor (O2 graph)':28} {'measured peak MiB':>18} {'median ms':>9}")
    measured = {}
    for label, options in (("numpy, memory plan", {"memory_plan": True}), ("numpy, free after last use", {})):
        fn = gk.compile(optimized, new_values, **options)
        measured[label] = measured_peak_bytes(fn, feeds) / MIB
        print(f"{label:28} {measured[label]:18.2f} {median_ms(fn, feeds):8.1f}")
    planned = gk.compile(optimized, new_values, memory_plan=True)
    want, got = gk.compile(graph, values)(**feeds), planned(**feeds)
    error = max(float(np.max(np.abs(a - b))) for a, b in zip(got, want))
    print(f"max |planned O2 - plain original| = {error:.2e}")
    plan = plan_memory(optimized, new_values, bindings=bindings)  # the plan the executor runs from
    ours = (
        f"{kind:6} {len(graph):>6}->{len(optimized):<6} {plan.peak_bytes / MIB:8.2f} "
        f"{plan.lower_bound_bytes / MIB:8.2f} {measured['numpy, memory plan']:9.2f}"
    )
    return ours + xla_columns(kind, graph, feeds, float(want[0]))


def xla_columns(kind: str, graph: gk.Graph, feeds: dict[str, np.ndarray], loss: float) -> str:
    """XLA's columns of the summary row (blank without jax); the loss must agree with gradkiln's."""
    params = graph.param_values() if kind != "chain" else {"x": feeds["x"]}
    xla = xla_report(kind, params, feeds if kind != "chain" else {})
    if xla is None:
        return "   (jax not installed)"
    agree = "yes" if abs(xla["loss"] - loss) <= 1e-4 * max(1.0, abs(loss)) else f"NO ({xla['loss']:.6g} vs {loss:.6g})"
    return (
        f"   {xla['hlo_before']:>5}->{xla['hlo_after']:<5} {xla['temp_mib'] + xla['output_mib']:11.2f} "
        f"{xla['temp_mib']:8.2f} {xla['argument_mib']:8.2f}  {agree}"
    )


SUMMARY_HEADER = (
    "## gradkiln beside JAX/XLA (MiB; both peaks leave out the arguments)\n\n"
    f"{'work':6} {'nodes O2':>13} {'planned':>8} {'bound':>8} {'measured':>9}   "
    f"{'XLA HLO':>11} {'temp+out':>11} {'temp':>8} {'args':>8}  loss agrees"
)


REMAT_WORKLOADS: dict[str, Workload] = {
    "MLP 784-512-512-10, batch 64": mlp,
    "elementwise chain, 50 ops, 1024x1024": chain_workload,
    "transformer block (W3)": train_model("w3"),
}


def remat_report() -> None:
    """Planned peaks under remat; recomputed FLOPs as a multiple of forward FLOPs."""
    print(
        "\n## remat: sqrt segments, and greedy at half the activation memory\n\n"
        f"{'workload':38} {'strategy':8} {'act MiB':>8} {'budget':>8} {'peak MiB':>15} {'recompute':>9} "
        f"{'values':>6} {'measured MiB':>15} {'s':>5}"
    )
    for name, workload in REMAT_WORKLOADS.items():
        graph, outputs, feeds, bindings = workload()
        values, _ = normalize_outputs(graph, outputs)
        for strategy in ("sqrt", "greedy"):
            start = time.perf_counter()
            try:
                budget = None if strategy == "sqrt" else half_activation_budget(graph, values, bindings)
                remat, remat_values, r = rematerialize(graph, values, budget, strategy, bindings)
            except gk.GraphError as err:
                print(f"{name:38} {strategy:8} not reachable: {str(err).split('; raise')[0]}")
                continue
            seconds = time.perf_counter() - start
            before = measured_peak_bytes(gk.compile(graph, values, memory_plan=True), feeds)
            after = measured_peak_bytes(gk.compile(remat, remat_values, memory_plan=True), feeds)
            budget_mib = "-" if budget is None else f"{budget / MIB:.2f}"
            print(
                f"{name:38} {strategy:8} {r.activation_bytes / MIB:8.2f} {budget_mib:>8} "
                f"{r.peak_before / MIB:6.2f} -> {r.peak_after / MIB:5.2f} {r.recompute_ratio:8.2f}x "
                f"{len(r.recomputed_values):6} {before / MIB:6.2f} -> {after / MIB:5.2f} {seconds:5.2f}"
            )


def half_activation_budget(graph: gk.Graph, values: list, bindings: dict[str, int]) -> int:
    """The planned peak less half the activation bytes (which the sqrt report measures)."""
    _, _, probe = rematerialize(graph, values, None, "sqrt", bindings)
    return probe.peak_before - probe.activation_bytes // 2


def scaling(sizes: list[int]) -> None:
    """O2 time on elementwise-chain gradient graphs of about `sizes` nodes, and the growth exponent."""
    print(f"\n## scaling: O2 on chain gradient graphs\n\n{'nodes':>8} {'O2 s':>7}  per pass (s)")
    points = []
    for size in sizes:
        graph, outputs = elementwise_chain(ops=max(1, size * 3 // 10), shape=(4, 4))
        values, _ = normalize_outputs(graph, outputs)
        start = time.perf_counter()
        _, _, manager = optimize(graph, values, "O2")
        seconds = time.perf_counter() - start
        per_pass = {r.name: 0.0 for r in manager.records}
        for r in manager.records:
            per_pass[r.name] += r.seconds
        points.append((len(graph), seconds))
        print(f"{len(graph):8} {seconds:7.2f}  " + ", ".join(f"{k} {v:.2f}" for k, v in per_pass.items()))
    if len(points) > 1:
        exponent = np.polyfit(np.log([n for n, _ in points]), np.log([t for _, t in points]), 1)[0]
        print(f"growth exponent (time ~ nodes^k): k = {exponent:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scaling", type=int, nargs="*", help="also time O2 on graphs of these node counts")
    args = parser.parse_args()
    rows = [report(name, kind, workload) for name, (kind, workload) in WORKLOADS.items()]
    print(f"\n{SUMMARY_HEADER}\n" + "\n".join(rows))
    remat_report()
    if args.scaling is not None:
        scaling(args.scaling or [1_000, 10_000, 100_000])


if __name__ == "__main__":
    main()
