"""The "How to add an op" recipe of docs/architecture.md, followed for a toy unary op (asinh): one
row of the elementwise table, from which every layer derives its rule. The row is installed in
every layer's table in-process (what the import-time loops do for the table's own rows) and
removed again by monkeypatch, then run on each layer: numpy, vjp and jvp against finite
differences, llvm, ONNX export through onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import sympy

import gradkiln as gk
from gradkiln.graph import OPS
from gradkiln.graph import builder as gb
from gradkiln.graph.builder.core import unary_function
from gradkiln.graph.ops.elementwise import unary_opdef
from gradkiln.graph.ops.elementwise_table import TRANSCENDENTAL, UNARY_ROWS, Unary
from gradkiln.onnx_io import export
from gradkiln.onnx_io.export_rules import EXPORTERS, row_exporter
from gradkiln.passes.cost import COST_RULES, ELEMENTWISE_FLOPS, cost, per_element
from gradkiln.symbolic import grad, jvp
from gradkiln.symbolic.jvp_rules import JVP_RULES, unary_jvp
from gradkiln.symbolic.vjp_rules import VJP_RULES, unary_vjp
from gradkiln.testing.gradients import numeric_grads

ASINH = Unary(
    "asinh",
    np.arcsinh,
    "Inverse hyperbolic sine.",
    sympy=sympy.asinh,
    derivative=lambda gb, x, y, g: g * gb.rsqrt(1.0 + x * x),
    onnx="Asinh",
    relax="asinh",
    flops=TRANSCENDENTAL,
)


@pytest.fixture
def asinh(monkeypatch: pytest.MonkeyPatch) -> Unary:
    """ASINH installed as if it were a row of UNARY_ROWS, in every layer; removed afterwards."""
    from gradkiln.lowering.tvm.emitters import EMITTERS
    from gradkiln.lowering.tvm.emitters.elementwise import row_emitter

    row = ASINH
    assert row.name not in OPS
    monkeypatch.setattr("gradkiln.graph.ops.elementwise_table.UNARY_ROWS", (*UNARY_ROWS, row))
    monkeypatch.setitem(OPS, row.name, unary_opdef(row))
    monkeypatch.setattr(gb, row.name, unary_function(row.name, row.doc, row.floats), raising=False)
    monkeypatch.setitem(VJP_RULES, row.name, unary_vjp(row))
    monkeypatch.setitem(JVP_RULES, row.name, unary_jvp(row))
    monkeypatch.setitem(EMITTERS, row.name, row_emitter(row))
    monkeypatch.setitem(EXPORTERS, row.name, row_exporter(row))
    monkeypatch.setitem(ELEMENTWISE_FLOPS, row.name, row.flops)
    monkeypatch.setitem(COST_RULES, row.name, per_element(row.flops))
    return row


def _graph(dtype: str = "float64"):
    with gk.Graph("toy") as g:
        x = gk.input("x", (3, 4), dtype)
        y = gb.asinh(x) * x
    return g, x, y


FEEDS = {"x": np.random.default_rng(0).uniform(-2.0, 2.0, (3, 4))}


def test_the_row_defines_the_op_and_its_builder_function(asinh):
    g, _, y = _graph()
    assert gb.asinh.__doc__ == asinh.doc and "asinh" in {g.op_of(n) for n in g.node_ids()}
    got = gk.compile(g, y, target="numpy")(**FEEDS)
    np.testing.assert_allclose(got, np.arcsinh(FEEDS["x"]) * FEEDS["x"], rtol=1e-12)
    assert cost(g, [y]).flops == 12 * (asinh.flops + 1)


def test_the_vjp_and_jvp_match_finite_differences(asinh):
    g, x, y = _graph()
    with g:
        (dx,) = grad(gk.sum(y), [x])
        t = gk.input("t", (3, 4), "float64")
        (dy,) = jvp(y, [x], [t])
    f = gk.compile(g, y, target="numpy")
    want = numeric_grads(lambda feeds: f(**feeds), FEEDS, ["x"], np.ones((3, 4)))["x"]
    np.testing.assert_allclose(gk.compile(g, dx, target="numpy")(**FEEDS), want, rtol=1e-6)
    tangent = np.random.default_rng(1).normal(size=(3, 4))
    np.testing.assert_allclose(gk.compile(g, dy, target="numpy")(**FEEDS, t=tangent), want * tangent, rtol=1e-6)


def test_llvm_computes_what_numpy_does(asinh):
    g, x, y = _graph()
    with g:
        (dx,) = grad(gk.sum(y), [x])
    for out in (y, dx):
        want = gk.compile(g, out, target="numpy")(**FEEDS)
        np.testing.assert_allclose(gk.compile(g, out, target="llvm")(**FEEDS), want, rtol=1e-10)


def test_onnx_export_runs_on_onnxruntime(asinh):
    g, _, y = _graph("float32")  # onnxruntime's Asinh is float32 only
    model = export(g, {"out": y})
    assert asinh.onnx in {n.op_type for n in model.graph.node}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"x": FEEDS["x"].astype("float32")}
    (got,) = session.run(None, feeds)
    np.testing.assert_allclose(got, gk.compile(g, y, target="numpy")(**feeds), rtol=1e-6)


def test_the_toy_row_is_gone_afterwards():
    assert "asinh" not in OPS and "asinh" not in VJP_RULES and not hasattr(gb, "asinh")
