"""The shared transformer backbone of the denoisers: frame tokens, step token, post-LayerNorm layers.

A sequence of T frames becomes T tokens (input Linear of the per-frame features + fixed sinusoidal temporal
positions); the diffusion step (sinusoid -> MLP) is prepended as one extra token, so a layer sees 1 + T
tokens.
Padded frames are excluded as attention keys through a (N, 1 + T) key mask whose step entry is always valid.
"""

from __future__ import annotations

import torch
from torch import nn

from mvlift.models.attention import attention
from mvlift.models.config import DenoiserConfig
from mvlift.models.embeddings import SinusoidalPositions, TimestepEmbedding


class MultiHeadSelfAttention(nn.Module):
    """Self-attention over the tokens of (N, M, d_model) through :func:`mvlift.models.attention.attention`.

    Args:
        d_model: token width.
        num_heads: H.
        head_dim: per-head width of q, k and v (the inner width is H * head_dim).
        dropout: dropout on the attention weights (training only).
        backend: ``"auto"``, ``"sdpa"`` or ``"xformers"``.
    """

    def __init__(self, d_model: int, num_heads: int, head_dim: int, dropout: float, backend: str) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.dropout = dropout
        self.backend = backend
        self.qkv = nn.Linear(d_model, 3 * num_heads * head_dim)
        self.out = nn.Linear(num_heads * head_dim, d_model)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (N, M, d_model) -> q, k, v, each (N, M, H, head_dim)."""
        n, m, _ = x.shape
        qkv = self.qkv(x).view(n, m, 3, self.num_heads, self.head_dim)
        return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, M, d_model); key_padding_mask: (N, M) bool, True = valid. Returns (N, M, d_model)."""
        n, m, _ = x.shape
        q, k, v = self.project(x)
        out = attention(
            q,
            k,
            v,
            key_padding_mask=key_padding_mask,
            dropout_p=self.dropout if self.training else 0.0,
            layout="BMHK",
            backend=self.backend,
        )
        return self.out(out.reshape(n, m, self.num_heads * self.head_dim))


class FeedForward(nn.Module):
    """Linear(d_model, ffn_dim) -> GELU -> Dropout -> Linear(ffn_dim, d_model)."""

    def __init__(self, d_model: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d_model)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., d_model) -> (..., d_model)."""
        return self.net(x)


class TransformerLayer(nn.Module):
    """Post-LayerNorm encoder layer: ``x = LN(x + Drop(SelfAttn(x)))``, ``x = LN(x + Drop(FFN(x)))``."""

    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        d = config.d_model
        self.attn = MultiHeadSelfAttention(
            d, config.num_heads, config.resolved_head_dim, config.dropout, config.attention_backend
        )
        self.ffn = FeedForward(d, config.ffn_dim, config.dropout)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, M, d_model); key_padding_mask: (N, M) bool or None. Returns (N, M, d_model)."""
        x = self.norm1(x + self.drop(self.attn(x, key_padding_mask)))
        return self.norm2(x + self.drop(self.ffn(x)))


class SequenceTokens(nn.Module):
    """Per-frame features -> tokens: input Linear + temporal positions, with the step token prepended.

    Args:
        in_features: F, features per frame.
        d_model: token width.
        max_frames: longest T.
        dropout: dropout on the tokens.
    """

    def __init__(self, in_features: int, d_model: int, max_frames: int, dropout: float) -> None:
        super().__init__()
        self.input = nn.Linear(in_features, d_model)
        self.positions = SinusoidalPositions(max_frames, d_model)
        self.step = TimestepEmbedding(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        features: torch.Tensor,
        t: torch.Tensor,
        mask: torch.Tensor | None = None,
        offset: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Build the token sequence.

        Args:
            features: (N, T, F) per-frame features.
            t: (N,) diffusion steps.
            mask: (N, T) bool, True = valid frame, or None (all valid).
            offset: optional (N, d_model) added to every frame token (e.g. a view embedding).

        Returns:
            tokens (N, 1 + T, d_model) with the step token first, and the key mask (N, 1 + T) (None when
            ``mask`` is None).
        """
        n, num_frames, _ = features.shape
        h = self.input(features) + self.positions(num_frames)[None]
        if offset is not None:
            h = h + offset[:, None]
        step = self.step(t)[:, None].to(h.dtype)
        tokens = self.drop(torch.cat([step, h], dim=1))
        if mask is None:
            return tokens, None
        key_mask = torch.cat([mask.new_ones(n, 1), mask], dim=1)
        return tokens, key_mask


def check_steps(t: torch.Tensor, batch: int, device: torch.device) -> None:
    """Validate diffusion steps ``t``: a (B,) integer or real tensor on ``device``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a (B,) tensor of diffusion steps, got {type(t).__name__}")
    if tuple(t.shape) != (batch,):
        raise ValueError(f"t must have shape (B,) = ({batch},), got {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"t must be an integer (or real) tensor, got {t.dtype}")
    if t.device != device:
        raise ValueError(f"t is on {t.device}, the inputs on {device}")


def check_mask(mask: torch.Tensor | None, batch: int, num_frames: int, device: torch.device) -> None:
    """Validate a (B, T) bool frame mask (True = valid) or None."""
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(f"mask must be a (B, T) bool tensor (True = valid frame), got {got}")
    if tuple(mask.shape) != (batch, num_frames):
        raise ValueError(f"mask must have shape (B, T) = ({batch}, {num_frames}), got {tuple(mask.shape)}")
    if mask.device != device:
        raise ValueError(f"mask is on {mask.device}, the inputs on {device}")


def check_motion(name: str, x: torch.Tensor, expected: tuple[int | None, ...], layout: str) -> None:
    """Validate a floating tensor's shape against ``expected`` (None = any); ``layout`` names the axes."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor {layout}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {x.dtype}")
    ok = x.dim() == len(expected) and all(e is None or e == s for e, s in zip(expected, x.shape, strict=True))
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{name} must have shape {layout} = {want}, got {tuple(x.shape)}")
