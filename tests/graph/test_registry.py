"""The one rule-table type: duplicates refused unless meant, ordered alternatives, Mapping reads;
and every layer's rule table is one."""

import pytest

from gradkiln.graph.opdef import OPS
from gradkiln.graph.registry import Registry
from gradkiln.lowering.tvm.emitters import EMITTERS
from gradkiln.onnx_io.export_rules import EXPORTERS
from gradkiln.onnx_io.import_rules import IMPORTERS
from gradkiln.passes.manager import PASSES
from gradkiln.symbolic.batching import BATCH_RULES
from gradkiln.symbolic.jvp_rules import JVP_RULES
from gradkiln.symbolic.vjp_rules import VJP_RULES


def test_a_second_rule_for_a_key_is_refused_unless_override_says_so():
    table: Registry = Registry("test rule")
    table.register("double")(lambda x: 2 * x)
    with pytest.raises(ValueError, match="'double' already has a test rule; pass override=True"):
        table.register("double")(lambda x: 3 * x)
    assert table["double"](5) == 10
    table.register("double", override=True)(lambda x: x + x + 1)
    assert table["double"](5) == 11


def test_alternatives_are_tried_newest_first_and_fall_back_in_order():
    table: Registry = Registry("test rule")
    table.register("f")(lambda x: "general")
    table.register("f", when=lambda x: x > 0)(lambda x: "positive")
    table.register("f", when=lambda x: x > 10)(lambda x: "large")
    assert [table["f"](x) for x in (-1, 5, 50)] == ["general", "positive", "large"]
    assert repr(table["f"]).count(" when ") == 2


def test_an_alternative_needs_a_rule_to_fall_back_on():
    table: Registry = Registry("test rule")
    with pytest.raises(ValueError, match="`when=` needs an earlier rule"):
        table.register("g", when=lambda x: True)(lambda x: x)
    assert "g" not in table


def test_reads_are_a_mapping():
    table: Registry = Registry("test rule")
    table.register("a")(len)
    assert "a" in table and table.get("b") is None and list(table) == ["a"] and len(table) == 1
    table["a"] = abs  # assignment replaces outright (monkeypatch.setitem)
    assert table["a"] is abs
    merged = table | {"b": min}
    assert merged == {"a": abs, "b": min} and type(merged) is dict and "b" not in table
    del table["a"]
    assert not table


@pytest.mark.parametrize(
    "table", [OPS, VJP_RULES, JVP_RULES, BATCH_RULES, EMITTERS, PASSES, EXPORTERS, IMPORTERS], ids=lambda t: t.kind
)
def test_every_rule_table_is_a_registry(table):
    assert isinstance(table, Registry) and len(table) > 5


def test_native_import_rules_stand_in_front_of_the_compositions():
    """Conv has a native rule for plain 2-D convolutions in front of the general composition."""
    assert "when" in repr(IMPORTERS["Conv"])
