"""DDPM and DDIM steps: posterior vs Gaussian conditioning, oracle recovery, seeding, clipping, config."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mvlift.schedulers import DDIMScheduler, DDPMScheduler, scheduler_from_dict


def gaussian_posterior(a_t: float, a_p: float) -> tuple[float, float, float]:
    """q(x_p | x_t, x0) by conditioning the joint Gaussian of the forward chain x0 -> x_p -> x_t:
    x_p = sqrt(a_p) x0 + sqrt(1 - a_p) e1, x_t = sqrt(a_t / a_p) x_p + sqrt(1 - a_t / a_p) e2.
    Returns (coefficient of x0, coefficient of x_t, variance)."""
    alpha = a_t / a_p
    cov = math.sqrt(alpha) * (1 - a_p)  # Cov(x_p, x_t | x0)
    var_t = 1 - a_t
    gain = cov / var_t
    # mean = sqrt(a_p) x0 + gain (x_t - sqrt(a_t) x0)
    return math.sqrt(a_p) - gain * math.sqrt(a_t), gain, (1 - a_p) - cov * cov / var_t


@pytest.mark.parametrize("num_steps", [1000, 37])
def test_ddpm_posterior_matches_gaussian_conditioning(num_steps, seed):
    sched = DDPMScheduler(num_inference_steps=num_steps)
    x0 = torch.rand(3, 4, dtype=torch.float64) * 2 - 1
    xt = torch.randn(3, 4, dtype=torch.float64)
    ts = sched.timesteps.tolist()
    for t in [ts[0], ts[1], ts[len(ts) // 2], ts[-2]]:
        p = sched.previous_timestep(t)
        c0, ct, var = gaussian_posterior(float(sched.alphas_cumprod[t]), float(sched.alphas_cumprod[p]))
        mean, variance = sched.posterior_mean_variance(x0, xt, t)
        torch.testing.assert_close(mean, c0 * x0 + ct * xt, rtol=1e-10, atol=1e-12)
        assert variance == pytest.approx(var, rel=1e-9, abs=1e-15)


def test_ddpm_step_noise_has_posterior_statistics(seed):
    sched = DDPMScheduler(clip_sample=False)
    n = 100_000
    x0 = torch.full((n, 2), 0.3, dtype=torch.float64)
    xt = torch.full((n, 2), -0.7, dtype=torch.float64)
    t = 300
    mean, var = sched.posterior_mean_variance(x0, xt, t)
    gen = torch.Generator().manual_seed(seed)
    prev = sched.step(x0, t, xt, generator=gen)
    assert abs(prev.mean() - mean[0, 0]) < 4 * math.sqrt(var / (2 * n))
    assert prev.var().item() == pytest.approx(var, rel=0.02)


@pytest.mark.parametrize("num_steps", [1000, 25])
def test_ddpm_with_oracle_tracks_the_forward_process_and_recovers_x0(num_steps, seed):
    """With a perfect x0 oracle every x_t of the chain is distributed as q(x_t | x0) (posterior consistency)
    and the final sample is x0."""
    sched = DDPMScheduler(num_inference_steps=num_steps)
    gen = torch.Generator().manual_seed(seed)
    n = 4_000  # 24k elements: mean error ~0.0065, std error ~0.0046 (one sigma)
    x0 = (torch.rand(1, 6, generator=gen) * 1.8 - 0.9).repeat(n, 1)
    x = torch.randn(n, 6, generator=gen)
    checks = {
        int(sched.timesteps[len(sched.timesteps) // 3]),
        int(sched.timesteps[2 * len(sched.timesteps) // 3]),
    }
    for t in sched.timesteps.tolist():
        if t in checks:
            a = math.sqrt(float(sched.alphas_cumprod[t]))
            b = math.sqrt(1 - float(sched.alphas_cumprod[t]))
            z = (x - a * x0) / b  # must be standard normal
            assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.025, t
        x = sched.step(x0, t, x, generator=gen)
    torch.testing.assert_close(x, x0, rtol=0, atol=1e-6)


def test_ddim_eta0_with_oracle_is_exact_and_keeps_the_noise(seed):
    sched = DDIMScheduler(num_inference_steps=5)
    assert sched.timesteps.tolist() == [999, 749, 500, 250, 0]
    x0 = torch.rand(4, 7, 3, dtype=torch.float64) * 2 - 1
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    eps = sched.x0_to_eps(x, x0, 999)
    for t in sched.timesteps.tolist():
        torch.testing.assert_close(x, sched.add_noise(x0, eps, t), rtol=1e-9, atol=1e-9)
        x = sched.step(x0, t, x)
    torch.testing.assert_close(x, x0, rtol=0, atol=1e-12)


def test_ddim_eta1_equals_ddpm_on_the_same_steps(seed):
    ddim = DDIMScheduler(num_inference_steps=12, eta=1.0)
    ddpm = DDPMScheduler(num_inference_steps=12)
    x0 = torch.rand(5, 4, dtype=torch.float64) * 2 - 1
    x = torch.randn(5, 4, dtype=torch.float64)
    for t in ddim.timesteps.tolist()[:-1]:
        a = ddim.step(x0, t, x, generator=torch.Generator().manual_seed(t))
        b = ddpm.step(x0, t, x, generator=torch.Generator().manual_seed(t))
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "make", [lambda: DDPMScheduler(num_inference_steps=10), lambda: DDIMScheduler(10, eta=0.5)]
)
def test_seeded_steps_are_reproducible(make, seed):
    sched = make()
    x0 = torch.rand(3, 5) * 2 - 1
    x = torch.randn(3, 5)
    t = int(sched.timesteps[3])
    a = sched.step(x0, t, x, generator=torch.Generator().manual_seed(1))
    b = sched.step(x0, t, x, generator=torch.Generator().manual_seed(1))
    c = sched.step(x0, t, x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)


@pytest.mark.parametrize("cls", [DDPMScheduler, DDIMScheduler])
def test_x0_clipping(cls, seed):
    x0 = torch.randn(50, 3) * 3
    assert x0.abs().max() > 1.5
    x = torch.randn(50, 3)
    last = 0
    sched = cls(num_inference_steps=10) if cls is DDPMScheduler else cls(10)
    # the last step (t = 0) returns the clipped x0 prediction
    out = sched.step(x0, last, x)
    torch.testing.assert_close(out, x0.clamp(-1, 1), rtol=0, atol=0)
    wide = cls.from_dict({**sched.to_dict(), "clip_range": 2.0})
    torch.testing.assert_close(wide.step(x0, last, x), x0.clamp(-2, 2), rtol=0, atol=0)
    free = cls.from_dict({**sched.to_dict(), "clip_sample": False})
    torch.testing.assert_close(free.step(x0, last, x), x0, rtol=0, atol=0)
    # an intermediate step uses the clipped prediction too
    t = int(sched.timesteps[4])
    torch.testing.assert_close(
        sched.step(x0, t, x, generator=torch.Generator().manual_seed(0)),
        free.step(x0.clamp(-1, 1), t, x, generator=torch.Generator().manual_seed(0)),
    )


def test_set_timesteps_and_step_validation():
    sched = DDPMScheduler()
    assert sched.timesteps.shape == (1000,) and sched.num_inference_steps == 1000
    sched.set_timesteps(50)
    assert len(sched.timesteps) == 50 and sched.previous_timestep(0) == -1
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="timesteps"):
        sched.step(x, 998, x)
    with pytest.raises(ValueError, match="shape"):
        sched.step(x[:1], 999, x)
    with pytest.raises(ValueError, match="single integer"):
        sched.step(x, torch.tensor([999, 979]), x)
    with pytest.raises(ValueError, match="variance_type"):
        DDPMScheduler(variance_type="learned")
    with pytest.raises(ValueError, match="eta"):
        DDIMScheduler(10, eta=1.5)
    with pytest.raises(ValueError, match="num_inference_steps"):
        DDIMScheduler(0)
    assert sched.step(x, torch.tensor(999), x, generator=torch.Generator().manual_seed(0)).shape == (2, 3)


def test_fixed_large_variance():
    sched = DDPMScheduler(variance_type="fixed_large")
    _, _, var = sched.posterior_coefficients(500)
    assert var == pytest.approx(float(sched.betas[500]), rel=1e-9)


@pytest.mark.parametrize(
    "sched",
    [
        DDPMScheduler(
            num_train_timesteps=300, num_inference_steps=30, clip_range=1.5, variance_type="fixed_large"
        ),
        DDIMScheduler(20, eta=0.3, num_train_timesteps=500, clip_sample=False),
    ],
)
def test_config_round_trip(sched):
    d = json.loads(json.dumps(sched.to_dict()))
    again = scheduler_from_dict(d)
    assert type(again) is type(sched) and again.to_dict() == sched.to_dict()
    assert torch.equal(again.timesteps, sched.timesteps)
    other = DDIMScheduler if isinstance(sched, DDPMScheduler) else DDPMScheduler
    with pytest.raises(ValueError, match="type"):
        other.from_dict(d)
