"""The README's "Seeing the graph" example runs as written and writes what it says."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_seeing_the_graph_example_runs(tmp_path):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"## Seeing the graph\n\n(?:<!--.*?-->\n)?```python\n(.*?)```", readme, re.S).group(1)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 0 < (tmp_path / "grad.svg").read_text().count('class="node"') <= 30  # max_nodes=30
    assert "Memory plan" in (tmp_path / "report.html").read_text()
    assert (ROOT / "docs" / "images" / "report.png").read_bytes()[:4] == b"\x89PNG"
