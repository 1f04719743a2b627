"""A corpus of small hostile ONNX files: huge declared sizes, loops that never end, malformed
values. Importing each must raise an `ONNXError` whose message matches `HostileModel.match`,
quickly and without allocating what the file asks for. `tests/onnx_io/test_hostile.py` and
`benchmarks/fuzz_onnx.py` (as fuzz seeds) use it.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DATA_FILE = "data.bin"  # the external data file a model of the corpus may come with
CUMPROD_OPSET = 26  # CumProd's first opset


@dataclass(frozen=True)
class HostileModel:
    """One hostile model, the regex its import error must match, and its external data, if any."""

    name: str
    data: bytes  # the serialized model
    match: str
    external: bytes | None = None

    def write(self, folder: str | os.PathLike) -> Path:
        """Write the model (and its external data file) into `folder`; returns the model's path."""
        path = Path(folder) / f"{self.name}.onnx"
        path.write_bytes(self.data)
        if self.external is not None:
            (Path(folder) / DATA_FILE).write_bytes(self.external)
        return path


def _model(nodes: list, outputs: list, inputs: list = (), initializers: list = (), opset: int = 18) -> bytes:
    graph = helper.make_graph(nodes, "hostile", list(inputs), list(outputs), list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def _int64(name: str, values: list[int] | int) -> onnx.NodeProto:
    """A Constant node holding int64 `values` (a list: 1-D; an int: a scalar)."""
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(values, np.int64), name))


def _out(name: str, elem: int = TensorProto.INT64) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, [])  # gradkiln reads no output shapes


def constant_of_shape_model(count: int) -> bytes:
    """ConstantOfShape asking for `count` int64 elements: about 120 bytes on disk."""
    fill = numpy_helper.from_array(np.array([7], np.int64), "fill")
    nodes = [_int64("shape", [count]), helper.make_node("ConstantOfShape", ["shape"], ["y"], "fill", value=fill)]
    return _model(nodes, [_out("y")])


def _known_int64(name: str, shape: list[int], fill: int = 1) -> list[onnx.NodeProto]:
    """Nodes computing a known int64 tensor of `fill`s of `shape` at import time."""
    value = numpy_helper.from_array(np.array([fill], np.int64), "fill")
    return [_int64(f"{name}_shape", shape), helper.make_node("ConstantOfShape", [f"{name}_shape"], [name], value=value)]


def _binary(op_type: str, a: list, b: list, **attrs: int) -> bytes:
    return _model([_int64("a", a), _int64("b", b), helper.make_node(op_type, ["a", "b"], ["y"], **attrs)], [_out("y")])


def _huge_sizes() -> list[HostileModel]:
    broadcast = [
        *_known_int64("a", [1 << 20, 1]),
        *_known_int64("b", [1, 1 << 20]),
        helper.make_node("Add", ["a", "b"], ["y"]),
    ]
    concat = [*_known_int64("a", [1 << 23]), helper.make_node("Concat", ["a"] * 64, ["y"], axis=0)]
    gather = [
        *_known_int64("a", [1, 1 << 12]),
        *_known_int64("i", [1 << 20], fill=0),
        helper.make_node("Gather", ["a", "i"], ["y"]),
    ]
    evaluated = [  # a float tensor the numpy executor would evaluate to reshape x
        helper.make_node("Constant", [], ["one"], value_float=1.0),
        _int64("big", [1 << 40]),
        helper.make_node("Expand", ["one", "big"], ["wide"]),
        helper.make_node("ReduceSum", ["wide"], ["total"]),
        helper.make_node("Cast", ["total"], ["shape"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    square = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1 << 20, 1 << 20])  # declared, never allocated
    one_hot = [
        _int64("i", [0, 1]),
        _int64("depth", 1 << 40),
        helper.make_node("Constant", [], ["values"], value_floats=[0.0, 1.0]),
        helper.make_node("OneHot", ["i", "depth", "values"], ["y"]),
    ]
    return [
        HostileModel(
            "constant_of_shape_2_28", constant_of_shape_model(1 << 28), r"ConstantOfShape.*max_value_elements"
        ),
        HostileModel(
            "constant_of_shape_2_40", constant_of_shape_model(1 << 40), r"ConstantOfShape.*max_value_elements"
        ),
        HostileModel(
            "range_2_40",
            _model(
                [
                    _int64("a", 0),
                    _int64("b", 1 << 40),
                    _int64("c", 1),
                    helper.make_node("Range", ["a", "b", "c"], ["y"]),
                ],
                [_out("y")],
            ),
            r"Range.*max_value_elements",
        ),
        HostileModel("broadcast_2_40", _model(broadcast, [_out("y")]), r"Add.*max_value_elements"),
        HostileModel("concat_2_29", _model(concat, [_out("y")]), r"Concat.*max_value_elements"),
        HostileModel("gather_2_32", _model(gather, [_out("y")]), r"Gather.*max_value_elements"),
        HostileModel(
            "evaluated_expand_2_40",
            _model(evaluated, [_out("y", TensorProto.FLOAT)], [x]),
            r"Cast.*max_value_elements",  # the cast of a float computed from constants is evaluated at once
        ),
        HostileModel(
            "eye_like_2_40",
            _model([helper.make_node("EyeLike", ["x"], ["y"])], [_out("y", TensorProto.FLOAT)], [square]),
            r"EyeLike.*max_value_elements",
        ),
        HostileModel(
            "trilu_2_40",
            _model([helper.make_node("Trilu", ["x"], ["y"])], [_out("y", TensorProto.FLOAT)], [square]),
            r"Trilu.*max_value_elements",
        ),
        HostileModel("one_hot_2_40", _model(one_hot, [_out("y", TensorProto.FLOAT)]), r"OneHot.*max_value_elements"),
    ]


def loop_model(trips: str, condition: str, body: onnx.GraphProto, before: list, v0: list[int] | int = 0) -> bytes:
    loop = helper.make_node("Loop", [trips, condition, "v0"], ["v"], body=body)
    return _model([*before, _int64("v0", v0), loop], [_out("v")])


def counting_loop_body(
    until: int | None = None, grow: bool = False, inner: list = (), tag: str = ""
) -> onnx.GraphProto:
    """v + 1 per iteration, or with `grow` v with a 1 appended (its shape changes, so the Loop
    unrolls); the condition stays true, or with `until` is i < until. The nodes `inner` run in
    the body too; `tag` ends every name, keeping a nested body's names apart from its parent's."""

    def name(base: str) -> str:
        return base + tag

    update = "Concat" if grow else "Add"
    nodes = [
        _int64(name("step"), [1] if grow else 1),
        helper.make_node(update, [name("v_in"), name("step")], [name("v_out")], **({"axis": 0} if grow else {})),
        *inner,
    ]
    if until is None:
        nodes.append(helper.make_node("Identity", [name("c_in")], [name("c_out")]))
    else:
        nodes += [_int64(name("until"), until), helper.make_node("Less", [name("i"), name("until")], [name("c_out")])]
    inputs = [_out(name("i")), helper.make_tensor_value_info(name("c_in"), TensorProto.BOOL, []), _out(name("v_in"))]
    return helper.make_graph(nodes, "body", inputs, [_out(name("c_out"), TensorProto.BOOL), _out(name("v_out"))])


def _loops() -> list[HostileModel]:
    true = helper.make_node("Constant", [], ["t"], value=numpy_helper.from_array(np.array(True), "t"))
    forever, growing = counting_loop_body(), counting_loop_body(grow=True)
    inner = helper.make_node("Loop", ["", "t", "v_in"], ["w"], body=counting_loop_body(1 << 12, tag="_inner"))
    nested = counting_loop_body(1 << 12, inner=[inner])  # 2**24 iterations in all
    chain = [helper.make_node("Identity", [f"v_in{k}" if k else "v_in"], [f"v_in{k + 1}"]) for k in range(32)]
    wide = counting_loop_body(1 << 12, inner=chain)  # 2**17 nodes in all
    short = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"])],
        "body",
        [_out("i"), helper.make_tensor_value_info("c_in", TensorProto.BOOL, []), _out("v_in")],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, [])],
    )
    return [
        HostileModel("loop_forever", loop_model("", "t", forever, [true]), r"Loop.*max_unrolled_(steps|nodes)"),
        HostileModel(
            "loop_2_40_growing",
            loop_model("n", "", growing, [_int64("n", 1 << 40)], [0]),
            r"Loop.*max_(unrolled_iterations|total_elements)",
        ),
        HostileModel("nested_loops_2_24", loop_model("", "t", nested, [true]), r"Loop.*max_unrolled_(steps|nodes)"),
        HostileModel("loop_wide_body", loop_model("", "t", wide, [true]), r"Loop.*max_unrolled_nodes"),
        HostileModel(
            "loop_body_too_few_outputs",
            loop_model("n", "", short, [_int64("n", 3)]),
            r"Loop.*the body has 3 input\(s\) and 1 output",
        ),
    ]


def _external(name: str, match: str, size: int = 16, **info: str) -> HostileModel:
    """A float[4] initializer kept in `DATA_FILE` (`size` bytes) with the external-data fields `info`."""
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in {"location": DATA_FILE, **info}.items():
        weight.external_data.add(key=key, value=value)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    model = _model([helper.make_node("Add", ["x", "w"], ["y"])], [_out("y", TensorProto.FLOAT)], [x], [weight])
    return HostileModel(name, model, match, bytes(size))


def _malformed() -> list[HostileModel]:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["NNNN"])
    named = _model([helper.make_node("Relu", ["x"], ["y"])], [_out("y", TensorProto.FLOAT)], [x])
    non_utf8 = named.replace(b"NNNN", b"N\xff\xfeN")  # protobuf would refuse to set such a string
    empty = numpy_helper.from_array(np.zeros((1, 0), np.int64), "fill")
    slice_nodes = [_int64("a", [1, 2, 3]), _int64("s", [0]), _int64("e", [3]), _int64("ax", [0]), _int64("st", [0])]
    return [
        _external("external_length_past_end", r"'w'.*past the end", length="1024"),
        _external("external_offset_past_end", r"'w'.*past the end", offset="4096"),
        _external("external_length_not_a_number", r"'w'.*not a non-negative number", length="sixteen"),
        _external("external_location_is_a_folder", r"'w'.*is a folder", location="."),
        HostileModel("div_by_zero", _binary("Div", [6], [0]), r"Div.*division by zero"),
        HostileModel("mod_by_zero", _binary("Mod", [6], [0]), r"Mod.*division by zero"),
        HostileModel("concat_of_ranks", _binary("Concat", [6], [[1]], axis=0), r"Concat.*"),
        HostileModel(
            "bad_reshape",
            _model(
                [_int64("a", [1, 2, 3]), _int64("s", [4]), helper.make_node("Reshape", ["a", "s"], ["y"])], [_out("y")]
            ),
            r"Reshape.*cannot reshape",
        ),
        HostileModel(
            "slice_step_0",
            _model([*slice_nodes, helper.make_node("Slice", ["a", "s", "e", "ax", "st"], ["y"])], [_out("y")]),
            r"Slice.*step.*0",
        ),
        HostileModel("gather_out_of_range", _binary("Gather", [1, 2, 3], [5]), r"Gather.*out of range"),
        HostileModel("dim_param_not_utf8", non_utf8, r"dim_param.*UTF-8"),
        HostileModel(
            "constant_without_value",
            _model([helper.make_node("Constant", [], ["y"])], [_out("y")]),
            r"Constant.*exactly one attribute",
        ),
        HostileModel(
            "constant_of_shape_empty_value",
            _model([_int64("s", [2]), helper.make_node("ConstantOfShape", ["s"], ["y"], value=empty)], [_out("y")]),
            r"ConstantOfShape.*one element",
        ),
        HostileModel(
            "rnn_symbolic_hidden",
            _model(
                [helper.make_node("RNN", ["x", "w", "r"], ["y"], hidden_size=1)],
                [_out("y", TensorProto.FLOAT)],
                [_float("x", [2, 1, 1]), _float("w", [1, 1, 1]), _float("r", [1, 1, "H"])],
            ),
            r"RNN.*static sizes only",
        ),
        HostileModel(
            "rnn_of_rank_2",
            _model(
                [helper.make_node("RNN", ["x", "w", "r"], ["y"], hidden_size=1)],
                [_out("y", TensorProto.FLOAT)],
                [_float("x", [2, 1]), _float("w", [1, 1, 1]), _float("r", [1, 1, 1])],
            ),
            r"RNN.*must be 3-D",
        ),
        HostileModel(
            "range_of_empty_bounds",
            _model(
                [
                    _int64("a", []),
                    _int64("b", [4]),
                    _int64("c", [1]),
                    helper.make_node("Range", ["a", "b", "c"], ["y"]),
                ],
                [_out("y")],
            ),
            r"Range.*must be scalars",
        ),
        HostileModel(
            "opset_999",
            _model(
                [helper.make_node("Neg", ["x"], ["y"])],
                [_out("y", TensorProto.FLOAT)],
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                opset=999,
            ),
            r"opset 999.*28",
        ),
    ]


def _float(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _unrolled_per_element() -> list[HostileModel]:
    """Rules that build nodes per time step, element or picked slice, over huge declared dims
    or many known indices."""
    huge = 1 << 30
    zeros = numpy_helper.from_array(np.array([0], np.int64), "zero")
    cases = {
        "rnn_2_30_steps": (
            [helper.make_node("RNN", ["x", "w", "r"], ["y"], hidden_size=1)],
            [_float("x", [huge, 1, 1]), _float("w", [1, 1, 1]), _float("r", [1, 1, 1])],
        ),
        "split_to_sequence_2_30": (
            [
                helper.make_node("SplitToSequence", ["x"], ["s"], keepdims=0),
                helper.make_node("SequenceLength", ["s"], ["y"]),
            ],
            [_float("x", [huge])],
        ),
        "pad_reflect_2_30": (
            [_int64("p", [huge, 0]), helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect")],
            [_float("x", [4])],
        ),
        "gather_nd_2_22": (
            [
                _int64("s", [1 << 22, 1]),
                helper.make_node("ConstantOfShape", ["s"], ["i"], value=zeros),
                helper.make_node("GatherND", ["x", "i"], ["y"]),
            ],
            [_float("x", [4])],
        ),
        "hardmax_2_30": ([helper.make_node("Hardmax", ["x"], ["y"])], [_float("x", [1, huge])]),
    }
    expected = {
        "hardmax_2_30": r"Hardmax.*max_value_elements",
        "rnn_2_30_steps": r"RNN.*max_unrolled_steps",
    }
    made = [
        HostileModel(
            name, _model(nodes, [_out("y", TensorProto.FLOAT)], inputs), expected.get(name, r"max_unrolled_steps")
        )
        for name, (nodes, inputs) in cases.items()
    ]
    rank = [  # 2**20 symbolic dims as a Reshape target
        helper.make_node("Shape", ["x"], ["s"]),
        _int64("n", [1 << 20]),
        helper.make_node("ConstantOfShape", ["n"], ["i"], value=zeros),
        helper.make_node("Gather", ["s", "i"], ["g"]),
        helper.make_node("Reshape", ["x", "g"], ["y"]),
    ]
    past = [_int64("i", [5]), helper.make_node("Gather", ["x", "i"], ["y"])]  # known index, run-time data
    cumprod = [_int64("a", 0), helper.make_node("CumProd", ["x", "a"], ["y"])]
    return [
        *made,
        HostileModel(
            "cumprod_2_30",
            _model(cumprod, [_out("y", TensorProto.FLOAT)], [_float("x", [huge])], opset=CUMPROD_OPSET),
            r"CumProd.*max_unrolled_steps",
        ),
        HostileModel(
            "reshape_to_2_20_dims",
            _model(rank, [_out("y", TensorProto.FLOAT)], [_float("x", ["N"])]),
            r"Reshape.*1048576 dims",
        ),
        HostileModel(
            "gather_past_a_tensor",
            _model(past, [_out("y", TensorProto.FLOAT)], [_float("x", [3])]),
            r"Gather.*out of range",
        ),
    ]


def hostile_models() -> list[HostileModel]:
    """The corpus: huge import-time values, loops past the unrolling bound, nodes built per element
    over huge dims, malformed models."""
    return [*_huge_sizes(), *_loops(), *_unrolled_per_element(), *_malformed()]


def fuzz_seeds() -> list[bytes]:
    """Models to mutate: a few valid exported sample graphs and the corpus models that carry
    no external data (bytes have no folder to find it in)."""
    from ..onnx_io import export
    from .samples import op_samples

    valid = [export(*sample.graph()[::2]).SerializeToString() for sample in op_samples("float32")[::16]]
    return valid + [case.data for case in hostile_models() if case.external is None]


def flip_fuzz(seeds: Sequence[bytes], flips: int, seed: int = 0, time_bound: float = 10.0) -> list[str]:
    """Import `flips` mutants of `seeds` (one or two random bit flips each, from `random.Random(seed)`);
    returns the problems found: an exception that is not a `GradkilnError`, or an import slower
    than `time_bound` seconds. A hang never returns: run this under a timeout."""
    from ..graph import GradkilnError
    from ..onnx_io import import_model

    rng, problems = random.Random(seed), []
    for k in range(flips):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 2)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        start = time.perf_counter()
        try:
            import_model(bytes(data))
        except GradkilnError:
            pass
        except Exception as err:  # any other exception is the finding
            problems.append(f"mutant {k}: {type(err).__name__}: {str(err)[:200]}")
        if (elapsed := time.perf_counter() - start) > time_bound:
            problems.append(f"mutant {k}: import took {elapsed:.1f} s")
    return problems
