"""The code base stays `ruff check` and `ruff format` clean (configuration in pyproject.toml)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_is_clean(command):
    result = subprocess.run([sys.executable, "-m", "ruff", *command, "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_graphs_networkx_stays_inside_the_ir():
    """Only graph/ touches `Graph.nx`: passes, lowering and the rest use the Graph's own accessors."""
    reaches = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "gradkiln").rglob("*.py"))
        if "graph" not in path.relative_to(ROOT / "gradkiln").parts[:1]
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\.nx\b", line)
    ]
    assert not reaches, reaches
