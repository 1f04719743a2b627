"""Sample graphs of resize and resize_grad (up and down, nearest, linear and cubic, antialias,
tf_crop_and_resize's extrapolation, a symbolic batch axis), for every layer's tests."""

from __future__ import annotations

import numpy as np

from .. import graph as _graph
from ..graph import builder as gb
from .sample import OpSample, rand


def resize_samples(dtype: str, rng: np.random.Generator) -> list[OpSample]:
    def r(*shape: int) -> np.ndarray:
        return rand(rng, shape, dtype, -2.0, 2.0)

    def bilinear(x: _graph.Tensor) -> _graph.Tensor:
        y = gb.resize(x, sizes=(5, 7), axes=(2, 3), mode="linear", coordinate_transformation_mode="pytorch_half_pixel")
        return y * y

    def transposed(x: _graph.Tensor, g: _graph.Tensor) -> _graph.Tensor:
        from ..symbolic import vjp  # symbolic imports the testing samples' users; import it when built

        (dx,) = vjp(gb.resize(x, scales=(1.5, 0.5), axes=(2, 3), mode="cubic"), [x], g)
        return dx * x

    crop = {"coordinate_transformation_mode": "tf_crop_and_resize", "roi": (-0.2, 0.1, 0.9, 1.2)}
    return [
        OpSample("resize", {"x": r(2, 2, 3, 4)}, bilinear, shapes={"x": ("N", 2, 3, 4)}, name="resize_bilinear"),
        OpSample("resize", {"x": r(3, 5)}, lambda x: gb.resize(x, scales=(2.0, 0.6)) * x[0, 0], name="resize_nearest"),
        OpSample(
            "resize",
            {"x": r(1, 2, 8, 6)},  # onnxruntime's cubic takes 2-D, or 4-D resized on the last two axes
            lambda x: gb.sin(gb.resize(x, sizes=(3, 4), axes=(2, 3), mode="cubic", antialias=True)),
            name="resize_cubic_antialias",
        ),
        OpSample(
            "resize",
            {"x": r(4, 5)},
            lambda x: gb.tanh(gb.resize(x, sizes=(6, 3), mode="linear", extrapolation_value=0.5, **crop)),
            name="resize_crop",
        ),
        OpSample("resize_grad", {"x": r(1, 2, 4, 6), "g": r(1, 2, 6, 3)}, transposed),
    ]
