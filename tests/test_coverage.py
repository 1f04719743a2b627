"""Every op of the table against every layer: a missing rule is a failing test, not a surprise."""

import pytest

from gradkiln.graph import OPS
from gradkiln.lowering.tvm.emitters import EMITTERS
from gradkiln.onnx_io import export
from gradkiln.onnx_io.export_rules import EXPORTERS
from gradkiln.onnx_io.import_rules import IMPORTERS
from gradkiln.passes.cost import COST_RULES
from gradkiln.symbolic import BATCH_RULES, JVP_RULES, NON_DIFFERENTIABLE, VJP_RULES
from gradkiln.testing import complex_samples, op_samples

SOURCES = sorted(name for name, op in OPS.items() if op.source)
COMPUTED = sorted(name for name, op in OPS.items() if not op.source)


@pytest.mark.parametrize("op", COMPUTED)
def test_op_has_a_gradient_rule_or_is_declared_non_differentiable(op):
    assert op in VJP_RULES or op in NON_DIFFERENTIABLE, f"{op}: register a vjp rule in gradkiln/symbolic"


@pytest.mark.parametrize("op", COMPUTED)
def test_op_has_a_jvp_rule_or_is_declared_non_differentiable(op):
    assert op in JVP_RULES or op in NON_DIFFERENTIABLE, f"{op}: register a jvp rule in gradkiln/symbolic"


@pytest.mark.parametrize("op", COMPUTED)
def test_op_has_a_batching_rule(op):
    assert op in BATCH_RULES, f"{op}: register a batching rule in gradkiln/symbolic/batching.py"


@pytest.mark.parametrize("op", COMPUTED)
def test_op_has_a_tvm_emitter(op):
    assert op in EMITTERS, f"{op}: register an emitter in gradkiln/lowering/tvm/emitters/elementwise.py"


@pytest.mark.parametrize("op", COMPUTED)
def test_op_has_an_onnx_exporter(op):
    assert op in EXPORTERS, f"{op}: register an exporter in gradkiln/onnx_io/export_rules.py"


@pytest.mark.parametrize("op", sorted(OPS))
def test_op_has_a_cost_rule(op):
    assert op in COST_RULES, f"{op}: register a cost rule in gradkiln/passes/cost.py"


def test_every_op_has_a_sample_graph():
    samples = op_samples() + complex_samples()  # complex ones run on numpy only: not in op_samples
    sampled = {node.op for sample in samples for node in sample.graph()[0].nodes()}
    missing = sorted(set(OPS) - sampled)
    assert not missing, f"ops without a sample in gradkiln/testing/ (samples.py or families.py): {missing}"


@pytest.mark.parametrize("sample", op_samples("float32"), ids=lambda s: s.name)
def test_every_onnx_op_the_exporter_writes_can_be_imported(sample):
    graph, _, out = sample.graph()
    written = {node.op_type for node in export(graph, out).graph.node}
    assert written <= set(IMPORTERS), f"no importer for {sorted(written - set(IMPORTERS))}"


def test_sources_are_handled_by_every_layer_itself():
    assert SOURCES == ["constant", "input", "param"]
