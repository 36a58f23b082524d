"""Input handling shared by the metrics: numpy/torch in, the same kind out; shape and mask checks; roots.

Every metric is written once in torch. :func:`numpy_compatible` wraps it so that numpy arrays are accepted
and numpy results are returned when any array argument was numpy and none was a tensor.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

F = TypeVar("F", bound=Callable[..., Any])

# OpenPose-18 and BODY14 share the body layout: 8 = right hip, 11 = left hip (see mvlift.data.skeletons).
OPENPOSE_RIGHT_HIP = 8
OPENPOSE_LEFT_HIP = 11
OPENPOSE_LAYOUT_SIZES = (14, 18)

RootSpec = int | Sequence[int] | None


def _convert(value: Any) -> tuple[Any, bool]:
    """Turn a numpy float/int array into a tensor (no copy for floats). Returns (value, was_numpy)."""
    if isinstance(value, np.ndarray):
        if value.dtype == np.bool_:
            return torch.from_numpy(value), True
        if np.issubdtype(value.dtype, np.integer):
            value = value.astype(np.float64)
        elif np.issubdtype(value.dtype, np.floating) and value.dtype not in (np.float32, np.float64):
            value = value.astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(value)), True
    return value, False


def _back(value: Any) -> Any:
    """Tensor(s) -> numpy; a 0-d result becomes a numpy scalar (np.float32 / np.float64)."""
    if isinstance(value, torch.Tensor):
        arr = value.detach().cpu().numpy()
        return arr[()] if arr.ndim == 0 else arr
    if isinstance(value, tuple):
        return tuple(_back(v) for v in value)
    if isinstance(value, list):
        return [_back(v) for v in value]
    if isinstance(value, dict):
        return {k: _back(v) for k, v in value.items()}
    return value


def numpy_compatible(fn: F) -> F:
    """Accept numpy arrays anywhere a tensor is expected; answer in numpy when the inputs were numpy only."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        saw_numpy = False
        saw_tensor = False
        new_args = []
        for a in args:
            saw_tensor |= isinstance(a, torch.Tensor)
            a, was = _convert(a)
            saw_numpy |= was
            new_args.append(a)
        new_kwargs = {}
        for k, v in kwargs.items():
            saw_tensor |= isinstance(v, torch.Tensor)
            v, was = _convert(v)
            saw_numpy |= was
            new_kwargs[k] = v
        out = fn(*new_args, **new_kwargs)
        return _back(out) if (saw_numpy and not saw_tensor) else out

    return wrapper  # type: ignore[return-value]


def as_float(x: Any, name: str) -> torch.Tensor:
    """Check that ``x`` is a floating tensor; half precision is promoted to float32 for the math."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    if x.is_floating_point():
        return x
    if x.dtype == torch.bool or x.dtype.is_complex:
        raise TypeError(f"{name} must be a real floating (or integer) tensor, got dtype {x.dtype}")
    return x.to(torch.float64)


def check_sequences(pred: Any, gt: Any, dims: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a (T, J, dims) or (B, T, J, dims) pair with identical shapes; promote to a common dtype."""
    pred = as_float(pred, "pred")
    gt = as_float(gt, "gt")
    for name, x in (("pred", pred), ("gt", gt)):
        if x.dim() not in (3, 4) or x.shape[-1] != dims:
            raise ValueError(
                f"{name} must have shape (T, J, {dims}) or (B, T, J, {dims}), got {tuple(x.shape)}"
            )
    if pred.shape != gt.shape:
        raise ValueError(
            f"pred and gt must have the same shape, got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )
    if pred.device != gt.device:
        raise ValueError(f"pred and gt must be on the same device, got {pred.device} and {gt.device}")
    if pred.shape[-3] == 0 or pred.shape[-2] == 0:
        raise ValueError(f"pred and gt need at least one frame and one joint, got shape {tuple(pred.shape)}")
    dtype = torch.promote_types(pred.dtype, gt.dtype)
    return pred.to(dtype), gt.to(dtype)


def check_mask(mask: Any, batch_shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Return a bool mask of shape ``batch_shape + (T,)`` (all True when ``mask`` is None).

    ``batch_shape`` is () for a single sequence or (B,) for a batch; the last entry given is T.
    Every sequence needs at least one valid frame.
    """
    if mask is None:
        return torch.ones(batch_shape, dtype=torch.bool, device=device)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a bool torch.Tensor or numpy.ndarray, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must have dtype bool (True = valid frame), got {mask.dtype}")
    if tuple(mask.shape) != tuple(batch_shape):
        raise ValueError(
            f"mask must have shape {tuple(batch_shape)} (True = valid frame), got {tuple(mask.shape)}"
        )
    mask = mask.to(device)
    if not bool(mask.any(dim=-1).all()):
        which = (
            "the sequence"
            if mask.dim() == 1
            else f"sequences {torch.nonzero(~mask.any(dim=-1)).flatten().tolist()}"
        )
        raise ValueError(
            f"mask leaves {which} without any valid frame (True = valid); every sequence needs at least one"
        )
    return mask


def fill_masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x (..., T, *rest) with every masked frame replaced by the nearest valid frame (ties: the earlier one).

    ``mask`` (..., T), True = valid frame, has ``x``'s leading shape; a sequence without any valid frame is
    returned as it is. The valid frames are unchanged. The metrics give masked frames zero weight, but a
    weighted mean of NaN * 0 is NaN (and an SVD of a NaN covariance fails): this makes them finite first.
    """
    if bool(mask.all()) or not bool(mask.any()):
        return x
    t_len = mask.shape[-1]
    t = torch.arange(t_len, device=mask.device).expand(mask.shape)
    before = torch.cummax(torch.where(mask, t, torch.full_like(t, -1)), dim=-1).values  # -1: none before
    after = torch.where(mask, t, torch.full_like(t, t_len)).flip(-1).cummin(dim=-1).values.flip(-1)
    use_before = (before >= 0) & ((after >= t_len) | (t - before <= after - t))
    nearest = torch.where(use_before, before, after).clamp(0, t_len - 1)
    nearest = torch.where(mask.any(dim=-1, keepdim=True), nearest, t)  # no valid frame: keep its own
    extra = x.dim() - mask.dim()
    index = nearest.reshape(nearest.shape + (1,) * extra).expand(x.shape)
    return x.gather(mask.dim() - 1, index)


def _listing(items: list[Any], limit: int = 10) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}] ({len(items)} in all)"


def check_finite(x: torch.Tensor, valid: torch.Tensor, name: str, *, joints: bool = False) -> None:
    """Raise ValueError when ``x`` is not finite (NaN or inf) where ``valid`` is True.

    ``x`` (..., T, *rest); ``valid`` a bool mask over its leading axes: frames (..., T), or with ``joints``
    frames and joints (..., T, J) for ``x`` (..., T, J, D). The message names ``name``, the frames
    (``(sequence, frame)`` pairs for a batch (B, T)) and how to exclude them.
    """
    finite = torch.isfinite(x)
    while finite.dim() > valid.dim():
        finite = finite.all(dim=-1)
    bad = valid & ~finite
    if not bool(bad.any()):
        return
    if joints:  # report frames
        bad = bad.any(dim=-1)
    idx = bad.nonzero().tolist()
    if bad.dim() == 1:
        what, where = "frames", _listing([i[0] for i in idx])
    else:
        what, where = "(sequence, frame) pairs", _listing([tuple(i) for i in idx])
    raise ValueError(
        f"{name} is not finite (NaN or inf) in valid {what} {where}; mark them invalid with "
        "mask= (False = ignored: masked frames may hold anything) or fix the input"
    )


def finite_frames(x: torch.Tensor, mask: torch.Tensor, name: str) -> torch.Tensor:
    """:func:`check_finite` on the valid frames of ``x`` (..., T, *rest), then :func:`fill_masked`.

    The convention of every metric with a ``mask``: masked frames may hold anything (NaN included) and
    are ignored; a non-finite value in a valid frame raises ValueError naming ``name`` and the frames.
    """
    check_finite(x, mask, name)
    return fill_masked(x, mask)


def resolve_root(root: Any, num_joints: int) -> tuple[int, ...]:
    """Joint indices whose mean is the root.

    ``root`` may be an int, a sequence of ints, an object with a ``root`` attribute holding either (such as
    :class:`mvlift.data.skeletons.Skeleton`), or None for the default: the hips midpoint (joints 8 and 11)
    for the 14- and 18-joint OpenPose layouts (BODY14, OPENPOSE18), joint 0 otherwise (the pelvis of
    SMPL-24, H36M-17 and CMU-31).
    """
    if root is None:
        if num_joints in OPENPOSE_LAYOUT_SIZES:
            return (OPENPOSE_RIGHT_HIP, OPENPOSE_LEFT_HIP)
        return (0,)
    if hasattr(root, "root") and not isinstance(root, (int, np.integer)):
        root = root.root
    if isinstance(root, (int, np.integer)):
        idx: tuple[int, ...] = (int(root),)
    elif isinstance(root, Sequence) and len(root) > 0 and all(isinstance(r, (int, np.integer)) for r in root):
        idx = tuple(int(r) for r in root)
    else:
        raise TypeError(f"root must be an int, a non-empty sequence of ints or None, got {root!r}")
    for r in idx:
        if not -num_joints <= r < num_joints:
            raise ValueError(f"root index {r} is out of range for {num_joints} joints")
    return tuple(r % num_joints for r in idx)


def root_of(x: torch.Tensor, root: tuple[int, ...]) -> torch.Tensor:
    """Mean of the root joints: (..., T, J, D) -> (..., T, D)."""
    return x[..., list(root), :].mean(dim=-2)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the last axis (frames) of ``values`` (..., T) where ``mask`` (..., T) is True."""
    w = mask.to(values.dtype)
    return (values * w).sum(dim=-1) / w.sum(dim=-1)


def first_valid(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The first valid frame of each sequence: x (..., T, *rest), mask (..., T) -> (..., *rest)."""
    idx = mask.to(torch.int8).argmax(dim=-1)  # first True
    extra = x.dim() - mask.dim()
    index = idx.reshape(idx.shape + (1,) * (extra + 1)).expand(*idx.shape, 1, *x.shape[mask.dim() :])
    return x.gather(mask.dim() - 1, index).squeeze(mask.dim() - 1)
