# written by gradkiln (gradkiln/deploy/run.py): a standalone loader, no gradkiln needed
"""Run a model `gradkiln compile` wrote, with TVM's runtime and numpy only (no gradkiln).

    pip install -r requirements.txt
    python run.py model.so inputs.npz -o outputs.npz      # inputs by name in an .npz

    from run import load
    model = load("model.so")
    outputs = model(x=x)            # or model(x): positionally in the manifest's argument order

`model.so.json` (the manifest) lists the arguments (the inputs, then the params, with dtype and
shape: ints, and names for symbolic dims bound by the call) and the outputs; the params' values sit
in `model.so.params.npz` and may be overridden by name. Calls check names, dtypes and shapes before
TVM sees them; outputs come back as numpy arrays in the structure the model was compiled with (an
array, a list, or a dict by name). Set GRADKILN_DEBUG=1 to see TVM's own log lines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import tvm
from tvm.runtime.vm import VirtualMachine

FORMAT = 1


class Model:
    """A loaded artifact: call it with numpy arrays, positionally or by name."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        self.manifest = json.loads(path.with_name(f"{path.name}.json").read_text())
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{path.name}.json has format {self.manifest.get('format')!r}; this run.py reads {FORMAT}")
        self.arguments = self.manifest["arguments"]
        self.argument_names = [a["name"] for a in self.arguments]
        with np.load(path.with_name(self.manifest["params_file"])) as params:
            self.params = {name: params[name] for name in params.files}
        self.device = tvm.device(self.manifest["device"])
        with _quiet():  # TVM logs an empty "Scope Loaded:" warning per memory scope
            self.vm = VirtualMachine(tvm.runtime.load_module(str(path)), self.device)
        self._lock = threading.Lock()  # the VM keeps per-call state: one call at a time

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The outputs in the structure the model was compiled with: an array, a list, or a dict by name."""
        outputs = self.run(*args, **kwargs)
        structure = self.manifest["structure"]
        if structure == "dict":
            return outputs
        return list(outputs.values()) if structure == "list" else next(iter(outputs.values()))

    def run(self, *args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        """The outputs by name (the manifest's output names)."""
        feeds = self._named(args, kwargs)
        sizes: dict[str, int] = {}
        tensors = [tvm.runtime.tensor(_checked(a, feeds[a["name"]], sizes), self.device) for a in self.arguments]
        with self._lock:
            results = self.vm[self.manifest["function"]](*tensors)
            return {output["name"]: result.numpy() for output, result in zip(self.manifest["outputs"], results)}

    def _named(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Feeds by name: positional arguments in argument order, then keywords, then param defaults."""
        order = ", ".join(self.argument_names)
        if len(args) > len(self.argument_names):
            raise TypeError(f"the model takes {len(self.argument_names)} arguments ({order}), got {len(args)}")
        named = dict(zip(self.argument_names, args))
        twice = sorted(set(named) & set(kwargs))
        unknown = sorted(set(kwargs) - set(self.argument_names))
        if twice or unknown:
            what = f"argument {twice[0]!r} given twice" if twice else f"unknown arguments {unknown}"
            raise TypeError(f"{what}; the model takes ({order})")
        feeds = {**self.params, **named, **kwargs}
        missing = [name for name in self.argument_names if name not in feeds]
        if missing:
            raise TypeError(f"missing inputs {missing}; the model takes ({order})")
        return feeds


def load(path: str | os.PathLike[str]) -> Model:
    """Load the artifact at `path` with its manifest (`<path>.json`) and parameters."""
    return Model(path)


def _checked(argument: dict[str, Any], value: Any, sizes: dict[str, int]) -> np.ndarray:
    """`value` as a contiguous array of the argument's dtype and shape; symbolic dims are bound in
    `sizes` (a dim given as an expression, {"expr": "2*N"}, is left to the VM's own check)."""
    name, dtype, shape = argument["name"], np.dtype(argument["dtype"]), argument["shape"]
    array = np.asarray(value)
    if array.dtype != dtype:
        if not np.can_cast(array.dtype, dtype, "same_kind"):
            raise TypeError(f"{name!r} has dtype {array.dtype}, the model takes {dtype}; convert it first")
        array = array.astype(dtype)
    if array.ndim != len(shape) or not all(_fits(dim, size, sizes) for dim, size in zip(shape, array.shape)):
        text = ", ".join(d["expr"] if isinstance(d, dict) else str(d) for d in shape)
        bound = f" with {', '.join(f'{k}={v}' for k, v in sizes.items())}" if sizes else ""
        raise ValueError(f"{name!r} has shape {array.shape}, the model takes [{text}]{bound}")
    return np.ascontiguousarray(array)


def _fits(dim: int | str | dict[str, str], size: int, sizes: dict[str, int]) -> bool:
    if isinstance(dim, int):
        return dim == size
    if isinstance(dim, str):  # a symbol: the first argument that has it binds it
        return sizes.setdefault(dim, size) == size
    return True


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Send file descriptor 2 (where TVM's C++ logs) to the null device for a moment."""
    if os.environ.get("GRADKILN_DEBUG") == "1":
        yield
        return
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a gradkiln-compiled model on inputs from an .npz file.")
    parser.add_argument("model", help="the artifact (model.so), with model.so.json and model.so.params.npz beside it")
    parser.add_argument("inputs", help="an .npz with one array per input, by name")
    parser.add_argument("-o", "--output", required=True, help="the .npz to write the outputs to")
    args = parser.parse_args(argv)
    model = load(args.model)
    with np.load(args.inputs) as inputs:
        outputs = model.run(**{name: inputs[name] for name in inputs.files})
    temporary = f"{args.output}.tmp"
    with open(temporary, "wb") as file:  # then renamed: never a half-written output file
        np.savez(file, **outputs)
    os.replace(temporary, args.output)
    for name, array in outputs.items():
        print(f"{name}: {array.dtype}{list(array.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
