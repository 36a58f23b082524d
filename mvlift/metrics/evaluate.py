"""The paper's evaluation of one predicted world motion, and a table aggregating many sequences."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mvlift.metrics._arrays import _convert, check_mask, check_sequences, resolve_root
from mvlift.metrics.alignment import align_for_evaluation, hip_indices
from mvlift.metrics.errors import bone_length_consistency, global_mpjpe, j2d, mpjpe, pa_mpjpe, t_root

__all__ = ["evaluate_sequence", "MetricTable", "METRIC_UNITS"]

METRIC_UNITS: dict[str, str] = {
    "t_root": "mm",
    "mpjpe": "mm",
    "pa_mpjpe": "mm",
    "pa_mpjpe_global": "mm",
    "global_mpjpe": "mm",
    "bone_std": "mm",
    "j2d": "px",
}


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
) -> dict[str, float]:
    """All metrics of one predicted world motion against its ground truth, as Python floats.

    Protocol (MVLift): when ``align`` the pair is first aligned with
    :func:`mvlift.metrics.align_for_evaluation` (ground truth turned to the prediction's first-frame
    facing, both on the floor, first-frame roots at the origin in x/z). Then:

    - ``t_root``: root trajectory error after first-frame alignment.
    - ``mpjpe``: root-relative MPJPE.
    - ``pa_mpjpe``: root-relative poses, then ONE similarity Procrustes over the whole sequence - what the
      authors' evaluation code computes, so comparable with the paper's tables.
    - ``pa_mpjpe_global``: one similarity Procrustes over the whole sequence on the world positions
      (the default of :func:`mvlift.metrics.pa_mpjpe`).
    - ``global_mpjpe``: world-frame MPJPE after first-frame root alignment.
    - ``bone_std``: mean over bones of the std of the predicted bone lengths (when ``skeleton`` is given).
    - ``j2d`` (pixels): reprojection error of the prediction (before alignment) in the input view, when
      ``input_2d`` and ``camera`` are given.

    Args:
        pred, gt: (T, J, 3) world positions in metres (torch or numpy).
        skeleton: optional :class:`mvlift.data.skeletons.Skeleton` (root, hips, bones).
        root, left, right: override the root / left and right facing joints (see ``align_for_evaluation``).
        mask: optional (T,) bool, True = valid frame.
        align: apply the evaluation alignment first.
        up: vertical axis.
        unit_scale: factor from the input units to the reported ones (1000: metres -> millimetres).
        input_2d: optional (T, J, 2) input-view keypoints in pixels; camera: its projection matrix
            (3, 4) / Cameras (view 0 is used); conf_2d: optional (T, J) weights for J_2D.

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
    if root is None and skeleton is not None:
        root = skeleton
    r = resolve_root(root, j)
    raw_pred = pred
    if align:
        if left is None or right is None:
            dl, dr = hip_indices(skeleton, j)
            left = dl if left is None else left
            right = dr if right is None else right
        pred, gt = align_for_evaluation(pred, gt, root=r, left=left, right=right, up=up, mask=m)
    out: dict[str, float] = {
        "t_root": float(t_root(pred, gt, root=r, mask=m)) * unit_scale,
        "mpjpe": float(mpjpe(pred, gt, root=r, mask=m)) * unit_scale,
        "pa_mpjpe": float(pa_mpjpe(pred, gt, mask=m, root_relative=True, root=r)) * unit_scale,
        "pa_mpjpe_global": float(pa_mpjpe(pred, gt, mask=m)) * unit_scale,
        "global_mpjpe": float(global_mpjpe(pred, gt, root=r, mask=m)) * unit_scale,
    }
    if skeleton is not None:
        out["bone_std"] = float(bone_length_consistency(pred, skeleton, mask=m)) * unit_scale
    if input_2d is not None or camera is not None:
        if input_2d is None or camera is None:
            raise ValueError("J_2D needs both input_2d (T, J, 2) and camera")
        input_2d, _ = _convert(input_2d)
        conf_2d, _ = _convert(conf_2d)
        if hasattr(camera, "P"):
            camera = camera.P
        camera, _ = _convert(camera)
        out["j2d"] = float(j2d(raw_pred, input_2d, camera, mask=m, conf=conf_2d))
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
        body = []
        if per_sequence:
            for name, metrics in self.rows:
                body.append([name] + [f"{metrics[c]:.{digits}f}" if c in metrics else "-" for c in cols])
        mean = self.mean()
        body.append([f"mean (n={len(self.rows)})"] + [f"{mean[c]:.{digits}f}" for c in cols])
        return header, body

    def to_markdown(self, per_sequence: bool = False, digits: int = 1) -> str:
        """A Markdown table: one row per sequence when ``per_sequence``, then the mean row."""
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
