"""Shared fixtures: tests that register custom ops, rules or passes leave the tables as they were."""

import pytest

from gradkiln.graph import OPS
from gradkiln.lowering.tvm_emitters import EMITTERS
from gradkiln.onnx_io import EXPORTERS, IMPORTERS
from gradkiln.passes import PASSES
from gradkiln.symbolic import BATCH_RULES, JVP_RULES, VJP_RULES

RULE_TABLES = (OPS, VJP_RULES, JVP_RULES, BATCH_RULES, EMITTERS, EXPORTERS, IMPORTERS, PASSES)


@pytest.fixture(autouse=True)
def restore_rule_tables():
    saved = [dict(table) for table in RULE_TABLES]
    yield
    for table, before in zip(RULE_TABLES, saved):
        table.clear()
        table.update(before)
