"""The ONNX backend test suite that ships inside `onnx`, run through gradkiln's numpy backend.

Every CPU case of the node, simple, pytorch-converted and pytorch-operator folders runs. The
cases listed in expected_failures.txt must fail, and a listed case that passes fails this test
(strict, like `xfail(strict=True)`, without one report line per expected failure), so a fix
removes its entry. The "real" folder is excluded: its nine models are CNNs that need Conv,
which gradkiln's op table lacks, and the runner computes their reference outputs with onnx's
slow reference evaluator.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gradkiln.onnx_io.backend import GradkilnBackend
from gradkiln.testing.onnx_suite import backend_cases, expected_failures, run_strictly

EXPECTED_FAILURES = Path(__file__).with_name("expected_failures.txt")
EXPECTED = expected_failures(EXPECTED_FAILURES)
CASES = backend_cases(GradkilnBackend, __name__)


@pytest.mark.parametrize("name", sorted(CASES))
def test_onnx_backend_case(name):
    run_strictly(CASES[name](name).debug, name, EXPECTED, EXPECTED_FAILURES.name)


def test_every_expected_failure_matches_cases_and_gives_a_reason():
    for pattern, reason in EXPECTED.items():
        assert reason, f"{pattern.pattern}: say why it fails"
        assert any(pattern.search(name) for name in CASES), f"{pattern.pattern} matches no case: remove it"
