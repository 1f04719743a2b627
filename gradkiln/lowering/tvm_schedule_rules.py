"""Which schedule each kernel gets: `RULES`, tried in order (matmul and conv first, then the
reduction-free and reduction kernels of tvm_schedules_elementwise.py), and `schedule_kernels`,
which applies the first rule that fits to every PrimFunc of a module. Kept apart from the rules'
shared tools (tvm_schedules.py) so that both rule modules import those without a circle."""

from __future__ import annotations

import re

import tvm
from tvm import tirx

from .tvm_schedules import (
    SCHEDULED_ATTR,
    Rule,
    Vector,
    schedule_conv,
    schedule_conv_rfactor,
    schedule_matmul,
)
from .tvm_schedules_elementwise import (
    schedule_column_reduction,
    schedule_elementwise,
    schedule_row_reduction,
    schedule_transpose,
)

RULES: list[Rule] = [
    schedule_matmul,
    schedule_conv_rfactor,
    schedule_conv,
    schedule_column_reduction,
    schedule_row_reduction,
    schedule_transpose,
    schedule_elementwise,
]


def schedule_kernels(mod: tvm.IRModule, target: tvm.target.Target) -> tuple[tvm.IRModule, dict[str, str]]:
    """`mod` with each PrimFunc scheduled by the first rule of `RULES` that applies, and which rule
    scheduled which function (by name). Functions no rule fits, or where a rule fails, stay as they are."""
    vector = Vector.of(target)
    functions, applied = {}, {}
    for gvar, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc) and not func.attrs.get(SCHEDULED_ATTR, False):
            rule, func = _schedule_one(func, vector)
            if rule:
                applied[gvar.name_hint] = rule
        functions[gvar] = func
    return tvm.IRModule(functions, attrs=mod.attrs, global_infos=mod.global_infos), applied


# Intrinsics the llvm target lowers to libm calls, which a vector loop cannot make ("unknown
# intrinsic" at compile time); float16 has more of them.
SCALAR_ONLY = re.compile(r"T\.(sinh|cosh|fmod)\(")
SCALAR_ONLY_HALF = re.compile(r"T\.(log1p|asin|acos|atan|asinh|acosh|erf|atan2|nextafter|hypot|copysign|ldexp)\(")


# A rule whose kernel prints this many times longer than the unscheduled one has inlined values
# read several times into each other (a chain of roundings, each reading its input four times, grew
# a matmul epilogue to 800 KB, which TVM's simplifier did not get through in minutes).
MAX_GROWTH = 8
SMALL = 20_000  # characters of TVMScript any kernel may grow to


def needs_scalar_loops(text: str) -> bool:
    """Whether the kernel (its TVMScript) calls an intrinsic that only a scalar loop can call (our rules vectorize)."""
    return bool(SCALAR_ONLY.search(text) or ("float16" in text and SCALAR_ONLY_HALF.search(text)))


def _schedule_one(func: tirx.PrimFunc, vector: Vector) -> tuple[str | None, tirx.PrimFunc]:
    """The first rule's schedule that applies and does not blow the kernel up (`MAX_GROWTH`)."""
    text = func.script()
    if needs_scalar_loops(text):
        return None, func
    for rule in RULES:
        try:
            scheduled = rule(func, vector)
        except Exception:  # a precondition of a primitive fails (ScheduleError, RuntimeError, ...)
            continue
        if scheduled is not None and len(scheduled.script()) <= max(SMALL, MAX_GROWTH * len(text)):
            return rule.__name__, scheduled.with_attr(SCHEDULED_ATTR, True)
    return None, func
