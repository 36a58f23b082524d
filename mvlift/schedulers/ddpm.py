"""Ancestral DDPM sampling from x0 predictions (the paper's sampler: 1000 steps, x0 clipped to [-1, 1])."""

from __future__ import annotations

import math
from typing import Any

import torch

from mvlift.schedulers.cosine import StepLike, TimestepScheduler, randn_tensor

VARIANCE_TYPES = ("fixed_small", "fixed_large")


class DDPMScheduler(TimestepScheduler):
    """Ancestral sampler: ``x_prev ~ q(x_prev | x_t, x0_pred)``, the forward-process posterior.

    For a step t -> p (p = the next inference step, -1 at the end) with ``a_t = alphas_cumprod[t]``,
    ``a_p = alphas_cumprod[p]`` (1 for p = -1) and ``beta = 1 - a_t / a_p``:
    ``mean = sqrt(a_p) beta / (1 - a_t) * x0 + sqrt(1 - beta) (1 - a_p) / (1 - a_t) * x_t`` and
    ``variance = beta (1 - a_p) / (1 - a_t)`` (``"fixed_small"``, the true posterior) or ``beta``
    (``"fixed_large"``). The last step (p = -1) adds no noise and returns the (clipped) x0 prediction.
    With all N steps visited this is the usual DDPM; with fewer it is DDPM on the respaced chain.

    Args:
        num_train_timesteps, s, max_beta: the cosine schedule (:class:`~mvlift.schedulers.CosineSchedule`).
        num_inference_steps: steps visited when sampling (None = all ``num_train_timesteps``).
        clip_sample, clip_range: clamp x0 predictions to ``[-clip_range, clip_range]``.
        variance_type: ``"fixed_small"`` (default) or ``"fixed_large"``.
    """

    _TYPE = "ddpm"

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        s: float = 0.008,
        max_beta: float = 0.999,
        num_inference_steps: int | None = None,
        clip_sample: bool = True,
        clip_range: float = 1.0,
        variance_type: str = "fixed_small",
    ) -> None:
        if variance_type not in VARIANCE_TYPES:
            raise ValueError(f"variance_type must be one of {VARIANCE_TYPES}, got {variance_type!r}")
        self.variance_type = variance_type
        super().__init__(num_train_timesteps, s, max_beta, num_inference_steps, clip_sample, clip_range)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["variance_type"] = self.variance_type
        return out

    def posterior_coefficients(self, t: StepLike) -> tuple[float, float, float]:
        """``(c_x0, c_xt, variance)`` of the step from ``t`` to its previous inference step (float64 math)."""
        step = self._as_step(t)
        prev = self.previous_timestep(step)
        a_t, a_p = self.alpha_bar_value(step), self.alpha_bar_value(prev)
        beta = 1.0 - a_t / a_p
        c_x0 = math.sqrt(a_p) * beta / (1.0 - a_t)
        c_xt = math.sqrt(1.0 - beta) * (1.0 - a_p) / (1.0 - a_t)
        if prev < 0:
            variance = 0.0
        elif self.variance_type == "fixed_small":
            variance = beta * (1.0 - a_p) / (1.0 - a_t)
        else:
            variance = beta
        return c_x0, c_xt, variance

    def posterior_mean_variance(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: StepLike
    ) -> tuple[torch.Tensor, float]:
        """Mean (x_t's shape) and variance (a float) of ``q(x_prev | x_t, x0)``; x0 is used as given."""
        c_x0, c_xt, variance = self.posterior_coefficients(t)
        return c_x0 * x0 + c_xt * x_t, variance

    def step(
        self,
        x0_pred: torch.Tensor,
        t: StepLike,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One ancestral step.

        Args:
            x0_pred: (B, ...) the model's clean prediction at step t (clipped here when ``clip_sample``).
            t: the current step, one of :attr:`timesteps` (int or 1-element integer tensor).
            sample: (B, ...) the current noisy sample x_t.
            generator: the random generator of the added noise (reproducible sampling).

        Returns:
            x_prev, the sample at the next inference step (the clean estimate after the last step).
        """
        step, prev = self._check_step_inputs(x0_pred, t, sample)
        x0 = self.clip(x0_pred.to(sample.dtype))
        if prev < 0:
            return x0
        mean, variance = self.posterior_mean_variance(x0, sample, step)
        if variance == 0.0:
            return mean
        noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
        return mean + math.sqrt(variance) * noise
