"""Round trip of the ONNX backend test suite's models: import -> export -> import.

For every case that passes on the numpy backend (none listed in expected_failures.txt), the
re-imported graph gives the first import's results on the case's inputs, those match the
suite's expected outputs, and exporting the re-imported graph writes the same multiset of ONNX
ops as the first export (the round trip is stable). Oracles: the suite's reference outputs and
the first import. CI runs a deterministic sample (one case in 8 by a hash of its name, a few
seconds); the full run is marked slow.
"""

from __future__ import annotations

import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx.backend.test.runner import Runner

import gradkiln as gk
from gradkiln.onnx_io.backend import _with_constants
from gradkiln.onnx_io.dtypes import to_onnx_array, widen
from gradkiln.onnx_io.importer import RunTimeValueError, tensor_value
from gradkiln.onnx_io.model_file import default_opset
from gradkiln.testing.onnx_suite import SUITE_FOLDERS, expected_failures, expected_reason, load_case, suite_cases

EXPECTED = expected_failures(Path(__file__).with_name("expected_failures.txt"))
CASES = {f"{c.name}_cpu": c for folder in SUITE_FOLDERS for c in suite_cases(folder)}
PASSING = sorted(name for name in CASES if expected_reason(name, EXPECTED) is None)
SAMPLE_EVERY = 8


def _sampled(name: str) -> bool:
    return zlib.crc32(name.encode()) % SAMPLE_EVERY == 0


def _import(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> tuple[gk.Graph, dict[str, Any], list[str]]:
    """The imported graph, its outputs, and the inputs made constants because an op needs their
    value at import time (as the backend specializes on them)."""
    constants: list[str] = []
    while True:
        try:
            return (*gk.onnx_io.import_model(_with_constants(model, feeds, constants)), constants)
        except RunTimeValueError as err:
            if not err.inputs or set(err.inputs) <= set(constants):
                raise
            constants += [name for name in err.inputs if name not in constants]


def _run(graph: gk.Graph, outputs: dict[str, Any], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    taken = {node.name for node in graph.inputs()}
    with np.errstate(all="ignore"):
        return gk.compile(graph, outputs)(**{k: v for k, v in feeds.items() if k in taken})


def _op_types(model: onnx.ModelProto) -> Counter:
    return Counter(node.op_type for node in model.graph.node)


def check_round_trip(name: str) -> None:
    """import -> export -> import of one suite case: same results, same exported op multiset."""
    model, data_sets = load_case(CASES[name])
    defaults = {t.name: tensor_value(t) for t in model.graph.initializer}
    input_names = [i.name for i in model.graph.input if i.name not in defaults]
    inputs, _ = data_sets[0]
    feeds = {k: widen(np.asarray(v)) for k, v in zip(input_names, inputs)}
    graph, outputs, constants = _import(model, defaults | feeds)
    opset = max(gk.onnx_io.OPSET, default_opset(model))  # the model's, for ops it needs (signed BitShift)
    exported = gk.onnx_io.export(graph, outputs, opset=opset)
    again, again_outputs = gk.onnx_io.import_model(exported)
    assert _op_types(gk.onnx_io.export(again, again_outputs, opset=opset)) == _op_types(exported), "export differs"
    for inputs, expected in data_sets:
        feeds = {k: widen(np.asarray(v)) for k, v in zip(input_names, inputs) if k not in constants}
        first, second = _run(graph, outputs, feeds), _run(again, again_outputs, feeds)
        names = [o.name for o in model.graph.output]
        declared = [o.type.tensor_type.elem_type for o in model.graph.output]  # narrow types round
        got = [to_onnx_array(second[n], code) for n, code in zip(names, declared)]
        Runner.assert_similar_outputs(expected, got, rtol=CASES[name].rtol, atol=CASES[name].atol)
        for n in names:
            np.testing.assert_allclose(second[n], first[n], rtol=1e-6, atol=1e-7, err_msg=n)


@pytest.mark.parametrize("name", [n for n in PASSING if _sampled(n)])
def test_round_trip_of_a_sample_of_the_passing_cases(name):
    check_round_trip(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in PASSING if not _sampled(n)])
def test_round_trip_of_the_other_passing_cases(name):
    check_round_trip(name)
