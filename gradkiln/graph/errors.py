"""The gradkiln exception hierarchy: every error a user can see derives from GradkilnError."""

from __future__ import annotations


class GradkilnError(Exception):
    """Base class of every error gradkiln raises on purpose."""


class ShapeError(GradkilnError, ValueError):
    """Operand shapes do not fit an op (raised at build time by type inference)."""


class DTypeError(GradkilnError, TypeError):
    """An unknown dtype, or a dtype an op does not accept."""


class GraphError(GradkilnError, ValueError):
    """A malformed graph: values from another graph, duplicate names, cycles, unknown names."""


class UnsupportedOpError(GradkilnError, NotImplementedError):
    """An op has no rule in some layer (gradient, lowering, ONNX), or an imported op is unknown."""


class GradientError(GradkilnError, ValueError):
    """A gradient cannot be formed: a non-scalar output without a seed, an unreachable input."""


class LoweringError(GradkilnError, RuntimeError):
    """Compiling or running a graph on a backend failed; the message names the node and target."""


class ONNXError(GradkilnError, ValueError):
    """An ONNX model cannot be imported or a graph cannot be exported."""


class VizError(GradkilnError, RuntimeError):
    """Rendering failed, typically because the Graphviz `dot` executable is missing."""


class AnomalyError(GradkilnError, FloatingPointError):
    """Anomaly detection found a NaN or Inf; the message names the node, its source line and inputs."""


class IndexOutOfRangeError(GradkilnError, IndexError):
    """An index op met an index outside its axis in mode "raise"; the message names the op, the node,
    the offending index and the valid range."""


class DistributedError(GradkilnError, RuntimeError):
    """A collective cannot run: no process group, a world size that differs from the graph's, a
    worker lost or timed out. The message names the op or the rank."""
