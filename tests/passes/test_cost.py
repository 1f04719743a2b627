"""gk.cost: FLOP and byte estimates per node against hand-computed numbers."""

import numpy as np
import pytest

import gradkiln as gk


def mlp():
    with gk.Graph("mlp") as g:
        x = gk.input("x", ("N", 32))
        w1, b1 = gk.param("w1", np.ones((32, 16), np.float32)), gk.param("b1", np.ones(16, np.float32))
        w2, b2 = gk.param("w2", np.ones((16, 10), np.float32)), gk.param("b2", np.ones(10, np.float32))
        h = gk.relu(gk.matmul(x, w1) + b1)
        loss = gk.sum(gk.exp(gk.matmul(h, w2) + b2))
    return g, loss, [w1, w2]


def test_an_mlp_costs_what_is_computed_by_hand():
    g, _, _ = mlp()
    report = gk.cost(g, bindings={"N": 64})
    f32 = 4
    matmuls = 2 * 64 * 16 * 32 + 2 * 64 * 10 * 16  # 2*M*N*K each
    by_op = report.by_op()
    assert by_op["matmul"] == (2, matmuls, f32 * ((64 * 32 + 32 * 16 + 64 * 16) + (64 * 16 + 16 * 10 + 64 * 10)))
    assert by_op["add"] == (2, 64 * 16 + 64 * 10, f32 * ((64 * 16 + 16 + 64 * 16) + (64 * 10 + 10 + 64 * 10)))
    assert by_op["relu"] == (1, 64 * 16, f32 * 2 * 64 * 16)
    assert by_op["exp"] == (1, 4 * 64 * 10, f32 * 2 * 64 * 10)  # a transcendental op counts 4 FLOPs
    assert by_op["sum"] == (1, 64 * 10, f32 * (64 * 10 + 1))
    assert by_op["param"] == (4, 0, 0) and by_op["input"] == (1, 0, 0)
    assert report.flops == matmuls + 64 * 26 + 64 * 16 + 4 * 640 + 640 == 91_904
    assert report.bytes == sum(c.bytes for c in by_op.values()) == 50_924
    assert next(iter(by_op)) == "matmul"  # the most FLOPs first


def test_the_table_lists_each_op_type_and_a_total():
    g, _, _ = mlp()
    lines = gk.cost(g, bindings={"N": 64}).table().splitlines()
    assert lines[0].split() == ["op", "nodes", "FLOPs", "share", "bytes"]
    assert lines[1].split() == ["matmul", "2", "86,016", "93.6%", "21,632"]
    assert lines[-1].split() == ["total", "12", "91,904", "100.0%", "50,924"]


def test_outputs_select_the_nodes_they_need_and_gradient_nodes_are_costed_too():
    g, loss, params = mlp()
    with g:
        grads = gk.grad(loss, params)
    forward = gk.cost(g, loss, bindings={"N": 8})
    everything = gk.cost(g, [loss, *grads], bindings={"N": 8})
    assert len(forward.nodes) == 12 and {n.role for n in forward.nodes} == {"forward"}
    assert everything.flops > 2 * forward.flops and "grad" in {n.role for n in everything.nodes}


def test_conv2d_costs_two_flops_per_multiply_add_of_its_window():
    with gk.Graph() as g:
        x = gk.input("x", (2, 4, 8, 8))
        out = gk.conv2d(x, gk.param("w", np.ones((6, 2, 3, 3), np.float32)), groups=2)
    (node,) = [n for n in gk.cost(g, out).nodes if n.op == "conv2d"]
    assert node.flops == 2 * 2 * 6 * 6 * 6 * (4 // 2) * 3 * 3  # 2*N*Cout*Hout*Wout*(Cin/groups)*kh*kw


def test_unbound_symbolic_dims_are_a_clear_error():
    g, _, _ = mlp()
    with pytest.raises(gk.GraphError, match=r"%x: f32\[N,32\] has symbolic dims \['N'\]; pass their sizes"):
        gk.cost(g)
