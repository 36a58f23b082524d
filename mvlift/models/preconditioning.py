"""Skip preconditioning of the x0-predicting denoisers (Karras et al. 2022, "EDM", section 5).

A plain x0-prediction network must learn the identity at low noise, where ``x_t`` already holds the
answer; a small or briefly trained network does not (a stage-1 model after 2,000 CPU steps on the CMU
clips was 57 px off at every step, tiny noise included, so its SDS gradient was mostly its own error).
With ``DenoiserConfig.skip`` the output becomes

    x0_hat = c_skip(t) * x_t / sqrt(abar_t) + c_out(t) * F(x_t, t, cond),
    sigma_t^2 = (1 - abar_t) / abar_t,   c_skip = s_d^2 / (sigma_t^2 + s_d^2),
    c_out = sigma_t s_d / sqrt(sigma_t^2 + s_d^2),

where ``x_t / sqrt(abar_t) = x0 + sigma_t eps`` is the variance-exploding view of the VP sample, ``abar`` the
cosine schedule's cumulative product (:class:`mvlift.schedulers.CosineSchedule`, 1000 steps) and
``s_d = DenoiserConfig.sigma_data`` the data's standard deviation (normalised units). At low noise the
output is ``x_t`` plus a small learned correction; at high noise the network's own prediction.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SkipPreconditioning"]


class SkipPreconditioning(nn.Module):
    """``combine(x_t, t, raw)`` -> the preconditioned x0 (module docstring). x_t and raw: (B, ..., 2),
    t: (B,) integer steps in [0, num_train_timesteps)."""

    def __init__(self, sigma_data: float, num_train_timesteps: int = 1000) -> None:
        super().__init__()
        from mvlift.schedulers import CosineSchedule

        ab = CosineSchedule(num_train_timesteps).alphas_cumprod  # float64
        sigma2 = (1.0 - ab) / ab
        sd2 = float(sigma_data) ** 2
        table = torch.stack(
            [sd2 / (sigma2 + sd2) / ab.sqrt(), sigma2.sqrt() * sigma_data / (sigma2 + sd2).sqrt()], dim=1
        )
        self.register_buffer("table", table.float(), persistent=False)  # (N, 2): c_skip / sqrt(ab), c_out

    def combine(self, x_t: torch.Tensor, t: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        c = self.table[t.long()].to(raw.dtype)  # (B, 2)
        shape = (-1,) + (1,) * (raw.dim() - 1)
        return c[:, 0].reshape(shape) * x_t.to(raw.dtype) + c[:, 1].reshape(shape) * raw
