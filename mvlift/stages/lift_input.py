"""The 2D input of ``mvlift lift``: checked, normalised, its losses counted (``input_report.json``).

:func:`prepare_input` turns one :class:`~mvlift.data.motion.Sequence2D` (pixels) into what
:func:`mvlift.stages.lift.lift` takes, and says what it did with every frame and joint. Steps:

1. **Joint set.** The file's registered skeleton (or one whose joint names it matches exactly); else the
   skeleton the user names (``--skeleton``); an unnamed joint set is an error (joint order is never
   guessed from the joint count). It is then converted to the model's skeleton.
2. **Joint checks**, per frame and joint (the first that applies is the joint's reason, counted in
   ``joints_masked``): ``non_finite`` (a NaN/inf coordinate with confidence > 0, or a NaN/inf confidence:
   masked, with a warning), ``no_detection`` (confidence <= 0 in the file), ``outside_image`` (outside
   [0, W] x [0, H] when the file gives the image size), ``far_from_body`` (farther from the frame's median
   joint than :data:`FAR_FACTOR` times the median joint distance: a detector glitch), ``off_canvas``
   (outside the normalised canvas after the paper's normalisation, ``|x| >= 1`` or ``|y| >= 1``). A masked
   joint gets confidence 0: the input view does not enter its triangulation.

   Unlike the training data (:mod:`mvlift.data.singleview`, which keeps the paper's rule and cuts a window
   at the first frame in which a joint leaves the canvas), an off-canvas joint here masks that joint only,
   not the frames after it.
3. **Normalisation** (:func:`mvlift.data.normalize.normalize_2d_batch`) from the first frame with at least
   half of the joints usable.
4. **Gaps.** Every joint's runs of masked frames of at most ``max_gap`` frames between two usable frames are
   interpolated linearly in time (:func:`mvlift.data.gaps.interpolate_gaps`); interpolated joints are used
   as input but never reported as valid 3D. Longer runs stay masked.
5. **Frames.** A frame with fewer than half of its joints usable (after step 4) is not lifted; its reason
   is the most frequent reason among its masked joints. Such frames at the start and end are cut, inner
   ones are masked (their 3D is NaN). Frames beyond the model's ``max_frames`` are cut with a warning.

The report (``input_report.json``) counts, by reason: ``frames_read``, ``frames_lifted``, ``frames_cut``
and ``frames_masked`` (``frames_read = frames_lifted + sum(frames_cut) + sum(frames_masked)``: every frame
read is accounted for), ``joints_masked`` (joint observations of the lifted range, in the model's joint set)
and ``joints_interpolated``; :func:`mvlift.stages.lift_io.lift_file` adds the lifting's point counts.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mvlift.data.gaps import interpolate_gaps
from mvlift.data.motion import Sequence2D
from mvlift.data.normalize import DEFAULT_CANVAS, Normalization2D, normalize_2d_batch
from mvlift.data.skeletons import SKELETONS, Skeleton, convert, convert_confidence, get_skeleton

__all__ = [
    "DEFAULT_MAX_GAP",
    "FAR_FACTOR",
    "INPUT_STATUS",
    "PreparedInput",
    "format_input_report",
    "prepare_input",
    "resolve_input_skeleton",
]

DEFAULT_MAX_GAP = 8
"""Frames: the longest run of masked frames of a joint that is interpolated (about 0.27 s at 30 fps)."""

FAR_FACTOR = 10.0
"""A joint farther than this many median joint distances from its frame's median joint is masked."""

INPUT_STATUS = (
    "detected",
    "interpolated",
    "no_detection",
    "non_finite",
    "outside_image",
    "far_from_body",
    "off_canvas",
)
"""Codes of ``input_status`` in ``lifted.npz``: the index is the code of a (frame, joint)."""

_CODE = {name: code for code, name in enumerate(INPUT_STATUS)}
_MASK_REASONS = INPUT_STATUS[2:]


@dataclass
class PreparedInput:
    """The checked, normalised input of one sequence (T' frames kept, J joints of the model's skeleton).

    Attributes:
        x: (T', J, 2) float64 in the normalised frame; joints that are not used hold a filler (the joint's
            nearest used position in time, else the frame's centroid), only to condition the model.
        mask: (T',) bool, frames lifted (False = masked frame, its 3D is NaN).
        used: (T', J) bool, joints the lifting takes as observed (detected or interpolated, in lifted frames).
        interpolated: (T', J) bool, joints filled by interpolation in time.
        status: (T', J) int8 codes of :data:`INPUT_STATUS` (the reason a joint is masked).
        frame_index: (T',) int64, the input frame of each kept frame.
        params: the normalisation (:class:`~mvlift.data.normalize.Normalization2D`, 0-d fields).
        report: JSON-ready counts (module docstring), completed by :func:`mvlift.stages.lift_io.lift_file`.
    """

    x: torch.Tensor
    mask: torch.Tensor
    used: torch.Tensor
    interpolated: torch.Tensor
    status: np.ndarray
    frame_index: np.ndarray
    params: Normalization2D
    report: dict[str, Any]


def resolve_input_skeleton(seq: Sequence2D, name: str | None, *, where: str = "input") -> Skeleton:
    """The joint set of ``seq``: its registered skeleton, a registered one with exactly its joint names, or
    the one called ``name`` (which must then agree with the file).

    Raises:
        ValueError: an unnamed joint set without ``name``, an unknown ``name``, or a ``name`` whose joint
            count or identity contradicts the file.
    """
    J = seq.keypoints.shape[1]
    known = seq.skeleton
    if known is None:
        known = next((s for s in SKELETONS.values() if s.joint_names == seq.joint_names), None)
    if name is None:
        if known is None:
            shown = ", ".join(seq.joint_names[:6]) + (", ..." if J > 6 else "")
            raise ValueError(
                f"{where}: its {J} joints ({shown}) are not a registered joint set, and the joint order "
                f"cannot be guessed from the count; name it with --skeleton NAME (input_skeleton=), one of "
                f"{sorted(SKELETONS)}"
            )
        return known
    skel = get_skeleton(name)
    if known is not None and known.name != skel.name:
        raise ValueError(f"{where}: the file's joints are {known.name!r}, but --skeleton says {skel.name!r}")
    if skel.num_joints != J:
        raise ValueError(
            f"{where}: --skeleton {skel.name!r} has {skel.num_joints} joints, the input has {J} (keypoints "
            f"{tuple(seq.keypoints.shape)})"
        )
    return skel


def _convert_max(flags: np.ndarray, src: Skeleton, dst: Skeleton) -> np.ndarray:
    """A target joint is flagged when any source joint defining it is."""
    return 1.0 - np.asarray(convert_confidence(1.0 - flags.astype(np.float64), src, dst))


def _first(mask: np.ndarray, names: tuple[str, ...]) -> str:
    f, j = np.argwhere(mask)[0]
    return f"frame {int(f)}, joint {names[j]!r}"


def prepare_input(
    seq: Sequence2D,
    skeleton: Skeleton,
    *,
    input_skeleton: str | None = None,
    max_gap: int = DEFAULT_MAX_GAP,
    max_frames: int | None = None,
    where: str | None = None,
) -> PreparedInput:
    """Check, mask, normalise and interpolate one 2D input sequence (module docstring: every step).

    Args:
        seq: the sequence read from a file, keypoints (T, J_in, 2) pixels, confidence (T, J_in).
        skeleton: the model's joint set (J joints).
        input_skeleton: the input's joint set by name, for files that do not name theirs.
        max_gap: longest interpolated run of masked frames (an int >= 0).
        max_frames: the model's frame limit; later frames are cut with a warning (None = no limit).
        where: how messages name the input (default ``seq.source``).

    Returns:
        :class:`PreparedInput`.

    Raises:
        ValueError: an unnamed joint set, a joint set that does not convert to ``skeleton``, no frame with
            at least half of its joints usable, fewer than 2 frames to lift, or a first frame without
            extent; each names the input and what it holds.
    """
    where = where or seq.source or "input"
    if not isinstance(max_gap, int) or isinstance(max_gap, bool) or max_gap < 0:
        raise ValueError(f"max_gap must be an int >= 0 (frames), got {max_gap!r}")
    src = resolve_input_skeleton(seq, input_skeleton, where=where)
    kp_src = np.asarray(seq.keypoints, dtype=np.float64)
    conf_src = np.asarray(seq.confidence, dtype=np.float64)
    T = kp_src.shape[0]
    if T == 0:
        raise ValueError(f"{where}: the input has no frames (keypoints {tuple(kp_src.shape)})")

    # Non-finite values with confidence > 0 (and non-finite confidences) are masked, with a warning.
    bad_conf = ~np.isfinite(conf_src)
    bad_kp = ~np.isfinite(kp_src).all(-1) & (np.nan_to_num(conf_src, nan=0.0) > 0)
    if bad_conf.any():
        warnings.warn(
            f"{where}: {int(bad_conf.sum())} confidence value(s) are NaN or inf (first at "
            f"{_first(bad_conf, src.joint_names)}); those joints are masked",
            stacklevel=3,
        )
    if bad_kp.any():
        warnings.warn(
            f"{where}: {int(bad_kp.sum())} keypoint(s) with confidence > 0 are NaN or inf (first at "
            f"{_first(bad_kp, src.joint_names)}); those joints are masked (confidence 0)",
            stacklevel=3,
        )
    nonfinite_src = bad_conf | bad_kp
    conf_clean = np.where(nonfinite_src | ~(np.nan_to_num(conf_src, nan=0.0) > 0), 0.0, conf_src)
    kp_clean = np.where((conf_clean > 0)[..., None], kp_src, np.nan)

    if src.name != skeleton.name:
        try:
            kp = np.asarray(convert(kp_clean, src, skeleton))
            conf = np.asarray(convert_confidence(conf_clean, src, skeleton))
        except ValueError as exc:
            raise ValueError(
                f"{where}: cannot convert its {src.name!r} joints to the model's: {exc}"
            ) from None
        nonfinite = _convert_max(nonfinite_src, src, skeleton) > 0
    else:
        kp, conf, nonfinite = kp_clean, conf_clean, nonfinite_src
    J = skeleton.num_joints
    usable = (conf > 0) & np.isfinite(kp).all(-1)
    status = np.zeros((T, J), dtype=np.int8)
    status[~usable] = _CODE["no_detection"]
    status[nonfinite] = _CODE["non_finite"]

    canvas = tuple(seq.image_size) if seq.image_size is not None else DEFAULT_CANVAS
    if seq.image_size is not None:
        W, H = seq.image_size
        out = usable & ((kp[..., 0] < 0) | (kp[..., 0] > W) | (kp[..., 1] < 0) | (kp[..., 1] > H))
        status[out], usable = _CODE["outside_image"], usable & ~out
    # Detector glitches: a joint far from the rest of its body.
    pts = np.where(usable[..., None], kp, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # frames without usable joints: all-NaN medians
        centre = np.nanmedian(pts, axis=1, keepdims=True)
        dist = np.linalg.norm(pts - centre, axis=-1)
        spread = np.maximum(np.nanmedian(dist, axis=1, keepdims=True), 0.01 * max(canvas))
    far = usable & (np.nan_to_num(dist, nan=0.0) > FAR_FACTOR * np.nan_to_num(spread, nan=np.inf))
    status[far], usable = _CODE["far_from_body"], usable & ~far

    min_joints = math.ceil(J / 2)
    enough = usable.sum(-1) >= min_joints
    if not enough.any():
        counts = {r: int((status == _CODE[r]).sum()) for r in _MASK_REASONS if (status == _CODE[r]).any()}
        hint = " (every confidence is 0)" if not (conf_src > 0).any() else ""
        raise ValueError(
            f"{where}: no frame has at least {min_joints} of its {J} joints usable{hint}: {T} frames of "
            f"{J} joints read, masked {counts}; nothing to lift"
        )
    kp_t = torch.as_tensor(np.nan_to_num(kp, nan=0.0, posinf=0.0, neginf=0.0))
    try:
        x, _, params = normalize_2d_batch(
            kp_t[None],
            mask=torch.as_tensor(enough)[None],
            conf=torch.as_tensor(usable.astype(np.float64))[None],
            root=skeleton.root,
            canvas=canvas,
        )
    except ValueError:
        f0 = int(np.argmax(enough))
        raise ValueError(
            f"{where}: frame {f0}, the first with {min_joints}+ usable joints, has no extent (its usable "
            f"joints coincide), so the sequence cannot be normalised"
        ) from None
    x, params = x[0], params[0]
    off = usable & (x.abs() >= 1).any(-1).numpy()
    status[off], usable = _CODE["off_canvas"], usable & ~off

    used_t = torch.as_tensor(usable)
    x, interp = interpolate_gaps(x, used_t, max_gap=max_gap)
    used = used_t | interp
    mask = used.sum(-1) >= min_joints
    used &= mask[:, None]
    interp &= mask[:, None]
    reason = status.copy()  # why each joint was masked, also where it was then interpolated
    status[interp.numpy()] = _CODE["interpolated"]

    # Frames not lifted: each gets the most frequent reason among its masked joints. Those at both ends are
    # cut, then the frames beyond the model's length, then again those at the new end; inner ones are masked.
    m = mask.numpy()
    counts = np.stack([(status == _CODE[r]).sum(1) for r in _MASK_REASONS], axis=1)  # (T, reasons)
    frame_reason = np.asarray(_MASK_REASONS)[counts.argmax(1)]
    lifted = np.flatnonzero(m)
    keep = np.arange(int(lifted[0]), int(lifted[-1]) + 1)
    if max_frames is not None and len(keep) > max_frames:
        warnings.warn(
            f"{where}: {len(keep)} frames to lift, but the model covers at most {max_frames}; lifting the "
            f"first {max_frames} frames (input frames {keep[0]}..{keep[0] + max_frames - 1})",
            stacklevel=3,
        )
        beyond = keep[max_frames:]
        keep = keep[:max_frames]
        keep = keep[: int(np.flatnonzero(m[keep])[-1]) + 1]
    else:
        beyond = keep[:0]
    kept = np.zeros(T, dtype=bool)
    kept[keep] = True
    dropped = ~kept
    dropped[beyond] = False
    frames_cut = {r: int((dropped & (frame_reason == r)).sum()) for r in _MASK_REASONS}
    frames_cut["beyond_model_max_frames"] = len(beyond)
    frames_masked = {r: int((kept & ~m & (frame_reason == r)).sum()) for r in _MASK_REASONS}
    x, mask, used, interp = x[keep], mask[keep], used[keep], interp[keep]
    status, reason = status[keep], reason[keep]
    if int(mask.sum()) < 2:
        raise ValueError(
            f"{where}: fewer than 2 frames to lift (of {T} read; cut {frames_cut}, masked {frames_masked})"
        )

    # Filler for the joints not used: nearest used position in time, else the frame's centroid.
    x_fill, _ = interpolate_gaps(x, used, max_gap=len(keep), extrapolate=True)
    got = used | _ever(used)
    w = used.to(x.dtype)[..., None]
    centroid = (torch.nan_to_num(x) * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0)
    x_fill = torch.where(got[..., None], x_fill, centroid.expand_as(x_fill))
    x_fill = torch.nan_to_num(x_fill, nan=0.0)

    joints_masked = {r: int((reason == _CODE[r]).sum()) for r in _MASK_REASONS}
    report: dict[str, Any] = {
        "input": str(where),
        "skeleton": src.name if src.name == skeleton.name else f"{src.name} -> {skeleton.name}",
        "frames_read": T,
        "frames_lifted": int(mask.sum()),
        "frames_cut": frames_cut,
        "frames_masked": frames_masked,
        "joints_masked": joints_masked,
        "joints_interpolated": int(interp.sum()),
        "max_gap": max_gap,
        "frame_index": [int(keep[0]), int(keep[-1])],
    }
    return PreparedInput(
        x=x_fill,
        mask=mask,
        used=used,
        interpolated=interp,
        status=status,
        frame_index=keep.astype(np.int64),
        params=params,
        report=report,
    )


def _ever(used: torch.Tensor) -> torch.Tensor:
    """(T, J) -> (T, J): True for every frame of a joint used in some frame."""
    return used.any(0, keepdim=True).expand_as(used)


def _counts(d: dict[str, int]) -> str:
    shown = [f"{k.replace('_', ' ')} {v}" for k, v in d.items() if v]
    return ", ".join(shown) if shown else "none"


def format_input_report(report: dict[str, Any]) -> str:
    """One readable paragraph of a report of :func:`prepare_input` (+ the lifting's point counts)."""
    text = (
        f"input {report['input']} ({report['skeleton']}): {report['frames_read']} frames read, "
        f"{report['frames_lifted']} lifted, {sum(report['frames_cut'].values())} cut "
        f"({_counts(report['frames_cut'])}), {sum(report['frames_masked'].values())} masked inside "
        f"({_counts(report['frames_masked'])}; their 3D is NaN); 2D joints masked: "
        f"{_counts(report['joints_masked'])}; {report['joints_interpolated']} interpolated "
        f"(gaps <= {report['max_gap']} frames)"
    )
    if "points_flagged" in report:
        text += (
            f"; 3D points flagged: {sum(report['points_flagged'].values())} "
            f"({_counts(report['points_flagged'])}), "
            f"repaired {report['points_repaired']}, left invalid {report['points_invalid']} (NaN)"
        )
    return text
