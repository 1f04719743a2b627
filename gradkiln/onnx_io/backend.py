"""gradkiln as an `onnx.backend.base.Backend`, so the ONNX backend test suite can measure it.

`GradkilnBackend.prepare(model)` imports the model and compiles it for the numpy executor;
`GradkilnTVMBackend` (or `prepare(model, target="llvm")`) compiles it with TVM instead. The
returned rep runs on inputs given positionally, in the order of the model's graph inputs that
are not initializers; graph inputs whose values an op needs at import time are specialized on.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.backend.base import Backend, BackendRep

from ..lowering import Executable, compile
from .dtypes import to_onnx_array
from .importer import RunTimeValueError, import_model, tensor_value


class GradkilnRep(BackendRep):
    """A model ready to run: `run(inputs)` returns the outputs in the model's output order.

    Where an op needs a graph input's value at import time (axes, a target shape, pads given
    as inputs), the model is compiled per distinct value of those inputs (fed, or their
    initializer), which become constants; the compiled models are cached by value.
    """

    def __init__(self, model: onnx.ModelProto, target: Any, specialized: Sequence[str] = ()) -> None:
        self.defaults = {t.name: tensor_value(t) for t in model.graph.initializer}
        self.model = model
        self.target = target
        self.input_names = [i.name for i in model.graph.input if i.name not in self.defaults]
        self.output_names = [o.name for o in model.graph.output]
        self.output_types = [o.type.tensor_type.elem_type for o in model.graph.output]
        self.specialized = list(specialized)
        self._compiled: dict[Any, Executable] = {}
        if not self.specialized:
            self._compiled[()] = _compile(model, target)

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        """Feed `inputs` (a sequence in input order, one array, or a dict by name) and run."""
        if isinstance(inputs, Mapping):
            feeds = {k: np.asarray(v) for k, v in inputs.items()}
        else:
            arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            feeds = {k: np.asarray(v) for k, v in zip(self.input_names, arrays)}
        executable = self._executable(feeds)
        results = executable({k: v for k, v in feeds.items() if k not in self.specialized})
        outputs = (np.asarray(results[name]) for name in self.output_names)
        return tuple(to_onnx_array(y, code) for y, code in zip(outputs, self.output_types))  # narrow types

    def _executable(self, feeds: dict[str, np.ndarray]) -> Executable:
        """The executable for these values of the specialized inputs, compiled on first use;
        inputs found to be needed at import time along the way join the specialized ones."""
        values = self.defaults | feeds
        while True:
            key = tuple((n, values[n].dtype.str, values[n].shape, values[n].tobytes()) for n in self.specialized)
            if key in self._compiled:
                return self._compiled[key]
            try:
                self._compiled[key] = _compile(_with_constants(self.model, values, self.specialized), self.target)
            except RunTimeValueError as err:
                new = [name for name in err.inputs if name in values and name not in self.specialized]
                if not new:
                    raise
                self.specialized += new


def _compile(model: onnx.ModelProto, target: Any) -> Executable:
    graph, outputs = import_model(model)
    return compile(graph, outputs, target=target)


def _with_constants(model: onnx.ModelProto, feeds: dict[str, np.ndarray], names: Sequence[str]) -> onnx.ModelProto:
    """A copy of `model` whose graph inputs `names` (initialized or not) are Constant nodes
    holding their fed values."""
    special = onnx.ModelProto()
    special.CopyFrom(model)
    kept = [i for i in special.graph.input if i.name not in names]
    del special.graph.input[:]
    special.graph.input.extend(kept)
    initializers = [t for t in special.graph.initializer if t.name not in names]
    del special.graph.initializer[:]
    special.graph.initializer.extend(initializers)
    constants = [helper.make_node("Constant", [], [n], value=numpy_helper.from_array(feeds[n], n)) for n in names]
    nodes = constants + list(special.graph.node)
    del special.graph.node[:]
    special.graph.node.extend(nodes)
    return special


class GradkilnBackend(Backend):
    """The ONNX backend interface over gradkiln's importer and `compile` (numpy executor, CPU)."""

    target: Any = "numpy"

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> GradkilnRep:
        """Import `model` and compile it for `kwargs.get("target", cls.target)`."""
        if not cls.supports_device(device):
            raise ValueError(f"gradkiln's ONNX backend runs on CPU, not {device!r}")
        target = kwargs.get("target", cls.target)
        try:
            return GradkilnRep(model, target)
        except RunTimeValueError as err:
            if not err.inputs:
                raise
            return GradkilnRep(model, target, err.inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() == "CPU"


class GradkilnTVMBackend(GradkilnBackend):
    """The same backend compiling with TVM for the host CPU (llvm)."""

    target = "llvm"


prepare = GradkilnBackend.prepare
run_model = GradkilnBackend.run_model
supports_device = GradkilnBackend.supports_device
