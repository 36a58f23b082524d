"""Line-matching loss and the fused stage-1 training loss (stage 1 of MVLift).

Stage 1 trains a 2D motion diffusion model conditioned, per joint and frame, on a line (a, b, c) through the
joint and a (virtual) epipole; its loss is ``mean |x0_pred - x0|`` plus the mean distance-like residual
``|a x^ + b y^ + c|`` of the prediction to its lines. The Triton kernels of :mod:`mvlift.kernels.line_loss`
compute each in one pass over the points (plus a tiny fixed-order reduction launch).

Dispatch (see :mod:`mvlift.ops._backend`): CUDA tensors -> the Triton kernels; CPU tensors -> the references
in :mod:`mvlift.reference.losses`, or the Triton kernels in the interpreter when ``TRITON_INTERPRET=1``.
Registered as ``torch.library.custom_op`` ops ``mvlift::line_matching_loss`` and ``mvlift::stage1_loss`` (with
fake and autograd implementations and backward ops), so ``torch.compile(fullgraph=True)`` traces them
without graph breaks. First-order gradients only.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from mvlift.ops import _backend
from mvlift.ops.epipolar_loss import reference_vjp
from mvlift.reference import losses as _ref

__all__ = ["line_matching_loss", "stage1_loss"]

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_EMPTY = (0,)


# ------------------------------------------------------------------------------------------- line matching
@torch.library.custom_op("mvlift::line_matching_loss", mutates_args=())
def _line_matching_loss(
    x: Tensor, lines: Tensor, mask: Tensor | None, reduction: str
) -> tuple[Tensor, Tensor]:
    """Returns ``(loss, stats)``; stats (B + 1, 2) = per-sequence (sum |r|, count), then the totals."""
    cd = _ref.compute_dtype(x.dtype)
    if _backend.use_triton(x):
        from mvlift.kernels.line_loss import line_matching_loss_forward

        return line_matching_loss_forward(x, lines, mask, reduction, cd)
    S, W = _ref.line_matching_terms(x, lines, mask=mask)
    stats = torch.stack([torch.cat([S, S.sum()[None]]), torch.cat([W, W.sum()[None]])], dim=-1)
    return _ref.reduce_terms(S, W, reduction), stats


@_line_matching_loss.register_fake
def _(x, lines, mask, reduction):
    cd = _ref.compute_dtype(x.dtype)
    B = x.shape[0]
    shape = (B,) if reduction == "per_sequence" else ()
    return x.new_empty(shape, dtype=cd), x.new_empty((B + 1, 2), dtype=cd)


@torch.library.custom_op("mvlift::line_matching_loss_backward", mutates_args=())
def _line_matching_loss_backward(
    grad: Tensor,
    x: Tensor,
    lines: Tensor,
    mask: Tensor | None,
    stats: Tensor,
    reduction: str,
    need_x: bool,
    need_lines: bool,
) -> tuple[Tensor, Tensor]:
    """Returns ``(dx, dlines)``; a gradient that is not needed is an empty (0,) tensor."""
    if _backend.use_triton(x):
        from mvlift.kernels.line_loss import line_matching_loss_backward

        dx, dl = line_matching_loss_backward(grad, x, lines, mask, stats, reduction, need_x, need_lines)
        return (x.new_empty(_EMPTY) if dx is None else dx, lines.new_empty(_EMPTY) if dl is None else dl)

    def fn(xr: Tensor, lr: Tensor) -> Tensor:
        return _ref.line_matching_loss(xr, lr, mask=mask, reduction=reduction)

    return reference_vjp(fn, (x, lines), (need_x, need_lines), grad)


@_line_matching_loss_backward.register_fake
def _(grad, x, lines, mask, stats, reduction, need_x, need_lines):
    return x.new_empty(x.shape if need_x else _EMPTY), lines.new_empty(lines.shape if need_lines else _EMPTY)


def _line_setup_context(ctx, inputs: tuple, output: tuple[Tensor, Tensor]) -> None:
    x, lines, mask, reduction = inputs
    ctx.save_for_backward(x, lines, mask, output[1])
    ctx.reduction = reduction


def _line_backward(ctx, grad_loss: Tensor, grad_stats: Tensor | None) -> tuple[Tensor | None, ...]:
    x, lines, mask, stats = ctx.saved_tensors
    need_x, need_lines = ctx.needs_input_grad[:2]
    if not (need_x or need_lines):
        return None, None, None, None
    dx, dl = _line_matching_loss_backward(
        grad_loss.contiguous(), x, lines, mask, stats, ctx.reduction, need_x, need_lines
    )
    return (dx if need_x else None), (dl if need_lines else None), None, None


_line_matching_loss.register_autograd(_line_backward, setup_context=_line_setup_context)


# ----------------------------------------------------------------------------------------------- stage 1
@torch.library.custom_op("mvlift::stage1_loss", mutates_args=())
def _stage1_loss(
    x0_pred: Tensor, x0: Tensor, lines: Tensor, mask: Tensor | None, line_weight: float
) -> Tensor:
    """Returns (4,): total, l1, line and the number of valid (b, t, j)."""
    cd = _ref.compute_dtype(x0_pred.dtype)
    if _backend.use_triton(x0_pred):
        from mvlift.kernels.line_loss import stage1_loss_forward

        return stage1_loss_forward(x0_pred, x0, lines, mask, line_weight, cd)
    total, l1, line = _ref.stage1_loss(x0_pred, x0, lines, mask=mask, line_weight=line_weight)
    count = _ref.line_matching_terms(x0_pred, lines, mask=mask)[1].sum()
    return torch.stack([total, l1, line, count])


@_stage1_loss.register_fake
def _(x0_pred, x0, lines, mask, line_weight):
    return x0_pred.new_empty((4,), dtype=_ref.compute_dtype(x0_pred.dtype))


@torch.library.custom_op("mvlift::stage1_loss_backward", mutates_args=())
def _stage1_loss_backward(
    grad: Tensor,
    x0_pred: Tensor,
    x0: Tensor,
    lines: Tensor,
    mask: Tensor | None,
    out: Tensor,
    line_weight: float,
    need_x0_pred: bool,
    need_x0: bool,
    need_lines: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Returns ``(dx0_pred, dx0, dlines)``; a gradient that is not needed is an empty (0,) tensor."""
    if _backend.use_triton(x0_pred):
        from mvlift.kernels.line_loss import stage1_loss_backward

        grads = stage1_loss_backward(
            grad, x0_pred, x0, lines, mask, out, line_weight, need_x0_pred, need_x0, need_lines
        )
        return tuple(
            t.new_empty(_EMPTY) if g is None else g for g, t in zip(grads, (x0_pred, x0, lines), strict=True)
        )

    def fn(xp: Tensor, x0r: Tensor, lr: Tensor) -> Tensor:
        total, l1, line = _ref.stage1_loss(xp, x0r, lr, mask=mask, line_weight=line_weight)
        return torch.stack([total, l1, line, torch.zeros_like(total)])

    return reference_vjp(fn, (x0_pred, x0, lines), (need_x0_pred, need_x0, need_lines), grad)


@_stage1_loss_backward.register_fake
def _(grad, x0_pred, x0, lines, mask, out, line_weight, need_x0_pred, need_x0, need_lines):
    return (
        x0_pred.new_empty(x0_pred.shape if need_x0_pred else _EMPTY),
        x0.new_empty(x0.shape if need_x0 else _EMPTY),
        lines.new_empty(lines.shape if need_lines else _EMPTY),
    )


def _stage1_setup_context(ctx, inputs: tuple, output: Tensor) -> None:
    x0_pred, x0, lines, mask, line_weight = inputs
    ctx.save_for_backward(x0_pred, x0, lines, mask, output)
    ctx.line_weight = line_weight


def _stage1_backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
    x0_pred, x0, lines, mask, out = ctx.saved_tensors
    needs = tuple(ctx.needs_input_grad[:3])
    if not any(needs):
        return None, None, None, None, None
    grads = _stage1_loss_backward(grad.contiguous(), x0_pred, x0, lines, mask, out, ctx.line_weight, *needs)
    return tuple(g if n else None for g, n in zip(grads, needs, strict=True)) + (None, None)


_stage1_loss.register_autograd(_stage1_backward, setup_context=_stage1_setup_context)


# ----------------------------------------------------------------------------------------------- checks
def _check_points(
    op: str, name: str, t: object, shape: tuple[int | None, ...], doc: str, device: torch.device | None
) -> None:
    """``t`` is a float tensor of shape ``shape`` (None = any size) on ``device`` (None = any)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor of shape {doc}, got {type(t).__name__}")
    if t.dim() != len(shape) or any(s is not None and s != n for s, n in zip(shape, t.shape, strict=True)):
        want = doc if all(s is None for s in shape[:-1]) else f"{doc} = {shape}"
        raise ValueError(f"{op}: {name} must have shape {want}, got {tuple(t.shape)}")
    if t.dtype not in _DTYPES:
        raise TypeError(f"{op}: {name} must be float16, bfloat16, float32 or float64, got dtype {t.dtype}")
    if device is not None and t.device != device:
        raise ValueError(f"{op}: {name} must be on the device of the points {device}, got {t.device}")


def _check_mask(op: str, mask: object, B: int, T: int, device) -> None:
    if mask is None:
        return
    if not isinstance(mask, Tensor):
        raise TypeError(
            f"{op}: mask must be None or a bool torch.Tensor of shape (B, T), got {type(mask).__name__}"
        )
    if tuple(mask.shape) != (B, T):
        raise ValueError(f"{op}: mask must have shape (B, T) = {(B, T)}, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise TypeError(f"{op}: mask must be a bool tensor, got dtype {mask.dtype}")
    if mask.device != device:
        raise ValueError(f"{op}: mask must be on the device of the points {device}, got {mask.device}")


def _optional(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous()


# ----------------------------------------------------------------------------------------------- public ops
def line_matching_loss(
    x: Tensor, lines: Tensor, *, mask: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """Line-matching loss: ``|a x + b y + c|`` of each point to its line, reduced over valid (b, t, j).

    With normalized lines (``a^2 + b^2 = 1``, as :func:`mvlift.geometry.line_conditions` makes them) this is
    the point-to-line distance.

    Args:
        x: (B, T, J, 2) points; float16, bfloat16, float32 or float64.
        lines: (B, T, J, 3) lines (a, b, c), ``a x + b y + c = 0``; same dtypes, same device.
        mask: optional (B, T) bool, True = valid frame.
        reduction: ``"mean"`` over the valid (b, t, j) (0, with zero gradients, when none is valid),
            ``"sum"``, or ``"per_sequence"`` (alias ``"none"``): the per-sequence means, shape (B,).

    Returns:
        The loss, shape () or (B,), float64 for float64 x, else float32. Gradients (first order) flow to x
        and lines; the gradient of |r| at r = 0 is 0. Non-contiguous inputs are made contiguous (a copy).

    Raises:
        TypeError: a non-tensor argument or a wrong dtype. ValueError: a wrong shape, device or reduction.
    """
    op = "line_matching_loss"
    _check_points(op, "x", x, (None, None, None, 2), "(B, T, J, 2)", None)
    B, T, J = x.shape[:3]
    _check_points(op, "lines", lines, (B, T, J, 3), "(B, T, J, 3)", x.device)
    _check_mask(op, mask, B, T, x.device)
    if reduction not in _ref.REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {_ref.REDUCTIONS}, got {reduction!r}")
    if not _backend.use_triton(x):  # the reference, differentiated by autograd (see epipolar_loss)
        return _ref.line_matching_loss(x, lines, mask=mask, reduction=reduction)
    loss, _ = _line_matching_loss(
        x.contiguous(),
        lines.contiguous(),
        _optional(mask),
        "per_sequence" if reduction == "none" else reduction,
    )
    return loss


def stage1_loss(
    x0_pred: Tensor, x0: Tensor, lines: Tensor, *, mask: Tensor | None = None, line_weight: float = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Fused stage-1 training loss: L1 denoising loss + ``line_weight`` x line-matching loss, one pass.

    ``l1 = mean |x0_pred - x0|`` over the valid elements (valid frames x J joints x 2 coordinates),
    ``line = mean |a x^ + b y^ + c|`` over the valid (b, t, j) where ``(x^, y^) = x0_pred`` (the paper's
    L_line), ``total = l1 + line_weight * line``. Both means are 0, with zero gradients, when no frame is
    valid.

    Args:
        x0_pred: (B, T, J, 2) the denoiser's x0 prediction; float16, bfloat16, float32 or float64.
        x0: (B, T, J, 2) the clean target; lines: (B, T, J, 3) the line conditions (a, b, c); same device.
        mask: optional (B, T) bool, True = valid frame (padding False).
        line_weight: finite float (the paper uses 1). Used in float32 by the kernels.

    Returns:
        ``(total, l1, line)``: three 0-dim tensors, float64 for float64 x0_pred, else float32. Gradients
        (first order) flow to x0_pred, x0 and lines.

    Raises:
        TypeError: a non-tensor argument or a wrong dtype. ValueError: a wrong shape, device or value.
    """
    op = "stage1_loss"
    _check_points(op, "x0_pred", x0_pred, (None, None, None, 2), "(B, T, J, 2)", None)
    B, T, J = x0_pred.shape[:3]
    _check_points(op, "x0", x0, (B, T, J, 2), "(B, T, J, 2)", x0_pred.device)
    _check_points(op, "lines", lines, (B, T, J, 3), "(B, T, J, 3)", x0_pred.device)
    _check_mask(op, mask, B, T, x0_pred.device)
    if isinstance(line_weight, bool) or not isinstance(line_weight, numbers.Real):
        raise TypeError(f"{op}: line_weight must be a real number, got {type(line_weight).__name__}")
    if not math.isfinite(float(line_weight)):
        raise ValueError(f"{op}: line_weight must be finite, got {line_weight}")
    if not _backend.use_triton(x0_pred):  # the reference, differentiated by autograd (see epipolar_loss)
        return _ref.stage1_loss(x0_pred, x0, lines, mask=mask, line_weight=float(line_weight))
    out = _stage1_loss(
        x0_pred.contiguous(), x0.contiguous(), lines.contiguous(), _optional(mask), float(line_weight)
    )
    return out[0], out[1], out[2]
