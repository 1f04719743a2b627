"""Anomaly detection: find the first node whose output holds a NaN or an Inf.

Like `torch.autograd.detect_anomaly`: turned on per thread with `with gk.detect_anomaly():` or per
executable with `gk.compile(..., detect_anomaly=True)`. The numpy executor then checks every
floating output right after computing it and raises `AnomalyError` naming the node, the user's
source line that built it and statistics of its inputs. Runs without it pay one flag check per node.
TVM executables run an instrumented build instead (every value an output of the module, built on
first use) and check the values in the same order (`check_in_order`), with the indices of index ops
in mode "raise" checked as the numpy executor always checks them (graph/ops/index_mode.py).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import numpy as np

from ..graph import AnomalyError, IndexOutOfRangeError, Node, Value
from ..graph.ops.index_mode import check_indices

_mode = threading.local()


@contextmanager
def detect_anomaly() -> Iterator[None]:
    """Check every value for NaN/Inf in the numpy runs this thread makes inside the block."""
    previous = anomaly_enabled()
    _mode.enabled = True
    try:
        yield
    finally:
        _mode.enabled = previous


def anomaly_enabled() -> bool:
    """Whether this thread is inside `detect_anomaly()`."""
    return getattr(_mode, "enabled", False)


def check_finite(node: Node, args: Sequence[np.ndarray], results: Sequence[np.ndarray]) -> None:
    """Raise `AnomalyError` if a floating output of `node` holds a NaN or an Inf."""
    for index, result in enumerate(results):
        if result.dtype.kind == "f" and not np.isfinite(result).all():
            raise AnomalyError(_describe(node, index, args, result))


def check_in_order(nodes: Sequence[Node], values: Mapping[Value, np.ndarray]) -> None:
    """`check_finite` over `nodes` in order, their inputs and outputs read from `values` (what an
    instrumented TVM build returns): the first node with a NaN or Inf output is reported. Index ops
    in mode "raise" first have their indices checked (compiled kernels cannot raise), so an
    out-of-range index raises `IndexOutOfRangeError` as on the numpy executor."""
    for node in nodes:
        args = [values[v] for v in node.inputs]
        try:
            check_indices(node.op, args, node.attrs)
        except IndexOutOfRangeError as err:
            raise located(node, err) from None
        check_finite(node, args, [values[v] for v in node.outputs])


def located(node: Node, err: IndexOutOfRangeError) -> IndexOutOfRangeError:
    """`err` with the node that raised it and where it was built (the user's line, or the model node)."""
    return IndexOutOfRangeError(
        f"{node.label} = {err}\n  built at {node.built_at}"
    )


def _describe(node: Node, index: int, args: Sequence[np.ndarray], result: np.ndarray) -> str:
    label = node.label if index == 0 else f"{node.label}.{index}"
    lines = [
        f"{label} = {node.op}(...) ({node.role}) produced {_counts(result)} in its output "
        f"{result.dtype}{list(result.shape)}",
        f"  built at {node.built_at}",
    ]
    for slot, (value, arg) in enumerate(zip(node.inputs, args)):
        lines.append(f"  input {slot} {node.graph.label_of(value)}: {_stats(arg)}")
    return "\n".join(lines)


def _counts(array: np.ndarray) -> str:
    return f"{int(np.isnan(array).sum())} NaN and {int(np.isinf(array).sum())} Inf"


def _stats(array: np.ndarray) -> str:
    """Shape, dtype, min, max, mean (over the finite entries) and NaN/Inf counts of one input."""
    head = f"{array.dtype}{list(array.shape)}"
    if array.dtype.kind not in "biuf" or array.size == 0:
        return head
    floating = array.dtype.kind == "f"
    finite = array[np.isfinite(array)] if floating else array
    if finite.size == 0:
        return f"{head}, no finite entries, {_counts(array)}"
    numbers = finite.astype(np.float64)
    summary = f"{head}, min {numbers.min():.6g}, max {numbers.max():.6g}, mean {numbers.mean():.6g}"
    return summary + (f", {_counts(array)}" if floating else "")
