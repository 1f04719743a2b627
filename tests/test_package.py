"""`import gradkiln` is cheap; the public API loads whole on the first attribute read, in any
thread, and every layer imports on its own (no import-order cycle)."""

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

import gradkiln as gk

ROOT = Path(__file__).resolve().parents[1]


def run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120).stdout


def test_import_gradkiln_loads_nothing_heavy_until_an_attribute_is_read():
    out = run(
        "import sys, gradkiln; heavy = ('sympy', 'networkx', 'onnx', 'gradkiln.graph'); "
        "print(any(m in sys.modules for m in heavy)); gradkiln.Graph; "
        "from gradkiln.graph import ir; print(all(m in sys.modules for m in heavy), ir._svg_renderer is not None)"
    )
    assert out.split() == ["False", "True", "True"]  # viz installed the notebook renderer, as an eager import did


def test_the_public_names_are_the_api_modules_names():
    namespace: dict = {}
    exec("from gradkiln import *", namespace)
    names = set(namespace) - {"__builtins__"}
    assert {"Graph", "grad", "compile", "tanh", "viz", "onnx_io"} <= names == set(gk.__all__)
    assert "grad" in dir(gk) and gk.__version__
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        gk.no_such_name  # noqa: B018


def test_two_threads_reading_the_api_first_both_get_it():
    out = run(
        "import threading, gradkiln; got = []\n"
        "def read(): got.append(gradkiln.Graph.__name__ + gradkiln.grad.__name__)\n"
        "threads = [threading.Thread(target=read) for _ in range(4)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]; print(sorted(got))"
    )
    assert out.strip() == str(["Graphgrad"] * 4)


@pytest.mark.parametrize("module", ["gradkiln.passes", "gradkiln.viz", "gradkiln.lowering.executable"])
def test_each_layer_imports_first(module):
    assert run(f"import {module}; print('ok')").strip() == "ok"


MODULES = {
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
    for path in sorted((ROOT / "gradkiln").rglob("*.py"))
}


def imported_modules(path: Path) -> set[str]:
    """The gradkiln modules a source file imports, at the top or inside functions (relative imports
    resolved against its package, `from package import module` read as the module); imports under
    `if TYPE_CHECKING:` are for type hints only and do not count."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    tree = ast.parse(path.read_text())
    hints = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in hints:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
            if node.level or module.startswith("gradkiln"):
                found |= {f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names}
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("gradkiln"))
    return found


def test_the_ir_imports_no_layer_above_it():
    """graph/ is the bottom layer: nothing in it may import symbolic, passes, lowering, onnx_io, viz or the API."""
    outside = {
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sorted((ROOT / "gradkiln" / "graph").rglob("*.py"))
        for module in imported_modules(path)
        if not module.startswith("gradkiln.graph")
    }
    assert not outside, sorted(outside)


# The layers bottom up; a module may import its own layer and those below. Top-level modules that
# import nothing of gradkiln (atomic, _version, progress) serve every layer; the rest of the top
# level (the API, the command, check, trace, testing, deploy, random) sits above all layers.
LAYER_ORDER = {"graph": 0, "symbolic": 1, "passes": 2, "lowering": 3, "onnx_io": 4, "viz": 4, "distributed": 5}
SHARED = {"gradkiln", "gradkiln.atomic", "gradkiln._version", "gradkiln.progress"}


def layer(module: str) -> int:
    if module in SHARED:
        return -1
    return LAYER_ORDER.get(module.split(".")[1], len(LAYER_ORDER))


def test_the_shared_top_level_modules_import_no_layer():
    assert not {m for s in SHARED - {"gradkiln"} for m in imported_modules(MODULES[s]) if m in MODULES}


def test_layers_import_only_downwards():
    """graph <- symbolic <- passes <- lowering <- onnx_io, viz <- distributed <- the API and the command."""
    upwards = {
        f"{module} imports {imported}"
        for module, path in MODULES.items()
        for imported in imported_modules(path)
        if imported in MODULES and layer(imported) > layer(module)
    }
    assert not upwards, sorted(upwards)


def test_no_import_cycle():
    """No two modules import each other, directly or through others: each layer loads bottom up, and
    inside a layer each module can be read (and imported) before the ones that use it. Tensor's
    operators are installed by the builder, so even graph/tensor.py and the builder are no circle."""
    graph = nx.DiGraph()
    for module, path in MODULES.items():
        graph.add_node(module)
        graph.add_edges_from((module, m) for m in imported_modules(path) if m in MODULES and m != module)
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert not cycles, cycles
