"""Memory planning: liveness, reuse and in-place buffers, the peak-lowering schedule, and the
bounds baseline >= planned peak >= lower bound."""

import numpy as np
import pytest
from hypothesis import given, settings

import gradkiln as gk
from gradkiln.graph import GraphError
from gradkiln.passes import greedy_schedule, plan_memory
from gradkiln.testing import random_graphs

MIB = 2**20


def chain(n=6, shape=(256, 256)):
    with gk.Graph("chain") as g:
        x = gk.input("x", shape)
        h = x
        for i in range(n):
            h = [gk.tanh, lambda t: t * 0.9, lambda t: t + 0.1][i % 3](h)
        out = gk.sum(h)
    return g, out


def test_an_elementwise_chain_runs_in_place_in_one_buffer():
    g, out = chain()
    plan = plan_memory(g, [out.value])
    size = 256 * 256 * 4
    assert plan.baseline_bytes == 6 * size + 64  # the scalar loss takes one 64-byte slot
    assert plan.peak_bytes == size + 64  # every node after the first overwrites its input
    assert plan.lower_bound_bytes == size + 64
    assert len(plan.inplace) == 5


def test_values_alive_together_never_share_a_buffer():
    with gk.Graph() as g:
        x = gk.input("x", (64, 64))
        a, b = gk.exp(x), gk.tanh(x)
        c = a @ b
        d = gk.relu(c) + a  # a stays alive across the matmul
        out = gk.sum(d * gk.transpose(d))
    plan = plan_memory(g, [out.value], schedule="topological")
    step = {n: i for i, n in enumerate(plan.schedule)}
    live = {}
    for v in plan.value_bytes:
        uses = [step[u] for u in g.nx.successors(v.node)]
        live[v] = (step[v.node], max(uses, default=len(plan.schedule)))
    for v in live:
        for w in live:
            overlap = live[v][0] < live[w][1] and live[w][0] < live[v][1]
            if v != w and overlap and plan.buffer_of[v] == plan.buffer_of[w]:
                pytest.fail(f"{v} and {w} overlap in buffer {plan.buffer_of[v]}")


def test_views_share_their_base_buffer_and_outputs_get_their_own():
    with gk.Graph() as g:
        x = gk.input("x", (8, 4))
        e = gk.exp(x)
        view = gk.reshape(gk.transpose(e), (32,))  # the transpose is a view; reshaping it copies
        out = gk.sum(gk.expand_dims(e, 0), 0) + 1.0
    plan = plan_memory(g, [out.value, view.value])
    transposed = g.inputs_of(view.value.node)[0]
    assert plan.buffer_of[transposed] == plan.buffer_of[e.value]
    assert view.value in plan.value_bytes  # a reshape of a non-contiguous view gets a buffer
    assert {plan.buffer_of[out.value], plan.buffer_of[view.value]} <= plan.output_buffers


def test_symbolic_dims_need_bindings():
    with gk.Graph() as g:
        x = gk.input("x", ("N", 16))
        out = gk.sum(gk.exp(x) * 2.0, 1)
    with pytest.raises(GraphError, match="needs sizes for N"):
        plan_memory(g, [out.value])
    small, large = plan_memory(g, [out.value], bindings={"N": 4}), plan_memory(g, [out.value], bindings={"N": 64})
    assert small.value_bytes[out.value] == 4 * 4 and large.value_bytes[out.value] == 64 * 4
    assert small.peak_bytes == 4 * 16 * 4 + 64 and large.peak_bytes == 64 * 16 * 4 + 64 * 4  # exp(x) * 2 in place


def test_the_greedy_schedule_lowers_the_peak_of_a_wide_graph():
    # eight branches, each a big value then its sum; built (and so ordered) bigs first, sums after
    with gk.Graph() as g:
        x = gk.input("x", (128, 128))
        bigs = [gk.exp(x * float(i)) for i in range(8)]
        out = sum((gk.sum(b) for b in bigs), start=gk.constant(np.float32(0)))
    topological = plan_memory(g, [out.value], schedule="topological")
    greedy = plan_memory(g, [out.value], schedule="greedy")
    big = 128 * 128 * 4
    assert topological.peak_bytes > 8 * big  # every big value alive at once
    assert greedy.peak_bytes < 2 * big  # one big value at a time


@settings(max_examples=80, deadline=None)
@given(random_graphs())
def test_plans_respect_the_bounds_and_schedules_are_topological(case):
    graph, outputs = case
    schedule = greedy_schedule(graph, outputs)
    assert sorted(schedule) == sorted(graph.needed_nodes(outputs))
    position = {n: i for i, n in enumerate(schedule)}
    assert all(position[u] < position[v] for u, v in graph.nx.subgraph(schedule).edges())
    for kind in ("greedy", "topological"):
        plan = plan_memory(graph, outputs, schedule=kind)
        assert plan.lower_bound_bytes <= plan.peak_bytes <= plan.baseline_bytes
        assert plan.arena_bytes >= plan.peak_bytes - sum(plan.buffer_bytes[b] for b in plan.output_buffers)


def test_summary_reports_the_three_numbers():
    g, out = chain()
    text = plan_memory(g, [out.value]).summary()
    assert "planned peak" in text and "no reuse" in text and "lower bound" in text
    assert f"{(256 * 256 * 4 + 64) / MIB:.2f}" in text
