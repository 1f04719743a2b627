"""Control flow at both ONNX edges: scan and cond export to native Loop and If (checked with
full_check by the exporter, run by onnxruntime); If on a run-time condition, Scan and Loop with
a known trip count import to cond and scan (not unrolled), with onnxruntime as the oracle."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import gradkiln as gk

RNG = np.random.default_rng(3)


def run_ort(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in wanted})


def run_numpy(graph, outputs, feeds):
    return gk.compile(graph, outputs, target="numpy")(**feeds)


def ops_of(model):
    return [n.op_type for n in model.graph.node]


def test_scan_with_gradients_exports_to_loops_that_onnxruntime_runs():
    with gk.Graph("rnn") as g:
        x = gk.input("x", (4, 2, 3), "float32")
        w = gk.param("w", (RNG.normal(size=(3, 3)) * 0.5).astype("float32"))
        h0 = gk.input("h0", (2, 3), "float32")
        final, ys = gk.scan(lambda h, xt: (gk.tanh(h @ w + xt), h * 2.0), h0, x, reverse=True)
        loss = gk.sum(final * final) + gk.sum(ys)
        outputs = [loss, *gk.grad(loss, [w, x, h0])]
    feeds = {"x": RNG.normal(size=(4, 2, 3)).astype("float32"), "h0": RNG.normal(size=(2, 3)).astype("float32")}
    model = gk.onnx_io.export(g, outputs)
    assert "Loop" in ops_of(model) and len(ops_of(model)) < 40  # native loops, not unrolled
    for got, expected in zip(run_ort(model, feeds), run_numpy(g, outputs, feeds)):
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["true", "false"])
def test_cond_and_while_loop_export_to_if_and_loop(sign):
    with gk.Graph() as g:
        x = gk.input("x", (3,), "float32")
        y = gk.cond(gk.sum(x) > 0, lambda v: gk.log(v), lambda v: v * 2.0, x)
        w = gk.while_loop(lambda s: gk.sum(s) < 20.0, lambda s: s * 2.0, gk.abs(x), 10)
        outputs = [y, w, *gk.grad(gk.sum(y) + gk.sum(w), [x])]
    feeds = {"x": (sign * RNG.uniform(0.5, 1.5, 3)).astype("float32")}
    model = gk.onnx_io.export(g, outputs)
    assert {"If", "Loop"} <= set(ops_of(model))
    for got, expected in zip(run_ort(model, feeds), run_numpy(g, outputs, feeds)):
        np.testing.assert_allclose(got, expected, rtol=1e-5)


def model_of(nodes, inputs, outputs, opset=18):
    graph = helper.make_graph(nodes, "control", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    return model


def vec(name, n=3):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [n])


def scalar(name, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, [])


def imported_and_checked(model, feeds):
    graph, outputs = gk.onnx_io.import_model(model)
    got = run_numpy(graph, list(outputs.values()), feeds)
    for a, b in zip(got, run_ort(model, feeds)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    return graph, got


def test_if_on_a_run_time_condition_imports_to_cond():
    then_graph = helper.make_graph([helper.make_node("Exp", ["x"], ["t"])], "then", [], [vec("t")])
    else_graph = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [vec("e")])
    model = model_of(
        [
            helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
            helper.make_node("Greater", ["s", "zero"], ["c"]),
            helper.make_node("If", ["c"], ["y"], then_branch=then_graph, else_branch=else_graph),
        ],
        [vec("x"), scalar("zero")],
        [vec("y")],
    )
    for sign in (1.0, -1.0):
        graph, _ = imported_and_checked(model, {"x": sign * np.ones(3, np.float32), "zero": np.zeros((), np.float32)})
    assert graph.nodes_of("cond")


def test_scan_imports_to_one_scan_with_axes_and_directions():
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "row"], ["acc_out"]), helper.make_node("Mul", ["acc_out", "row"], ["y"])],
        "body",
        [vec("acc_in", 2), vec("row", 2)],
        [vec("acc_out", 2), vec("y", 2)],
    )
    scan = helper.make_node(
        "Scan",
        ["init", "xs"],
        ["final", "ys"],
        body=body,
        num_scan_inputs=1,
        scan_input_axes=[1],
        scan_input_directions=[1],
        scan_output_axes=[1],
    )
    xs = helper.make_tensor_value_info("xs", TensorProto.FLOAT, [2, 5])
    ys = helper.make_tensor_value_info("ys", TensorProto.FLOAT, [2, 5])
    model = model_of([scan], [vec("init", 2), xs], [vec("final", 2), ys], opset=16)
    feeds = {"init": np.ones(2, np.float32), "xs": RNG.normal(size=(2, 5)).astype(np.float32)}
    graph, _ = imported_and_checked(model, feeds)
    assert len(graph.nodes_of("scan")) == 1


def loop_model(with_scan_output):
    """Loop(10): s <- s * 1.5 while sum(s) < 20 (a condition the run decides), or with a scan
    output and a constant-true condition."""
    nodes = [helper.make_node("Mul", ["s_in", "growth"], ["s_out"])]
    outputs = [scalar("going_out", TensorProto.BOOL), vec("s_out")]
    if with_scan_output:
        nodes += [helper.make_node("Identity", ["going_in"], ["going_out"]), helper.make_node("Neg", ["s_in"], ["y"])]
        outputs.append(vec("y"))
    else:
        nodes += [
            helper.make_node("ReduceSum", ["s_out"], ["total"], keepdims=0),
            helper.make_node("Less", ["total", "limit"], ["going_out"]),
        ]
    body = helper.make_graph(
        nodes, "body", [scalar("i", TensorProto.INT64), scalar("going_in", TensorProto.BOOL), vec("s_in")], outputs
    )
    init = [
        helper.make_node("Constant", [], ["trips"], value=helper.make_tensor("v", TensorProto.INT64, [], [10])),
        helper.make_node("Constant", [], ["go"], value=helper.make_tensor("g", TensorProto.BOOL, [], [True])),
    ]
    loop_outs = ["final", "ys"] if with_scan_output else ["final"]
    loop = helper.make_node("Loop", ["trips", "go", "s0"], loop_outs, body=body)
    graph_outs = [vec("final")] + (
        [helper.make_tensor_value_info("ys", TensorProto.FLOAT, [10, 3])] if with_scan_output else []
    )
    return model_of([*init, loop], [vec("s0"), scalar("growth"), scalar("limit")], graph_outs)


@pytest.mark.parametrize("with_scan_output", [False, True], ids=["run_time_condition", "scan_output"])
def test_loop_with_a_known_trip_count_imports_to_a_scan(with_scan_output):
    feeds = {
        "s0": np.array([1.0, 2.0, 0.5], np.float32),
        "growth": np.array(1.5, np.float32),
        "limit": np.array(20.0, np.float32),
    }
    graph, got = imported_and_checked(loop_model(with_scan_output), feeds)
    assert len(graph.nodes_of("scan")) == 1
    if not with_scan_output:  # the run stops early: 3.5 * 1.5**5 > 20
        np.testing.assert_allclose(got[0], feeds["s0"] * 1.5**5, rtol=1e-6)


def test_exported_control_flow_imports_back_to_control_flow():
    with gk.Graph() as g:
        x = gk.input("x", (5, 2), "float32")
        final, ys = gk.scan(lambda c, xt: (c * 0.5 + xt, c), gk.constant(np.zeros(2, "float32")), x)
        y = gk.cond(gk.sum(final) > 0, lambda v: v * 3.0, lambda v: -v, final)
    model = gk.onnx_io.export(g, [y, ys])
    graph, _ = imported_and_checked(model, {"x": RNG.normal(size=(5, 2)).astype(np.float32)})
    assert graph.nodes_of("scan") and graph.nodes_of("cond")
