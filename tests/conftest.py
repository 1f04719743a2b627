"""Shared fixtures and markers.

- Tests that register custom ops, rules or passes leave the tables as they were.
- `@pytest.mark.needs("chromium")` skips a test whose system tool is missing with a reason that says
  what to install (`.ci/run` installs them all), so a skipped check is never silent about its fix.
"""

import shutil
from dataclasses import dataclass

import pytest

from gradkiln.graph import OPS
from gradkiln.lowering.tvm.emitters import EMITTERS
from gradkiln.onnx_io import EXPORTERS, IMPORTERS
from gradkiln.passes import PASSES
from gradkiln.symbolic import BATCH_RULES, JVP_RULES, VJP_RULES

RULE_TABLES = (OPS, VJP_RULES, JVP_RULES, BATCH_RULES, EMITTERS, EXPORTERS, IMPORTERS, PASSES)


@dataclass(frozen=True)
class Tool:
    """A system tool some tests need: what it is, the executables that provide it, how to install it."""

    what: str
    executables: tuple[str, ...]
    install: str


TOOLS = {
    "dot": Tool("Graphviz's dot", ("dot",), "apt-get install graphviz"),
    "chromium": Tool(
        "headless Chromium", ("chromium", "chromium-browser", "google-chrome"), "apt-get install chromium"
    ),
    "nvcc": Tool("the CUDA compiler nvcc", ("nvcc",), "install the CUDA toolkit and put its bin/ on PATH"),
    "g++": Tool("g++", ("g++",), "apt-get install g++"),
}


def missing_tool_reason(name: str) -> str:
    """The skip reason for a missing tool: what it is and the command that installs it."""
    tool = TOOLS[name]
    return f"needs {tool.what} ({' or '.join(tool.executables)} on PATH): {tool.install}"


def tool_path(name: str) -> str | None:
    """The first of the tool's executables on PATH, or None."""
    return next(filter(None, map(shutil.which, TOOLS[name].executables)), None)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(*tools): skip, saying what to install, unless these tools are on PATH")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs"):
        for name in mark.args:
            if name not in TOOLS:
                pytest.fail(f"@pytest.mark.needs({name!r}): unknown tool; known: {sorted(TOOLS)}", pytrace=False)
            if tool_path(name) is None:
                pytest.skip(missing_tool_reason(name))


@pytest.fixture(autouse=True)
def restore_rule_tables():
    saved = [dict(table) for table in RULE_TABLES]
    yield
    for table, before in zip(RULE_TABLES, saved):
        table.clear()
        table.update(before)
