"""The cosine noise schedule (Nichol & Dhariwal 2021) and the forward-process algebra built on it.

``alpha_bar(u) = f(u) / f(0)`` with ``f(u) = cos(((u / N) + s) / (1 + s) * pi / 2) ** 2``; the per-step
``beta_n = min(1 - alpha_bar(n + 1) / alpha_bar(n), max_beta)`` and
``alphas_cumprod[n] = prod_{i<=n}(1 - beta_i)``
for steps n = 0..N-1 (step n noises to level ``alphas_cumprod[n]``). The forward process is
``x_n = sqrt(alphas_cumprod[n]) x0 + sqrt(1 - alphas_cumprod[n]) eps``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

StepLike = int | torch.Tensor


def cosine_betas(num_train_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """The cosine schedule's betas: (num_train_timesteps,) float64, each in (0, max_beta]."""
    if (
        isinstance(num_train_timesteps, bool)
        or not isinstance(num_train_timesteps, int)
        or num_train_timesteps < 1
    ):
        raise ValueError(f"num_train_timesteps must be a positive int, got {num_train_timesteps!r}")
    if not s >= 0.0:
        raise ValueError(f"s must be >= 0, got {s}")
    if not 0.0 < max_beta < 1.0:
        raise ValueError(f"max_beta must be in (0, 1), got {max_beta}")
    u = torch.arange(num_train_timesteps + 1, dtype=torch.float64) / num_train_timesteps
    f = torch.cos((u + s) / (1.0 + s) * math.pi / 2.0) ** 2
    betas = 1.0 - f[1:] / f[:-1]
    return betas.clamp(min=0.0, max=max_beta)


def spaced_timesteps(num_train_timesteps: int, num_inference_steps: int) -> torch.Tensor:
    """``num_inference_steps`` training steps, evenly spaced from ``num_train_timesteps - 1`` down to 0.

    Returns:
        (num_inference_steps,) int64, strictly decreasing, first N - 1, last 0 (a single step gives [N-1]).
    """
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
        raise TypeError(f"num_inference_steps must be an int, got {num_inference_steps!r}")
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise ValueError(
            f"num_inference_steps must be in [1, {num_train_timesteps}], got {num_inference_steps}"
        )
    if num_inference_steps == 1:
        return torch.tensor([num_train_timesteps - 1], dtype=torch.long)
    steps = torch.linspace(num_train_timesteps - 1, 0, num_inference_steps, dtype=torch.float64).round()
    return steps.long()


class CosineSchedule:
    """The cosine schedule with the forward-process algebra; base of :class:`DDPMScheduler` and
    :class:`DDIMScheduler`.

    Args:
        num_train_timesteps: N diffusion steps (the paper: 1000).
        s: offset of the cosine (the paper: 0.008).
        max_beta: betas are clipped to this (0.999).

    Attributes:
        betas, alphas, alphas_cumprod: (N,) float64 CPU tensors; ``alphas_cumprod`` strictly decreases.
    """

    def __init__(self, num_train_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> None:
        self.num_train_timesteps = num_train_timesteps
        self.s = float(s)
        self.max_beta = float(max_beta)
        self.betas = cosine_betas(num_train_timesteps, self.s, self.max_beta)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self._on_device: dict[torch.device, torch.Tensor] = {}

    _TYPE = "cosine"

    # ---- config -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (plus ``"type"``); inverse: :meth:`from_dict`."""
        return {
            "type": self._TYPE,
            "num_train_timesteps": self.num_train_timesteps,
            "s": self.s,
            "max_beta": self.max_beta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CosineSchedule:
        """Rebuild from :meth:`to_dict` output (a ``"type"`` key, if present, must match this class)."""
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
        data = dict(data)
        kind = data.pop("type", None)
        if kind is not None and kind != cls._TYPE:
            raise ValueError(f"{cls.__name__}.from_dict: type is {kind!r}, expected {cls._TYPE!r}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"{cls.__name__}.from_dict: bad keys in {sorted(data)} ({exc})") from exc

    # ---- coefficients ------------------------------------------------------------------------------------
    def coefficients(self, t: StepLike, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sqrt(alphas_cumprod[t]), sqrt(1 - alphas_cumprod[t]))``, computed in float64 and cast to
        ``like``'s dtype, shaped to broadcast against ``like`` (B, ...).

        Args:
            t: an int, a 0-d integer tensor or a (B,) integer tensor with B = like.shape[0]; steps in [0, N).
            like: the tensor the coefficients will multiply.

        Returns:
            two 0-d tensors (scalar t) or two (B, 1, ..., 1) tensors matching ``like.dim()``.
        """
        if isinstance(t, bool) or not isinstance(t, (int, torch.Tensor)):
            raise TypeError(f"t must be an int or an integer tensor, got {type(t).__name__}")
        if isinstance(t, int):
            if not 0 <= t < self.num_train_timesteps:
                raise ValueError(f"t must be in [0, {self.num_train_timesteps}), got {t}")
            ab = float(self.alphas_cumprod[t])
            mk = functools.partial(torch.tensor, dtype=like.dtype, device=like.device)
            return mk(math.sqrt(ab)), mk(math.sqrt(1.0 - ab))
        if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
            raise TypeError(f"t must be an integer tensor, got {t.dtype}")
        if t.dim() > 1 or (t.dim() == 1 and t.shape[0] != like.shape[0]):
            raise ValueError(
                f"t must be an int, 0-d or (B,) = ({like.shape[0]},), got shape {tuple(t.shape)}"
            )
        table = self._on_device.get(like.device)
        if table is None:
            ab = self.alphas_cumprod
            table = torch.stack([ab.sqrt(), (1.0 - ab).sqrt()], dim=-1).to(like.device)
            self._on_device[like.device] = table
        coef = table[t.to(like.device)].to(like.dtype)  # (..., 2)
        if t.dim() == 1:
            coef = coef.reshape(-1, *([1] * (like.dim() - 1)), 2)
        return coef[..., 0], coef[..., 1]

    # ---- forward process ---------------------------------------------------------------------------------
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: StepLike) -> torch.Tensor:
        """``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise``; x0, noise (B, ...), t int or (B,)."""
        if noise.shape != x0.shape:
            raise ValueError(f"noise must have x0's shape {tuple(x0.shape)}, got {tuple(noise.shape)}")
        a, b = self.coefficients(t, x0)
        return a * x0 + b * noise

    def x0_to_eps(self, x_t: torch.Tensor, x0: torch.Tensor, t: StepLike) -> torch.Tensor:
        """The noise implied by an x0 prediction: ``(x_t - sqrt(ab) x0) / sqrt(1 - ab)``."""
        if x0.shape != x_t.shape:
            raise ValueError(f"x0 must have x_t's shape {tuple(x_t.shape)}, got {tuple(x0.shape)}")
        a, b = self.coefficients(t, x_t)
        return (x_t - a * x0) / b

    def eps_to_x0(self, x_t: torch.Tensor, eps: torch.Tensor, t: StepLike) -> torch.Tensor:
        """Inverse of :meth:`x0_to_eps`: ``(x_t - sqrt(1 - ab) eps) / sqrt(ab)``."""
        if eps.shape != x_t.shape:
            raise ValueError(f"eps must have x_t's shape {tuple(x_t.shape)}, got {tuple(eps.shape)}")
        a, b = self.coefficients(t, x_t)
        return (x_t - b * eps) / a


def randn_tensor(
    shape: tuple[int, ...] | torch.Size,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise of ``shape`` on ``device``, drawn on the generator's own device (then moved), so
    a CPU generator gives the same numbers for CPU and CUDA samples."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    draw_on = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=draw_on, dtype=dtype).to(device)


class TimestepScheduler(CosineSchedule):
    """Base of the samplers: the cosine schedule + an inference timestep sequence + x0 clipping.

    Subclasses implement ``step(x0_pred, t, sample, generator=None) -> prev_sample``.

    Args:
        num_train_timesteps, s, max_beta: see :class:`CosineSchedule`.
        num_inference_steps: how many of the training steps the sampler visits (evenly spaced, from N-1 to 0).
        clip_sample: clamp x0 predictions to ``[-clip_range, clip_range]`` before each step (the paper: on,
            with the normalised [-1, 1] frame).
        clip_range: the clamp bound.

    Attributes:
        timesteps: (num_inference_steps,) int64 CPU tensor, decreasing; iterate it in the sampling loop.
    """

    _TYPE = "base"

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        s: float = 0.008,
        max_beta: float = 0.999,
        num_inference_steps: int | None = None,
        clip_sample: bool = True,
        clip_range: float = 1.0,
    ) -> None:
        super().__init__(num_train_timesteps, s, max_beta)
        if not isinstance(clip_sample, bool):
            raise TypeError(f"clip_sample must be a bool, got {clip_sample!r}")
        if not clip_range > 0:
            raise ValueError(f"clip_range must be > 0, got {clip_range}")
        self.clip_sample = clip_sample
        self.clip_range = float(clip_range)
        self.set_timesteps(num_train_timesteps if num_inference_steps is None else num_inference_steps)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update(
            num_inference_steps=self.num_inference_steps,
            clip_sample=self.clip_sample,
            clip_range=self.clip_range,
        )
        return out

    def set_timesteps(self, num_inference_steps: int) -> None:
        """Choose the inference steps: ``num_inference_steps`` evenly spaced training steps, N-1 down to 0."""
        self.timesteps = spaced_timesteps(self.num_train_timesteps, num_inference_steps)
        self.num_inference_steps = num_inference_steps
        steps = self.timesteps.tolist()
        self._previous = dict(zip(steps, steps[1:] + [-1], strict=True))

    def previous_timestep(self, t: StepLike) -> int:
        """The step after ``t`` in :attr:`timesteps` (-1 after the last one, meaning "clean")."""
        t = self._as_step(t)
        if t not in self._previous:
            raise ValueError(f"t={t} is not one of the scheduler's timesteps (call set_timesteps first)")
        return self._previous[t]

    def alpha_bar_value(self, t: int) -> float:
        """``alphas_cumprod[t]`` as a float; 1.0 for t = -1 (the clean end of the chain)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def clip(self, x0: torch.Tensor) -> torch.Tensor:
        """x0 clamped to ``[-clip_range, clip_range]`` when ``clip_sample`` (else unchanged)."""
        return x0.clamp(-self.clip_range, self.clip_range) if self.clip_sample else x0

    @staticmethod
    def _as_step(t: StepLike) -> int:
        if isinstance(t, torch.Tensor):
            if t.numel() != 1 or t.is_floating_point() or t.dtype == torch.bool:
                raise ValueError(
                    f"t must be a single integer step, got a {t.dtype} tensor of shape {tuple(t.shape)}"
                )
            return int(t.item())
        if isinstance(t, bool) or not isinstance(t, int):
            raise TypeError(f"t must be an int step, got {type(t).__name__}")
        return t

    def _check_step_inputs(self, x0_pred: torch.Tensor, t: StepLike, sample: torch.Tensor) -> tuple[int, int]:
        if not isinstance(sample, torch.Tensor) or not sample.is_floating_point():
            raise TypeError("sample must be a floating-point tensor")
        if not isinstance(x0_pred, torch.Tensor) or x0_pred.shape != sample.shape:
            got = tuple(x0_pred.shape) if isinstance(x0_pred, torch.Tensor) else type(x0_pred).__name__
            raise ValueError(f"x0_pred must have the sample's shape {tuple(sample.shape)}, got {got}")
        step = self._as_step(t)
        return step, self.previous_timestep(step)
