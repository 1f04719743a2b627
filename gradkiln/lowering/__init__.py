"""Backends behind one `compile()`: the numpy reference executor and TVM (llvm CPU and GPU targets)."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Iterator, Sequence

from ..graph import Graph, LoweringError
from ..graph.outputs import normalize_outputs, restructure
from ..passes.manager import optimize as run_passes
from .executable import Executable
from .numpy.backend import NumpyExecutable


@contextlib.contextmanager
def _torch_hidden() -> Iterator[None]:
    """While TVM is first imported: apache-tvm-ffi imports torch whenever it is installed (a
    workaround for a symbol clash on Windows), 1.4 s of a 2.1 s import here, and gradkiln never
    hands torch tensors to TVM. torch imports normally afterwards; one already imported stays."""
    if "torch" in sys.modules:
        yield
        return
    sys.modules["torch"] = None  # `import torch` raises ImportError meanwhile
    try:
        yield
    finally:
        del sys.modules["torch"]


def _tvm_backend(graph: Graph, outputs: Any, target: Any, **options: Any) -> Executable:
    with _torch_hidden():
        from .tvm.backend import TVMExecutable  # imported lazily: TVM takes ~0.7 s to import
    from .tvm.emitters.collective import refuse_collectives
    from .tvm.emitters.complex import refuse_complex

    refuse_complex(graph, outputs, target)
    refuse_collectives(graph, outputs, target)
    return TVMExecutable(graph, outputs, target, **options)


BACKENDS: dict[str, Callable[..., Executable]] = {
    "numpy": lambda graph, outputs, target, **options: NumpyExecutable(graph, outputs, **options),
    "llvm": _tvm_backend,
    "cpu": _tvm_backend,
    **dict.fromkeys(("cuda", "metal", "webgpu", "opencl"), _tvm_backend),
}

# why an option some backend takes is missing from another (added to the error message)
OPTION_NOTES: dict[str, str] = {
    "memory_plan": "the memory plan drives the numpy executor; TVM plans its own memory",
}

# the keyword options each backend's executable takes (checked so a misspelt one is a clear error)
BACKEND_OPTIONS: dict[str, frozenset[str]] = {
    "numpy": frozenset({"memory_plan", "detect_anomaly"}),
    "llvm": frozenset({"schedule", "cache", "detect_anomaly"}),
    "cpu": frozenset({"schedule", "cache", "detect_anomaly"}),
    **dict.fromkeys(
        ("cuda", "metal", "webgpu", "opencl"), frozenset({"cache", "detect_anomaly"})
    ),  # dlight schedules GPU kernels
}


def compile(
    graph: Graph,
    outputs: Any,
    target: Any = "numpy",
    optimize: str | Sequence[str] | None = None,
    **options: Any,
) -> Executable:
    """Compile the part of `graph` that `outputs` needs for `target`: "numpy", "llvm"/"cpu", a GPU
    kind ("cuda", "metal", "webgpu", "opencl") or a TVM target dict (`{"kind": "cuda", "arch": "sm_90"}`).

    `outputs` is a tensor, a node name, or a list or dict of them; the executable returns the
    same structure of numpy arrays when called with named numpy arrays. `optimize` names a
    pass pipeline ("O1") or lists passes, run on a copy of the graph first. TVM targets take
    `cache=True` (or a folder) to load the compiled library from the compile cache when this
    graph was compiled before (docs/targets.md).
    """
    kind = target.get("kind") if isinstance(target, dict) else target
    if kind not in BACKENDS:
        raise LoweringError(f"unknown target {target!r}; available: {', '.join(BACKENDS)}")
    unknown = sorted(set(options) - BACKEND_OPTIONS[kind])
    if unknown:
        raise LoweringError(
            f"target {kind!r} takes no option {', '.join(unknown)}; its options: "
            f"{', '.join(sorted(BACKEND_OPTIONS[kind])) or 'none'}"
            + "".join(f"; {OPTION_NOTES[name]}" for name in unknown if name in OPTION_NOTES)
        )
    if optimize is not None:
        values, structure = normalize_outputs(graph, outputs)
        graph, values, _ = run_passes(graph, values, optimize)
        outputs = restructure(values, structure)
    return BACKENDS[kind](graph, outputs, target, **options)


__all__ = ["BACKENDS", "Executable", "NumpyExecutable", "compile"]
