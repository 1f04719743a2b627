"""ONNX at both edges.

- `export(graph, outputs, path=None, opset=OPSET, name=None) -> onnx.ModelProto` writes the part
  of `graph` that `outputs` needs (opset 18 by default), checked with `full_check`.
- `import_model(model_or_path, rules=None, limits=None, trainable=None, frozen=None) -> (Graph,
  {onnx output name: Tensor})` reads a ModelProto, a path (with external data files) or serialized
  bytes; `gk.compile(graph, outputs)` then runs it. `rules` overrides import rules for one call;
  `limits` (`ImportLimits`) bounds the work import does itself. Which initializers become params is
  `params.choose_params`'s one rule, narrowed by the fnmatch patterns `trainable` and `frozen`.
- `training_graph(model, loss, trainable, optimizer, ..., frozen) -> TrainingGraph` imports a model
  as a training step: loss, parameter gradients, optimizer and batch-norm state updates.

Each side keeps one rule table: `EXPORTERS` keyed by gradkiln op name, `IMPORTERS` keyed by ONNX
op type; `register_exporter` / `register_importer` add rules for custom ops.
"""

from . import (
    import_bitwise,  # BitwiseAnd, BitwiseOr, BitwiseXor, BitwiseNot, BitShift
    import_math,  # registers native math rules over the compositions of import_rules' modules
    import_nn_native,  # registers native conv, pool and indexing rules over the compositions
    import_quantize,  # QuantizeLinear, DequantizeLinear, QLinear* and *Integer
    import_random,  # RandomUniform, RandomNormal, their *Like forms, Bernoulli (seeded) onto gk.random
    import_resize,  # Resize and Upsample
    import_select_native,  # TopK, GatherElements, ScatterElements as the selection ops
    import_training_ops,  # Gradient, Adagrad, Adam, Momentum of ai.onnx.preview.training
)
from .export_rules import EXPORTERS, register_exporter
from .exporter import OPSET, ExportContext, export
from .import_limits import ImportLimits
from .import_rules import IMPORTERS, register_importer
from .importer import ImportContext, Known, import_model
from .training import TrainingGraph, training_graph

__all__ = [
    "EXPORTERS",
    "IMPORTERS",
    "OPSET",
    "ExportContext",
    "ImportContext",
    "ImportLimits",
    "Known",
    "TrainingGraph",
    "export",
    "import_model",
    "register_exporter",
    "register_importer",
    "training_graph",
]
