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

from . import (  # each module registers its family's rules into EXPORTERS or IMPORTERS
    export_bitwise,  # the bitwise ops and shifts
    export_collective,  # collectives: Identity for one worker, else refused (ONNX has none)
    export_complex,  # complex values: refused (no ONNX operator takes them)
    export_control,  # scan and cond as Loop and If
    export_elementwise,  # composed elementwise rules and the one-to-one table's ops
    export_fused,  # fused nodes as their constituent ops
    export_linalg,  # the linear algebra ops
    export_nn,  # conv, pool, take, scatter_add
    export_random,  # random_bits: the same hash as ONNX ops
    export_resize,  # resize and resize_grad
    export_rules,  # the ops with one ONNX op each (the elementwise table's `onnx`), attributes mapped
    export_select,  # the selection ops and dropout
    import_bitwise,  # BitwiseAnd, BitwiseOr, BitwiseXor, BitwiseNot, BitShift
    import_elementwise,  # registers native math rules over the compositions of import_rules' modules
    import_quantize,  # QuantizeLinear, DequantizeLinear, QLinear* and *Integer
    import_random,  # RandomUniform, RandomNormal, their *Like forms, Bernoulli (seeded) onto gk.random
    import_resize,  # Resize and Upsample
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
