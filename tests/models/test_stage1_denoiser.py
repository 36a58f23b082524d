"""Stage1Denoiser: shapes, padding masks, conditioning, dropout, errors, sampling with a scheduler."""

from __future__ import annotations

import pytest
import torch

from mvlift.models import DenoiserConfig, Stage1Denoiser
from mvlift.schedulers import DDIMScheduler, sample

J, T = 7, 13


def make_model(**kw) -> Stage1Denoiser:
    cfg = dict(num_joints=J, d_model=32, num_layers=2, num_heads=4, ffn_dim=48, max_frames=32)
    cfg.update(kw)
    return Stage1Denoiser(DenoiserConfig(**cfg))


def inputs(b=3, num_frames=T):
    x = torch.randn(b, num_frames, J, 2)
    lines = torch.nn.functional.normalize(torch.randn(b, num_frames, J, 3), dim=-1)
    t = torch.randint(0, 1000, (b,))
    return x, t, lines


def test_shapes_dtype_and_float64(seed):
    model = make_model().eval()
    x, t, lines = inputs()
    out = model(x, t, lines)
    assert out.shape == (3, T, J, 2) and out.dtype == torch.float32 and torch.isfinite(out).all()
    model64 = make_model().double().eval()
    assert model64(x.double(), t, lines.double()).dtype == torch.float64


def test_padded_frames_do_not_change_valid_outputs(seed):
    model = make_model().eval()
    x, t, lines = inputs()
    mask = torch.ones(3, T, dtype=torch.bool)
    mask[0, 9:] = False
    mask[1, 4:] = False
    mask[2, 0] = False  # padding need not be at the end
    out = model(x, t, lines, mask)
    x2, lines2 = x.clone(), lines.clone()
    x2[~mask] = torch.randn_like(x2[~mask]) * 5
    lines2[~mask] = torch.randn_like(lines2[~mask])
    out2 = model(x2, t, lines2, mask)
    torch.testing.assert_close(out2[mask], out[mask], rtol=0, atol=1e-5)
    # without the mask the same perturbation does reach the valid frames
    assert not torch.allclose(model(x2, t, lines2)[mask], model(x, t, lines)[mask], atol=1e-3)


def test_fully_padded_sequence_stays_finite(seed):
    model = make_model().eval()
    x, t, lines = inputs()
    mask = torch.ones(3, T, dtype=torch.bool)
    mask[1] = False
    assert torch.isfinite(model(x, t, lines, mask)).all()


def test_outputs_depend_on_step_lines_and_other_frames(seed):
    model = make_model().eval()
    x, t, lines = inputs()
    out = model(x, t, lines)
    assert not torch.allclose(model(x, (t + 500) % 1000, lines), out, atol=1e-4)
    assert not torch.allclose(model(x, t, lines.flip(-1)), out, atol=1e-4)
    x2 = x.clone()
    x2[:, -1] += 1.0
    changed = model(x2, t, lines)
    assert not torch.allclose(changed[:, 0], out[:, 0], atol=1e-5), "frames must attend to each other"


def test_dropout_only_in_training(seed):
    model = make_model(dropout=0.3)
    x, t, lines = inputs()
    model.train()
    assert not torch.allclose(model(x, t, lines), model(x, t, lines))
    model.eval()
    torch.testing.assert_close(model(x, t, lines), model(x, t, lines), rtol=0, atol=0)


def test_every_parameter_gets_a_gradient(seed):
    model = make_model(dropout=0.0)
    x, t, lines = inputs()
    mask = torch.ones(3, T, dtype=torch.bool)
    mask[0, 10:] = False
    model(x, t, lines, mask).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_bad_inputs_raise():
    model = make_model()
    x, t, lines = inputs()
    with pytest.raises(ValueError, match=r"x_t must have shape \(B, T, J, 2\)"):
        model(x[..., :6, :], t, lines)
    with pytest.raises(ValueError, match="lines"):
        model(x, t, lines[:, :-1])
    with pytest.raises(ValueError, match=r"t must have shape \(B,\)"):
        model(x, t[:2], lines)
    with pytest.raises(TypeError, match="t must be"):
        model(x, t.bool(), lines)
    with pytest.raises(TypeError, match="mask"):
        model(x, t, lines, torch.ones(3, T))
    with pytest.raises(ValueError, match="mask"):
        model(x, t, lines, torch.ones(3, T + 1, dtype=torch.bool))
    with pytest.raises(TypeError, match="floating"):
        model(x.long(), t, lines)
    x_long, t_long, lines_long = inputs(num_frames=33)
    with pytest.raises(ValueError, match="max_frames"):
        model(x_long, t_long, lines_long)


def test_sampling_with_ddim(seed):
    model = make_model().eval()
    _, _, lines = inputs(b=2)
    scheduler = DDIMScheduler(num_inference_steps=4)

    def model_fn(x_t, t_batch):
        return model(x_t, t_batch, lines)

    a = sample(model_fn, (2, T, J, 2), scheduler, generator=7, progress=False)
    b = sample(model_fn, (2, T, J, 2), scheduler, generator=7, progress=False)
    assert a.shape == (2, T, J, 2) and torch.equal(a, b)
    assert a.abs().max() <= 1.0  # x0 clipping to the normalised frame
