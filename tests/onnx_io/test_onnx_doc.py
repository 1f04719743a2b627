"""docs/onnx.md: its code runs as written, and its op lists are generated from the rule tables."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "onnx.md"


def test_the_op_lists_in_docs_onnx_md_are_current():
    script = ROOT / "docs" / "gen_onnx_ops.py"
    result = subprocess.run([sys.executable, str(script), "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_code_in_docs_onnx_md_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write model.onnx
    code = "\n".join(re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S))
    exec(compile(code, str(DOC), "exec"), {})
    assert (tmp_path / "model.onnx").stat().st_size > 0
