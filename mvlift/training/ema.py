"""Exponential moving average of a model's weights (the weights used for sampling)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps ``shadow = decay * shadow + (1 - decay) * weights`` in a frozen copy of the model.

    The update runs every ``every`` optimizer steps; before step ``start`` the copy just follows the
    weights. Floating-point parameters are averaged, buffers (and integer parameters) are copied.

    Args:
        model: the trained module (unwrapped, not the DDP wrapper).
        decay: decay per update, in [0, 1).
        every: update period in optimizer steps (>= 1).
        start: optimizer step from which averaging starts (>= 0).

    Attributes:
        module: the averaged copy, in eval mode, ``requires_grad=False`` (use it for sampling).
    """

    def __init__(self, model: nn.Module, decay: float = 0.995, every: int = 10, start: int = 0) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"EMA: model must be an nn.Module, got {type(model).__name__}")
        if not (0.0 <= decay < 1.0):
            raise ValueError(f"EMA: decay must be in [0, 1), got {decay!r}")
        if every < 1:
            raise ValueError(f"EMA: every must be >= 1, got {every!r}")
        if start < 0:
            raise ValueError(f"EMA: start must be >= 0, got {start!r}")
        self.decay = float(decay)
        self.every = int(every)
        self.start = int(start)
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> bool:
        """Fold ``model``'s current weights in after optimizer step ``step`` (1-based).

        Returns True when the shadow changed (an update step), False otherwise.
        """
        if step % self.every != 0:
            return False
        if step < self.start:
            self.copy_from(model)
            return True
        shadow = dict(self.module.named_parameters())
        avg_dst, avg_src = [], []
        for name, p in model.named_parameters():
            dst = shadow[name]
            if dst.is_floating_point():
                avg_dst.append(dst)
                avg_src.append(p.detach().to(dst.dtype))
            else:
                dst.copy_(p)
        if avg_dst:
            torch._foreach_lerp_(avg_dst, avg_src, 1.0 - self.decay)
        self._copy_buffers(model)
        return True

    @torch.no_grad()
    def copy_from(self, model: nn.Module) -> None:
        """Set the shadow to ``model``'s weights."""
        shadow = dict(self.module.named_parameters())
        for name, p in model.named_parameters():
            shadow[name].copy_(p)
        self._copy_buffers(model)

    @torch.no_grad()
    def _copy_buffers(self, model: nn.Module) -> None:
        shadow = dict(self.module.named_buffers())
        for name, b in model.named_buffers():
            if name in shadow:
                shadow[name].copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged module's state dict."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load an averaged state (strict: every key must match the module)."""
        self.module.load_state_dict(state, strict=True)
