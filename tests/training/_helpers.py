"""Helpers of the training tests: tiny models and small synthetic motion sets (CPU, seconds)."""

from __future__ import annotations

import math

import numpy as np
import torch

from mvlift.data.procedural import random_motion
from mvlift.models import DenoiserConfig

J = 14  # joints of the synthetic skeleton (and of mvlift.data's procedural motion)

# BODY14 (mvlift.data.skeletons): head, neck, R/L shoulder-elbow-wrist, R/L hip-knee-ankle.
HIPS = (8, 11)


def tiny_config(kind: str = "stage1", *, dropout: float = 0.0, num_views: int = 4) -> DenoiserConfig:
    """A 2-layer, d_model 64 denoiser of the 14-joint skeleton (fast on CPU)."""
    return DenoiserConfig(
        num_joints=J,
        d_model=64,
        num_layers=2,
        num_heads=4,
        ffn_dim=128,
        dropout=dropout,
        max_frames=32,
        kind=kind,
        num_views=num_views,
        attention_backend="sdpa",
    )


def smooth_motions_2d(n: int, num_frames: int, generator: torch.Generator) -> torch.Tensor:
    """(n, T, 14, 2) smooth 2D joint tracks in the normalized frame (random poses + per-joint sinusoids)."""
    base = (torch.rand(n, 1, J, 2, generator=generator) - 0.5) * 0.8
    phase = torch.rand(n, 1, J, 2, generator=generator) * (2 * math.pi)
    freq = 0.2 + 0.3 * torch.rand(n, 1, 1, 1, generator=generator)
    t = torch.arange(num_frames, dtype=torch.float32).view(1, num_frames, 1, 1)
    return base + 0.1 * torch.sin(freq * t + phase)


def procedural_positions(n: int, num_frames: int, seed: int) -> torch.Tensor:
    """(n, T, 14, 3) float64 metres, Y up: BODY14 clips of :func:`mvlift.data.procedural.random_motion`."""
    clips = [np.asarray(random_motion(seed + i, num_frames).positions) for i in range(n)]
    return torch.from_numpy(np.stack(clips)).to(torch.float64)
