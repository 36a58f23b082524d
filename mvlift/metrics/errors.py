"""Pose and trajectory errors: MPJPE, PA-MPJPE, T_root, global MPJPE, J_2D, bone-length consistency, and the
official evaluation's own definitions of T_root, J_2D and bone consistency (:func:`t_root_paper`,
:func:`j2d_paper`, :func:`bone_length_ratio`; docs/conventions.md sets the two side by side).

Shapes: one sequence (T, J, 3) gives a 0-d result; a batch (B, T, J, 3) gives one value per sequence (B,).
Results are in the input's units (metres in -> metres out; :func:`mvlift.metrics.evaluate_sequence`
reports millimetres). Optional ``mask`` (T,) / (B, T) bool, True = valid frame: errors are averaged over
valid frames only, and "first frame" means the first valid frame. Torch or numpy in, the same kind out;
float32 and float64.

Non-finite values: masked frames may hold anything, NaN and inf included (lifting leaves NaN in frames it
was not given); they are ignored, and the result equals that of the valid frames alone. A NaN or inf in a
valid frame, among the joints a metric uses, raises ValueError naming the argument and the frames (for
:func:`j2d` with ``conf``, joints of confidence 0 are not used).

Root (``root=``): a joint index, a sequence of indices whose mean is the root, an object with a ``root``
attribute (a :class:`mvlift.data.skeletons.Skeleton`), or None = the default: the hips midpoint
(joints 8 and 11) for the 14- and 18-joint OpenPose layouts (BODY14, OPENPOSE18 - the paper's root), joint
0 for any other joint count (the pelvis of SMPL-24, H36M-17, CMU-31).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mvlift.metrics._arrays import (
    as_float,
    check_finite,
    check_mask,
    check_sequences,
    finite_frames,
    first_valid,
    masked_mean,
    numpy_compatible,
    resolve_root,
    root_of,
)
from mvlift.metrics.alignment import procrustes_align

__all__ = [
    "mpjpe",
    "pa_mpjpe",
    "t_root",
    "global_mpjpe",
    "j2d",
    "bone_lengths",
    "bone_length_consistency",
    "t_root_paper",
    "j2d_paper",
    "bone_length_ratio",
    "paper_limbs",
    "PAPER_LIMBS_OPENPOSE",
]

PAPER_LIMBS_OPENPOSE: tuple[tuple[int, int], ...] = (
    (2, 3),
    (3, 4),
    (5, 6),
    (6, 7),
    (8, 9),
    (9, 10),
    (11, 12),
    (12, 13),
)
"""The 8 arm and leg bones of the official bone consistency, OpenPose-18 / BODY14 indices: right
shoulder-elbow, elbow-wrist, left shoulder-elbow, elbow-wrist, right hip-knee, knee-ankle, left hip-knee,
knee-ankle (``bone_scale_consistency_metric`` in lijiaman/mvlift_release
``diffusion_motion_2d/evaluation_metrics.py``)."""

_PAPER_LIMB_NAMES = (
    ("right_shoulder", "right_elbow"),
    ("right_elbow", "right_wrist"),
    ("left_shoulder", "left_elbow"),
    ("left_elbow", "left_wrist"),
    ("right_hip", "right_knee"),
    ("right_knee", "right_ankle"),
    ("left_hip", "left_knee"),
    ("left_knee", "left_ankle"),
)


def _per_frame(err: torch.Tensor) -> torch.Tensor:
    """(..., T, J) joint errors -> (..., T) mean over joints."""
    return err.mean(dim=-1)


@numpy_compatible
def mpjpe(
    pred: torch.Tensor, gt: torch.Tensor, *, root: Any = None, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Root-relative mean per-joint position error.

    Each frame's root is subtracted from that frame's joints (in pred and gt separately), then the L2
    distance is averaged over joints and valid frames.

    Args:
        pred, gt: (T, J, 3) or (B, T, J, 3) positions.
        root: root joint(s); None = hips midpoint for 14/18 joints, else joint 0 (module docstring).
        mask: optional (T,) / (B, T) bool, True = valid frame.

    Returns:
        () or (B,) error in the input's units.
    """
    pred, gt = check_sequences(pred, gt)
    r = resolve_root(root, pred.shape[-2])
    m = check_mask(mask, pred.shape[:-2], pred.device)
    pred, gt = finite_frames(pred, m, "pred"), finite_frames(gt, m, "gt")
    p = pred - root_of(pred, r)[..., None, :]
    g = gt - root_of(gt, r)[..., None, :]
    return masked_mean(_per_frame(torch.linalg.norm(p - g, dim=-1)), m)


@numpy_compatible
def pa_mpjpe(
    pred: torch.Tensor,
    gt: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    root_relative: bool = False,
    root: Any = None,
) -> torch.Tensor:
    """Procrustes-aligned MPJPE with ONE similarity transform for the whole sequence.

    A single scale, rotation and translation (Umeyama, reflections excluded) is fitted to all valid frames'
    joints together, taking pred onto gt; the result is the mean L2 distance after alignment (no per-frame
    root subtraction afterwards). This differs from per-frame PA-MPJPE used in single-image work.

    Args:
        pred, gt: (T, J, 3) or (B, T, J, 3).
        mask: optional (T,) / (B, T) bool, True = valid frame.
        root_relative: subtract each frame's root from pred and gt BEFORE the fit (the authors' evaluation
            code does this; :func:`mvlift.metrics.evaluate_sequence` reports both variants). Default False:
            the fit acts on the positions as given.
        root: root joint(s) used when ``root_relative`` (module docstring).

    Returns:
        () or (B,) error in the input's units.
    """
    pred, gt = check_sequences(pred, gt)
    m = check_mask(mask, pred.shape[:-2], pred.device)
    pred, gt = finite_frames(pred, m, "pred"), finite_frames(gt, m, "gt")
    if root_relative:
        r = resolve_root(root, pred.shape[-2])
        pred = pred - root_of(pred, r)[..., None, :]
        gt = gt - root_of(gt, r)[..., None, :]
    aligned = procrustes_align(pred, gt, mask=m)
    return masked_mean(_per_frame(torch.linalg.norm(aligned - gt, dim=-1)), m)


def _root_trajectories(
    pred: Any, gt: Any, root: Any, mask: Any, trajectory: bool | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Root trajectories (..., T, 3) of pred and gt, each minus its first valid frame; the mask (..., T)."""
    pred = as_float(pred, "pred")
    gt = as_float(gt, "gt")
    if trajectory is None:
        trajectory = pred.dim() == 2
    if trajectory:
        if pred.dim() < 2 or pred.shape[-1] != 3 or pred.shape != gt.shape:
            raise ValueError(
                "root trajectories must both have shape (..., T, 3), "
                f"got {tuple(pred.shape)} and {tuple(gt.shape)}"
            )
        dtype = torch.promote_types(pred.dtype, gt.dtype)
        pr, gr = pred.to(dtype), gt.to(dtype)
        names = ("pred", "gt")
    else:
        pred, gt = check_sequences(pred, gt)
        r = resolve_root(root, pred.shape[-2])
        pr, gr = root_of(pred, r), root_of(gt, r)
        names = (f"pred's root (joints {list(r)})", f"gt's root (joints {list(r)})")
    m = check_mask(mask, pr.shape[:-1], pr.device)
    pr, gr = finite_frames(pr, m, names[0]), finite_frames(gr, m, names[1])
    pr = pr - first_valid(pr, m)[..., None, :]
    gr = gr - first_valid(gr, m)[..., None, :]
    return pr, gr, m


@numpy_compatible
def t_root(
    pred: torch.Tensor,
    gt: torch.Tensor,
    *,
    root: Any = None,
    mask: torch.Tensor | None = None,
    trajectory: bool | None = None,
) -> torch.Tensor:
    """Root trajectory error: mean L2 between root positions after both first-frame roots go to the origin.

    ``mean_t |(r_pred(t) - r_pred(t0)) - (r_gt(t) - r_gt(t0))|`` (Euclidean per frame) over valid frames,
    t0 the first valid frame. See :func:`t_root_paper` for the official code's per-axis variant.

    Args:
        pred, gt: root trajectories (T, 3), or joint positions (T, J, 3) / (B, T, J, 3) from which the
            root is taken. With ``trajectory=True`` the inputs are trajectories of any batch shape
            (..., T, 3), e.g. (B, T, 3). The default (None) treats 2-D inputs as trajectories and 3-/4-D
            inputs as joint positions.
        root: root joint(s) when joint positions are given (module docstring).
        mask: optional (T,) / (B, T) bool, True = valid frame.

    Returns:
        () or (B,) error in the input's units.
    """
    pr, gr, m = _root_trajectories(pred, gt, root, mask, trajectory)
    return masked_mean(torch.linalg.norm(pr - gr, dim=-1), m)


@numpy_compatible
def t_root_paper(
    pred: torch.Tensor,
    gt: torch.Tensor,
    *,
    root: Any = None,
    mask: torch.Tensor | None = None,
    trajectory: bool | None = None,
) -> torch.Tensor:
    """T_root as the official evaluation code computes it: the mean ABSOLUTE PER-AXIS root difference.

    ``mean_{t, k} |(r_pred(t) - r_pred(t0))_k - (r_gt(t) - r_gt(t0))_k|`` over valid frames t and the three
    axes k. The official code (lijiaman/mvlift_release, ``diffusion_motion_2d/evaluation_metrics.py``,
    ``compute_metrics_for_jpos``, "4. Caculate translation error") takes ``np.linalg.norm(..., axis=1)`` of a
    (T, 1, 3) array of hip-midpoint differences: the norm runs over the size-1 joint axis, i.e. it is the
    absolute value of each coordinate, and ``.mean()`` averages over T x 3. This is what the paper's T_root
    column reports; it is smaller than the Euclidean :func:`t_root` (between 1/3 and 1/sqrt(3) of it for
    one frame), which is the honest distance.

    Args and returns: as :func:`t_root` (input units).
    """
    pr, gr, m = _root_trajectories(pred, gt, root, mask, trajectory)
    return masked_mean((pr - gr).abs().mean(dim=-1), m)


@numpy_compatible
def global_mpjpe(
    pred: torch.Tensor, gt: torch.Tensor, *, root: Any = None, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """World-frame MPJPE after first-frame root alignment (no per-frame root subtraction).

    Both sequences are translated so that their first-frame root is at the origin; then the L2 distance of
    every joint is averaged over joints and valid frames. Captures pose and trajectory errors together.

    Args:
        pred, gt: (T, J, 3) or (B, T, J, 3).
        root: root joint(s) (module docstring).
        mask: optional (T,) / (B, T) bool.

    Returns:
        () or (B,) error in the input's units.
    """
    pred, gt = check_sequences(pred, gt)
    r = resolve_root(root, pred.shape[-2])
    m = check_mask(mask, pred.shape[:-2], pred.device)
    pred, gt = finite_frames(pred, m, "pred"), finite_frames(gt, m, "gt")
    p = pred - root_of(first_valid(pred, m)[..., None, :, :], r)[..., None, :]
    g = gt - root_of(first_valid(gt, m)[..., None, :, :], r)[..., None, :]
    return masked_mean(_per_frame(torch.linalg.norm(p - g, dim=-1)), m)


def _projection_matrix(camera: Any, batch_shape: tuple[int, ...]) -> torch.Tensor:
    """P (3, 4) shared or batch_shape + (3, 4); an extra view axis selects view 0 (the input view)."""
    P = camera.P if hasattr(camera, "P") else camera
    if not isinstance(P, torch.Tensor):
        raise TypeError(
            "camera must be a projection matrix P (torch.Tensor / numpy.ndarray, (..., 3, 4)) or an object "
            f"with a .P attribute (mvlift.geometry.Cameras), got {type(camera).__name__}"
        )
    if P.dim() < 2 or P.shape[-2:] != (3, 4):
        raise ValueError(f"camera projection matrix must have shape (..., 3, 4), got {tuple(P.shape)}")
    lead = tuple(P.shape[:-2])
    if lead == () or lead == batch_shape:
        return P
    if lead[:-1] == batch_shape:
        return P[..., 0, :, :]
    raise ValueError(
        f"camera projection matrix must have shape (3, 4), {batch_shape + (3, 4)} or "
        f"{batch_shape + ('V', 3, 4)} "
        f"(view 0 = input view), got {tuple(P.shape)}"
    )


def _reproject(pred_3d: Any, gt_2d: Any, camera: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Project (..., T, J, 3) with the input camera: (uv (..., T, J, 2), gt_2d) in a common dtype."""
    pred_3d = as_float(pred_3d, "pred_3d")
    gt_2d = as_float(gt_2d, "gt_2d")
    if pred_3d.dim() not in (3, 4) or pred_3d.shape[-1] != 3:
        raise ValueError(f"pred_3d must have shape (T, J, 3) or (B, T, J, 3), got {tuple(pred_3d.shape)}")
    if gt_2d.shape != pred_3d.shape[:-1] + (2,):
        raise ValueError(
            f"gt_2d must have shape {tuple(pred_3d.shape[:-1]) + (2,)}, got {tuple(gt_2d.shape)}"
        )
    batch = tuple(pred_3d.shape[:-3])
    P = _projection_matrix(camera, batch)
    dtype = torch.promote_types(
        torch.promote_types(pred_3d.dtype, gt_2d.dtype), as_float(P, "camera.P").dtype
    )
    pred_3d, gt_2d, P = pred_3d.to(dtype), gt_2d.to(dtype), P.to(dtype=dtype, device=pred_3d.device)
    if P.dim() > 2:  # (B, 3, 4) -> (B, 1, 1, 3, 4) against (B, T, J, ...)
        P = P[..., None, None, :, :]
    xh = (P[..., :3] @ pred_3d[..., None])[..., 0] + P[..., 3]  # (..., T, J, 3)
    return xh[..., :2] / xh[..., 2:3], gt_2d


@numpy_compatible
def j2d(
    pred_3d: torch.Tensor,
    gt_2d: torch.Tensor,
    camera: Any,
    *,
    mask: torch.Tensor | None = None,
    conf: torch.Tensor | None = None,
) -> torch.Tensor:
    """J_2D: mean pixel distance between the reprojected prediction and the input 2D keypoints.

    The prediction is projected with the input camera (pinhole, ``u = P X~``, docs/conventions.md) and
    compared joint by joint with ``gt_2d``: ``sum_j c_j |pi(X_j) - x_j| / sum_j c_j`` per frame, averaged over
    valid frames. See :func:`j2d_paper` for the official code's hip-centred, unweighted variant.

    Args:
        pred_3d: (T, J, 3) or (B, T, J, 3) predicted world positions.
        gt_2d: (T, J, 2) or (B, T, J, 2) input keypoints in pixels.
        camera: projection matrix P (3, 4) shared by the batch or (B, 3, 4) per sequence, or a
            :class:`mvlift.geometry.Cameras`-like object with ``.P``; a view axis ((V, 3, 4) or
            (B, V, 3, 4)) selects view 0, the input view.
        mask: optional (T,) / (B, T) bool, True = valid frame.
        conf: optional (T, J) / (B, T, J) joint confidences used as weights (0 = ignored); frames whose
            confidences are all zero are skipped.

    Returns:
        () or (B,) error in pixels.
    """
    uv, gt_2d = _reproject(pred_3d, gt_2d, camera)
    dtype = uv.dtype
    m = check_mask(mask, tuple(uv.shape[:-2]), uv.device)
    if conf is None:
        uv = finite_frames(uv, m, "pred_3d (reprojected into the camera)")
        gt_2d = finite_frames(gt_2d, m, "gt_2d")
        return masked_mean(torch.linalg.norm(uv - gt_2d, dim=-1).mean(dim=-1), m)
    conf = as_float(conf, "conf")
    if conf.shape != uv.shape[:-1]:
        raise ValueError(f"conf must have shape {tuple(uv.shape[:-1])}, got {tuple(conf.shape)}")
    conf = conf.to(dtype=dtype, device=uv.device)
    check_finite(conf, m, "conf")
    used = m[..., None] & (conf != 0)  # (..., T, J): joints of confidence 0 may hold anything
    check_finite(uv, used, "pred_3d (reprojected into the camera)", joints=True)
    check_finite(gt_2d, used, "gt_2d", joints=True)
    err = torch.linalg.norm(uv - gt_2d, dim=-1)  # (..., T, J)
    err = torch.where(used, err, torch.zeros_like(err))
    conf = torch.where(used, conf, torch.zeros_like(conf))
    csum = conf.sum(dim=-1)
    per_frame = (err * conf).sum(dim=-1) / csum.clamp_min(torch.finfo(dtype).tiny)
    m = m & (csum > 0)
    if not bool(m.any(dim=-1).all()):
        raise ValueError("conf and mask leave a sequence without any weighted joint")
    return masked_mean(per_frame, m)


@numpy_compatible
def j2d_paper(
    pred_3d: torch.Tensor,
    gt_2d: torch.Tensor,
    camera: Any,
    *,
    root: Any = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """J_2D as the official evaluation code computes it: first-frame hip-centred, unweighted.

    The prediction is reprojected into the input camera; from the reprojection and from the input 2D each
    its OWN first-valid-frame 2D root (the hips midpoint for 14/18 joints) is subtracted, then
    ``mean_{t, j} |(pi(X_j(t)) - pi(X_root(t0))) - (x_j(t) - x_root(t0))|`` over valid frames and all
    joints, with no confidence weights (lijiaman/mvlift_release,
    ``diffusion_motion_2d/evaluation_metrics.py``, ``compute_metrics_for_jpos``, "5. Calculate 2D pixel
    error"). A constant image-space offset of the
    whole prediction therefore costs nothing; :func:`j2d` is the raw reprojection error.

    Args:
        pred_3d, gt_2d, camera: as :func:`j2d`.
        root: root joint(s) (module docstring); default the hips midpoint for 14/18 joints, else joint 0.
        mask: optional (T,) / (B, T) bool, True = valid frame.

    Returns:
        () or (B,) error in pixels.
    """
    uv, gt_2d = _reproject(pred_3d, gt_2d, camera)
    r = resolve_root(root, uv.shape[-2])
    m = check_mask(mask, tuple(uv.shape[:-2]), uv.device)
    uv = finite_frames(uv, m, "pred_3d (reprojected into the camera)")
    gt_2d = finite_frames(gt_2d, m, "gt_2d")
    uv = uv - root_of(first_valid(uv, m)[..., None, :, :], r)[..., None, :]
    gt_2d = gt_2d - root_of(first_valid(gt_2d, m)[..., None, :, :], r)[..., None, :]
    return masked_mean(torch.linalg.norm(uv - gt_2d, dim=-1).mean(dim=-1), m)


def _bone_pairs(bones: Any, num_joints: int) -> list[tuple[int, int]]:
    """(parent, child) pairs from a parents list (-1 = root), explicit pairs, or an object with .parents."""
    if hasattr(bones, "parents"):
        bones = bones.parents
    if isinstance(bones, torch.Tensor):
        bones = bones.tolist()
    try:
        items = list(bones)
    except TypeError as exc:
        raise TypeError(
            f"bones must be a parents list, a list of (parent, child) pairs or a Skeleton, got {bones!r}"
        ) from exc
    if items and all(isinstance(b, (Sequence, torch.Tensor)) and not isinstance(b, str) for b in items):
        pairs = [(int(a), int(b)) for a, b in items]
    elif len(items) == num_joints:
        pairs = [(int(p), c) for c, p in enumerate(items) if int(p) >= 0]
    else:
        raise ValueError(
            f"bones must be a parents list of length J={num_joints} (-1 for roots) or (parent, child) pairs, "
            f"got {len(items)} entries"
        )
    if not pairs:
        raise ValueError("bones describes no bone")
    for a, b in pairs:
        if not (0 <= a < num_joints and 0 <= b < num_joints):
            raise ValueError(f"bone ({a}, {b}) is out of range for {num_joints} joints")
    return pairs


@numpy_compatible
def bone_lengths(positions: torch.Tensor, bones: Any) -> torch.Tensor:
    """Bone lengths (..., T, J, 3) -> (..., T, nbones), bones as in :func:`bone_length_consistency`."""
    positions = as_float(positions, "positions")
    if positions.dim() < 2 or positions.shape[-1] != 3:
        raise ValueError(f"positions must have shape (..., J, 3), got {tuple(positions.shape)}")
    pairs = _bone_pairs(bones, positions.shape[-2])
    a = [p for p, _ in pairs]
    b = [c for _, c in pairs]
    return torch.linalg.norm(positions[..., b, :] - positions[..., a, :], dim=-1)


@numpy_compatible
def bone_length_consistency(
    positions: torch.Tensor,
    bones: Any,
    *,
    relative: bool = False,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """How much bone lengths vary over time: per-bone standard deviation over valid frames, mean over bones.

    Args:
        positions: (T, J, 3) or (B, T, J, 3).
        bones: a parents list of length J (-1 marks roots; each other joint is a bone's distal end), a list
            of (parent, child) index pairs, or an object with ``.parents`` (a Skeleton).
        relative: divide each bone's std by its mean length (a unitless coefficient of variation).
        mask: optional (T,) / (B, T) bool, True = valid frame.

    Returns:
        () or (B,) mean over bones of the population std of the length (input units, or unitless).
    """
    positions = as_float(positions, "positions")
    if positions.dim() not in (3, 4) or positions.shape[-1] != 3:
        raise ValueError(f"positions must have shape (T, J, 3) or (B, T, J, 3), got {tuple(positions.shape)}")
    lengths = bone_lengths(positions, bones)  # (..., T, nb)
    m = check_mask(mask, tuple(positions.shape[:-2]), positions.device)
    lengths = finite_frames(lengths, m, "positions (the bones' joints)")
    w = m.to(lengths.dtype)[..., None]  # (..., T, 1)
    n = w.sum(dim=-2)
    mean = (lengths * w).sum(dim=-2) / n  # (..., nb)
    var = (((lengths - mean[..., None, :]) ** 2) * w).sum(dim=-2) / n
    std = var.clamp_min(0).sqrt()
    if relative:
        std = std / mean.clamp_min(torch.finfo(std.dtype).tiny)
    return std.mean(dim=-1)


def paper_limbs(skeleton: Any = None, num_joints: int | None = None) -> tuple[tuple[int, int], ...]:
    """The official bone consistency's 8 arm and leg bones as (proximal, distal) joint index pairs.

    From ``skeleton.joint_names`` (``right_shoulder``, ``right_elbow``, ``right_wrist``, ``left_*``,
    ``right_hip``, ``right_knee``, ``right_ankle``, ``left_*``) when a skeleton is given, else
    :data:`PAPER_LIMBS_OPENPOSE` for the 14/18-joint OpenPose layouts (BODY14, OPENPOSE18).

    Raises:
        ValueError: the skeleton lacks one of the joints, or no skeleton and another joint count.
    """
    if skeleton is not None:
        names = list(getattr(skeleton, "joint_names", ()))
        missing = sorted({n for pair in _PAPER_LIMB_NAMES for n in pair if n not in names})
        if missing:
            raise ValueError(
                f"skeleton {getattr(skeleton, 'name', '?')!r} lacks the paper's limb joints {missing}"
            )
        return tuple((names.index(a), names.index(b)) for a, b in _PAPER_LIMB_NAMES)
    if num_joints in (14, 18):
        return PAPER_LIMBS_OPENPOSE
    raise ValueError(
        f"no default limbs for {num_joints} joints (defaults exist for the 14/18-joint OpenPose layouts); "
        "pass a skeleton with OpenPose joint names or explicit bones"
    )


@numpy_compatible
def bone_length_ratio(
    positions: torch.Tensor, bones: Any = None, *, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The official bone consistency: mean over valid frames and bones of length(t) / length(first frame).

    ``mean_{t, b} L_b(t) / L_b(t0)``, t0 the first valid frame; unitless, 1 for rigid bones (scale-invariant,
    so the input's units do not matter). The official code (lijiaman/mvlift_release,
    ``diffusion_motion_2d/evaluation_metrics.py``, ``bone_scale_consistency_metric``, called from
    ``compute_metrics_for_jpos`` on ``opt_jpos3d_18``) evaluates it on the triangulated joints before the
    SMPL fit, over the 8 arm and leg bones (:data:`PAPER_LIMBS_OPENPOSE`). A ratio averages to about 1 even
    when bones stretch both ways; :func:`bone_length_consistency` measures the spread.

    Args:
        positions: (T, J, 3) or (B, T, J, 3).
        bones: (proximal, distal) pairs, a parents list or a Skeleton (all its bones); default
            :func:`paper_limbs` for the 14/18-joint OpenPose layouts.
        mask: optional (T,) / (B, T) bool, True = valid frame.

    Returns:
        () or (B,) unitless ratio.
    """
    positions = as_float(positions, "positions")
    if positions.dim() not in (3, 4) or positions.shape[-1] != 3:
        raise ValueError(f"positions must have shape (T, J, 3) or (B, T, J, 3), got {tuple(positions.shape)}")
    if bones is None:
        bones = paper_limbs(None, positions.shape[-2])
    lengths = bone_lengths(positions, bones)  # (..., T, nb)
    m = check_mask(mask, tuple(positions.shape[:-2]), positions.device)
    lengths = finite_frames(lengths, m, "positions (the bones' joints)")
    first = first_valid(lengths, m)  # (..., nb)
    if not bool((first > 0).all()):
        raise ValueError("positions: a bone has zero length in the first valid frame; the ratio is undefined")
    return masked_mean((lengths / first[..., None, :]).mean(dim=-1), m)
