"""Relax emitters: one rule per gradkiln op, turning a node into a Relax expression, in one module
per op family. `EMITTERS` (context.py) is the table the backend reads; importing this package fills
it from the list below, each module registering its family's ops with `register_emitter`."""

from . import (
    bitwise,  # the bitwise ops
    collective,  # the collectives: a packed call of the communicator on the VM's buffer
    complex,  # the complex ops: refused, TVM has no complex dtype
    control,  # scan and cond, unrolled
    elementwise,  # the elementwise table's rows, reductions and shape ops
    float16,  # float16 transcendental ops in float32, rounded once (after elementwise and numerics)
    fused,  # the fused elementwise op
    linalg,  # the linear algebra ops
    nn,  # the nn ops
    numerics,  # mod, floordiv, log1p, expm1, elu with numpy's results near special values
    random,  # random_bits: the same integer hash as the numpy reference
    resize,  # resize and resize_grad: gathers by constant tables
    select,  # the selection ops and dropout
)
from .context import EMITTERS, EmitContext, Emitter, register_emitter
from .elementwise import emit_constant

__all__ = ["EMITTERS", "EmitContext", "Emitter", "emit_constant", "register_emitter"]
