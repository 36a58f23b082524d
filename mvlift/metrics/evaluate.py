"""The paper's evaluation of one predicted world motion, and a table aggregating many sequences."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from mvlift.metrics._arrays import _convert, check_mask, check_sequences, finite_frames, resolve_root
from mvlift.metrics.alignment import DEFAULT_FACING_FRAMES, align_for_evaluation, replace_neck
from mvlift.metrics.errors import (
    bone_length_consistency,
    bone_length_ratio,
    global_mpjpe,
    j2d,
    j2d_paper,
    mpjpe,
    pa_mpjpe,
    paper_limbs,
    t_root,
    t_root_paper,
)

__all__ = ["evaluate_sequence", "MetricTable", "METRIC_UNITS", "METRIC_DIGITS"]

METRIC_UNITS: dict[str, str] = {
    "t_root": "mm",
    "t_root_paper": "mm",
    "mpjpe": "mm",
    "pa_mpjpe": "mm",
    "pa_mpjpe_global": "mm",
    "global_mpjpe": "mm",
    "bone_std": "mm",
    "bone_ratio": "ratio",
    "j2d": "px",
    "j2d_paper": "px",
}

METRIC_DIGITS: dict[str, int] = {"bone_ratio": 3}
"""Decimals a table shows at least for a metric (the unitless ratio is about 1)."""


def _is_openpose18(skeleton: Any, num_joints: int) -> bool:
    if skeleton is not None:
        return str(getattr(skeleton, "name", "")).lower() == "openpose18" and num_joints == 18
    return num_joints == 18


def _limbs_or_none(skeleton: Any, num_joints: int) -> tuple[tuple[int, int], ...] | None:
    try:
        return paper_limbs(skeleton, num_joints if skeleton is None else None)
    except ValueError:
        return None


def evaluate_sequence(
    pred: Any,
    gt: Any,
    *,
    skeleton: Any = None,
    root: Any = None,
    left: Any = None,
    right: Any = None,
    mask: Any = None,
    align: bool = True,
    up: tuple[float, float, float] = (0.0, 1.0, 0.0),
    unit_scale: float = 1000.0,
    input_2d: Any = None,
    camera: Any = None,
    conf_2d: Any = None,
    facing: str = "lstsq",
    facing_frames: int = DEFAULT_FACING_FRAMES,
    triangulated: Any = None,
    neck: bool | None = None,
) -> dict[str, float]:
    """All metrics of one predicted world motion against its ground truth, as Python floats.

    Protocol (MVLift): for the OpenPose-18 layout the neck of prediction and truth is first replaced by the
    shoulder midpoint, as the official evaluation does (:func:`mvlift.metrics.replace_neck`; ``neck``);
    BODY14 (mvlift's CMU set) keeps its joints. When ``align`` the pair is then aligned with
    :func:`mvlift.metrics.align_for_evaluation` (ground truth turned about the vertical to the prediction's
    facing - by default the least-squares yaw over the first ``facing_frames`` frames, ``facing`` - both on
    the floor, first-frame roots at the origin in x/z). Then:

    - ``t_root``: root trajectory error after first-frame alignment, Euclidean per frame.
    - ``t_root_paper``: the same trajectories, the official code's mean absolute per-axis difference
      (:func:`mvlift.metrics.t_root_paper`); the number comparable with the paper's T_root column.
    - ``mpjpe``: root-relative MPJPE.
    - ``pa_mpjpe``: root-relative poses, then ONE similarity Procrustes over the whole sequence - what the
      authors' evaluation code computes, so comparable with the paper's tables.
    - ``pa_mpjpe_global``: one similarity Procrustes over the whole sequence on the world positions
      (the default of :func:`mvlift.metrics.pa_mpjpe`).
    - ``global_mpjpe``: world-frame MPJPE after first-frame root alignment.
    - ``bone_std``: mean over bones of the std of the predicted bone lengths (when ``skeleton`` is given).
    - ``bone_ratio`` (unitless): the official bone consistency, mean over frames and the 8 arm and leg bones
      of length / first-frame length (:func:`mvlift.metrics.bone_length_ratio`), on ``triangulated`` when
      given (the official code scores the triangulated joints before any fit), else on the prediction;
      reported when the skeleton has the OpenPose limb joints (BODY14, OPENPOSE18, or 14/18 joints without
      a skeleton). Frames where a limb joint of that input is not finite are left out; when no valid frame
      is left the key is omitted.
    - ``j2d`` (pixels): reprojection error of the prediction (before alignment and neck replacement) in the
      input view, weighted by ``conf_2d``, when ``input_2d`` and ``camera`` are given.
    - ``j2d_paper`` (pixels): the official J_2D, prediction (neck replaced for OpenPose-18) reprojected,
      each of reprojection and input centred on its own first-frame 2D root, unweighted
      (:func:`mvlift.metrics.j2d_paper`), when ``input_2d`` and ``camera`` are given.

    Args:
        pred, gt: (T, J, 3) world positions in metres (torch or numpy).
        skeleton: optional :class:`mvlift.data.skeletons.Skeleton` (root, hips, bones, layout).
        root, left, right: override the root / left and right joints of ``facing="hips"``
            (see ``align_for_evaluation``).
        mask: optional (T,) bool, True = valid frame. Masked frames may hold anything (NaN included); a
            NaN or inf in a valid frame of ``pred`` or ``gt`` raises ValueError naming it and the frames.
        align: apply the evaluation alignment first.
        up: vertical axis.
        unit_scale: factor from the input units to the reported ones (1000: metres -> millimetres).
        input_2d: optional (T, J, 2) input-view keypoints in pixels; camera: its projection matrix
            (3, 4) / Cameras (view 0 is used); conf_2d: optional (T, J) weights for J_2D.
        facing: ``"lstsq"`` (default), ``"hips"`` (the first frame's hip line) or ``"none"``
            (:func:`mvlift.metrics.facing_yaw`).
        facing_frames: the ``"lstsq"`` window in frames (default 15 = 0.5 s at 30 fps).
        triangulated: optional (T, J, 3) joints the prediction was fitted to (the triangulation before any
            smoothing fit), for ``bone_ratio``; None = the prediction itself.
        neck: replace the OpenPose-18 neck by the shoulder midpoint; None = for the OpenPose-18 layout only
            (``skeleton.name == "openpose18"``, or 18 joints without a skeleton).

    Returns:
        dict metric name -> value (units in :data:`METRIC_UNITS`).
    """
    pred, _ = _convert(pred)
    gt, _ = _convert(gt)
    mask, _ = _convert(mask)
    pred, gt = check_sequences(pred, gt)
    if pred.dim() != 3:
        raise ValueError(f"evaluate_sequence takes one sequence (T, J, 3), got shape {tuple(pred.shape)}")
    j = pred.shape[-2]
    m = check_mask(mask, pred.shape[:-2], pred.device)
    # Masked frames never count, but a weighted mean of NaN * 0 is NaN: give them the nearest valid frame's
    # values (lifting leaves NaN in frames it was not given, e.g. after the input's canvas cut). A NaN in a
    # valid frame is an error here, before the alignment spreads it over every frame.
    pred, gt = finite_frames(pred, m, "pred"), finite_frames(gt, m, "gt")
    if root is None and skeleton is not None:
        root = skeleton
    r = resolve_root(root, j)
    if neck is None:
        neck = _is_openpose18(skeleton, j)
    raw_pred = pred
    if neck:
        pred, gt = replace_neck(pred), replace_neck(gt)
    scored_pred = pred  # neck replaced, not aligned: the official J_2D reprojects this
    if align:
        pred, gt = align_for_evaluation(
            pred,
            gt,
            root=r,
            left=left,
            right=right,
            skeleton=skeleton,
            up=up,
            mask=m,
            facing=facing,
            facing_frames=facing_frames,
        )
    out: dict[str, float] = {
        "t_root": float(t_root(pred, gt, root=r, mask=m)) * unit_scale,
        "t_root_paper": float(t_root_paper(pred, gt, root=r, mask=m)) * unit_scale,
        "mpjpe": float(mpjpe(pred, gt, root=r, mask=m)) * unit_scale,
        "pa_mpjpe": float(pa_mpjpe(pred, gt, mask=m, root_relative=True, root=r)) * unit_scale,
        "pa_mpjpe_global": float(pa_mpjpe(pred, gt, mask=m)) * unit_scale,
        "global_mpjpe": float(global_mpjpe(pred, gt, root=r, mask=m)) * unit_scale,
    }
    if skeleton is not None:
        out["bone_std"] = float(bone_length_consistency(pred, skeleton, mask=m)) * unit_scale
    limbs = _limbs_or_none(skeleton, j)
    if limbs is not None:
        source = raw_pred
        if triangulated is not None:
            source, _ = _convert(triangulated)
            if not isinstance(source, torch.Tensor) or tuple(source.shape) != tuple(raw_pred.shape):
                raise ValueError(
                    f"triangulated must have the prediction's shape {tuple(raw_pred.shape)}, "
                    f"got {tuple(getattr(source, 'shape', ()))}"
                )
            source = source.to(device=raw_pred.device)
        limb_joints = sorted({i for pair in limbs for i in pair})
        usable = m & torch.isfinite(source[:, limb_joints]).flatten(1).all(dim=1)
        if bool(usable.any()):
            clean = torch.where(usable[:, None, None], source, torch.ones_like(source))
            out["bone_ratio"] = float(bone_length_ratio(clean, limbs, mask=usable))
    if input_2d is not None or camera is not None:
        if input_2d is None or camera is None:
            raise ValueError("J_2D needs both input_2d (T, J, 2) and camera")
        input_2d, _ = _convert(input_2d)
        conf_2d, _ = _convert(conf_2d)
        if hasattr(camera, "P"):
            camera = camera.P
        camera, _ = _convert(camera)
        out["j2d"] = float(j2d(raw_pred, input_2d, camera, mask=m, conf=conf_2d))
        out["j2d_paper"] = float(j2d_paper(scored_pred, input_2d, camera, root=r, mask=m))
    return out


@dataclass
class MetricTable:
    """Collects per-sequence metric dicts and prints their means as a plain-text or Markdown table.

    >>> table = MetricTable()
    >>> table.add({"mpjpe": 100.0, "t_root": 50.0}, name="clip_a")
    >>> table.add({"mpjpe": 120.0, "t_root": 70.0}, name="clip_b")
    >>> table.mean()["mpjpe"]
    110.0
    """

    rows: list[tuple[str, dict[str, float]]] = field(default_factory=list)

    def add(self, metrics: Mapping[str, Any], name: str | None = None) -> None:
        """Add one sequence's metrics (values convertible to float; NaN values are rejected)."""
        clean: dict[str, float] = {}
        for k, v in metrics.items():
            try:
                value = float(v)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"metric {k!r} must be a number (or one-element array), got {v!r}") from exc
            if math.isnan(value):
                raise ValueError(f"metric {k!r} of {name or len(self.rows)} is NaN")
            clean[str(k)] = value
        self.rows.append((name if name is not None else f"#{len(self.rows)}", clean))

    def extend(self, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Add several (name, metrics) pairs."""
        for name, metrics in items:
            self.add(metrics, name=name)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def columns(self) -> list[str]:
        """Metric names in first-seen order."""
        cols: list[str] = []
        for _, metrics in self.rows:
            cols.extend(k for k in metrics if k not in cols)
        return cols

    def mean(self) -> dict[str, float]:
        """Mean of every metric over the sequences that report it."""
        out = {}
        for c in self.columns:
            vals = [metrics[c] for _, metrics in self.rows if c in metrics]
            out[c] = sum(vals) / len(vals)
        return out

    def count(self) -> dict[str, int]:
        """How many sequences report each metric."""
        return {c: sum(c in metrics for _, metrics in self.rows) for c in self.columns}

    def _table(self, per_sequence: bool, digits: int) -> tuple[list[str], list[list[str]]]:
        cols = self.columns
        header = ["sequence"] + [f"{c} ({METRIC_UNITS[c]})" if c in METRIC_UNITS else c for c in cols]
        places = {c: max(digits, METRIC_DIGITS.get(c, 0)) for c in cols}
        body = []
        if per_sequence:
            for name, metrics in self.rows:
                body.append([name] + [f"{metrics[c]:.{places[c]}f}" if c in metrics else "-" for c in cols])
        mean = self.mean()
        body.append([f"mean (n={len(self.rows)})"] + [f"{mean[c]:.{places[c]}f}" for c in cols])
        return header, body

    def to_markdown(self, per_sequence: bool = False, digits: int = 1) -> str:
        """A Markdown table: one row per sequence when ``per_sequence``, then the mean row (``digits``
        decimals, at least :data:`METRIC_DIGITS` for the metrics listed there)."""
        if not self.rows:
            raise ValueError("MetricTable is empty")
        header, body = self._table(per_sequence, digits)
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)

    def to_text(self, per_sequence: bool = False, digits: int = 1) -> str:
        """A fixed-width plain-text table (same content as :meth:`to_markdown`)."""
        if not self.rows:
            raise ValueError("MetricTable is empty")
        header, body = self._table(per_sequence, digits)
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

        def fmt(r: list[str]) -> str:
            return "  ".join(
                (c.ljust(w) if i == 0 else c.rjust(w)) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )

        sep = "  ".join("-" * w for w in widths)
        return "\n".join([fmt(header), sep, *(fmt(r) for r in body)])

    def __str__(self) -> str:
        return self.to_text() if self.rows else "MetricTable(empty)"
