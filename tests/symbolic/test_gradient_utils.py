"""Gradient utilities against torch: clip_grad_value_, clip_grad_norm_, full-batch gradients and
GradScaler's dynamic loss scaling (with an injected overflow)."""

import numpy as np
import pytest
import torch

import gradkiln as gk
from gradkiln.symbolic import (
    LossScaler,
    accumulate_gradients,
    clip_by_global_norm,
    clip_by_value,
    grad,
    split_micro_batches,
)

rng = np.random.default_rng(0)
SHAPES = [(3, 4), (5,), ()]


def _grad_inputs(dtype="float64"):
    return [gk.input(f"g{i}", shape, dtype) for i, shape in enumerate(SHAPES)]


def _torch_params(values):
    params = [torch.zeros(v.shape, dtype=torch.float64, requires_grad=True) for v in values]
    for p, v in zip(params, values):
        p.grad = torch.tensor(v)
    return params


def test_clip_by_value_equals_torch_clip_grad_value():
    values = [rng.normal(size=s) * 2 for s in SHAPES]
    with gk.Graph() as g:
        clipped = clip_by_value(_grad_inputs(), -1.5, 1.5)
    got = gk.compile(g, clipped)(**{f"g{i}": v for i, v in enumerate(values)})
    params = _torch_params(values)
    torch.nn.utils.clip_grad_value_(params, 1.5)
    for ours, p in zip(got, params):
        np.testing.assert_array_equal(ours, p.grad.numpy())


@pytest.mark.parametrize("max_norm", [0.5, 100.0], ids=["clipped", "unchanged"])
def test_clip_by_global_norm_equals_torch_clip_grad_norm(max_norm):
    values = [rng.normal(size=s) for s in SHAPES]
    with gk.Graph() as g:
        clipped, norm = clip_by_global_norm(_grad_inputs(), max_norm)
    *got, got_norm = gk.compile(g, [*clipped, norm])(**{f"g{i}": v for i, v in enumerate(values)})
    params = _torch_params(values)
    want_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    np.testing.assert_allclose(got_norm, want_norm.numpy(), rtol=1e-14)
    for ours, p in zip(got, params):
        np.testing.assert_allclose(ours, p.grad.numpy(), rtol=1e-14)
    assert (max_norm > got_norm) == all(np.array_equal(ours, v) for ours, v in zip(got, values))


def test_accumulated_micro_batch_gradients_equal_the_full_batch_gradient_of_a_mean_loss():
    x0, y0 = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    w0, b0 = rng.normal(size=(3, 2)), rng.normal(size=2)

    def loss_fn(x, y):
        return gk.mean((gk.tanh(x @ w + b) - y) ** 2)

    with gk.Graph() as g:
        x, y = gk.input("x", (8, 3), "float64"), gk.input("y", (8, 2), "float64")
        w, b = gk.param("w", w0), gk.param("b", b0)
        loss, (dw, db) = accumulate_gradients(loss_fn, [w, b], split_micro_batches([x, y], 4))
        summed_loss, summed = accumulate_gradients(loss_fn, [w, b], split_micro_batches([x, y], 2), average=False)
    got = gk.compile(g, [loss, dw, db, summed_loss, *summed])(x=x0, y=y0)

    tw, tb = (torch.tensor(v, requires_grad=True) for v in (w0, b0))
    full = torch.mean((torch.tanh(torch.tensor(x0) @ tw + tb) - torch.tensor(y0)) ** 2)
    full.backward()
    np.testing.assert_allclose(got[0], full.item(), rtol=1e-13)
    np.testing.assert_allclose(got[1], tw.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(got[2], tb.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(got[3], 2 * full.item(), rtol=1e-13)  # two halves, summed
    np.testing.assert_allclose(got[4], 2 * tw.grad.numpy(), rtol=1e-12)


def test_utility_errors_say_what_to_fix():
    with gk.Graph():
        x = gk.input("x", (6, 2), "float64")
        with pytest.raises(gk.GradientError, match="axis 0 must be a static size divisible by count=4"):
            split_micro_batches([x], 4)
        with pytest.raises(gk.GradientError, match="no micro-batches"):
            accumulate_gradients(gk.sum, [x], [])
        with pytest.raises(gk.GradientError, match="lo=1 is greater than hi=-1"):
            clip_by_value([x], 1, -1)
        with pytest.raises(gk.GradientError, match="clip_by_global_norm: gradient 0 is i64"):
            clip_by_global_norm([gk.input("i", (2,), "int64")], 1.0)
    with pytest.raises(gk.GradientError, match="growth_interval must be a positive int"):
        LossScaler(growth_interval=0)


def _scaled_sgd_step(scaler, lr):
    """One SGD step on sum((x * w - y)^2) in float32 under dynamic loss scaling."""
    with gk.Graph() as g:
        state = scaler.inputs()
        w = gk.input("w", (3,), "float32")
        x, y = gk.input("x", (3,), "float32"), gk.input("y", (3,), "float32")
        loss = gk.sum((x * w - y) ** 2)
        (scaled_grad,) = grad(scaler.scale(loss, state), [w])
        (dw,), found_inf = scaler.unscale([scaled_grad], state)
        (next_w,) = scaler.skip_if_overflow([w - lr * dw], [w], found_inf)
        next_state = scaler.update(state, found_inf)
    return gk.compile(g, [next_w, *next_state, found_inf])


def test_loss_scaling_follows_torch_grad_scaler_and_skips_an_overflowing_step():
    lr, w0, y0 = 0.05, np.array([0.5, -1.0, 2.0], np.float32), np.array([1.0, 0.0, -1.0], np.float32)
    xs = [rng.normal(size=3).astype(np.float32) for _ in range(7)]
    xs[3][1] = np.inf  # overflow: this step is skipped and the scale halves
    step = _scaled_sgd_step(LossScaler(init_scale=256.0, growth_interval=2), lr)
    scaler = LossScaler(init_scale=256.0, growth_interval=2)
    feeds, w = scaler.initial_state(), w0
    tw = torch.tensor(w0, requires_grad=True)
    optimizer = torch.optim.SGD([tw], lr=lr)
    torch_scaler = torch.amp.GradScaler("cpu", init_scale=256.0, growth_interval=2)
    for i, x in enumerate(xs):
        w, scale, good_steps, found_inf = step(w=w, x=x, y=y0, **feeds)
        feeds = {"loss_scale": scale, "good_steps": good_steps}
        optimizer.zero_grad()
        torch_scaler.scale(torch.sum((torch.tensor(x) * tw - torch.tensor(y0)) ** 2)).backward()
        torch_scaler.step(optimizer)
        torch_scaler.update()
        assert bool(found_inf) == (i == 3)
        np.testing.assert_allclose(w, tw.detach().numpy(), rtol=1e-6, err_msg=f"step {i}")
        assert scale == torch_scaler.get_scale(), f"step {i}"
        assert good_steps == torch_scaler._growth_tracker.item(), f"step {i}"
    assert np.isfinite(w).all()


@pytest.mark.parametrize(
    ("scale", "good_steps", "found_inf"),
    [(8.0, 0, False), (8.0, 2, False), (8.0, 2, True), (3e38, 2, False), (1.0, 1, True)],
)
def test_scale_update_matches_torch_amp_update_scale(scale, good_steps, found_inf):
    scaler = LossScaler(growth_interval=3)
    with gk.Graph() as g:
        state = scaler.inputs()
        flag = gk.input("found_inf", (), "bool")
        next_state = scaler.update(state, flag)
    got_scale, got_good = gk.compile(g, list(next_state))(
        loss_scale=np.float32(scale), good_steps=np.int64(good_steps), found_inf=np.bool_(found_inf)
    )
    want_scale, want_good = torch.tensor([scale]), torch.tensor([good_steps], dtype=torch.int32)
    torch._amp_update_scale_(want_scale, want_good, torch.tensor([float(found_inf)]), 2.0, 0.5, 3)
    assert got_scale == want_scale.item() and got_good == want_good.item()


def test_float16_loss_scaling_backs_off_until_the_float16_gradients_fit_as_grad_scaler_does():
    """float32 weights, float16 compute: 2**16 * the gradient overflows float16 until the scale
    has halved ten times; after 3 good steps the scale doubles and overflows once more."""
    x0, y0 = np.array([30.0, 20.0, 10.0], np.float16), np.array([1.0, 0.0, -1.0], np.float16)
    scaler = LossScaler(growth_interval=3)
    with gk.Graph() as g:
        state = scaler.inputs()
        w = gk.input("w", (3,), "float32")
        x, y = gk.input("x", (3,), "float16"), gk.input("y", (3,), "float16")
        loss = gk.sum((x * gk.cast(w, "float16") - y) ** 2)
        (scaled_grad,) = grad(scaler.scale(loss, state), [w])
        (dw,), found_inf = scaler.unscale([scaled_grad], state)
        (next_w,) = scaler.skip_if_overflow([w - 1e-4 * dw], [w], found_inf)
    step = gk.compile(g, [next_w, *scaler.update(state, found_inf), found_inf])

    tw = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    optimizer = torch.optim.SGD([tw], lr=1e-4)
    torch_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=3)
    feeds, w, skipped = scaler.initial_state(), tw.detach().numpy().copy(), []
    for i in range(16):
        w, scale, good_steps, found_inf = step(w=w, x=x0, y=y0, **feeds)
        feeds = {"loss_scale": scale, "good_steps": good_steps}
        skipped.append(bool(found_inf))
        optimizer.zero_grad()
        torch_loss = torch.sum((torch.tensor(x0) * tw.half() - torch.tensor(y0)) ** 2)
        torch_scaler.scale(torch_loss).backward()
        torch_scaler.step(optimizer)
        torch_scaler.update()
        assert (scale, good_steps) == (torch_scaler.get_scale(), torch_scaler._growth_tracker.item()), f"step {i}"
        np.testing.assert_allclose(w, tw.detach().numpy(), rtol=1e-3, err_msg=f"step {i}")
    assert skipped == [True] * 10 + [False] * 3 + [True] + [False] * 2
