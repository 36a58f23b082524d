"""Rigid and similarity alignment used before the metrics, and the paper's evaluation protocol.

- :func:`similarity_procrustes`: weighted Umeyama closed form, ``dst ~ s R src + t`` with a proper rotation
  (det R = +1; reflections are never returned).
- :func:`procrustes_align`: one similarity transform per sequence, fitted on all valid frames' joints.
- :func:`facing_direction`, :func:`rotation_about_axis`: the horizontal facing of a pose and rotations about
  the vertical.
- :func:`facing_yaw`: the angle about the vertical that turns the ground truth to the prediction's facing,
  by least squares over the first frames' root-relative joints (``"lstsq"``, the default) or from the
  hip line of the first frame (``"hips"``).
- :func:`align_for_evaluation`: MVLift's protocol (ground truth turned about the vertical to the
  prediction's facing, both on the floor, first-frame root at the origin in x/z).
- :func:`replace_neck`: the official evaluation's OpenPose-18 neck (the shoulder midpoint).

All functions take torch tensors or numpy arrays (numpy in -> numpy out), float32 or float64.
World frame: Y up, floor at y = 0 (docs/conventions.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mvlift.metrics._arrays import (
    OPENPOSE_LAYOUT_SIZES,
    OPENPOSE_LEFT_HIP,
    OPENPOSE_RIGHT_HIP,
    check_mask,
    check_sequences,
    finite_frames,
    first_valid,
    numpy_compatible,
    resolve_root,
    root_of,
)

__all__ = [
    "similarity_procrustes",
    "procrustes_align",
    "facing_direction",
    "rotation_about_axis",
    "align_for_evaluation",
    "facing_yaw",
    "hip_indices",
    "replace_neck",
    "FACING_METHODS",
    "DEFAULT_FACING_FRAMES",
]

FACING_METHODS = ("lstsq", "hips", "none")
"""How :func:`align_for_evaluation` turns the ground truth (see :func:`facing_yaw`)."""

DEFAULT_FACING_FRAMES = 15
"""Frames of the least-squares facing window: 0.5 s at the paper's 30 fps."""

# OpenPose-18: 1 = neck, 2 = right shoulder, 5 = left shoulder (mvlift.data.skeletons.OPENPOSE18).
_OPENPOSE_NECK = 1
_OPENPOSE_SHOULDERS = (2, 5)

_LEFT_HIP_NAMES = ("lhip", "lefthip", "lhipjoint", "leftupleg", "lthigh", "hipl", "lefthindhip")
_RIGHT_HIP_NAMES = ("rhip", "righthip", "rhipjoint", "rightupleg", "rthigh", "hipr", "righthindhip")


@numpy_compatible
def similarity_procrustes(
    src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None = None, *, scale: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best similarity transform taking ``src`` onto ``dst`` in the weighted least-squares sense (Umeyama).

    Minimises ``sum_n w_n |s R src_n + t - dst_n|^2`` over s > 0, R in SO(D) and t.

    Args:
        src, dst: (..., N, D) point sets in correspondence (D = 2 or 3; any batch shape).
        weights: optional (..., N) non-negative weights (0 = ignored); at least D non-collinear points
            must carry weight for R to be unique.
        scale: fit the scale (True) or fix s = 1 (a rigid fit).

    Returns:
        ``(s, R, t)`` with shapes (...,), (..., D, D), (..., D). Reflections are excluded: when the
        unconstrained optimum is improper, the smallest singular direction is flipped (det R = +1).
    """
    if not isinstance(src, torch.Tensor) or not isinstance(dst, torch.Tensor):
        raise TypeError("src and dst must be torch tensors or numpy arrays")
    if src.shape != dst.shape or src.dim() < 2:
        raise ValueError(
            f"src and dst must both have shape (..., N, D), got {tuple(src.shape)} and {tuple(dst.shape)}"
        )
    dtype = torch.promote_types(src.dtype, dst.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float64
    src, dst = src.to(dtype), dst.to(dtype)
    if weights is None:
        w = torch.ones(src.shape[:-1], dtype=dtype, device=src.device)
    else:
        if weights.shape != src.shape[:-1]:
            raise ValueError(f"weights must have shape {tuple(src.shape[:-1])}, got {tuple(weights.shape)}")
        w = weights.to(dtype=dtype, device=src.device)
    wsum = w.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)  # (..., 1)
    mu_s = (w[..., None] * src).sum(dim=-2) / wsum  # (..., D)
    mu_d = (w[..., None] * dst).sum(dim=-2) / wsum
    xs = src - mu_s[..., None, :]
    xd = dst - mu_d[..., None, :]
    cov = (xd * w[..., None]).transpose(-1, -2) @ xs / wsum[..., None]  # (..., D, D) = E[xd xs^T]
    u, sig, vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(u) * torch.linalg.det(vh))
    d = torch.where(d == 0, torch.ones_like(d), d)
    flip = torch.ones_like(sig)
    flip[..., -1] = d
    rot = u @ (flip[..., :, None] * vh)
    if scale:
        var_s = (w * (xs * xs).sum(dim=-1)).sum(dim=-1) / wsum[..., 0]
        s = (sig * flip).sum(dim=-1) / var_s.clamp_min(torch.finfo(dtype).tiny)
    else:
        s = torch.ones(src.shape[:-2], dtype=dtype, device=src.device)
    t = mu_d - s[..., None] * (rot @ mu_s[..., None])[..., 0]
    return s, rot, t


@numpy_compatible
def procrustes_align(
    pred: torch.Tensor, gt: torch.Tensor, *, mask: torch.Tensor | None = None, scale: bool = True
) -> torch.Tensor:
    """Align ``pred`` to ``gt`` with ONE similarity transform per sequence (all valid frames' joints).

    Args:
        pred, gt: (T, J, 3) or (B, T, J, 3).
        mask: optional (T,) / (B, T) bool, True = valid frame; masked frames do not influence the fit but
            are transformed too. They may hold anything (NaN stays NaN); a NaN or inf in a valid frame
            raises ValueError naming the argument and the frames (:mod:`mvlift.metrics.errors`).
        scale: include the scale (similarity) or not (rigid).

    Returns:
        ``pred`` after the fitted transform, same shape.
    """
    pred, gt = check_sequences(pred, gt)
    t_len, j = pred.shape[-3], pred.shape[-2]
    m = check_mask(mask, pred.shape[:-2], pred.device)
    w = m[..., :, None].expand(*m.shape, j).reshape(*m.shape[:-1], t_len * j)
    src = finite_frames(pred, m, "pred").reshape(*pred.shape[:-3], t_len * j, 3)
    dst = finite_frames(gt, m, "gt").reshape(*gt.shape[:-3], t_len * j, 3)
    s, rot, t = similarity_procrustes(src, dst, w, scale=scale)
    out = s[..., None, None, None] * pred @ rot[..., None, :, :].transpose(-1, -2) + t[..., None, None, :]
    return out


def _up_vector(up: Any, like: torch.Tensor) -> torch.Tensor:
    u = torch.as_tensor(up, dtype=like.dtype, device=like.device)
    if u.shape != (3,):
        raise ValueError(f"up must be a 3-vector, got shape {tuple(u.shape)}")
    n = torch.linalg.norm(u)
    if float(n) == 0.0:
        raise ValueError("up must be a non-zero vector")
    return u / n


@numpy_compatible
def rotation_about_axis(
    angle: torch.Tensor, axis: Sequence[float] | torch.Tensor = (0.0, 1.0, 0.0)
) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) turning by ``angle`` (radians, right-hand rule) about ``axis``."""
    if not isinstance(angle, torch.Tensor):
        angle = torch.as_tensor(angle, dtype=torch.float64)
    if not angle.is_floating_point():
        angle = angle.to(torch.float64)
    a = _up_vector(axis, angle)
    k = torch.zeros(3, 3, dtype=angle.dtype, device=angle.device)
    k[0, 1], k[0, 2] = -a[2], a[1]
    k[1, 0], k[1, 2] = a[2], -a[0]
    k[2, 0], k[2, 1] = -a[1], a[0]
    eye = torch.eye(3, dtype=angle.dtype, device=angle.device)
    s = torch.sin(angle)[..., None, None]
    c = torch.cos(angle)[..., None, None]
    return eye + s * k + (1 - c) * (k @ k)


def hip_indices(skeleton: Any = None, num_joints: int | None = None) -> tuple[int, int]:
    """(left hip, right hip) joint indices.

    From ``skeleton.joint_names`` when a skeleton is given (names such as ``left_hip``/``lhip``/``LHip``/
    ``lhipjoint``, ``left_hind_hip``), else the OpenPose layout (left 11, right 8) for 14- or 18-joint
    sequences.
    """
    if skeleton is not None:
        names = [
            str(n).lower().replace("_", "").replace(" ", "").replace(".", "") for n in skeleton.joint_names
        ]
        left = [i for i, n in enumerate(names) if n in _LEFT_HIP_NAMES]
        right = [i for i, n in enumerate(names) if n in _RIGHT_HIP_NAMES]
        if left and right:
            return left[0], right[0]
        raise ValueError(
            f"cannot find left/right hip joints in skeleton {getattr(skeleton, 'name', '?')!r}; "
            "pass left= and right= joint indices"
        )
    if num_joints in OPENPOSE_LAYOUT_SIZES:
        return OPENPOSE_LEFT_HIP, OPENPOSE_RIGHT_HIP
    raise ValueError(
        f"no default left/right hip joints for {num_joints} joints (defaults exist for the 14/18-joint "
        "OpenPose layouts); pass left= and right= joint indices or a skeleton"
    )


def _indices(v: int | Sequence[int], name: str, num_joints: int) -> list[int]:
    idx = [int(v)] if isinstance(v, (int, np.integer)) else [int(i) for i in v]
    if not idx or any(not -num_joints <= i < num_joints for i in idx):
        raise ValueError(f"{name} must be joint indices in [0, {num_joints}), got {v!r}")
    return idx


@numpy_compatible
def facing_direction(
    pose: torch.Tensor,
    left: int | Sequence[int],
    right: int | Sequence[int],
    up: Sequence[float] | torch.Tensor = (0.0, 1.0, 0.0),
) -> torch.Tensor:
    """Horizontal unit facing direction of poses (..., J, 3) -> (..., 3).

    ``across`` = mean of the ``left`` joints minus mean of the ``right`` joints (e.g. left hip - right hip,
    or hips and shoulders together), with its vertical component removed; facing = across x up, normalised.
    A person standing upright with the left hip at +X (Y up) faces +Z. A degenerate pose (left and right
    vertically stacked) gives the zero vector.
    """
    j = pose.shape[-2]
    li = _indices(left, "left", j)
    ri = _indices(right, "right", j)
    u = _up_vector(up, pose)
    across = pose[..., li, :].mean(dim=-2) - pose[..., ri, :].mean(dim=-2)
    across = across - (across @ u)[..., None] * u
    fwd = torch.linalg.cross(across, u.expand_as(across), dim=-1)
    n = torch.linalg.norm(fwd, dim=-1, keepdim=True)
    return fwd / n.clamp_min(torch.finfo(pose.dtype).eps)


def _signed_angle(a: torch.Tensor, b: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
    """Angle (radians) turning ``a`` onto ``b`` about ``axis`` (right-hand rule), both perpendicular to it."""
    cross = torch.linalg.cross(a, b, dim=-1)
    return torch.atan2((cross * axis).sum(-1), (a * b).sum(-1))


def _first_frames(mask: torch.Tensor, count: int) -> torch.Tensor:
    """(..., T) bool: the first ``count`` valid frames of each sequence."""
    return mask & (torch.cumsum(mask.to(torch.int64), dim=-1) <= count)


def _check_facing(facing: str, frames: int) -> None:
    if facing not in FACING_METHODS:
        raise ValueError(f"facing must be one of {FACING_METHODS}, got {facing!r}")
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise ValueError(f"facing_frames must be an int >= 1 (frames of the facing window), got {frames!r}")


@numpy_compatible
def facing_yaw(
    pred: torch.Tensor,
    gt: torch.Tensor,
    *,
    facing: str = "lstsq",
    facing_frames: int = DEFAULT_FACING_FRAMES,
    root: Any = None,
    left: int | Sequence[int] | None = None,
    right: int | Sequence[int] | None = None,
    skeleton: Any = None,
    up: Sequence[float] | torch.Tensor = (0.0, 1.0, 0.0),
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The angle about the vertical that turns the ground truth's facing onto the prediction's.

    Methods (``facing``):

    - ``"lstsq"`` (default): the least-squares rotation about ``up`` taking the ground truth's root-relative
      joints onto the prediction's, over the first ``facing_frames`` valid frames and all joints together:
      with ``g``, ``p`` each frame's joints minus that frame's root, projected on the floor plane,
      ``angle = atan2(sum u . (g x p), sum g . p)``, which minimises ``sum |R(angle) g - p|^2``. Many joints
      over several frames average the joint noise out; only the first frames are used, so that a trajectory
      that turns the wrong way later is not hidden by the alignment.
    - ``"hips"``: the facing of the first valid frame from the left/right joints (by default the hips,
      :func:`facing_direction`) of each sequence, the angle between the two facings. Two joints of one
      frame: a few centimetres of joint noise turn it by several degrees.
    - ``"none"``: zero (the frames are known to agree).

    Args:
        pred, gt: (T, J, 3) or (B, T, J, 3) world positions.
        facing: ``"lstsq"``, ``"hips"`` or ``"none"``.
        facing_frames: ``"lstsq"`` window length in frames (default 15: 0.5 s at 30 fps).
        root: root joint(s) (see :func:`mvlift.metrics.mpjpe`); default ``skeleton.root`` when a skeleton is
            given, else the hips midpoint (14/18 joints) or joint 0.
        left, right, skeleton: the ``"hips"`` method's joints (see :func:`align_for_evaluation`).
        up: the vertical axis (default +Y).
        mask: optional (T,) / (B, T) bool, True = valid frame.

    Returns:
        () or (B,) angle in radians (right-hand rule about ``up``), in (-pi, pi].
    """
    _check_facing(facing, facing_frames)
    pred, gt = check_sequences(pred, gt)
    j = pred.shape[-2]
    m = check_mask(mask, pred.shape[:-2], pred.device)
    u = _up_vector(up, pred)
    if facing == "none":
        return torch.zeros(pred.shape[:-3], dtype=pred.dtype, device=pred.device)
    if facing == "hips":
        if left is None or right is None:
            dl, dr = hip_indices(skeleton, j)
            left = dl if left is None else left
            right = dr if right is None else right
        f_pred = facing_direction(first_valid(pred, m), left, right, u)
        f_gt = facing_direction(first_valid(gt, m), left, right, u)
        return _signed_angle(f_gt, f_pred, u)
    if root is None and skeleton is not None:
        root = skeleton
    r = resolve_root(root, j)
    w = _first_frames(m, int(facing_frames))[..., None, None]  # (..., T, 1, 1)

    def flat(x: torch.Tensor) -> torch.Tensor:
        x = x - root_of(x, r)[..., None, :]
        x = x - (x @ u)[..., None] * u
        return torch.where(w, x, torch.zeros_like(x))  # frames outside the window (even NaN) count zero

    g, p = flat(gt), flat(pred)
    dot = (g * p).sum(dim=(-1, -2, -3))
    crs = (torch.linalg.cross(g, p, dim=-1) @ u).sum(dim=(-1, -2))
    return torch.atan2(crs, dot)


@numpy_compatible
def replace_neck(positions: torch.Tensor) -> torch.Tensor:
    """OpenPose-18 with the neck (joint 1) replaced by the shoulder midpoint (joints 2 and 5).

    The official evaluation does this to prediction and ground truth before scoring (lijiaman/mvlift_release,
    ``diffusion_motion_2d/trainer_multiview_motion2d.py``, ``replace_neck_jnt_w_avg``). Only for the
    OpenPose-18 layout: BODY14 (mvlift's CMU set) keeps its neck, which for CMU data already is the shoulder
    midpoint (:mod:`mvlift.data.skeletons`).

    Args:
        positions: (..., 18, D) joints (D = 2 or 3), OpenPose-18 order.

    Returns:
        a copy with joint 1 = mean of joints 2 and 5.
    """
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"positions must be a torch.Tensor or numpy.ndarray, got {type(positions).__name__}")
    if positions.dim() < 2 or positions.shape[-2] != 18:
        raise ValueError(
            f"positions must have shape (..., 18, D) (OpenPose-18), got {tuple(positions.shape)}"
        )
    out = positions.clone()
    out[..., _OPENPOSE_NECK, :] = positions[..., list(_OPENPOSE_SHOULDERS), :].mean(dim=-2)
    return out


@numpy_compatible
def align_for_evaluation(
    pred: torch.Tensor,
    gt: torch.Tensor,
    *,
    root: Any = None,
    left: int | Sequence[int] | None = None,
    right: int | Sequence[int] | None = None,
    skeleton: Any = None,
    up: Sequence[float] | torch.Tensor = (0.0, 1.0, 0.0),
    mask: torch.Tensor | None = None,
    facing: str = "lstsq",
    facing_frames: int = DEFAULT_FACING_FRAMES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MVLift's evaluation alignment of a predicted and a ground-truth world motion.

    1. The ground truth is rotated about the vertical (``up``), about its first-frame root, by
       :func:`facing_yaw` (``facing``): by default the least-squares yaw over the first ``facing_frames``
       valid frames' root-relative joints; ``"hips"`` = the first frame's left/right hip line (the rule
       before issue 10, noise-sensitive); ``"none"`` = no rotation. The official code turns the truth to
       the prediction's first-frame facing taken from the fitted SMPL root orientation
       (``align_init_facing_direction`` in lijiaman/mvlift_release's ``trainer_multiview_motion2d.py``);
       mvlift predicts joints, not SMPL, so the facing comes from the joints.
    2. Both are put on the floor: the lowest joint over all valid frames gets height 0.
    3. Both first-frame roots are moved to the origin in the floor plane (x, z); heights are kept.

    Args:
        pred, gt: (T, J, 3) or (B, T, J, 3) world positions, Y up.
        root: root joint(s), see :func:`mvlift.metrics.mpjpe`; defaults to ``skeleton.root`` when a
            skeleton is given, else the hips midpoint (14/18 joints) or joint 0.
        left, right: joint indices of the left/right side used by ``facing="hips"``; default: the hips found
            in ``skeleton.joint_names``, or the OpenPose-layout hips (11, 8) for 14/18 joints.
        skeleton: optional :class:`mvlift.data.skeletons.Skeleton` supplying root and hips.
        up: the vertical axis (default +Y).
        mask: optional (T,) / (B, T) bool; "first frame" means the first valid frame.
        facing: ``"lstsq"`` (default), ``"hips"`` or ``"none"`` (:func:`facing_yaw`).
        facing_frames: the ``"lstsq"`` window in frames (default 15 = 0.5 s at 30 fps).

    Returns:
        ``(pred_aligned, gt_aligned)``, same shapes and dtype.
    """
    _check_facing(facing, facing_frames)
    pred, gt = check_sequences(pred, gt)
    j = pred.shape[-2]
    m = check_mask(mask, pred.shape[:-2], pred.device)
    if root is None and skeleton is not None:
        root = skeleton
    root_idx = resolve_root(root, j)
    u = _up_vector(up, pred)

    angle = facing_yaw(
        pred,
        gt,
        facing=facing,
        facing_frames=facing_frames,
        root=root_idx,
        left=left,
        right=right,
        skeleton=skeleton,
        up=u,
        mask=m,
    )  # (...,)
    rot = rotation_about_axis(angle, u)  # (..., 3, 3)
    g0 = first_valid(gt, m)
    pivot = root_of(g0[..., None, :, :], root_idx)[..., 0, :]  # (..., 3)
    piv = pivot[..., None, None, :]  # (..., 1, 1, 3)
    gt = torch.einsum("...ij,...tkj->...tki", rot, gt - piv) + piv

    def settle(x: torch.Tensor) -> torch.Tensor:
        height = x @ u  # (..., T, J)
        big = torch.finfo(x.dtype).max
        floor = torch.where(m[..., None], height, torch.full_like(height, big)).amin(dim=(-1, -2))
        x = x - floor.reshape(*floor.shape, 1, 1, 1) * u
        r0 = root_of(first_valid(x, m)[..., None, :, :], root_idx)[..., 0, :]  # (..., 3)
        r0 = r0 - (r0 @ u)[..., None] * u
        return x - r0.reshape(*r0.shape[:-1], 1, 1, 3)

    return settle(pred), settle(gt)
