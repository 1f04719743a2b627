"""The README's example and the scripts in examples/ run as written."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_python(code_or_path, cwd):
    args = (
        [sys.executable, str(code_or_path)] if isinstance(code_or_path, Path) else [sys.executable, "-c", code_or_path]
    )
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_readme_example_runs_and_writes_its_files(tmp_path):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"## A minimal example\n\n```python\n(.*?)```", readme, re.S).group(1)
    out = run_python(code, tmp_path)
    assert "matmul(%x, %w)" in out
    assert (tmp_path / "mlp.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "mlp.onnx").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    run_python(script, tmp_path)
