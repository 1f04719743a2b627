"""A compile cache for TVM executables, so a process that compiles a graph it compiled before loads
the library instead of running TVM again (a cache hit costs milliseconds, a compile seconds).

An entry is a folder named by the key: the library TVM's `export_library` wrote, the compiled
kernel module as TVM JSON (for `.kernels`, `.source()` and profiling) and `manifest.json`, written
last, holding the sha256 of both. Data files carry their hash in their name, so writers racing on
one key never mix halves of two builds: whichever manifest lands last names complete files. Every
file is written atomically; a reader that finds a hash mismatch, a truncated file or an unreadable
manifest warns and rebuilds.

The key is the sha256 of a canonical form of what decides the compiled code: the needed nodes (op,
name, attrs, output types, inputs by position), the selected outputs, the target with all its
options, the compile options, the emitters used, and the gradkiln, TVM and cache-format versions.
Param values are left out (the executable takes them at run time); constants' bytes are hashed in.
A user's emitter is hashed with everything it can read: its code, default arguments, closure cells
and the globals its code names, following the functions it reaches (`_function_state`); an
emitter that reads a value whose state cannot be hashed reliably (an instance of a user class, a
TVM object) gets no key: the graph is compiled without the cache, with a CacheWarning.
"""

from __future__ import annotations

import hashlib
import json
import os
import types
import uuid
import warnings
from functools import cache, partial
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import numpy as np
import sympy
import tvm
import tvm_ffi

from .._version import __version__
from ..atomic import write_atomic, write_atomic_with
from ..graph import Graph, LoweringError, Value
from ..graph.ops.fused import Expressions
from .tvm.quiet import tvm_section

CACHE_FORMAT = 1
CACHE_DIR_VARIABLE = "GRADKILN_CACHE_DIR"
MANIFEST = "manifest.json"


class CacheWarning(RuntimeWarning):
    """A cache entry was unusable (corrupted, truncated, unreadable) and is being rebuilt."""


def cache_root(option: bool | str | os.PathLike[str]) -> Path | None:
    """The cache folder `compile(..., cache=option)` uses: None for False; for True,
    $GRADKILN_CACHE_DIR or ~/.cache/gradkiln; a path is used as given."""
    if option is False:
        return None
    if option is True:
        return Path(os.environ.get(CACHE_DIR_VARIABLE) or Path.home() / ".cache" / "gradkiln")
    if isinstance(option, (str, os.PathLike)):
        return Path(option)
    raise LoweringError(f"cache must be True, False or a folder path, got {option!r}")


def cache_key(
    graph: Graph,
    node_ids: Sequence[int],
    outputs: Sequence[Value],
    target: str,
    options: dict[str, Any],
    emitters: Iterable[Callable[..., Any]],
) -> str | None:
    """The sha256 (hex) naming the cache entry of these nodes compiled for `target` with `options`;
    None (with a CacheWarning) when an emitter reads a value whose state cannot be hashed."""
    try:
        emitter_states = sorted({json.dumps(_emitter_state(fn), sort_keys=True) for fn in emitters})
    except _OpaqueValueError as err:
        warnings.warn(f"not using the compile cache: {err}", CacheWarning, 3)
        return None
    position = {node_id: i for i, node_id in enumerate(node_ids)}
    nodes = [_canonical_node(graph, node_id, position) for node_id in node_ids]
    document = {
        "format": CACHE_FORMAT,
        "versions": [__version__, tvm.__version__, tvm_ffi.__version__, _lowering_sources_digest()],
        "target": target,
        "options": {name: _canonical(value) for name, value in sorted(options.items())},
        "emitters": emitter_states,
        "nodes": nodes,
        "outputs": [[position[v.node], v.index] for v in outputs],
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def _canonical_node(graph: Graph, node_id: int, position: dict[int, int]) -> list[Any]:
    node = graph.node(node_id)
    attrs = {k: v for k, v in node.attrs.items() if not (node.op == "param" and k == "value")}
    types = [[ty.dtype, [str(d) for d in ty.shape]] for ty in node.types]
    inputs = [[position[v.node], v.index] for v in node.inputs]
    return [node.op, node.name, _canonical(attrs), types, inputs]


def _canonical(value: Any) -> Any:
    """A JSON form of an attribute value that is equal exactly when the values are."""
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.ascontiguousarray(value)
        return ["array", array.dtype.str, list(array.shape), hashlib.sha256(array.tobytes()).hexdigest()]
    if isinstance(value, sympy.Basic):
        return ["sympy", sympy.srepr(value)]
    if isinstance(value, Expressions):  # its repr prints numbers to 15 digits: 0.1 and 0.1 + 1e-17 looked alike
        return ["Expressions", [sympy.srepr(e) for e in value]]
    if isinstance(value, dict):
        return ["dict", [[str(k), _canonical(v)] for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))]]
    if isinstance(value, (list, tuple)):
        return [type(value).__name__, [_canonical(v) for v in value]]
    if isinstance(value, float):
        return ["float", repr(value)]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return [type(value).__qualname__, repr(value)]


class _OpaqueValueError(Exception):
    """An emitter reads a value whose state cannot be hashed reliably."""


_LIBRARIES = ("gradkiln", "tvm", "tvm_ffi", "numpy", "sympy", "builtins", "math", "functools", "operator")


def _emitter_state(fn: Callable[..., Any]) -> Any:
    """What decides an emitter's output: gradkiln's own emitters are named (their sources are in
    the key's versions); a user's emitter by its code and everything it can read."""
    if _from_library(fn):
        return ["function", getattr(fn, "__module__", ""), getattr(fn, "__qualname__", repr(fn))]
    return _value_state(fn, set(), f"emitter {getattr(fn, '__qualname__', fn)!r}")


def _from_library(value: Any) -> bool:
    return (getattr(value, "__module__", None) or "").split(".")[0] in _LIBRARIES


def _value_state(value: Any, seen: set[int], where: str) -> Any:
    """A JSON form of a value an emitter reads, equal exactly when the values are; functions are
    followed into their code, defaults, closure cells and globals. Raises _OpaqueValueError otherwise."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return [type(value).__name__, repr(value)]
    if isinstance(value, (np.ndarray, np.generic, sympy.Basic)):
        return _canonical(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_value_state(v, seen, where) for v in value]
        return [type(value).__name__, sorted(items, key=json.dumps) if isinstance(value, (set, frozenset)) else items]
    if isinstance(value, dict):
        pairs = [[_value_state(k, seen, where), _value_state(v, seen, where)] for k, v in value.items()]
        return ["dict", sorted(pairs, key=json.dumps)]
    if isinstance(value, types.ModuleType):
        return ["module", value.__name__]
    if isinstance(value, partial):
        return ["partial", *(_value_state(v, seen, where) for v in (value.func, value.args, value.keywords))]
    if isinstance(value, types.FunctionType) and not _from_library(value):
        return _function_state(value, seen, where)
    if _from_library(value) and isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType, np.ufunc)):
        return ["named", value.__module__, getattr(value, "__qualname__", getattr(value, "__name__", ""))]
    raise _OpaqueValueError(f"{where} reads a {type(value).__qualname__} ({value!r:.60}), whose state cannot be hashed")


def _function_state(fn: types.FunctionType, seen: set[int], where: str) -> Any:
    """A user function's code, defaults, closure cells and the globals its code names."""
    if id(fn) in seen:  # recursion: the function is already being described
        return ["recursive", fn.__qualname__]
    seen.add(id(fn))
    cells = []
    for cell in fn.__closure__ or ():
        try:
            cells.append(_value_state(cell.cell_contents, seen, where))
        except ValueError:  # an empty cell
            cells.append(["empty"])
    return [
        "function",
        fn.__qualname__,
        _code_state(fn.__code__, fn.__globals__, seen, where),
        _value_state(fn.__defaults__, seen, where),
        _value_state(fn.__kwdefaults__, seen, where),
        cells,
    ]


def _code_state(code: types.CodeType, globals_: dict[str, Any], seen: set[int], where: str) -> Any:
    """Bytecode, constants (nested functions' code included) and the globals the code names."""
    consts = [
        _code_state(c, globals_, seen, where) if isinstance(c, types.CodeType) else _value_state(c, seen, where)
        for c in code.co_consts
    ]
    read = {name: _value_state(globals_[name], seen, where) for name in code.co_names if name in globals_}
    return [hashlib.sha256(code.co_code).hexdigest(), list(code.co_names), consts, read]


@cache
def _lowering_sources_digest() -> str:
    """The sha256 of this package's sources: a development checkout that edits the lowering (same
    version number, different code) must not load libraries compiled by the old code."""
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()


class CacheHit(NamedTuple):
    """What a cache entry restores: the loaded library, the kernel module, the schedule rule of
    each kernel, and the library file (for exporting without recompiling)."""

    library: Any
    kernels: tvm.IRModule
    scheduled: dict[str, str]
    library_path: Path


class CompileCache:
    """The cache entries under one folder, one subfolder per key."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def entry(self, key: str) -> Path:
        return self.root / key

    def load(self, key: str | None) -> CacheHit | None:
        """The entry of `key`, or None when there is none, it is unusable (then with a CacheWarning)
        or there is no key (`cache_key` found an emitter it cannot hash)."""
        if key is None:
            return None
        folder = self.entry(key)
        if not (folder / MANIFEST).exists():
            return None
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
            library = _verified(folder, manifest["library"])
            kernels = tvm.ir.load_json(_verified(folder, manifest["kernels"]).read_text())
            return CacheHit(tvm.runtime.load_module(str(library)), kernels, manifest["scheduled"], library)
        except Exception as err:
            warnings.warn(f"compile cache entry {folder} is unusable ({err}); rebuilding it", CacheWarning, 3)
            return None

    def store(
        self, key: str | None, compiled: Any, kernels: tvm.IRModule, scheduled: dict[str, str], target: str
    ) -> Path | None:
        """Write the entry of `key`: the library of `compiled`, the kernel module, then the manifest.
        A failed write (disk full, no linker) warns and leaves no entry: the compile itself stands.
        Without a key nothing is written."""
        if key is None:
            return None
        try:
            return self._store(key, compiled, kernels, scheduled, target)
        except Exception as err:
            warnings.warn(f"cannot store compile cache entry {self.entry(key)}: {err}", CacheWarning, 3)
            return None

    def _store(self, key: str, compiled: Any, kernels: tvm.IRModule, scheduled: dict[str, str], target: str) -> Path:
        folder = self.entry(key)
        with tvm_section():  # TVM's export_library aborts the process when two threads run it at once
            library = _write_content_named(folder / "library.so", lambda tmp: compiled.export_library(str(tmp)))
        kernels_json = tvm.ir.save_json(kernels).encode()
        manifest = {
            "format": CACHE_FORMAT,
            "target": target,
            "library": library,
            "kernels": _write_content_named(folder / "kernels.json", lambda tmp: tmp.write_bytes(kernels_json)),
            "scheduled": scheduled,
        }
        return write_atomic(folder / MANIFEST, json.dumps(manifest, indent=1).encode())


def _write_content_named(path: Path, write: Callable[[Path], object]) -> dict[str, str]:
    """Let `write` fill a file private to this writer, then rename it to `path` with its sha256 in
    the name; returns the manifest record. Racing writers thus never rename over each other's halves."""
    private = write_atomic_with(path.with_name(f".{path.stem}-{uuid.uuid4().hex}{path.suffix}"), write)
    digest = _sha256(private)
    named = path.with_name(f"{path.stem}-{digest[:16]}{path.suffix}")
    os.replace(private, named)
    return {"file": named.name, "sha256": digest}


def _verified(folder: Path, record: dict[str, str]) -> Path:
    path = folder / record["file"]
    digest = _sha256(path)
    if digest != record["sha256"]:
        raise LoweringError(f"{path.name} has sha256 {digest[:16]}..., the manifest says {record['sha256'][:16]}...")
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
