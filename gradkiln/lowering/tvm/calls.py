"""Which TVM op a Relax or TIR expression calls: the one test the passes over TVM's IR share."""

from __future__ import annotations

from typing import Any

import tvm


def calls_op(expr: Any, *names: str) -> bool:
    """Whether `expr` calls the built-in TVM op of one of `names` ("relax.permute_dims",
    "tirx.call_ffi_kernel"). A call's op may also be a GlobalVar (a function of the module) or a
    Relax value, which have no op name; those are no match."""
    return isinstance(expr, tvm.ir.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name in names
