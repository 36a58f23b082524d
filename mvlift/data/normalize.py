"""MVLift's 2D normalisation: a sequence of pixel keypoints -> the model's [-1, 1] frame.

Rule (METHOD.md "2D normalisation", as the authors' code does it):

1. The first frame's bounding box is measured relative to the canvas on each axis,
   ``w = (u_max - u_min) / W`` and ``h = (v_max - v_min) / H``; the whole sequence is scaled uniformly in
   pixels by ``s = target / max(w, h)`` (target = 0.5), so the box's longer relative side covers half the
   canvas along its axis (a standing person becomes 0.5 H = 540 px tall on a 1920 x 1080 canvas).
2. It is translated so that the first frame's root lands on the canvas centre (W / 2, H / 2).
3. Coordinates map to the normalized frame per axis: ``x_n = 2 u / W - 1``, ``y_n = 2 v / H - 1``.
4. The sequence is cut at the first frame in which a joint leaves the canvas (u <= 0, u >= W, v <= 0 or
   v >= H, i.e. ``|x_n| >= 1`` or ``|y_n| >= 1``). The training data keeps this cut
   (:mod:`mvlift.data.singleview`); ``mvlift lift`` does not cut user input but masks the off-canvas joint
   alone (:mod:`mvlift.stages.lift_input`).

Joints with zero confidence are ignored in the bounding box, the root and the out-of-canvas test (their
coordinates are still transformed, and may be NaN). In canvas pixels the map is
``c = s * uv + offset``; it is inverted exactly by :func:`denormalize_2d`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mvlift.metrics._arrays import first_valid, numpy_compatible, resolve_root

__all__ = [
    "Normalization2D",
    "normalize_2d",
    "normalize_2d_batch",
    "denormalize_2d",
    "DEFAULT_CANVAS",
    "BBOX_TARGET",
]

DEFAULT_CANVAS: tuple[int, int] = (1920, 1080)
BBOX_TARGET = 0.5


@dataclass(frozen=True)
class Normalization2D:
    """Parameters of one (or B) normalisations: ``canvas_px = scale * input_px + offset``.

    Attributes:
        scale: () or (B,) float64, uniform pixel scale s.
        offset: (2,) or (B, 2) float64, canvas-pixel offset.
        length: () or (B,) int64, number of frames kept (frames ``[:length]``; counted from frame 0).
        canvas: (W, H) of the canvas in pixels.
    """

    scale: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    canvas: tuple[int, int] = DEFAULT_CANVAS

    def to_dict(self, prefix: str = "norm_") -> dict[str, np.ndarray]:
        """Arrays for an npz file (keys ``{prefix}scale``, ``offset``, ``length``, ``canvas``)."""
        return {
            f"{prefix}scale": np.asarray(self.scale, np.float64),
            f"{prefix}offset": np.asarray(self.offset, np.float64),
            f"{prefix}length": np.asarray(self.length, np.int64),
            f"{prefix}canvas": np.asarray(self.canvas, np.int64),
        }

    @classmethod
    def from_dict(cls, data: Any, prefix: str = "norm_") -> Normalization2D:
        """Inverse of :meth:`to_dict` (accepts an ``np.load`` result)."""
        canvas = tuple(int(c) for c in np.asarray(data[f"{prefix}canvas"]))
        return cls(
            np.asarray(data[f"{prefix}scale"], np.float64),
            np.asarray(data[f"{prefix}offset"], np.float64),
            np.asarray(data[f"{prefix}length"], np.int64),
            (canvas[0], canvas[1]),
        )

    def __getitem__(self, index: int) -> Normalization2D:
        """The parameters of sequence ``index`` of a batch."""
        if np.ndim(self.scale) == 0:
            raise IndexError(
                f"Normalization2D[{index!r}]: these parameters describe a single sequence (scalar scale); "
                "only the batched parameters of normalize_2d_batch can be indexed"
            )
        return Normalization2D(self.scale[index], self.offset[index], self.length[index], self.canvas)


def _check_canvas(canvas: Any) -> tuple[int, int]:
    try:
        w, h = (int(c) for c in canvas)
    except (TypeError, ValueError):
        raise ValueError(f"canvas must be (W, H) in pixels, got {canvas!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"canvas must be positive (W, H), got {canvas!r}")
    return w, h


@numpy_compatible
def normalize_2d_batch(
    kp: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    conf: torch.Tensor | None = None,
    root: Any = None,
    canvas: tuple[int, int] = DEFAULT_CANVAS,
    target: float = BBOX_TARGET,
) -> tuple[torch.Tensor, torch.Tensor, Normalization2D]:
    """Normalise a batch of 2D sequences (module docstring), keeping the padded shape.

    Args:
        kp: (B, T, J, 2) keypoints in pixels (any image; only relative positions matter).
        mask: optional (B, T) bool, True = valid frame; "first frame" means each sequence's first valid
            frame, and masked frames never count as leaving the canvas.
        conf: optional (B, T, J) confidences; joints with conf <= 0 are ignored.
        root: root joint(s) as in :mod:`mvlift.metrics` (default: hips midpoint for 14/18 joints, else
            joint 0). If no root joint is confident in the first frame, the box centre is used.
        canvas: (W, H).
        target: relative size of the box's longer side (0.5 in the paper).

    Returns:
        ``(kp_norm, mask_out, params)``: kp_norm (B, T, J, 2) in the normalized frame (every frame is
        transformed), mask_out (B, T) = mask and "before the first out-of-canvas frame", and the
        parameters (``params.length`` = index of the first out-of-canvas valid frame, or T).

    Raises:
        ValueError: a sequence whose first frame has fewer than two distinct confident joints (no box).
    """
    if not isinstance(kp, torch.Tensor):
        raise TypeError(f"kp must be a torch.Tensor or numpy.ndarray, got {type(kp).__name__}")
    if kp.dim() != 4 or kp.shape[-1] != 2:
        raise ValueError(f"kp must have shape (B, T, J, 2), got {tuple(kp.shape)}")
    if not kp.is_floating_point():
        kp = kp.to(torch.float64)
    b, t, j, _ = kp.shape
    if t == 0 or j == 0:
        raise ValueError(f"kp needs at least one frame and one joint, got shape {tuple(kp.shape)}")
    w, h = _check_canvas(canvas)
    if not target > 0:
        raise ValueError(f"target must be positive, got {target}")
    if mask is None:
        mask = torch.ones(b, t, dtype=torch.bool, device=kp.device)
    elif mask.shape != (b, t) or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool array of shape {(b, t)}, got {mask.dtype} {tuple(mask.shape)}")
    if not bool(mask.any(dim=-1).all()):
        empty = torch.nonzero(~mask.any(dim=-1)).flatten().tolist()
        raise ValueError(
            f"mask leaves sequences {empty} without any valid frame (True = valid); every sequence needs one"
        )
    if conf is None:
        valid_j = torch.ones(b, t, j, dtype=torch.bool, device=kp.device)
    else:
        if conf.shape != (b, t, j):
            raise ValueError(f"conf must have shape {(b, t, j)}, got {tuple(conf.shape)}")
        valid_j = conf.to(kp.device) > 0
    root_idx = list(resolve_root(root, j))
    size = kp.new_tensor([w, h])

    first = first_valid(kp, mask)  # (B, J, 2)
    first_ok = first_valid(valid_j, mask)  # (B, J)
    big = torch.finfo(kp.dtype).max
    lo = torch.where(first_ok[..., None], first, torch.full_like(first, big)).amin(dim=-2)  # (B, 2)
    hi = torch.where(first_ok[..., None], first, torch.full_like(first, -big)).amax(dim=-2)
    rel = ((hi - lo) / size).amax(dim=-1)  # (B,) longer relative side
    bad = ~(rel > 0) | (first_ok.sum(-1) < 2)
    if bool(bad.any()):
        idx = torch.nonzero(bad).flatten().tolist()
        raise ValueError(
            f"sequences {idx}: the first valid frame has no extent (fewer than two distinct joints with "
            "conf > 0), so there is no scale to normalise by; give that frame two distinct confident joints "
            "or mask it out (mask=)"
        )
    scale = target / rel  # (B,)
    rok = first_ok[:, root_idx]  # (B, R)
    rsum = rok.sum(-1, keepdim=True)
    root_terms = torch.where(rok[..., None], first[:, root_idx], torch.zeros_like(first[:, root_idx]))
    root_pt = root_terms.sum(-2) / rsum.clamp_min(1)  # NaN-safe: unconfident joints may hold NaN
    root_pt = torch.where(rsum > 0, root_pt, (lo + hi) / 2)  # (B, 2)
    offset = size / 2 - scale[:, None] * root_pt  # (B, 2)

    canvas_px = scale[:, None, None, None] * kp + offset[:, None, None, :]
    kp_norm = 2 * canvas_px / size - 1
    outside = ((kp_norm.abs() >= 1).any(dim=-1) & valid_j).any(dim=-1) & mask  # (B, T)
    steps = torch.arange(t, device=kp.device)
    length = torch.where(outside, steps, torch.full_like(steps, t)).amin(dim=-1)  # (B,)
    mask_out = mask & (steps[None, :] < length[:, None])
    params = Normalization2D(
        scale.detach().cpu().double().numpy(),
        offset.detach().cpu().double().numpy(),
        length.cpu().numpy().astype(np.int64),
        (w, h),
    )
    return kp_norm, mask_out, params


@numpy_compatible
def normalize_2d(
    kp: torch.Tensor,
    *,
    root: Any = None,
    canvas: tuple[int, int] = DEFAULT_CANVAS,
    conf: torch.Tensor | None = None,
    target: float = BBOX_TARGET,
) -> tuple[torch.Tensor, Normalization2D]:
    """Normalise one 2D sequence and cut it at the first frame where a joint leaves the canvas.

    Args:
        kp: (T, J, 2) keypoints in pixels.
        root, canvas, conf ((T, J)), target: as in :func:`normalize_2d_batch`.

    Returns:
        ``(kp_norm, params)``: kp_norm (T', J, 2) in [-1, 1] with T' = ``params.length`` (possibly 0), and
        the parameters (0-d arrays) for :func:`denormalize_2d`.
    """
    if not isinstance(kp, torch.Tensor):
        raise TypeError(f"kp must be a torch.Tensor or numpy.ndarray, got {type(kp).__name__}")
    if kp.dim() != 3 or kp.shape[-1] != 2:
        raise ValueError(f"kp must have shape (T, J, 2), got {tuple(kp.shape)}")
    if conf is not None:
        if conf.shape != kp.shape[:-1]:
            raise ValueError(f"conf must have shape {tuple(kp.shape[:-1])}, got {tuple(conf.shape)}")
        conf = conf[None]
    out, _, p = normalize_2d_batch(kp[None], conf=conf, root=root, canvas=canvas, target=target)
    single = Normalization2D(p.scale[0], p.offset[0], p.length[0], p.canvas)
    return out[0, : int(single.length)], single


@numpy_compatible
def denormalize_2d(kp_norm: torch.Tensor, params: Normalization2D) -> torch.Tensor:
    """Invert the normalisation: normalized frame -> the original input pixels.

    Args:
        kp_norm: (T, J, 2) with single-sequence params, or (B, T, J, 2) with batched params (any T).
        params: from :func:`normalize_2d` / :func:`normalize_2d_batch`.

    Returns:
        Pixels in the input's frame, same shape (numpy in -> numpy out).
    """
    if not isinstance(params, Normalization2D):
        raise TypeError(f"params must be a Normalization2D, got {type(params).__name__}")
    if not isinstance(kp_norm, torch.Tensor):
        raise TypeError(f"kp_norm must be a torch.Tensor or numpy.ndarray, got {type(kp_norm).__name__}")
    batched = np.ndim(params.scale) == 1
    want = 4 if batched else 3
    if kp_norm.dim() != want or kp_norm.shape[-1] != 2:
        shape = "(B, T, J, 2)" if batched else "(T, J, 2)"
        raise ValueError(f"kp_norm must have shape {shape} for these params, got {tuple(kp_norm.shape)}")
    if batched and kp_norm.shape[0] != len(params.scale):
        raise ValueError(f"kp_norm has {kp_norm.shape[0]} sequences, params describe {len(params.scale)}")
    dtype = kp_norm.dtype if kp_norm.is_floating_point() else torch.float64
    size = torch.tensor(params.canvas, dtype=dtype, device=kp_norm.device)
    scale = torch.as_tensor(params.scale, dtype=dtype, device=kp_norm.device)
    offset = torch.as_tensor(params.offset, dtype=dtype, device=kp_norm.device)
    if batched:
        scale, offset = scale[:, None, None, None], offset[:, None, None, :]
    canvas_px = (kp_norm.to(dtype) + 1) * size / 2
    return (canvas_px - offset) / scale
