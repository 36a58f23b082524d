"""Training objectives of the two learned priors (x0-prediction diffusion).

An objective is called as ``objective(model, batch, generator=None)`` and returns a dict of 0-dim
float32 tensors: ``"loss"`` (what the trainer back-propagates) and its components (logged).

The diffusion step t and the noise of each sample are drawn from a generator seeded by the sample's
``noise_seed`` (set by the training datasets from ``(seed, epoch, index)``), on the CPU, so a sample gets
the same t and noise whatever the batch it lands in, the process count or the device. Batches without
``noise_seed`` draw from ``generator`` (or torch's global generator) instead.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor, nn

import mvlift.ops as ops

#: Batch keys the trainer leaves on the CPU (the per-sample seeds are read on the host).
HOST_KEYS = frozenset({"noise_seed"})


class NoiseSchedule(Protocol):
    """What the objectives need from a diffusion scheduler (see :mod:`mvlift.schedulers`)."""

    num_train_timesteps: int

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor: ...


def _check_batch(batch: dict[str, Any], keys: tuple[str, ...], who: str) -> None:
    if not isinstance(batch, dict):
        raise TypeError(f"{who}: batch must be a dict of tensors, got {type(batch).__name__}")
    missing = [k for k in keys if k not in batch]
    if missing:
        raise ValueError(f"{who}: batch lacks key(s) {missing}; got keys {sorted(batch)}")


def draw_steps_and_noise(
    seeds: Tensor | None,
    shape: tuple[int, ...],
    num_steps: int,
    *,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Diffusion steps t (B,) int64 uniform in [0, num_steps) and Gaussian noise (B, *shape[1:]).

    Args:
        seeds: (B,) int64 per-sample seeds (a CPU generator per sample draws its t, then its noise), or
            None: one draw from ``generator`` (on its device) or the global generator.
        shape: (B, ...) the shape of the noise.
        num_steps: number of diffusion training steps N.
        device, dtype: of the returned tensors.
    """
    if seeds is not None:
        if not isinstance(seeds, Tensor) or seeds.ndim != 1 or seeds.dtype != torch.int64:
            raise ValueError(f"noise seeds must be an int64 tensor of shape (B,), got {seeds!r}")
        if seeds.shape[0] != shape[0]:
            raise ValueError(f"noise seeds hold {seeds.shape[0]} seeds for a batch of {shape[0]}")
        ts, noises = [], []
        for s in seeds.tolist():
            g = torch.Generator().manual_seed(int(s))
            ts.append(torch.randint(num_steps, (1,), generator=g))
            noises.append(torch.randn(shape[1:], generator=g, dtype=dtype))
        t = torch.cat(ts).to(device, non_blocking=True)
        noise = torch.stack(noises).to(device, non_blocking=True)
        return t, noise
    gen_device = generator.device if generator is not None else device
    t = torch.randint(num_steps, (shape[0],), generator=generator, device=gen_device).to(device)
    noise = torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)
    return t, noise


def _check_scheduler(scheduler: Any, who: str) -> None:
    if not hasattr(scheduler, "add_noise") or not hasattr(scheduler, "num_train_timesteps"):
        raise TypeError(
            f"{who}: scheduler must have add_noise() and num_train_timesteps, got {type(scheduler).__name__}"
        )


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor | None) -> Tensor:
    """Mean ``|pred - target|`` (float32) over the valid frames' elements; 0 when no frame is valid.

    Args:
        pred, target: (B, ..., T, J, C), the frame dim third from the end.
        mask: (B, T) bool, True = valid frame, or None (all valid).
    """
    diff = (pred.float() - target.float()).abs()
    if mask is None:
        return diff.mean()
    b, t = mask.shape
    m = mask.reshape(b, *([1] * (diff.ndim - 4)), t, 1, 1).to(diff.dtype).expand_as(diff)
    return (diff * m).sum() / m.sum().clamp_min(1.0)


def _noised(
    scheduler: NoiseSchedule, x0: Tensor, seeds: Tensor | None, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Training steps t (B,) and the noised x_t of x0 (:func:`draw_steps_and_noise`, then ``add_noise``)."""
    t, noise = draw_steps_and_noise(
        seeds,
        tuple(x0.shape),
        scheduler.num_train_timesteps,
        device=x0.device,
        dtype=x0.dtype,
        generator=generator,
    )
    return t, scheduler.add_noise(x0, noise, t)


class Stage1Objective:
    """Stage-1 loss: L1 denoising + line matching of the x0 prediction (:func:`mvlift.ops.stage1_loss`).

    Per sample: t ~ U{0..N-1}, noise ~ N(0, I), ``x_t = scheduler.add_noise(x0, noise, t)``,
    ``x0_pred = model(x_t, t, lines, mask)``; the loss is ``mean|x0_pred - x0| + line_weight *
    mean|a x^ + b y^ + c|`` over valid frames.

    Batch keys: ``x0`` (B, T, J, 2), ``lines`` (B, T, J, 3), ``mask`` (B, T) bool (optional),
    ``noise_seed`` (B,) int64 (optional). Returns ``{"loss", "l1", "line"}``. Per-joint confidences
    (``conf``) are not used: the paper's loss has no per-joint weights.

    Args:
        scheduler: provides ``num_train_timesteps`` and ``add_noise(x0, noise, t)``.
        line_weight: weight of the line-matching term (1 in the paper).
    """

    def __init__(self, scheduler: NoiseSchedule, line_weight: float = 1.0) -> None:
        _check_scheduler(scheduler, "Stage1Objective")
        if line_weight < 0:
            raise ValueError(f"Stage1Objective: line_weight must be >= 0, got {line_weight}")
        self.scheduler = scheduler
        self.line_weight = float(line_weight)

    def __call__(
        self, model: nn.Module, batch: dict[str, Any], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        _check_batch(batch, ("x0", "lines"), "Stage1Objective")
        x0, lines, mask = batch["x0"], batch["lines"], batch.get("mask")
        if x0.ndim != 4 or x0.shape[-1] != 2:
            raise ValueError(
                f"Stage1Objective: batch['x0'] must have shape (B, T, J, 2), got {tuple(x0.shape)}"
            )
        if lines.shape != (*x0.shape[:-1], 3):
            raise ValueError(
                f"Stage1Objective: batch['lines'] must have shape {(*x0.shape[:-1], 3)}, "
                f"got {tuple(lines.shape)}"
            )
        t, x_t = _noised(self.scheduler, x0, batch.get("noise_seed"), generator)
        x0_pred = model(x_t, t, lines, mask)
        total, l1, line = ops.stage1_loss(x0_pred.float(), x0, lines, mask=mask, line_weight=self.line_weight)
        return {"loss": total, "l1": l1, "line": line}


class Stage4Objective:
    """Stage-4 loss: masked L1 of the x0 prediction of all K views (+ optional epipolar consistency).

    Per sample: t ~ U{0..N-1}; all K views are noised; the model sees the noisy views and the clean
    input view (``cond`` = view 0): ``x0_pred = model(x_t, t, cond, mask)``;
    ``loss = mean|x0_pred - x0| + epipolar_weight * epipolar_loss(x0_pred, F)``.

    When the batch holds ``F`` (B, K, K, 3, 3) (in the frame of the views), the mean symmetric epipolar
    distance of the prediction over all view pairs is reported as ``"epipolar"`` (a metric without
    gradient when ``epipolar_weight`` is 0, the paper's setting).

    Batch keys: ``x0_views`` (B, K, T, J, 2), ``cond`` (B, T, J, 2), ``mask`` (B, T) bool (optional),
    ``F`` (optional), ``noise_seed`` (optional). Returns ``{"loss", "l1"[, "epipolar"]}``.

    Args:
        scheduler: provides ``num_train_timesteps`` and ``add_noise(x0, noise, t)``.
        epipolar_weight: weight of the epipolar term (>= 0; needs ``F`` in the batch when > 0).
        distance: ``"symmetric"`` or ``"sampson"`` (see :func:`mvlift.ops.epipolar_loss`).
    """

    def __init__(
        self, scheduler: NoiseSchedule, epipolar_weight: float = 0.0, distance: str = "symmetric"
    ) -> None:
        _check_scheduler(scheduler, "Stage4Objective")
        if epipolar_weight < 0:
            raise ValueError(f"Stage4Objective: epipolar_weight must be >= 0, got {epipolar_weight}")
        if distance not in ("symmetric", "sampson"):
            raise ValueError(f"Stage4Objective: distance must be 'symmetric' or 'sampson', got {distance!r}")
        self.scheduler = scheduler
        self.epipolar_weight = float(epipolar_weight)
        self.distance = distance

    def __call__(
        self, model: nn.Module, batch: dict[str, Any], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        _check_batch(batch, ("x0_views", "cond"), "Stage4Objective")
        x0, cond, mask = batch["x0_views"], batch["cond"], batch.get("mask")
        if x0.ndim != 5 or x0.shape[-1] != 2:
            raise ValueError(
                f"Stage4Objective: batch['x0_views'] must have shape (B, K, T, J, 2), got {tuple(x0.shape)}"
            )
        b, k = x0.shape[:2]
        if cond.shape != (b, *x0.shape[2:]):
            raise ValueError(
                f"Stage4Objective: batch['cond'] must have shape {(b, *x0.shape[2:])}, "
                f"got {tuple(cond.shape)}"
            )
        F = batch.get("F")
        if self.epipolar_weight > 0 and F is None:
            raise ValueError("Stage4Objective: epipolar_weight > 0 needs 'F' (B, K, K, 3, 3) in the batch")
        t, x_t = _noised(self.scheduler, x0, batch.get("noise_seed"), generator)
        x0_pred = model(x_t, t, cond, mask).float()
        l1 = masked_l1(x0_pred, x0, mask)
        out = {"loss": l1, "l1": l1}
        if F is not None:
            if self.epipolar_weight > 0:
                epi = ops.epipolar_loss(x0_pred, F.float(), mask=mask, distance=self.distance)
                out["loss"] = l1 + self.epipolar_weight * epi
            else:
                with torch.no_grad():
                    epi = ops.epipolar_loss(x0_pred.detach(), F.float(), mask=mask, distance=self.distance)
            out["epipolar"] = epi.float()
        return out
