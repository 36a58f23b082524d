"""sample(): the loop with oracles, seeding, inpainting (tuple and callable), argument checks."""

from __future__ import annotations

import pytest
import torch

from mvlift.schedulers import DDIMScheduler, DDPMScheduler, sample

SHAPE = (3, 4, 9, 5, 2)  # (B, K, T, J, 2)


def oracle(x0):
    def model_fn(x_t, t_batch):
        assert t_batch.shape == (x_t.shape[0],) and t_batch.dtype == torch.long
        return x0.expand_as(x_t)

    return model_fn


def shrink(x_t, t_batch):
    """A deterministic non-oracle 'model': x0 ~ a step-dependent shrink of x_t."""
    return 0.5 * x_t * (1.0 - t_batch.float() / 2000).view(-1, *([1] * (x_t.dim() - 1)))


@pytest.mark.parametrize(
    "scheduler", [DDIMScheduler(8), DDPMScheduler(num_inference_steps=30)], ids=["ddim", "ddpm"]
)
def test_oracle_sampling_returns_x0(scheduler, seed):
    x0 = torch.rand(SHAPE) * 1.6 - 0.8
    out = sample(oracle(x0), SHAPE, scheduler, generator=seed, progress=False)
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-6)


def test_model_sees_every_timestep_in_order():
    sched = DDIMScheduler(6)
    seen = []

    def model_fn(x_t, t_batch):
        seen.append(t_batch.tolist())
        return torch.zeros_like(x_t)

    sample(model_fn, (2, 3), sched, generator=0, progress=False)
    assert seen == [[t, t] for t in sched.timesteps.tolist()]


@pytest.mark.parametrize("scheduler", [DDIMScheduler(5, eta=0.5), DDPMScheduler(num_inference_steps=5)])
def test_seeded_reproducible(scheduler):
    a = sample(shrink, SHAPE, scheduler, generator=3, progress=False)
    b = sample(shrink, SHAPE, scheduler, generator=torch.Generator().manual_seed(3), progress=True)
    c = sample(shrink, SHAPE, scheduler, generator=4, progress=False)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_initial_noise_is_used(seed):
    sched = DDIMScheduler(4)
    noise = torch.randn(SHAPE)
    a = sample(shrink, SHAPE, sched, initial_noise=noise, progress=False)
    b = sample(shrink, SHAPE, sched, initial_noise=noise, generator=99, progress=False)
    assert torch.equal(a, b)  # eta = 0 uses no further noise
    with pytest.raises(ValueError, match="initial_noise"):
        sample(shrink, SHAPE, sched, initial_noise=noise[:1], progress=False)


@pytest.mark.parametrize("scheduler", [DDIMScheduler(6), DDPMScheduler(num_inference_steps=6)])
def test_inpaint_tuple_keeps_the_input_view(scheduler, seed):
    values = torch.rand(SHAPE) * 2 - 1
    mask = torch.zeros(1, SHAPE[1], 1, 1, 1, dtype=torch.bool)
    mask[:, 0] = True
    seen_inputs = []

    def model_fn(x_t, t_batch):  # mixes the views, like cross-view attention
        seen_inputs.append(x_t[:, 0].clone())
        return shrink(x_t + x_t.mean(dim=1, keepdim=True), t_batch)

    out = sample(model_fn, SHAPE, scheduler, generator=seed, inpaint=(mask, values), progress=False)
    torch.testing.assert_close(out[:, 0], values[:, 0], rtol=0, atol=0)
    seen_inputs.clear()
    free = sample(model_fn, SHAPE, scheduler, generator=seed, progress=False)
    assert not torch.allclose(out[:, 1:], free[:, 1:]), "the known view must inform the others through x_t"
    seen_inputs.clear()
    sample(model_fn, SHAPE, scheduler, generator=seed, inpaint=(mask, values), progress=False)
    # the known view's x_t approaches the known values as the noise level falls
    errors = [(x - values[:, 0]).abs().mean().item() for x in seen_inputs]
    assert errors[-1] < 0.2 * errors[0]


def test_inpaint_callable(seed):
    sched = DDIMScheduler(4)
    calls = []

    def hook(x0_pred, t):
        calls.append(t)
        return x0_pred.clamp(-0.1, 0.1)

    out = sample(shrink, SHAPE, sched, generator=seed, inpaint=hook, progress=False)
    assert calls == sched.timesteps.tolist() + [-1]
    assert out.abs().max() <= 0.1 + 1e-7


def test_bad_arguments_raise():
    sched = DDIMScheduler(3)
    with pytest.raises(TypeError, match="inpaint"):
        sample(shrink, SHAPE, sched, inpaint=torch.ones(SHAPE), progress=False)
    with pytest.raises(TypeError, match="mask"):
        sample(shrink, SHAPE, sched, inpaint=(torch.ones(SHAPE), torch.ones(SHAPE)), progress=False)
    with pytest.raises(ValueError, match="broadcast"):
        sample(shrink, SHAPE, sched, inpaint=(torch.ones(2, 1, 1, 1, 1, dtype=torch.bool), torch.ones(SHAPE)))
    with pytest.raises(TypeError, match="generator"):
        sample(shrink, SHAPE, sched, generator="seed", progress=False)
    with pytest.raises(ValueError, match="model_fn returned"):
        sample(lambda x, t: x[:1], SHAPE, sched, generator=0, progress=False)
    with pytest.raises(ValueError, match="batch"):
        sample(shrink, (), sched, progress=False)
