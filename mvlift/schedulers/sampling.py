"""The sampling loop: noise -> repeated (model x0 prediction -> scheduler step) -> clean sample."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from tqdm.auto import tqdm

from mvlift.schedulers.cosine import randn_tensor

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
InpaintFn = Callable[[torch.Tensor, int], torch.Tensor]


class SchedulerLike(Protocol):
    """What :func:`sample` needs of a scheduler (``DDPMScheduler`` and ``DDIMScheduler`` qualify)."""

    timesteps: torch.Tensor

    def step(
        self, x0_pred: torch.Tensor, t: int, sample: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor: ...


def _inpaint_fn(
    inpaint: InpaintFn | tuple[torch.Tensor, torch.Tensor] | None,
    shape: tuple[int, ...],
    device: torch.device,
    dtype: torch.dtype,
) -> InpaintFn | None:
    """Turn the ``inpaint`` argument into a callable ``(x0_pred, t) -> x0_pred`` (or None)."""
    if inpaint is None or callable(inpaint):
        return inpaint
    if not isinstance(inpaint, tuple) or len(inpaint) != 2:
        raise TypeError("inpaint must be a callable (x0_pred, t) -> x0_pred or a tuple (mask, values)")
    mask, values = inpaint
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError("inpaint mask must be a bool tensor broadcastable to the sample shape (True = known)")
    if not isinstance(values, torch.Tensor) or not values.is_floating_point():
        raise TypeError("inpaint values must be a floating tensor broadcastable to the sample shape")
    for name, t in (("mask", mask), ("values", values)):
        try:
            if torch.broadcast_shapes(t.shape, shape) != torch.Size(shape):
                raise RuntimeError
        except RuntimeError:
            raise ValueError(
                f"inpaint {name} of shape {tuple(t.shape)} does not broadcast to the sample shape {shape}"
            ) from None
    mask = mask.to(device)
    values = values.to(device=device, dtype=dtype)

    def overwrite(x0_pred: torch.Tensor, t: int) -> torch.Tensor:
        return torch.where(mask, values, x0_pred)

    return overwrite


@torch.no_grad()
def sample(
    model_fn: ModelFn,
    shape: tuple[int, ...] | torch.Size,
    scheduler: SchedulerLike,
    *,
    generator: torch.Generator | int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    inpaint: InpaintFn | tuple[torch.Tensor, torch.Tensor] | None = None,
    progress: bool = True,
    initial_noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw samples by iterating ``scheduler.timesteps`` (the caller sets them with ``set_timesteps``).

    Loop: ``x = noise``; for each step t: ``x0 = model_fn(x, t_batch)``, then the inpaint hook on x0, then
    ``x = scheduler.step(x0, t, x, generator)``. Overwriting the x0 prediction where values are known keeps
    the known part of every x_t distributed as the forward process of those values (exactly so for DDPM and
    eta = 0 DDIM), and the returned sample holds the known values exactly.

    Args:
        model_fn: ``(x_t (shape), t_batch (B,) int64) -> x0_pred (shape)``; B = shape[0]. Close over any
            condition (lines, the input view, masks).
        shape: sample shape, batch first, e.g. (B, T, J, 2) or (B, K, T, J, 2).
        scheduler: a :class:`~mvlift.schedulers.DDPMScheduler` or :class:`~mvlift.schedulers.DDIMScheduler`.
        generator: a ``torch.Generator`` or an int seed (a CPU generator seeded with it); the same seed gives
            the same samples (noise is drawn on the generator's device and moved to ``device``).
        device: where the sample lives (default CPU).
        dtype: the sample's dtype.
        inpaint: None; a callable ``(x0_pred, t) -> x0_pred`` applied after every model call; or a tuple
            ``(mask, values)`` of tensors broadcastable to ``shape`` (mask bool, True = known): x0_pred is
            replaced by ``values`` where ``mask`` (e.g. stage 4's input view: mask (1, K, 1, 1, 1) True at
            view 0).
        progress: show a tqdm progress bar.
        initial_noise: optional x_T of ``shape`` (else drawn from ``generator``).

    Returns:
        the sample, ``shape``, ``dtype`` on ``device``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 1 or shape[0] < 1:
        raise ValueError(f"shape must start with a batch size >= 1, got {shape}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    if isinstance(generator, int) and not isinstance(generator, bool):
        generator = torch.Generator(device="cpu").manual_seed(generator)
    elif generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}"
        )
    hook = _inpaint_fn(inpaint, shape, device, dtype)

    if initial_noise is None:
        x = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
    else:
        if tuple(initial_noise.shape) != shape:
            raise ValueError(f"initial_noise must have shape {shape}, got {tuple(initial_noise.shape)}")
        x = initial_noise.to(device=device, dtype=dtype)

    batch = shape[0]
    for t in tqdm(scheduler.timesteps.tolist(), desc="sampling", disable=not progress, leave=False):
        t_batch = torch.full((batch,), t, dtype=torch.long, device=device)
        x0 = model_fn(x, t_batch)
        if tuple(x0.shape) != shape:
            raise ValueError(f"model_fn returned shape {tuple(x0.shape)}, expected {shape}")
        x0 = x0.to(dtype)
        if hook is not None:
            x0 = hook(x0, t)
        x = scheduler.step(x0, t, x, generator=generator)
    if hook is not None:
        x = hook(x, -1)
    return x
