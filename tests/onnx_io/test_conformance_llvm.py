"""The ONNX backend test suite through GradkilnTVMBackend (llvm), for the cases CI can afford: those
of the numerics the llvm build once got wrong (IsNaN, Mod's edge cases, attention with masked rows
and in float16 and bfloat16, reshape to zero-size dims, TopK of uint64, reductions over empty sets,
dilated pools, large-number softmax). The numpy backend's expected failures apply (an op gradkiln
cannot import fails on every target) and expected_failures_llvm.txt lists llvm's own, strictly.
`benchmarks/onnx_conformance.py --backends numpy,llvm` runs every case.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradkiln.onnx_io.backend import GradkilnTVMBackend
from gradkiln.testing.onnx_suite import backend_cases, expected_failures, run_strictly

HERE = Path(__file__).parent
LLVM_FAILURES = HERE / "expected_failures_llvm.txt"
EXPECTED_LLVM = expected_failures(LLVM_FAILURES)
EXPECTED = expected_failures(HERE / "expected_failures.txt") | EXPECTED_LLVM
CHOSEN = re.compile(
    r"^test_(isnan|isinf|mod_|attention_4d_(fp16|attn_mask_bool)|attention_3d_causal_bf16_expanded|reshape|top_k"
    r"|reduce_.*empty|MaxPool2d_stride_padding_dilation|averagepool_3d_dilations_large|(log)?softmax_large_number"
    r"|clip_min_greater|(max|min)_float16)"
)
CASES = backend_cases(GradkilnTVMBackend, __name__, CHOSEN)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_onnx_backend_case_on_llvm(name):
    run_strictly(CASES[name](name).debug, name, EXPECTED, LLVM_FAILURES.name)


def test_the_chosen_cases_exist_and_llvm_failures_give_a_reason():
    assert len(CASES) > 60
    for pattern, reason in EXPECTED_LLVM.items():
        assert reason, f"{pattern.pattern}: say why it fails"
        assert any(pattern.search(name) for name in CASES), f"{pattern.pattern} matches no chosen case"
