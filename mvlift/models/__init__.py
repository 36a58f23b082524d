"""Denoisers of 2D motion (x0 prediction) and their attention backends.

- :class:`DenoiserConfig`: every hyper-parameter, JSON round trip; :func:`build_model` rebuilds a model.
- :class:`Stage1Denoiser`: line-conditioned single-view model (MVLift stage 1).
- :class:`MultiViewDenoiser`: K-view model with cross-view attention (MVLift stage 4).
- :mod:`mvlift.models.attention`: ``attention(q, k, v, ...)`` (one function, xformers or SDPA backend; not
  re-exported here so the submodule stays reachable as ``mvlift.models.attention``),
  :func:`cross_view_attention`, :func:`available_backends`, :func:`last_backend`.

Models never import schedulers; :mod:`mvlift.schedulers` never imports models.
"""

from __future__ import annotations

from typing import Any

import torch

from mvlift.models.attention import available_backends, cross_view_attention, last_backend
from mvlift.models.config import DenoiserConfig
from mvlift.models.multiview import MultiViewDenoiser
from mvlift.models.stage1 import Stage1Denoiser


def build_model(
    config: DenoiserConfig | dict[str, Any], *, seed: int | None = None
) -> Stage1Denoiser | MultiViewDenoiser:
    """A freshly initialised model of ``config.kind`` (a :class:`DenoiserConfig` or its ``to_dict()``).

    Args:
        config: the model's configuration.
        seed: when given, the initial weights are drawn from a CPU RNG seeded with it (the same seed gives
            the same weights), and torch's global RNG is left as it was; None draws from the global RNG.
    """
    if isinstance(config, dict):
        config = DenoiserConfig.from_dict(config)
    if not isinstance(config, DenoiserConfig):
        raise TypeError(f"build_model: config must be a DenoiserConfig or dict, got {type(config).__name__}")
    klass = Stage1Denoiser if config.kind == "stage1" else MultiViewDenoiser
    if seed is None:
        return klass(config)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"build_model: seed must be an int >= 0 or None, got {seed!r}")
    with torch.random.fork_rng(devices=[]):  # parameters are created on the CPU
        torch.manual_seed(seed)
        return klass(config)


__all__ = [
    "DenoiserConfig",
    "MultiViewDenoiser",
    "Stage1Denoiser",
    "available_backends",
    "build_model",
    "cross_view_attention",
    "last_backend",
]
