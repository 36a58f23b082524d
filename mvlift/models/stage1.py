"""Stage-1 model: line-conditioned 2D motion denoiser (x0 prediction), as in MVLift's stage 1."""

from __future__ import annotations

import torch
from torch import nn

from mvlift.models.config import DenoiserConfig
from mvlift.models.preconditioning import SkipPreconditioning
from mvlift.models.transformer import (
    SequenceTokens,
    TransformerLayer,
    check_mask,
    check_motion,
    check_steps,
)


class Stage1Denoiser(nn.Module):
    """Transformer denoiser of single-view 2D motion conditioned on per-joint epipolar lines.

    Per frame the input is the noisy 2D pose (J·2) concatenated with the flattened line condition (J·3),
    embedded linearly; the diffusion step is a prepended token; ``config.num_layers`` post-LayerNorm
    transformer layers; an output Linear to J·2. Coordinates are in the normalised [-1, 1] frame.

    Args:
        config: a :class:`DenoiserConfig` with ``kind="stage1"``.
    """

    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        if not isinstance(config, DenoiserConfig):
            raise TypeError(f"Stage1Denoiser: config must be a DenoiserConfig, got {type(config).__name__}")
        if config.kind != "stage1":
            raise ValueError(f"Stage1Denoiser: config.kind must be 'stage1', got {config.kind!r}")
        self.config = config
        j = config.num_joints
        self.tokens = SequenceTokens(j * 5, config.d_model, config.max_frames, config.dropout)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_layers))
        self.skip = SkipPreconditioning(config.sigma_data) if config.skip else None
        self.output = nn.Linear(config.d_model, j * 2)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        lines: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the clean motion x0.

        Args:
            x_t: (B, T, J, 2) noisy 2D motion (normalised frame).
            t: (B,) diffusion steps in [0, num_train_timesteps).
            lines: (B, T, J, 3) line condition (a, b, c) per joint and frame, a² + b² = 1.
            mask: (B, T) bool, True = valid frame; padded frames neither influence valid frames nor the step
                token (their own outputs are meaningless). None = all valid.

        Returns:
            x0_pred (B, T, J, 2).
        """
        j = self.config.num_joints
        check_motion("x_t", x_t, (None, None, j, 2), "(B, T, J, 2)")
        b, num_frames = x_t.shape[:2]
        check_motion("lines", lines, (b, num_frames, j, 3), "(B, T, J, 3)")
        check_steps(t, b, x_t.device)
        check_mask(mask, b, num_frames, x_t.device)
        if num_frames > self.config.max_frames:
            raise ValueError(
                f"x_t has T={num_frames} frames, more than config.max_frames={self.config.max_frames}"
            )
        features = torch.cat([x_t.reshape(b, num_frames, j * 2), lines.reshape(b, num_frames, j * 3)], dim=-1)
        h, key_mask = self.tokens(features.to(self.output.weight.dtype), t, mask)
        for layer in self.layers:
            h = layer(h, key_mask)
        x0 = self.output(h[:, 1:]).reshape(b, num_frames, j, 2)
        return x0 if self.skip is None else self.skip.combine(x_t, t, x0)
