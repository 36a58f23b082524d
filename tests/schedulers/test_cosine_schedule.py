"""CosineSchedule: the schedule's values, forward-process algebra and statistics, timestep spacing, config."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mvlift.schedulers import CosineSchedule, cosine_betas, scheduler_from_dict, spaced_timesteps


def test_alphas_cumprod_follow_the_cosine_formula():
    sched = CosineSchedule()
    ab = sched.alphas_cumprod
    assert ab.shape == (1000,) and ab.dtype == torch.float64
    assert (ab[1:] < ab[:-1]).all(), "alphas_cumprod must strictly decrease"
    assert sched.betas.max() <= 0.999 and sched.betas.min() > 0
    f = [math.cos((n / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2 for n in range(1001)]
    closed = torch.tensor([f[n + 1] / f[0] for n in range(1000)], dtype=torch.float64)
    unclipped = sched.betas < 0.999
    first_clipped = int((~unclipped).nonzero()[0]) if (~unclipped).any() else 1000
    assert first_clipped > 990, "only the very last steps hit the 0.999 clip"
    torch.testing.assert_close(ab[:first_clipped], closed[:first_clipped], rtol=1e-10, atol=1e-14)
    assert ab[0] > 0.9999 and ab[-1] < 1e-6


def test_betas_validation():
    with pytest.raises(ValueError, match="num_train_timesteps"):
        cosine_betas(0)
    with pytest.raises(ValueError, match="max_beta"):
        cosine_betas(10, max_beta=1.0)
    with pytest.raises(ValueError, match="s must"):
        cosine_betas(10, s=-0.1)
    assert cosine_betas(10, max_beta=0.5).max() <= 0.5


def test_add_noise_formula_and_inverses(seed):
    sched = CosineSchedule()
    x0 = torch.rand(4, 9, 5, 2, dtype=torch.float64) * 2 - 1
    eps = torch.randn_like(x0)
    t = torch.tensor([0, 17, 500, 999])
    xt = sched.add_noise(x0, eps, t)
    ab = sched.alphas_cumprod[t].reshape(4, 1, 1, 1)
    torch.testing.assert_close(xt, ab.sqrt() * x0 + (1 - ab).sqrt() * eps, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sched.x0_to_eps(xt, x0, t), eps, rtol=1e-9, atol=1e-9)
    # eps -> x0 divides by sqrt(alpha_bar), which is ~1e-4 at t = 999: check the well-conditioned steps
    torch.testing.assert_close(sched.eps_to_x0(xt[:3], eps[:3], t[:3]), x0[:3], rtol=1e-9, atol=1e-9)
    # float32 stays accurate even at t = 0 where 1 - alpha_bar is tiny (coefficients come from float64)
    x0f, epsf = x0.float(), eps.float()
    xtf = sched.add_noise(x0f, epsf, t)
    assert xtf.dtype == torch.float32
    torch.testing.assert_close(sched.x0_to_eps(xtf, x0f, t), epsf, rtol=0, atol=5e-5)


def test_scalar_and_zero_dim_steps(seed):
    sched = CosineSchedule()
    x0, eps = torch.randn(3, 4), torch.randn(3, 4)
    a = sched.add_noise(x0, eps, 250)
    b = sched.add_noise(x0, eps, torch.tensor(250))
    c = sched.add_noise(x0, eps, torch.full((3,), 250))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, c, rtol=0, atol=0)


def test_add_noise_statistics(seed):
    sched = CosineSchedule()
    x0 = torch.rand(1, 8) * 2 - 1
    n = 200_000
    for t in (50, 400, 900):
        xt = sched.add_noise(x0.expand(n, 8), torch.randn(n, 8), t)
        ab = float(sched.alphas_cumprod[t])
        torch.testing.assert_close(xt.mean(0), math.sqrt(ab) * x0[0], rtol=0, atol=0.01)
        torch.testing.assert_close(xt.std(0), torch.full((8,), math.sqrt(1 - ab)), rtol=0.01, atol=0)
    pure = sched.add_noise(x0.expand(n, 8), torch.randn(n, 8), 999)
    assert abs(pure.mean()) < 0.01 and abs(pure.std() - 1) < 0.01


def test_step_validation():
    sched = CosineSchedule(num_train_timesteps=100)
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        sched.add_noise(x, x, 100)
    with pytest.raises(TypeError, match="integer"):
        sched.add_noise(x, x, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        sched.add_noise(x, x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="noise"):
        sched.add_noise(x, x[:1], 3)
    with pytest.raises(TypeError):
        sched.add_noise(x, x, 3.0)


def test_spaced_timesteps():
    assert torch.equal(spaced_timesteps(1000, 1000), torch.arange(999, -1, -1))
    ts = spaced_timesteps(1000, 7)
    assert ts.dtype == torch.long and ts[0] == 999 and ts[-1] == 0 and (ts[1:] < ts[:-1]).all()
    assert spaced_timesteps(1000, 1).tolist() == [999]
    with pytest.raises(ValueError):
        spaced_timesteps(10, 11)
    with pytest.raises(TypeError):
        spaced_timesteps(10, 2.0)


def test_config_round_trip():
    sched = CosineSchedule(num_train_timesteps=200, s=0.01, max_beta=0.99)
    d = json.loads(json.dumps(sched.to_dict()))
    again = scheduler_from_dict(d)
    assert type(again) is CosineSchedule and again.to_dict() == sched.to_dict()
    torch.testing.assert_close(again.alphas_cumprod, sched.alphas_cumprod, rtol=0, atol=0)
    with pytest.raises(ValueError, match="type"):
        CosineSchedule.from_dict({**d, "type": "ddpm"})
    with pytest.raises(ValueError, match="type"):
        scheduler_from_dict({"type": "karras"})
