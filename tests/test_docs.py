"""Every ```python block of README.md and docs/**/*.md runs as written, the scripts in examples/ run, and
the README names the system packages `.ci/run` installs for the tests.

A block runs on its own: in a fresh namespace (it names its own imports and builds its own graph),
in the current process (TVM is imported once), with its stdout captured. The blocks of one
document share a temporary folder and run in document order, as for a reader working through the
page in one folder: the ONNX guide's import example reads the `model.onnx` its export example
wrote. `GRADKILN_CACHE_DIR` points into that folder, so `cache=True` writes nowhere else.

An HTML comment on the line before a block says what it needs beyond the test extra:
`<!-- doc-test: needs dot -->` names tools as `@pytest.mark.needs` in `tests/conftest.py` takes
them (the block is skipped with the install command when one is missing);
`<!-- doc-test: skip (why) -->` marks a block that cannot run on any test machine (it needs a
CUDA GPU, say). Skips are counted: see `NEVER_RUN_LIMIT`.
"""

import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
FENCE = re.compile(r"^( *)```python\n(.*?)^\1```$", re.S | re.M)
MARKER = re.compile(r"<!-- doc-test: (needs [\w+.-]+(?: [\w+.-]+)*|skip \(.+?\)) -->")
NEVER_RUN_LIMIT = 0  # blocks marked `skip`: none today; raise this only with a reason in the marker


@dataclass(frozen=True)
class Block:
    """One ```python block: where it is, its code (dedented) and its doc-test marker, if any."""

    path: Path
    line: int  # 1-based line of the first code line
    code: str
    marker: str | None

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    """The ```python blocks of one markdown file, in order."""
    text = path.read_text()
    blocks = []
    for fence in FENCE.finditer(text):
        before = text[: fence.start()]  # ends with the newline of the line before the fence
        marker = MARKER.fullmatch(before[:-1].rpartition("\n")[2].strip())
        line = before.count("\n") + 2
        blocks.append(Block(path, line, textwrap.dedent(fence.group(2)), marker.group(1) if marker else None))
    return blocks


BLOCKS = [block for path in DOCUMENTS for block in blocks_of(path)]


@pytest.fixture(scope="module")
def doc_folders():
    """Per document: [its shared folder, how many of its blocks have run there]."""
    return {}


def run_block(block: Block, folder: Path, monkeypatch) -> None:
    """Execute one block in a fresh namespace with `folder` as the working directory; tracebacks
    name the markdown file and its line numbers."""
    monkeypatch.chdir(folder)
    monkeypatch.setenv("GRADKILN_CACHE_DIR", str(folder / "gradkiln-cache"))
    code = compile("\n" * (block.line - 1) + block.code, str(block.path), "exec")
    exec(code, {"__name__": "__doc_block__"})


def marks(block: Block) -> list[pytest.MarkDecorator]:
    """The pytest marks a block's doc-test marker stands for."""
    if block.marker is None:
        return []
    kind, _, rest = block.marker.partition(" ")
    if kind == "skip":
        return [pytest.mark.skip(reason=f"{block.name} is marked {block.marker}")]
    return [pytest.mark.needs(*rest.split())]


@pytest.mark.parametrize("block", [pytest.param(block, marks=marks(block), id=block.name) for block in BLOCKS])
def test_doc_block_runs_as_written(block, doc_folders, tmp_path_factory, monkeypatch):
    siblings = blocks_of(block.path)
    index = siblings.index(block)
    if block.path not in doc_folders:
        doc_folders[block.path] = [tmp_path_factory.mktemp(block.path.stem), 0]
    folder, done = doc_folders[block.path]
    for earlier in siblings[done:index]:  # run alone (-k): first the unmarked blocks the page has before it
        if earlier.marker is None:
            run_block(earlier, folder, monkeypatch)
    run_block(block, folder, monkeypatch)
    doc_folders[block.path][1] = index + 1


def test_every_python_block_is_collected_and_every_marker_is_known():
    for path in DOCUMENTS:
        text = path.read_text()
        assert len(blocks_of(path)) == len(re.findall(r"^ *```python$", text, re.M)), path
        markers = re.findall(r"<!-- doc-test:.*?-->", text)
        assert len(markers) == sum(block.marker is not None for block in blocks_of(path)), (
            f"{path.name}: a doc-test marker is malformed or not on the line before a ```python block: {markers}"
        )
    assert len(BLOCKS) >= 33


def test_blocks_are_read_with_their_markers_dedented_and_numbered(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# t\n\n<!-- doc-test: needs dot g++ -->\n```python\nx = 1\n```\n\n"
        "- item:\n\n  ```python\n  y = 2\n  ```\n<!-- doc-test: skip (needs a CUDA GPU) -->\n```python\nz\n```\n"
    )
    blocks = blocks_of(page)
    assert [(b.line, b.code, b.marker) for b in blocks] == [
        (5, "x = 1\n", "needs dot g++"),
        (11, "y = 2\n", None),
        (15, "z\n", "skip (needs a CUDA GPU)"),
    ]
    assert [m.name for b in blocks for m in marks(b)] == ["needs", "skip"]


def test_blocks_that_never_run_are_few():
    never = [block.name for block in BLOCKS if block.marker and block.marker.startswith("skip")]
    assert len(never) <= NEVER_RUN_LIMIT, never


def run_python(path: Path, cwd: Path) -> str:
    result = subprocess.run([sys.executable, str(path)], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    run_python(script, tmp_path)


def test_the_readme_names_every_system_package_ci_installs():
    """`.ci/run` installs system packages the tests need; the README lists them beside the test command."""
    ci = (ROOT / ".ci" / "run").read_text()
    packages = {
        word for line in re.findall(r"apt-get install ([^>\n]*)", ci) for word in line.split() if word[0] != "-"
    }
    command = re.search(r"^apt-get update && apt-get install -y ([\w .-]+)$", (ROOT / "README.md").read_text(), re.M)
    assert packages and command and packages <= set(command.group(1).split()), (packages, command)
