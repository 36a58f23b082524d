"""Fusing stage 2 into lifting: the stage-4 consensus and the stage-2 estimate of the same input, mixed.

:func:`mvlift.stages.lift.lift` triangulates the stage-4 model's generated views with the input view. With
``LiftConfig.stage2_weight = w > 0`` it also runs stage 2 on the same input (the stage-1 model's score
distillation in the depth parameterisation, :func:`mvlift.stages.stage2.optimize_views`) and mixes the two
3D estimates point by point before the joint fit::

    X = (1 - w) * X_triangulated + w * X_stage2

Both estimates lie on (or, for the triangulation with a large input-view weight, next to) the input's
rays, so the mix is in effect a weighted mean of two depth estimates per joint; their errors are largely
independent across sequences (benchmarks/RESULTS.md, issue 11), so the mean is better than either.

Both estimates are in the same world frame only when the stage-2 ring's camera 0 is the lifting ring's
camera 0 (same radius, height, start azimuth, focal length and image size): :func:`stage2_estimate`
checks it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mvlift.schedulers import CosineSchedule
from mvlift.stages.stage2 import Stage2Config, optimize_views

__all__ = ["SHARED_CAMERA_FIELDS", "Stage2Fusion", "camera0_mismatch", "fuse_estimates", "stage2_estimate"]

SHARED_CAMERA_FIELDS = ("radius", "height", "start_azimuth", "focal", "image_size")
"""The ring settings that place camera 0: equal in the stage-2 and lifting configs for a fusion."""


def camera0_mismatch(stage2_config: Any, lift_config: Any) -> str | None:
    """The first of :data:`SHARED_CAMERA_FIELDS` on which a ``Stage2Config`` and a ``LiftConfig`` differ
    (their rings' camera 0 then differ, and so the frames of their 3D); None when they agree."""
    for name in SHARED_CAMERA_FIELDS:
        a, b = getattr(stage2_config, name), getattr(lift_config, name)
        if (tuple(a) if name == "image_size" else a) != (tuple(b) if name == "image_size" else b):
            return name
    return None


@dataclass
class Stage2Fusion:
    """What :func:`~mvlift.stages.lift.lift` needs for ``LiftConfig.stage2_weight > 0``.

    Attributes:
        model: the stage-1 (single-view, line-conditioned) model that drives stage 2, e.g.
            ``load_model(RUN / "stage1")`` or ``mvlift.pretrained.load_pretrained("stage1")`` (any callable
            with its signature ``model(x_t, t, lines, mask)``).
        config: the :class:`~mvlift.stages.stage2.Stage2Config` (``parameterization="depth"``; its camera 0
            must be the lifting ring's camera 0); the training run's ``stage2`` section.
        skeleton: the joints' :class:`~mvlift.data.skeletons.Skeleton` (the single-view start needs it).
    """

    model: Callable[..., Tensor]
    config: Stage2Config
    skeleton: Any


def stage2_estimate(
    fusion: Stage2Fusion,
    x_input: Tensor,
    lift_config: Any,
    *,
    mask: Tensor | None = None,
    conf: Tensor | None = None,
) -> Tensor:
    """The stage-2 3D joints (B, T, J, 3) (metres, the lifting ring's world frame) of normalised input 2D
    (B, T, J, 2), for :func:`~mvlift.stages.lift.lift`'s ``lift_config`` (a ``LiftConfig``).

    Raises:
        ValueError: the stage-2 config is not the depth parameterisation, or its camera 0 differs from the
            lifting ring's (the estimates would be in different frames).
    """
    cfg = fusion.config
    if cfg.parameterization != "depth":
        raise ValueError(
            "stage-2 fusion needs Stage2Config.parameterization='depth' (its 3D is then direct), got "
            f"{cfg.parameterization!r}; set stage2.parameterization: depth or lift.stage2_weight: 0"
        )
    name = camera0_mismatch(cfg, lift_config)
    if name is not None:
        a, b = getattr(cfg, name), getattr(lift_config, name)
        raise ValueError(
            f"stage-2 fusion: stage2.{name} = {a!r} but lift.{name} = {b!r}; the two rings must share "
            "camera 0 for their 3D to be in one frame (make them equal, or set lift.stage2_weight: 0)"
        )
    if len(fusion.skeleton.parents) != x_input.shape[2]:
        raise ValueError(
            f"stage-2 fusion: the skeleton has {len(fusion.skeleton.parents)} joints, x_input has "
            f"{x_input.shape[2]}"
        )
    with torch.enable_grad():
        result = optimize_views(
            fusion.model, CosineSchedule(), x_input, cfg, mask=mask, conf=conf, skeleton=fusion.skeleton
        )
    assert result.joints3d is not None  # the depth parameterisation returns its points
    return result.joints3d.detach()


def fuse_estimates(triangulated: Tensor, valid: Tensor, stage2: Tensor, weight: float) -> Tensor:
    """``(1 - weight) * triangulated + weight * stage2`` at the ``valid`` (B, T, J) points where the stage-2
    point is finite; ``triangulated`` elsewhere. Shapes (B, T, J, 3); the result has ``triangulated``'s
    dtype."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must lie in [0, 1], got {weight}")
    if stage2.shape != triangulated.shape:
        raise ValueError(
            f"stage2 must have the triangulation's shape {tuple(triangulated.shape)}, "
            f"got {tuple(stage2.shape)}"
        )
    s2 = stage2.to(triangulated)
    use = valid & torch.isfinite(s2).all(-1)
    return torch.where(use[..., None], (1.0 - weight) * triangulated + weight * s2, triangulated)
