"""The ONNX backend test suite shipped inside `onnx`, as gradkiln's conformance tests, round-trip
tests and benchmark read it: its cases per folder, each case's model and data sets, and the
reviewed list of expected failures (one regular expression and reason per line)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import onnx.backend.test
from onnx import numpy_helper
from onnx.backend.test.loader import load_model_tests

SUITE_FOLDERS = ("node", "simple", "pytorch-converted", "pytorch-operator")
DataSets = list[tuple[list[np.ndarray], list[np.ndarray]]]


def suite_cases(folder: str) -> list[Any]:
    """The cases of one folder of the suite (onnx's case generators warn on purpose: silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return load_model_tests(kind=folder)


def backend_cases(backend: Any, module: str, chosen: re.Pattern | None = None) -> dict[str, Any]:
    """{test name: its unittest class} of onnx's generated tests of `backend` (for the test module
    named `module`) in the four folders (not "real": its CNNs need the slow reference evaluator),
    those whose name `chosen` matches if given."""
    with warnings.catch_warnings():  # onnx's case generators divide by zero on purpose
        warnings.simplefilter("ignore", RuntimeWarning)
        suite = onnx.backend.test.BackendTest(backend, module).test_cases
    return {
        name: test_case
        for folder, test_case in suite.items()
        if folder != "OnnxBackendRealModelTest"
        for name in dir(test_case)
        if name.startswith("test_") and name.endswith("_cpu") and (chosen is None or chosen.search(name))
    }


def load_case(case: Any) -> tuple[onnx.ModelProto, DataSets]:
    """The model of a suite case and its (inputs, expected outputs) data sets, in memory or from disk."""
    if case.model is not None:
        return case.model, [([_array(i) for i in ins], [_array(o) for o in outs]) for ins, outs in case.data_sets]
    folder = Path(case.model_dir)
    sets = [(_tensors(d, "input"), _tensors(d, "output")) for d in sorted(folder.glob("test_data_set*"))]
    return onnx.load(str(folder / "model.onnx")), sets


def expected_failures(path: Path) -> dict[re.Pattern, str]:
    """{pattern: reason} from a reviewed list: `regex | reason` per line, `#` starts a comment line."""
    entries = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            pattern, reason = (part.strip() for part in line.split(" | ", 1))
            entries[re.compile(pattern)] = reason
    return entries


def expected_reason(name: str, entries: dict[re.Pattern, str]) -> str | None:
    """Why case `name` (as `test_<case>_cpu`) is expected to fail, or None."""
    return next((reason for pattern, reason in entries.items() if pattern.search(name)), None)


def run_strictly(run: Callable[[], None], name: str, entries: dict[re.Pattern, str], listed_in: str) -> None:
    """Run case `name` (`run` raises when it fails): a case without an entry must pass, a listed
    case must fail (strict, like `xfail(strict=True)`), so that a fix removes its entry."""
    reason = expected_reason(name, entries)
    if reason is None:
        run()
        return
    try:
        run()
    except Exception:
        return  # fails, as listed
    raise AssertionError(f"{name} passes now: remove its entry from {listed_in} (listed as: {reason})")


def _tensors(folder: Path, prefix: str) -> list[np.ndarray]:
    files = sorted(folder.glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    return [numpy_helper.to_array(onnx.load_tensor(str(f))) for f in files]


def _array(value: Any) -> Any:
    return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else value
