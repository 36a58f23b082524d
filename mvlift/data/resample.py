"""Frame-rate conversion and fixed-length windows (MVLift: 30 fps, 120-frame windows, clips < 60 frames
dropped, padding masked)."""

from __future__ import annotations

import numpy as np

__all__ = ["resample", "make_windows"]


def resample(positions: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """Resample a sequence along its first axis.

    Output frame k is at time k / fps_out; frames run while that time is within the input's span
    [0, (T - 1) / fps_in], so T_out = floor((T - 1) * fps_out / fps_in) + 1. An integer ratio
    fps_in / fps_out picks frames exactly (120 -> 30 takes every 4th); otherwise values are linearly
    interpolated between the two neighbouring input frames.

    Args:
        positions: (T, ...) array (T >= 1).
        fps_in, fps_out: positive frame rates.
    Returns:
        (T_out, ...) float array (same dtype for a floating input).
    """
    x = np.asarray(positions)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"positions: expected shape (T, ...) with T >= 1, got {x.shape}")
    if not (fps_in > 0 and fps_out > 0 and np.isfinite(fps_in) and np.isfinite(fps_out)):
        raise ValueError(f"fps_in, fps_out: expected positive frame rates, got {fps_in}, {fps_out}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    t = x.shape[0]
    ratio = fps_in / fps_out
    if abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1:
        return x[:: int(round(ratio))].copy()
    n_out = int(np.floor((t - 1) / ratio + 1e-9)) + 1
    src = np.arange(n_out) * ratio  # fractional input frame of every output frame
    i0 = np.minimum(np.floor(src).astype(np.int64), t - 1)
    i1 = np.minimum(i0 + 1, t - 1)
    w = (src - i0).astype(x.dtype).reshape((n_out,) + (1,) * (x.ndim - 1))
    return x[i0] * (1 - w) + x[i1] * w


def make_windows(
    x: np.ndarray, length: int = 120, stride: int | None = None, min_length: int = 60
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a sequence into fixed-length windows.

    Windows start at 0, stride, 2 * stride, ... until one reaches the end of the sequence. A window that
    runs past the end is padded by repeating the last frame, with mask False on the padding. Windows with
    fewer than ``min_length`` real frames are dropped, so a clip shorter than ``min_length`` gives zero
    windows (and a short tail after full windows is dropped).

    Args:
        x: (T, ...) array.
        length: window length (frames).
        stride: step between window starts; None = ``length`` (no overlap).
        min_length: minimum number of real frames in a kept window (1 <= min_length <= length).
    Returns:
        windows (N, length, ...) same dtype as ``x``; mask (N, length) bool, True = real frame.
    """
    x = np.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"x: expected shape (T, ...), got {x.shape}")
    stride = length if stride is None else stride
    if length < 1 or stride < 1:
        raise ValueError(f"length, stride: expected positive integers, got {length}, {stride}")
    if not 1 <= min_length <= length:
        raise ValueError(f"min_length: expected 1 <= min_length <= length ({length}), got {min_length}")
    t = x.shape[0]
    starts = []
    s = 0
    while s < t:
        if min(length, t - s) >= min_length:
            starts.append(s)
        if s + length >= t:
            break
        s += stride
    idx = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(length)[None, :]  # (N, length)
    mask = idx < t
    windows = x[np.minimum(idx, t - 1)] if t > 0 else np.zeros((0, length) + x.shape[1:], x.dtype)
    return windows, mask
