"""DDIM sampling from x0 predictions with a configurable number of steps and stochasticity eta."""

from __future__ import annotations

import math
from typing import Any

import torch

from mvlift.schedulers.cosine import StepLike, TimestepScheduler, randn_tensor


class DDIMScheduler(TimestepScheduler):
    """DDIM (Song et al. 2021) on evenly spaced steps from N-1 down to 0.

    For a step t -> p with ``a_t = alphas_cumprod[t]``, ``a_p = alphas_cumprod[p]`` (1 for p = -1), the
    (clipped) x0 prediction and the noise it implies ``eps = (x_t - sqrt(a_t) x0) / sqrt(1 - a_t)``:
    ``sigma = eta sqrt((1 - a_p) / (1 - a_t)) sqrt(1 - a_t / a_p)`` and
    ``x_p = sqrt(a_p) x0 + sqrt(1 - a_p - sigma^2) eps + sigma z``. eta = 0 is deterministic; eta = 1 matches
    the DDPM posterior variance. The last step returns x0.

    Args:
        num_inference_steps: steps visited when sampling (e.g. 50).
        eta: stochasticity in [0, 1].
        num_train_timesteps, s, max_beta: the cosine schedule.
        clip_sample, clip_range: clamp x0 predictions to ``[-clip_range, clip_range]``.
    """

    _TYPE = "ddim"

    def __init__(
        self,
        num_inference_steps: int = 50,
        eta: float = 0.0,
        *,
        num_train_timesteps: int = 1000,
        s: float = 0.008,
        max_beta: float = 0.999,
        clip_sample: bool = True,
        clip_range: float = 1.0,
    ) -> None:
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be a float in [0, 1], got {eta!r}")
        self.eta = float(eta)
        super().__init__(num_train_timesteps, s, max_beta, num_inference_steps, clip_sample, clip_range)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["eta"] = self.eta
        return out

    def step(
        self,
        x0_pred: torch.Tensor,
        t: StepLike,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One DDIM step.

        Args:
            x0_pred: (B, ...) the model's clean prediction at step t (clipped here when ``clip_sample``).
            t: the current step, one of :attr:`timesteps` (int or 1-element integer tensor).
            sample: (B, ...) the current noisy sample x_t.
            generator: the random generator of the added noise (used only when eta > 0).

        Returns:
            x_prev, the sample at the next inference step (x0 after the last step).
        """
        step, prev = self._check_step_inputs(x0_pred, t, sample)
        x0 = self.clip(x0_pred.to(sample.dtype))
        if prev < 0:
            return x0
        a_t, a_p = self.alpha_bar_value(step), self.alpha_bar_value(prev)
        eps = (sample - math.sqrt(a_t) * x0) / math.sqrt(1.0 - a_t)
        sigma = self.eta * math.sqrt((1.0 - a_p) / (1.0 - a_t)) * math.sqrt(1.0 - a_t / a_p)
        out = math.sqrt(a_p) * x0 + math.sqrt(max(1.0 - a_p - sigma**2, 0.0)) * eps
        if sigma > 0.0:
            out = out + sigma * randn_tensor(
                sample.shape, generator=generator, device=sample.device, dtype=sample.dtype
            )
        return out
