"""Deployment bundles: a compiled graph as files that run with TVM's runtime and numpy, no gradkiln.

    from gradkiln.deploy import write_bundle
    write_bundle(gk.compile(graph, outputs, target="llvm"), "out/model.so")

writes, in `out/`: the artifact (`model.so`), its manifest (`model.so.json`: argument order, dtypes
and shapes as data, outputs), the params' values (`model.so.params.npz`), `requirements.txt` with
the exact TVM runtime this artifact was built with, and `run.py`, a standalone loader (module and
script; this package's `run.py`, copied). `gradkiln compile` writes the same bundle.

Why the pins: the artifact calls into the TVM runtime it was compiled against, and a plain
`pip install apache-tvm` resolves apache-tvm-ffi to a later release that segfaults (docs/targets.md).
"""

from __future__ import annotations

import io
import json
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import sympy

from ..atomic import write_atomic
from ..graph import LoweringError, Value
from ..lowering.executable import Executable

FORMAT = 1  # the manifest layout run.py reads
RUNTIME_DISTRIBUTIONS = ("apache-tvm", "apache-tvm-ffi")  # pinned to the versions installed here
LOADER = Path(__file__).with_name("run.py")
REQUIREMENTS = "requirements.txt"
MARKER = "# written by gradkiln"  # the first line of the files a bundle may replace


class Bundle(NamedTuple):
    """The files `write_bundle` wrote; `requirements` and `loader` are None where run.py cannot load
    the artifact (GPU targets, `.tar` archives of objects for another machine to link)."""

    artifact: Path
    manifest: Path
    params: Path
    requirements: Path | None
    loader: Path | None


def write_bundle(executable: Executable, path: str | Path) -> Bundle:
    """Export a TVM-compiled `executable` to `path` and write beside it the manifest and the params;
    for an llvm `.so`, also `requirements.txt` and `run.py`. Each file is written atomically."""
    if not hasattr(executable, "export"):
        raise LoweringError(
            f"a deployment bundle holds a TVM artifact; compile for a TVM target (e.g. target='llvm'), "
            f"not {executable.target!r}"
        )
    loadable = executable.target == "llvm" and Path(path).suffix == ".so"
    if loadable:
        for name in (REQUIREMENTS, LOADER.name):
            _check_ours(Path(path).with_name(name))
    artifact = executable.export(path)
    params = write_atomic(artifact.with_name(f"{artifact.name}.params.npz"), _npz(executable))
    manifest = write_atomic(
        artifact.with_name(f"{artifact.name}.json"),
        json.dumps(manifest_of(executable, artifact.name, params.name), indent=1).encode(),
    )
    if not loadable:
        return Bundle(artifact, manifest, params, None, None)
    requirements = write_atomic(artifact.with_name(REQUIREMENTS), requirements_text().encode())
    loader = write_atomic(artifact.with_name("run.py"), LOADER.read_bytes())
    return Bundle(artifact, manifest, params, requirements, loader)


def manifest_of(executable: Executable, artifact: str, params_file: str) -> dict[str, Any]:
    """What run.py needs: the VM function, the arguments in calling order and the outputs, with
    shapes as data (an int, a symbol's name, or {"expr": "2*N"})."""
    graph = executable.graph
    arguments = [graph.by_name(name) for name in executable.argument_names]
    return {
        "format": FORMAT,
        "graph": graph.name,
        "artifact": artifact,
        "device": "cpu" if executable.target == "llvm" else executable.target,
        "function": "main",
        "arguments": [{"name": n.name, "kind": n.op, **_type_record(n.outputs[0], executable)} for n in arguments],
        "params_file": params_file,
        "outputs": [
            {"name": name, **_type_record(value, executable)}
            for name, value in zip(executable.output_names, executable.output_values)
        ],
        "structure": executable.structure,
    }


def requirements_text() -> str:
    """requirements.txt: the TVM runtime gradkiln compiles with, exactly, and numpy."""
    pins = [f"{name}=={metadata.version(name)}" for name in RUNTIME_DISTRIBUTIONS]
    return f"{MARKER}: the TVM runtime the artifacts were compiled with (later apache-tvm-ffi releases segfault)\n" + (
        "\n".join([*pins, "numpy>=1.26"]) + "\n"
    )


def _check_ours(path: Path) -> None:
    """Refuse to replace a requirements.txt or run.py that gradkiln did not write (before any work)."""
    if path.exists() and MARKER.encode() not in path.read_bytes()[:200]:
        raise LoweringError(
            f"{path} exists and was not written by gradkiln; write the artifact into a folder of its own "
            "(the bundle adds requirements.txt and run.py beside it)"
        )


def _type_record(value: Value, executable: Executable) -> dict[str, Any]:
    ty = executable.graph.type_of(value)
    return {"dtype": ty.dtype, "shape": [_dim(d) for d in ty.shape]}


def _dim(dim: Any) -> int | str | dict[str, str]:
    if isinstance(dim, (int, sympy.Integer)):
        return int(dim)
    if isinstance(dim, sympy.Symbol):
        return dim.name
    return {"expr": str(dim)}


def _npz(executable: Executable) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{n.name: n.attrs["value"] for n in executable.param_nodes})
    return buffer.getvalue()
