"""Hostile ONNX files: import refuses them with an ONNXError naming the node and the limit, before
allocating what they ask for and without hanging (gradkiln/testing/hostile_onnx.py holds them).

Imports that could hang or allocate gigabytes if a guard regressed run in a child process under a
timeout, which also reports each import's wall time and peak memory growth."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import onnx
import onnx.reference
import pytest
from onnx import TensorProto, helper

import gradkiln as gk
from gradkiln.onnx_io import import_model
from gradkiln.onnx_io.import_limits import ImportLimits
from gradkiln.testing.hostile_onnx import constant_of_shape_model, counting_loop_body, hostile_models, loop_model

CASES = {case.name: case for case in hostile_models()}
SECONDS_PER_CASE = 15  # the unrolled loops take 1-3 s on an idle core
PEAK_GROWTH_MIB = 512  # the largest case asks for 8 TiB

_CHILD = """
import json, resource, sys, time
from gradkiln.onnx_io import import_model
for path in sys.argv[1:]:
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    try:
        import_model(path)
        kind, message = None, ""
    except Exception as err:
        kind, message = [c.__name__ for c in type(err).__mro__], str(err)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"path": path, "kinds": kind, "message": message, "seconds": time.perf_counter() - start,
                      "grown_mib": grown / 1024}), flush=True)
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, dict]:
    """Every corpus model imported once in one child process (each in its own folder)."""
    paths = {name: str(case.write(tmp_path_factory.mktemp(name))) for name, case in CASES.items()}
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, *paths.values()],
        capture_output=True,
        text=True,
        timeout=SECONDS_PER_CASE * len(CASES),
    )
    rows = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    by_path = {row["path"]: row for row in rows}
    return {name: by_path.get(path, {"kinds": None, "message": run.stderr[-2000:]}) for name, path in paths.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_hostile_model_is_refused_quickly_with_a_clear_onnx_error(outcomes, name):
    outcome = outcomes[name]
    assert outcome["kinds"] and "ONNXError" in outcome["kinds"], outcome["message"]
    assert re.search(CASES[name].match, outcome["message"], re.S), outcome["message"]
    assert outcome["seconds"] < SECONDS_PER_CASE
    assert outcome["grown_mib"] < PEAK_GROWTH_MIB


def test_the_size_limit_names_the_node_and_how_to_raise_it():
    with pytest.raises(gk.ONNXError) as info:
        import_model(CASES["constant_of_shape_2_40"].data)
    message = str(info.value)
    assert "ConstantOfShape node 'fill'" in message and "1099511627776 elements" in message
    assert "max_value_elements=16777216" in message and "ImportLimits(max_value_elements=" in message


def test_a_raised_limit_imports_the_value_numpy_gives():
    data = constant_of_shape_model(1 << 17)
    with pytest.raises(gk.ONNXError, match="max_value_elements=65536"):
        import_model(data, limits=ImportLimits(max_value_elements=1 << 16))
    graph, outputs = import_model(data, limits=ImportLimits(max_value_elements=1 << 17))
    np.testing.assert_array_equal(gk.compile(graph, outputs)()["y"], np.full(1 << 17, 7, np.int64))


def test_the_total_limit_counts_every_value_evaluated_at_import():
    nodes = [helper.make_node("Constant", [], ["s"], value_ints=[1000])]
    nodes += [helper.make_node("ConstantOfShape", ["s"], [f"c{k}"]) for k in range(3)]
    nodes += [helper.make_node("Concat", ["c0", "c1", "c2"], ["y"], axis=0)]
    graph = helper.make_graph(nodes, "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3000])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(gk.ONNXError, match=r"ConstantOfShape.*max_total_elements=2500"):
        import_model(model, limits=ImportLimits(max_total_elements=2500))
    assert import_model(model, limits=ImportLimits(max_total_elements=6000))[1]["y"].shape == (3000,)  # 3 + 3 thousand


def test_nested_unrolled_loops_share_one_iteration_budget():
    nested = onnx.load_model_from_string(CASES["nested_loops_2_24"].data)
    limits = ImportLimits(max_unrolled_steps=100, max_unrolled_nodes=1 << 30)
    inner = r"Loop node: importing Loop node: .*steps unrolled at import time to 101.*max_unrolled_steps=100"
    with pytest.raises(gk.ONNXError, match=inner):
        import_model(nested, limits=limits)


def test_a_loop_unrolled_under_the_limits_gives_the_reference_result():
    """A Loop whose condition is known at import time unrolls; the value matches onnx's reference."""
    true = helper.make_node("Constant", [], ["t"], value=onnx.numpy_helper.from_array(np.array(True), "t"))
    model = onnx.load_model_from_string(loop_model("", "t", counting_loop_body(until=40), [true]))
    expected = onnx.reference.ReferenceEvaluator(model).run(None, {})[0]
    graph, outputs = import_model(model)
    assert gk.compile(graph, outputs)()["v"] == expected == 41


def test_a_model_at_the_newest_known_opset_still_imports():
    newest = onnx.defs.onnx_opset_version()
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "g", [x], [x])
    graph.output[0].name = "y"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", newest)])
    g, outputs = import_model(model)
    np.testing.assert_array_equal(gk.compile(g, outputs)(x=np.array([1.0, -2.0], np.float32))["y"], [-1.0, 2.0])


def test_random_bit_flips_import_or_raise_a_gradkiln_error_in_time():
    """300 seeded mutants of valid and hostile models, in a child process so a hang fails instead."""
    script = (
        "from gradkiln.testing.hostile_onnx import flip_fuzz, fuzz_seeds\n"
        "print('\\n'.join(flip_fuzz(fuzz_seeds(), 300, seed=17, time_bound=10.0)))"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == ""
