"""resize and resize_grad on every layer, against onnx's reference Resize, torch's F.interpolate
(values and autograd gradients), finite differences and onnxruntime."""

from __future__ import annotations

import io
import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator
from torch.nn import functional

import gradkiln as gk
from gradkiln import check_grad
from gradkiln.passes.cost import cost
from gradkiln.symbolic import grad, jvp, vmap

RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 3, 5, 7)).astype(np.float32)


def onnx_reference(x: np.ndarray, opset: int = 19, **kw) -> np.ndarray:
    """onnx's reference Resize on x, with roi, scales and sizes as initializers."""
    given = {name: kw.pop(name, None) for name in ("roi", "scales", "sizes")}
    types = {"roi": TensorProto.FLOAT, "scales": TensorProto.FLOAT, "sizes": TensorProto.INT64}
    inputs = ["x"] + [name if given[name] is not None else "" for name in ("roi", "scales", "sizes")]
    while inputs[-1] == "":
        inputs.pop()
    inits = [helper.make_tensor(k, types[k], [len(v)], v) for k, v in given.items() if v is not None]
    attrs = {k: int(v) if isinstance(v, bool) else v for k, v in kw.items()}
    node = helper.make_node("Resize", inputs, ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, want.shape))
    return model, want


def run(x: np.ndarray, target: str = "numpy", **kw) -> np.ndarray:
    with gk.Graph() as g:
        xi = gk.input("x", x.shape, str(x.dtype))
        y = gk.resize(xi, **kw)
    return gk.compile(g, y, target=target)(x=x)


SIZES = [{"sizes": [2, 3, 9, 4]}, {"scales": [1.0, 1.0, 1.7, 0.6]}, {"scales": [1.0, 1.0, 0.5, 2.0]}]
TABLE = [
    dict(mode=mode, coordinate_transformation_mode=ctm, **extra, **size)
    for mode, ctm, extra, size in itertools.product(
        ["nearest", "linear", "cubic"],
        ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric"],
        [{}, {"exclude_outside": True}],
        SIZES,
    )
]
TABLE += [
    dict(mode="nearest", nearest_mode=m, coordinate_transformation_mode="asymmetric", **s)
    for m in ("round_prefer_ceil", "floor", "ceil")
    for s in SIZES
]
TABLE += [dict(mode=m, antialias=True, **s) for m in ("linear", "cubic") for s in SIZES]
TABLE += [
    dict(
        mode=m,
        coordinate_transformation_mode="tf_crop_and_resize",
        extrapolation_value=2.5,
        axes=[3, 2],
        roi=[0.2, -0.1, 0.8, 1.3],
        sizes=size,
    )
    for m in ("nearest", "linear", "cubic")
    for size in ([1, 1], [4, 6])
]


@pytest.mark.parametrize("kw", TABLE, ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_resize_matches_onnx_reference(kw):
    _, want = onnx_reference(X, **dict(kw))
    np.testing.assert_allclose(run(X, **kw), want, rtol=1e-5, atol=3e-6)


@pytest.mark.parametrize("kw", TABLE[::7], ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_llvm_agrees_with_numpy(kw):
    np.testing.assert_allclose(run(X, "llvm", **kw), run(X, **kw), rtol=1e-5, atol=2e-6)


TORCH = [
    ("nearest", None, dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")),
    ("bilinear", False, dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel")),
    ("bilinear", True, dict(mode="linear", coordinate_transformation_mode="align_corners")),
    ("bicubic", False, dict(mode="cubic", coordinate_transformation_mode="pytorch_half_pixel")),
    ("bicubic", True, dict(mode="cubic", coordinate_transformation_mode="align_corners")),
]


@pytest.mark.parametrize("target", ["numpy", "llvm"])
@pytest.mark.parametrize("size", [(9, 4), (3, 11), (2, 13)])
@pytest.mark.parametrize(("torch_mode", "align", "kw"), TORCH, ids=lambda v: str(v))
def test_values_and_gradients_match_torch_interpolate(torch_mode, align, kw, size, target):
    """(No output size of 1: there ONNX's pytorch_half_pixel reads index 0 and torch the centre; gradkiln follows
    ONNX.)"""
    x = RNG.standard_normal((2, 3, 5, 6))
    tx = torch.tensor(x, requires_grad=True)
    ty = functional.interpolate(tx, size=size, mode=torch_mode, align_corners=align)
    seed = RNG.standard_normal(ty.shape)
    ty.backward(torch.tensor(seed))
    with gk.Graph() as g:
        xi, si = gk.input("x", x.shape, "float64"), gk.input("seed", ty.shape, "float64")
        y = gk.resize(xi, sizes=size, axes=(2, 3), **kw)
        (dx,) = grad(y, [xi], seed=si)
    got_y, got_dx = gk.compile(g, [y, dx], target=target)(x=x, seed=seed)
    np.testing.assert_allclose(got_y, ty.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(got_dx, tx.grad.numpy(), atol=1e-12)


def test_trilinear_values_and_gradients_match_torch():
    x = RNG.standard_normal((1, 2, 3, 4, 5))
    tx = torch.tensor(x, requires_grad=True)
    ty = functional.interpolate(tx, size=(6, 6, 3), mode="trilinear")
    seed = RNG.standard_normal(ty.shape)
    ty.backward(torch.tensor(seed))
    with gk.Graph() as g:
        xi, si = gk.input("x", x.shape, "float64"), gk.input("seed", ty.shape, "float64")
        y = gk.resize(
            xi, sizes=(6, 6, 3), axes=(2, 3, 4), mode="linear", coordinate_transformation_mode="pytorch_half_pixel"
        )
        (dx,) = grad(y, [xi], seed=si)
    got_y, got_dx = gk.compile(g, [y, dx], target="llvm")(x=x, seed=seed)
    np.testing.assert_allclose(got_y, ty.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(got_dx, tx.grad.numpy(), atol=1e-12)


def test_scales_are_read_as_float32_as_in_onnx():
    """0.6 as a float32 is 0.60000002: 3 / 0.6f is just below 5, so asymmetric floor reads index 4, where
    float64 arithmetic (3 / 0.6 = 5.0) reads 5; onnx's reference reads 4."""
    x = np.arange(7, dtype=np.float32)[None]
    kw = dict(scales=[1.0, 0.6], mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    np.testing.assert_array_equal(run(x, **kw), onnx_reference(x, **dict(kw))[1])
    assert run(x, **kw)[0, 3] == 4


@pytest.mark.parametrize(
    "kw",
    [
        dict(sizes=(4, 9), mode="cubic", antialias=True, exclude_outside=True),
        dict(sizes=(3, 2), mode="linear", antialias=True),
        dict(
            sizes=(6, 6),
            mode="linear",
            coordinate_transformation_mode="tf_crop_and_resize",
            roi=(-0.2, 0.1, 0.9, 1.3),
            extrapolation_value=3.0,
        ),
    ],
)
def test_gradient_jvp_and_vmap_match_finite_differences(kw):
    x = RNG.standard_normal((5, 7))
    check_grad(lambda x: gk.sum(gk.sin(gk.resize(x, **kw))), {"x": x})
    tangent = RNG.standard_normal(x.shape)
    with gk.Graph() as g:
        xi = gk.input("x", x.shape, "float64")
        y = gk.resize(xi, **kw)
        (ty,) = jvp(y, [xi], [tangent])
        batch = gk.input("xs", (3, *x.shape), "float64")
        (ys,) = vmap(y, [xi], [batch])
    xs = RNG.standard_normal((3, *x.shape))
    for target in ("numpy", "llvm"):
        got_ty, got_ys = gk.compile(g, [ty, ys], target=target)(x=x, xs=xs)
        h = 1e-6
        fd = (run(x + h * tangent, target, **kw) - run(x - h * tangent, target, **kw)) / (2 * h)
        np.testing.assert_allclose(got_ty, fd, atol=1e-6)
        np.testing.assert_allclose(got_ys, np.stack([run(row, target, **kw) for row in xs]), atol=1e-12)


def test_resize_grad_is_the_transpose_and_differentiates_again():
    """<resize(x), g> = <x, resize_grad(g)> for the linear part; the gradient of the gradient is resize."""
    x, g_ = RNG.standard_normal((2, 6, 4)), RNG.standard_normal((2, 9, 3))
    kw = dict(sizes=(9, 3), axes=(1, 2), mode="cubic", coordinate_transformation_mode="asymmetric")
    with gk.Graph() as graph:
        xi, gi = gk.input("x", x.shape, "float64"), gk.input("g", g_.shape, "float64")
        y = gk.resize(xi, **kw)
        (dx,) = grad(y, [xi], seed=gi)
        (ddg,) = grad(gk.sum(dx * xi), [gi])
    for target in ("numpy", "llvm"):
        got_y, got_dx, got_ddg = gk.compile(graph, [y, dx, ddg], target=target)(x=x, g=g_)
        np.testing.assert_allclose(np.sum(got_y * g_), np.sum(x * got_dx), rtol=1e-12)
        np.testing.assert_allclose(got_ddg, got_y, atol=1e-12)


def test_symbolic_batch_and_channel_dims_pass_through():
    with gk.Graph() as g:
        x = gk.input("x", ("N", "C", 4, 4))
        y = gk.resize(x, scales=(1.0, 1.0, 2.0, 0.5), mode="linear")
    assert [str(d) for d in y.shape] == ["N", "C", "8", "2"]
    x_ = RNG.standard_normal((3, 2, 4, 4)).astype(np.float32)
    want = run(x_, scales=(1, 1, 2.0, 0.5), mode="linear")
    np.testing.assert_allclose(gk.compile(g, y, target="llvm")(x=x_), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(scales=(2.0, 1.0)), "axis 0 of .* is symbolic"),
        (dict(sizes=(3,), axes=(1,), mode="bilinear"), "mode 'bilinear' is not one of"),
        (dict(sizes=(3,), scales=(2.0,), axes=(1,)), "exactly one of sizes and scales"),
        (dict(sizes=(3, 4), axes=(1,)), "2 sizes or scales for 1 axes"),
        (dict(scales=(0.0,), axes=(1,)), "must be > 0"),
        (dict(sizes=(3,), axes=(1,), antialias=True), "antialias needs mode"),
        (dict(sizes=(3,), axes=(1,), coordinate_transformation_mode="tf_crop_and_resize"), "needs roi"),
    ],
)
def test_bad_arguments_raise_a_clear_error(kw, message):
    with gk.Graph():
        x = gk.input("x", ("N", 4))
        with pytest.raises(gk.ShapeError, match=message):
            gk.resize(x, **kw)


def test_integer_input_is_refused():
    with gk.Graph():
        x = gk.input("x", (2, 4), "int32")
        with pytest.raises(gk.DTypeError, match="floating"):
            gk.resize(x, scales=(2.0,), axes=(1,))


@pytest.mark.parametrize(
    "kw",
    [
        dict(sizes=(7, 3), axes=(2, 3), mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
        dict(scales=(1.5, 0.5), axes=(2, 3), mode="cubic"),
        dict(sizes=(8, 9), axes=(2, 3), mode="nearest", keep_aspect_ratio_policy="not_smaller"),
        dict(sizes=(2, 3), axes=(2, 3), mode="linear", coordinate_transformation_mode="half_pixel_symmetric"),
        dict(
            sizes=(4, 6),
            axes=(2, 3),
            mode="linear",
            coordinate_transformation_mode="tf_crop_and_resize",
            roi=(0.1, -0.2, 0.8, 1.1),
            extrapolation_value=-1.0,
        ),
    ],
)
def test_export_runs_on_onnxruntime_and_imports_back(kw):
    x = RNG.standard_normal((1, 2, 5, 7)).astype(np.float32)
    with gk.Graph() as g:
        xi = gk.input("x", x.shape)
        y = gk.resize(xi, **kw)
    model = gk.onnx_io.export(g, {"y": y})
    want = run(x, **kw)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-5)
    graph, outputs = gk.onnx_io.import_model(model)
    np.testing.assert_allclose(gk.compile(graph, outputs)(x=x)["y"], want, rtol=1e-6, atol=1e-6)


def test_half_pixel_symmetric_is_a_resize_from_opset_19_and_matmuls_before():
    with gk.Graph() as g:
        y = gk.resize(
            gk.input("x", (1, 1, 4, 6)),
            sizes=(3, 4),
            axes=(2, 3),
            mode="linear",
            coordinate_transformation_mode="half_pixel_symmetric",
        )
    assert {n.op_type for n in gk.onnx_io.export(g, y, opset=19).graph.node} == {"Resize"}
    assert "Resize" not in {n.op_type for n in gk.onnx_io.export(g, y, opset=18).graph.node}


def _legacy_model(op: str, opset: int, scales: list[float], mode: str, out: tuple) -> onnx.ModelProto:
    as_input = op == "Resize" or opset >= 9
    inputs = ["x", "scales"] if as_input else ["x"]
    node = helper.make_node(op, inputs, ["y"], mode=mode, **({} if as_input else {"scales": scales}))
    inits = [helper.make_tensor("scales", TensorProto.FLOAT, [len(scales)], scales)] if as_input else []
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize(("op", "opset"), [("Upsample", 7), ("Upsample", 9), ("Resize", 10)])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_and_resize_10_import_as_onnxruntime_runs_them(op, opset, mode):
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    model = _legacy_model(op, opset, [1.0, 1.0, 2.0, 3.0], mode, (1, 1, 4, 9))
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    graph, outputs = gk.onnx_io.import_model(model)
    np.testing.assert_allclose(gk.compile(graph, outputs)(x=x)["y"], want, rtol=1e-6)


def test_legacy_nearest_downsampling_is_refused():
    with pytest.raises(gk.ONNXError, match="re-export the model with opset 11"):
        gk.onnx_io.import_model(_legacy_model("Resize", 10, [1.0, 1.0, 0.5, 0.5], "nearest", (1, 1, 1, 1)))


@pytest.mark.parametrize("opset", [11, 13, 18, 19])
def test_resize_imports_at_each_opset(opset):
    kw = dict(mode="linear", coordinate_transformation_mode="align_corners", scales=[1.0, 1.0, 2.0, 1.5])
    model, want = onnx_reference(X, opset=opset, **({"roi": []} if opset == 11 else {}), **kw)
    graph, outputs = gk.onnx_io.import_model(model)
    np.testing.assert_allclose(gk.compile(graph, outputs)(x=X)["y"], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kw",
    [dict(sizes=(0,), axes=(1,), mode="linear"), dict(sizes=(3, 8), mode="cubic"), dict(scales=(0.5,), axes=(1,))],
)
def test_float16_and_empty_outputs_agree_with_the_reference_on_llvm(kw):
    x = RNG.standard_normal((2, 5)).astype(np.float16)
    want = onnx_reference(
        x.astype(np.float32), **{k: list(v) for k, v in kw.items() if k != "mode"}, mode=kw.get("mode", "nearest")
    )[1]
    for target in ("numpy", "llvm"):
        got = run(x, target, **kw)
        assert got.dtype == np.float16 and got.shape == want.shape
        np.testing.assert_allclose(got.astype(np.float32), want, rtol=1e-3, atol=1e-3)


def test_export_refuses_a_dense_matrix_beyond_the_limit_before_allocating_it():
    with gk.Graph() as g:
        x = gk.input("x", (1, 4097))
        (dx,) = grad(gk.sum(gk.resize(x, sizes=(4200,), axes=(1,), mode="linear")), [x])
    with pytest.raises(gk.ONNXError, match=r"resize_grad %\w+: axis 1 \(4200 -> 4097\) would be a dense matrix"):
        gk.onnx_io.export(g, dx)


def test_sizes_computed_from_a_symbolic_shape_import():
    """What torch exports for F.interpolate(size=...) with a dynamic batch: sizes = Concat(Shape(x)[:2], [8, 6])."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], end=2),
        helper.make_node("Concat", ["shape", "hw"], ["sizes"], axis=0),
        helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 6])],
        [helper.make_tensor("hw", TensorProto.INT64, [2], [8, 6])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    imported, outputs = gk.onnx_io.import_model(model)
    assert [str(d) for d in outputs["y"].shape] == ["N", "3", "8", "6"]
    x = RNG.standard_normal((2, 3, 4, 4)).astype(np.float32)
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(gk.compile(imported, outputs)(x=x)["y"], want, rtol=1e-6, atol=1e-6)


class _Upsampling(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        b = functional.interpolate(x, size=(8, 8), mode="nearest")
        return a + b + torch.nn.Upsample(scale_factor=2, mode="bicubic", align_corners=True)(x)


@pytest.mark.filterwarnings("ignore")
def test_a_torch_exported_model_imports_with_a_dynamic_batch_and_matches_torch():
    buffer, x = io.BytesIO(), torch.randn(2, 3, 4, 4)
    torch.onnx.export(
        _Upsampling(),
        (x,),
        buffer,
        opset_version=17,
        dynamo=False,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
    )
    graph, outputs = gk.onnx_io.import_model(buffer.getvalue())
    x = torch.randn(5, 3, 4, 4)
    for target in ("numpy", "llvm"):
        got = gk.compile(graph, outputs, target=target)(x=x.numpy())["y"]
        np.testing.assert_allclose(got, _Upsampling()(x).numpy(), rtol=1e-5, atol=1e-5)


def test_cost_counts_a_multiply_and_add_per_tap_and_none_for_nearest():
    with gk.Graph() as g:
        x = gk.input("x", (1, 1, 4, 4))
        linear = gk.resize(x, scales=(2.0, 2.0), axes=(2, 3), mode="linear")
        nearest = gk.resize(x, scales=(2.0, 2.0), axes=(2, 3))
    # axis 2 writes 8 x 4 elements, axis 3 then 8 x 8, each of 2 taps times (multiply, add)
    assert cost(g, linear).flops == 2 * 2 * (8 * 4 + 8 * 8)
    assert cost(g, nearest).flops == 0
