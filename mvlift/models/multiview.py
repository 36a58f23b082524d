"""Stage-4 model: multi-view 2D motion denoiser with cross-view attention (x0 prediction).

Every block runs temporal self-attention over each view's 1 + T tokens (batch B·K), then cross-view
attention across the K views at each token position (batch B·(1 + T), K tokens), then the FFN; post-LayerNorm
around each.
"""

from __future__ import annotations

import torch
from torch import nn

from mvlift.models.attention import cross_view_attention, cross_view_kernel_available
from mvlift.models.config import DenoiserConfig
from mvlift.models.preconditioning import SkipPreconditioning
from mvlift.models.transformer import (
    FeedForward,
    MultiHeadSelfAttention,
    SequenceTokens,
    check_mask,
    check_motion,
    check_steps,
)


class CrossViewAttention(MultiHeadSelfAttention):
    """Attention among the K view tokens of each frame: (N, K, d_model) -> (N, K, d_model), N = B·(1 + T).

    Goes through :func:`mvlift.models.attention.cross_view_attention` with ``backend`` (``"auto"``: the Triton
    kernel on CUDA when available; ``"kernel"``, ``"sdpa"``, ``"xformers"`` force one; the model passes
    ``DenoiserConfig.resolved_cross_view_backend``). It has no attention-weight dropout (the kernel has
    none); the residual dropout of the layer still applies.
    """

    def __init__(self, d_model: int, num_heads: int, head_dim: int, backend: str) -> None:
        super().__init__(d_model, num_heads, head_dim, 0.0, backend)
        cross_view_kernel_available()  # resolve the optional kernel now, outside any torch.compile tracing

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, K, d_model). No mask: every view is present at every frame."""
        if key_padding_mask is not None:
            raise ValueError("CrossViewAttention takes no key_padding_mask: all K views are always present")
        n, k, _ = x.shape
        q, key, v = self.project(x)
        out = cross_view_attention(q, key, v, backend=self.backend)
        return self.out(out.reshape(n, k, self.num_heads * self.head_dim))


class MultiViewLayer(nn.Module):
    """Temporal self-attention, then cross-view attention, then FFN; each ``x = LN(x + Drop(f(x)))``."""

    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        d, h, hd = config.d_model, config.num_heads, config.resolved_head_dim
        self.temporal = MultiHeadSelfAttention(d, h, hd, config.dropout, config.attention_backend)
        self.cross = CrossViewAttention(d, h, hd, config.resolved_cross_view_backend)
        self.ffn = FeedForward(d, config.ffn_dim, config.dropout)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.norm3 = nn.LayerNorm(d)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None, num_views: int) -> torch.Tensor:
        """x: (B·K, S, d_model), view index fastest after batch; key_padding_mask (B·K, S) or None.

        Returns (B·K, S, d_model).
        """
        n, s, d = x.shape
        b = n // num_views
        x = self.norm1(x + self.drop(self.temporal(x, key_padding_mask)))
        xv = x.view(b, num_views, s, d).transpose(1, 2).reshape(b * s, num_views, d)
        xv = self.norm2(xv + self.drop(self.cross(xv)))
        x = xv.view(b, s, num_views, d).transpose(1, 2).reshape(n, s, d)
        return self.norm3(x + self.drop(self.ffn(x)))


class MultiViewDenoiser(nn.Module):
    """Denoiser of K views of one 2D motion, conditioned on the clean input view.

    Per view and frame the input is the noisy view (J·2) concatenated with the clean input view (J·2),
    embedded linearly, plus a learned view-index embedding and the temporal positions; the diffusion step is a
    prepended token per view. View 0 is the input view by convention (its output is overwritten at sampling).

    Args:
        config: a :class:`DenoiserConfig` with ``kind="multiview"``; ``config.num_views`` is the largest K.
    """

    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        if not isinstance(config, DenoiserConfig):
            raise TypeError(
                f"MultiViewDenoiser: config must be a DenoiserConfig, got {type(config).__name__}"
            )
        if config.kind != "multiview":
            raise ValueError(f"MultiViewDenoiser: config.kind must be 'multiview', got {config.kind!r}")
        self.config = config
        j, d = config.num_joints, config.d_model
        self.tokens = SequenceTokens(j * 4, d, config.max_frames, config.dropout)
        self.view_embedding = nn.Embedding(config.num_views, d)
        nn.init.normal_(self.view_embedding.weight, std=0.02)
        self.layers = nn.ModuleList(MultiViewLayer(config) for _ in range(config.num_layers))
        self.skip = SkipPreconditioning(config.sigma_data) if config.skip else None
        self.output = nn.Linear(d, j * 2)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the clean K views x0.

        Args:
            x_t: (B, K, T, J, 2) noisy views, 1 <= K <= config.num_views (normalised frame).
            t: (B,) diffusion steps in [0, num_train_timesteps).
            cond: (B, T, J, 2) the clean input view.
            mask: (B, T) bool, True = valid frame (the same frames in every view), or None.

        Returns:
            x0_pred (B, K, T, J, 2).
        """
        j = self.config.num_joints
        check_motion("x_t", x_t, (None, None, None, j, 2), "(B, K, T, J, 2)")
        b, k, num_frames = x_t.shape[:3]
        if k > self.config.num_views:
            raise ValueError(f"x_t has K={k} views, more than config.num_views={self.config.num_views}")
        if num_frames > self.config.max_frames:
            raise ValueError(
                f"x_t has T={num_frames} frames, more than config.max_frames={self.config.max_frames}"
            )
        check_motion("cond", cond, (b, num_frames, j, 2), "(B, T, J, 2)")
        check_steps(t, b, x_t.device)
        check_mask(mask, b, num_frames, x_t.device)

        dtype = self.output.weight.dtype
        cond_k = cond.reshape(b, 1, num_frames, j * 2).expand(b, k, num_frames, j * 2)
        features = torch.cat([x_t.reshape(b, k, num_frames, j * 2), cond_k], dim=-1).to(dtype)
        views = self.view_embedding(torch.arange(k, device=x_t.device)).repeat(b, 1)  # (B·K, d)
        mask_k = None if mask is None else mask.repeat_interleave(k, dim=0)  # (B·K, T)
        h, key_mask = self.tokens(
            features.reshape(b * k, num_frames, j * 4), t.repeat_interleave(k), mask_k, offset=views
        )
        for layer in self.layers:
            h = layer(h, key_mask, k)
        x0 = self.output(h[:, 1:]).reshape(b, k, num_frames, j, 2)
        return x0 if self.skip is None else self.skip.combine(x_t, t, x0)
