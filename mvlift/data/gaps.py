"""Fill short gaps in joint trajectories: linear interpolation in time, per joint, over invalid frames.

Used on the 2D input of ``mvlift lift`` (frames without a detection, masked joints) and on lifted 3D
points that the triangulation flagged (:func:`mvlift.stages.lift.lift`).

Rule, per sequence and joint: a run of consecutive invalid frames with a valid frame on both sides is
filled by linear interpolation between those two frames when the run is at most ``max_gap`` frames long;
longer runs stay as they are (invalid). With ``extrapolate=True`` a run at the start or the end of the
sequence (a valid frame on one side only) that is at most ``max_gap`` frames long holds the nearest valid
value. A joint without any valid frame is never filled.
"""

from __future__ import annotations

import torch

from mvlift.metrics._arrays import numpy_compatible

__all__ = ["interpolate_gaps"]


@numpy_compatible
def interpolate_gaps(
    values: torch.Tensor, valid: torch.Tensor, *, max_gap: int, extrapolate: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill the short gaps of joint trajectories (module docstring: the rule).

    Args:
        values: (..., T, J, D) float, e.g. (T, J, 2) pixels or (B, T, J, 3) metres; entries of invalid
            frames are ignored (they may be NaN or inf).
        valid: (..., T, J) bool, True = a value to trust.
        max_gap: the longest run of invalid frames that is filled, in frames (an int >= 0; 0 fills nothing).
        extrapolate: also fill runs at the start and end of a sequence by holding the nearest valid value.

    Returns:
        ``(filled, was_filled)``: ``filled`` (..., T, J, D), equal to ``values`` except at the filled
        entries; ``was_filled`` (..., T, J) bool, True where an invalid entry was filled. Numpy in, numpy
        out.

    Raises:
        TypeError / ValueError: non-float values, shapes that do not match, a bad ``max_gap``.
    """
    if not isinstance(values, torch.Tensor) or not values.is_floating_point():
        raise TypeError(
            f"values must be a float tensor or array, got {getattr(values, 'dtype', type(values))}"
        )
    if values.dim() < 3:
        raise ValueError(f"values must have shape (..., T, J, D), got {tuple(values.shape)}")
    if not isinstance(valid, torch.Tensor) or valid.dtype != torch.bool or valid.shape != values.shape[:-1]:
        raise ValueError(
            f"valid must be a bool array of shape {tuple(values.shape[:-1])} (values without D), got "
            f"{getattr(valid, 'dtype', type(valid))} {tuple(getattr(valid, 'shape', ()))}"
        )
    if not isinstance(max_gap, int) or isinstance(max_gap, bool) or max_gap < 0:
        raise ValueError(f"max_gap must be an int >= 0 (frames), got {max_gap!r}")
    T = values.shape[-3]
    if T == 0 or max_gap == 0:
        return values.clone(), torch.zeros_like(valid)
    valid = valid.to(values.device)
    t = torch.arange(T, device=values.device).view(T, 1).expand(valid.shape)
    prev = torch.where(valid, t, torch.full_like(t, -1)).cummax(dim=-2).values  # last valid frame <= t
    nxt = torch.where(valid, t, torch.full_like(t, T)).flip(-2).cummin(dim=-2).values.flip(-2)  # first >= t
    has_prev, has_next = prev >= 0, nxt < T
    inner = ~valid & has_prev & has_next & (nxt - prev - 1 <= max_gap)
    fill = inner
    if extrapolate:
        start = ~valid & ~has_prev & has_next & (nxt <= max_gap)
        end = ~valid & has_prev & ~has_next & (T - 1 - prev <= max_gap)
        fill = inner | start | end
    p = prev.clamp(0, T - 1)
    n = nxt.clamp(0, T - 1)
    D = values.shape[-1]
    vp = values.gather(-3, p[..., None].expand(*p.shape, D))
    vn = values.gather(-3, n[..., None].expand(*n.shape, D))
    vp = torch.where(has_prev[..., None], vp, vn)  # one-sided runs hold the valid side
    vn = torch.where(has_next[..., None], vn, vp)
    span = (n - p).clamp_min(1).to(values.dtype)
    w = ((t - p).to(values.dtype) / span).clamp(0, 1)[..., None]
    interp = vp + w * (vn - vp)
    return torch.where(fill[..., None], interp, values), fill
