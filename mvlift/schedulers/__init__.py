"""Noise schedules and samplers for x0-predicting diffusion models (model-free: never imports models).

- :class:`CosineSchedule` (s = 0.008, 1000 steps, betas clipped at 0.999): ``add_noise``, ``x0_to_eps``,
  ``eps_to_x0``.
- :class:`DDPMScheduler` (ancestral, the paper's sampler) and :class:`DDIMScheduler` (few steps, eta):
  diffusers-like ``set_timesteps(n)``, ``timesteps``, ``step(x0_pred, t, sample, generator) -> prev_sample``;
  ``to_dict`` / ``from_dict`` (and :func:`scheduler_from_dict` for either).
- :func:`sample`: the sampling loop with an inpainting hook.
"""

from __future__ import annotations

from typing import Any

from mvlift.schedulers.cosine import (
    CosineSchedule,
    TimestepScheduler,
    cosine_betas,
    randn_tensor,
    spaced_timesteps,
)
from mvlift.schedulers.ddim import DDIMScheduler
from mvlift.schedulers.ddpm import DDPMScheduler
from mvlift.schedulers.sampling import sample

_BY_TYPE: dict[str, type[CosineSchedule]] = {
    "cosine": CosineSchedule,
    "ddpm": DDPMScheduler,
    "ddim": DDIMScheduler,
}


def scheduler_from_dict(data: dict[str, Any]) -> CosineSchedule:
    """Rebuild any schedule/scheduler from its ``to_dict()`` output (dispatching on its ``"type"``)."""
    if not isinstance(data, dict) or data.get("type") not in _BY_TYPE:
        got = data.get("type") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"scheduler_from_dict: 'type' must be one of {sorted(_BY_TYPE)}, got {got!r}")
    return _BY_TYPE[data["type"]].from_dict(data)


__all__ = [
    "CosineSchedule",
    "DDIMScheduler",
    "DDPMScheduler",
    "TimestepScheduler",
    "cosine_betas",
    "randn_tensor",
    "sample",
    "scheduler_from_dict",
    "spaced_timesteps",
]
