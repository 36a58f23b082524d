"""Embeddings of the denoisers: fixed sinusoidal features, the diffusion-step MLP, temporal positions."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(positions: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer sinusoids of real-valued positions.

    Args:
        positions: (N,) positions (frame indices or diffusion steps), any real dtype.
        dim: output width; the first ``dim // 2`` features are sines, the next ``dim // 2`` cosines of
            ``positions * max_period ** (-i / (dim // 2))``; an odd ``dim`` gets one trailing zero.
        max_period: the longest wavelength.

    Returns:
        (N, dim) float32 (or positions' dtype when it is float64).
    """
    if positions.dim() != 1:
        raise ValueError(
            f"sinusoidal_embedding: positions must be 1-D (N,), got shape {tuple(positions.shape)}"
        )
    if dim < 1:
        raise ValueError(f"sinusoidal_embedding: dim must be >= 1, got {dim}")
    dtype = torch.float64 if positions.dtype == torch.float64 else torch.float32
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=positions.device, dtype=dtype) / max(half, 1)
    )
    args = positions.to(dtype)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, emb.new_zeros(emb.shape[0], 1)], dim=-1)
    return emb


class TimestepEmbedding(nn.Module):
    """Diffusion step -> sinusoid -> Linear -> SiLU -> Linear: (N,) steps -> (N, d_model)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.mlp = nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t: (N,) diffusion steps (integer or real). Returns (N, d_model) in the MLP's parameter dtype."""
        emb = sinusoidal_embedding(t, self.d_model)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal temporal positions for frames 0..max_frames-1 (a non-persistent buffer, so
    checkpoints hold only learned weights)."""

    table: torch.Tensor

    def __init__(self, max_frames: int, d_model: int) -> None:
        super().__init__()
        self.max_frames = max_frames
        table = sinusoidal_embedding(torch.arange(max_frames, dtype=torch.float64), d_model).float()
        self.register_buffer("table", table, persistent=False)

    def forward(self, num_frames: int) -> torch.Tensor:
        """Positions of frames 0..num_frames-1: (num_frames, d_model)."""
        if num_frames > self.max_frames:
            raise ValueError(
                f"sequence has {num_frames} frames but the positions cover max_frames={self.max_frames}"
            )
        return self.table[:num_frames]
