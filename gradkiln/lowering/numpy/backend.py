"""The numpy reference executor: runs each node's numpy semantics in topological order.

With `memory_plan=True` it runs from a `MemoryPlan` instead (planned per set of bound sizes and
cached): one arena per call holds the planned buffers, requested outputs get their own arrays,
each node writes into its buffer (`numpy.kernels`: with `out=` where numpy has it, else its own
compute block by block, else computed whole and copied in) and view ops stay views, so the
memory a run uses is the planned peak plus block-sized temporaries.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np
import sympy

from ...graph import GradkilnError, Graph, IndexOutOfRangeError, LoweringError, Node, Value, get_op
from ...graph.types import is_symbolic
from ...passes.memory import MemoryPlan, plan_memory
from ..anomaly import anomaly_enabled, check_finite, located
from ..executable import Executable, resolve
from ..profile import KernelTotal, Profile, check_repeat
from .kernels import OUT_KERNELS, blockwise_kernel

Slot = tuple[int, int, str, tuple[int, ...]]  # a value's place in the plan: (buffer, bytes, dtype, shape)


class _PlannedStep(NamedTuple):
    """One node of a planned run: attrs resolved, and per output its `Slot` or None for a view
    or a source."""

    node: Node
    attrs: Mapping[str, Any]
    inputs: list[Value]
    outs: list[Slot | None]
    kernel: Callable[..., Any] | None


def _in(buffers: list[np.ndarray], slot: Slot) -> np.ndarray:
    """The array a `Slot` describes, over its buffer's memory."""
    buffer, size, dtype, shape = slot
    return buffers[buffer][:size].view(dtype).reshape(shape)


def _owner(array: Any) -> int:
    """The id of the object that owns `array`'s memory (the end of its chain of bases)."""
    while getattr(array, "base", None) is not None:
        array = array.base
    return id(array)


def _kernel(node: Node, attrs: Mapping[str, Any], outs: list) -> Callable[..., Any] | None:
    """How a planned node writes its buffers: an out= kernel (one output), else its compute block
    by block (outputs of one shape; the kernel gets them as a tuple when there are several).
    None: a view, a source, or an op that has neither; it is computed whole and copied in."""
    if not outs or any(o is None for o in outs) or len({o[3] for o in outs}) != 1:
        return None
    single = OUT_KERNELS.get(node.op) if len(outs) == 1 else None
    return single or blockwise_kernel(node.op, attrs, len(outs[0][3]))


class NumpyExecutable(Executable):
    """Interprets the graph with numpy; frees each value after its last use, or, with
    `memory_plan`, writes every value into the buffer its memory plan gives it. With
    `detect_anomaly` (or inside `gk.detect_anomaly()`) every floating output is checked for NaN/Inf."""

    target = "numpy"

    def __init__(self, graph: Graph, outputs: Any, memory_plan: bool = False, detect_anomaly: bool = False) -> None:
        super().__init__(graph, outputs)
        self.memory_plan = memory_plan
        self.detect_anomaly = detect_anomaly
        self._plans: dict[tuple, tuple[MemoryPlan, list[_PlannedStep]]] = {}
        position = {node_id: i for i, node_id in enumerate(self.node_ids)}
        keep = {v.node for v in self.output_values}
        self.last_use = {}
        for node_id in self.node_ids:
            users = [position[u] for u in graph.consumers_of(node_id) if u in position]
            self.last_use[node_id] = len(self.node_ids) if node_id in keep else max(users, default=-1)
        self.steps = [(node_id, graph.node(node_id), graph.inputs_of(node_id)) for node_id in self.node_ids]
        self.symbolic_attrs = {n.id for _, n, _ in self.steps if any(map(is_symbolic, n.attrs.values()))}
        self._constant_owners = {_owner(n.attrs["value"]) for _, n, _ in self.steps if n.op == "constant"}

    def run(self, feeds: dict[str, np.ndarray], bindings: dict[sympy.Symbol, int]) -> Sequence[np.ndarray]:
        check = self.detect_anomaly or anomaly_enabled()
        if self.memory_plan:
            return self._owned(self._run_planned(feeds, bindings, check), feeds)
        return self._owned(self._run_unplanned(feeds, bindings, check), feeds)

    def _owned(self, results: list[np.ndarray], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """`results` with copies of those whose memory is a feed's or a constant's (a param, an
        input or a constant that is an output, a view of one, `w * 1.0` after O2): a caller writing
        into a result must not change later calls or its own feeds, as with llvm. Freshly computed
        results are returned as they are."""
        stored = self._constant_owners | {_owner(a) for a in feeds.values()}
        return [r.copy() if _owner(r) in stored else r for r in results]

    def profile(self, feeds: Mapping[str, Any] | None = None, repeat: int = 10, **kwargs: Any) -> Profile:
        """Run the graph once untimed, then `repeat` times timing each node's numpy call, and
        report one row per computed node (label, op, time, share), the hottest first: the
        `Profile` TVM executables give. Runs the plain interpreter: no memory plan, no anomaly checks."""
        check_repeat(repeat)
        arrays, bindings = self.check_feeds(dict(feeds or {}) | kwargs)
        self._run_unplanned(arrays, bindings, False)
        timings: dict[int, float] = {}
        started = time.perf_counter()
        for _ in range(repeat):
            self._run_unplanned(arrays, bindings, False, timings)
        wall_seconds = time.perf_counter() - started
        measured = [
            KernelTotal(node.label, repeat, timings[node_id], (node.label,), node.op)
            for node_id, node, _ in self.steps
            if node_id in timings
        ]
        return Profile.of(f"'{self.graph.name}' on numpy", measured, wall_seconds, repeat, unit="node")

    def _run_unplanned(
        self, feeds: dict[str, np.ndarray], bindings: dict, check: bool, timings: dict[int, float] | None = None
    ) -> list[np.ndarray]:
        env: dict[int, tuple[np.ndarray, ...]] = {}
        free_at: dict[int, list[int]] = {}
        for node_id, last in self.last_use.items():
            free_at.setdefault(last, []).append(node_id)
        for step, (node_id, node, inputs) in enumerate(self.steps):
            if node.op in ("input", "param"):
                env[node_id] = (feeds[node.name],)
            else:
                attrs = node.attrs
                if node_id in self.symbolic_attrs:
                    attrs = {k: resolve(v, bindings) for k, v in attrs.items()}
                args = [env[v.node][v.index] for v in inputs]
                start = time.perf_counter()
                env[node_id] = self._compute(node, attrs, args)
                if timings is not None:  # summed over the runs of a profile
                    timings[node_id] = timings.get(node_id, 0.0) + time.perf_counter() - start
                if check:
                    check_finite(node, args, env[node_id])
            for dead in free_at.get(step, ()):
                env.pop(dead, None)
        return [env[v.node][v.index] for v in self.output_values]

    def plan(self, bindings: dict[sympy.Symbol, int] | None = None) -> MemoryPlan:
        """The memory plan for these sizes of the symbolic dims (made once per set of sizes)."""
        return self._program(bindings or {})[0]

    def _program(self, bindings: dict[sympy.Symbol, int]) -> tuple[MemoryPlan, list[_PlannedStep]]:
        """The plan and its steps with attrs and buffer shapes resolved, cached per set of sizes."""
        key = tuple(sorted((str(k), v) for k, v in bindings.items()))
        if key not in self._plans:
            plan = plan_memory(self.graph, self.output_values, bindings=bindings)
            steps = []
            for node_id in plan.schedule:
                node = self.graph.node(node_id)
                attrs = node.attrs
                if node_id in self.symbolic_attrs:
                    attrs = {k: resolve(v, bindings) for k, v in attrs.items()}
                outs = [
                    (plan.buffer_of[v], plan.value_bytes[v], t.dtype, resolve(t.shape, bindings))
                    if v in plan.value_bytes
                    else None
                    for v, t in zip(node.outputs, node.types)
                ]
                steps.append(_PlannedStep(node, attrs, self.graph.inputs_of(node_id), outs, _kernel(node, attrs, outs)))
            self._plans[key] = (plan, steps)
        return self._plans[key]

    def _run_planned(
        self, feeds: dict[str, np.ndarray], bindings: dict[sympy.Symbol, int], check: bool
    ) -> list[np.ndarray]:
        plan, steps = self._program(bindings)
        arena = np.empty(plan.arena_bytes, np.uint8)
        buffers = [
            np.empty(size, np.uint8) if b in plan.output_buffers else arena[plan.offsets[b] : plan.offsets[b] + size]
            for b, size in enumerate(plan.buffer_bytes)
        ]
        env: dict[Value, np.ndarray] = {}
        for step in steps:
            node = step.node
            if node.op in ("input", "param"):
                env[Value(node.id, 0)] = feeds[node.name]
                continue
            args = [env[v] for v in step.inputs]
            outs = [None if o is None else _in(buffers, o) for o in step.outs]
            if step.kernel is not None:
                self._guarded(node, args, step.kernel, outs[0] if len(outs) == 1 else tuple(outs), *args, **step.attrs)
                results: Sequence[np.ndarray] = outs
            else:  # a source, a view, or an op without an out= form: compute, then copy into the buffer
                results = self._compute(node, step.attrs, args)
                for out, result in zip(outs, results):
                    if out is not None:
                        np.copyto(out, result, casting="unsafe")
            if check:
                check_finite(node, args, results)
            for value, out, result in zip(node.outputs, outs, results):
                env[value] = result if out is None else out
        return [env[v] for v in self.output_values]

    @staticmethod
    def _guarded(node: Any, args: list[np.ndarray], fn: Callable[..., Any], *fn_args: Any, **fn_kwargs: Any) -> Any:
        """Call `fn`; numpy's own errors are reported with the node that raised them."""
        try:
            with np.errstate(all="ignore"):
                return fn(*fn_args, **fn_kwargs)
        except IndexOutOfRangeError as err:
            raise located(node, err) from None
        except GradkilnError:
            raise
        except Exception as err:
            shapes = ", ".join(str(a.shape) for a in args)
            raise LoweringError(f"numpy: {node.label} = {node.op}({shapes}) failed: {err}") from err

    @classmethod
    def _compute(cls, node: Any, attrs: dict, args: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        result = cls._guarded(node, args, get_op(node.op).compute, *args, **attrs)
        results = result if isinstance(result, tuple) else (result,)
        return tuple(np.asarray(r, dtype=t.dtype) for r, t in zip(results, node.types))
