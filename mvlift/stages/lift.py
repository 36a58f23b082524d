"""Lifting (MVLift inference): one 2D sequence -> K views (stage-4 model) -> triangulation -> 3D motion.

The input sequence, in the paper's normalised [-1, 1] frame, is taken as view 0 of a K-camera ring
(default 4 cameras, 90 degrees apart, 3 m radius, horizontal, looking at the first-frame root). The
multi-view model generates the other K-1 views in one sampling pass (DDIM, few steps, by default) with view 0
held at the observation (x0 inpainting), and the K views are triangulated with the ring's normalised
projection matrices. The result is in the ring's world frame (Y up, metres): joints (B, T, J, 3) and the
root trajectory (B, T, 3). Beyond the paper: several samples triangulated together (``samples``), the input
view weighted (``input_view_weight``), the mean with the stage-2 estimate of the same input
(``stage2_weight``, :mod:`mvlift.stages.fusion`) and a joint fit (``smooth_steps``).

Points the triangulation cannot vouch for are never passed on as valid (:func:`triangulate_checked`):

- points flagged ``NOT_CONVERGED`` after ``refine_iters`` Levenberg-Marquardt steps are triangulated again
  with ``retry_iters`` steps (consistent views converge in 3-5 steps; inconsistent generated views can need
  dozens); the flag of the retry stands;
- a point is *flagged* when it is ``DEGENERATE``, ``BEHIND_CAMERA`` or still ``NOT_CONVERGED``
  (:class:`mvlift.ops.TriangulationFlag`), or when its reprojection RMS is far above the rest of its
  sequence: ``rms > max(outlier_factor * median, outlier_floor)`` (:data:`REPROJECTION_OUTLIER`, bit 8;
  the median over the sequence's unflagged observed points, normalised image units: 1 unit = half the
  image width, 960 px on the 1920-px ring images);
- a flagged point, and a point whose input joint was not observed (``conf`` 0), is not ``valid``. It is
  *repaired* when its run of invalid frames (per joint) is at most ``max_gap`` frames long, with a valid
  frame on both sides or at most ``max_gap`` frames from the start or end of the sequence: by the joint fit
  when ``smooth_steps > 0``, else by linear interpolation in time (holding the nearest valid value at the
  ends; :func:`mvlift.data.gaps.interpolate_gaps`). Other invalid points, and masked frames, are NaN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from mvlift._fields import at_least, check_fields, greater_than, in_range, one_of
from mvlift.geometry import Cameras
from mvlift.schedulers import DDIMScheduler, DDPMScheduler, sample
from mvlift.stages.fusion import Stage2Fusion, fuse_estimates, stage2_estimate
from mvlift.stages.stage2 import ring_from_config
from mvlift.stages.stage3 import Stage3Config, fit_joint_motion

REPROJECTION_OUTLIER = 8
"""Flag bit (beside :class:`mvlift.ops.TriangulationFlag`'s 1, 2, 4): reprojection RMS far above the rest."""


@dataclass
class LiftConfig:
    """Lifting settings.

    Attributes:
        num_views, radius, height, focal, image_size, start_azimuth: the inference ring (the paper's test
            ring: 4 cameras at 3 m); must match the number of views the stage-4 model was trained with.
        sampler: "ddim" (default, ``steps`` steps) or "ddpm" (ancestral, all training steps).
        steps, eta: DDIM steps and stochasticity.
        refine_iters: Gauss-Newton steps of the triangulation.
        input_view_weight: weight of the observed input view (view 0) in the triangulation, relative to the
            K-1 generated views (weight 1 each). 1.0 weights all views alike; a larger weight keeps the 3D
            joints on the observed rays (smaller J_2D) and takes only their depth from the generated views.
        smooth_steps: steps of the stage-3 joint fit (bone constancy + smoothness) after triangulation;
            0 keeps the raw triangulation.
        seed: sampling seed.
        retry_iters: Levenberg-Marquardt steps of the second triangulation of points that did not converge
            in ``refine_iters`` steps (module docstring).
        outlier_factor, outlier_floor: a point whose reprojection RMS exceeds ``max(outlier_factor *
            median, outlier_floor)`` (normalised units) is flagged (module docstring).
        max_gap: longest run of invalid frames of a joint that is repaired (frames; 0 repairs nothing).
        samples: independent samples of the K-1 generated views per input (one batched sampling pass);
            the input view and the generated views of every sample are triangulated together (1 + samples
            * (K-1) views), so the 3D is the least-squares consensus of the samples. ``LiftResult.views``
            is then the mean of the samples' views.
        stage2_weight: weight ``w`` in [0, 1] of the stage-2 estimate of the same input, mixed with the
            triangulation as ``(1 - w) X_tri + w X_stage2`` before the joint fit
            (:mod:`mvlift.stages.fusion`; needs ``lift(..., stage2=Stage2Fusion(...))``). 0 (default, the
            paper) lifts with the stage-4 model alone.
    """

    num_views: int = 4
    radius: float = 3.0
    height: float = 1.0
    focal: float = 1000.0
    image_size: tuple[int, int] = (1920, 1080)
    start_azimuth: float = 0.0
    sampler: str = "ddim"
    steps: int = 50
    eta: float = 0.0
    refine_iters: int = 5
    input_view_weight: float = 1.0
    smooth_steps: int = 0
    seed: int = 0
    progress: bool = True
    retry_iters: int = 50
    outlier_factor: float = 10.0
    outlier_floor: float = 0.05
    max_gap: int = 8
    samples: int = 1
    stage2_weight: float = 0.0

    def __post_init__(self) -> None:
        zero, positive = at_least(0), greater_than(0)
        rules = {
            "num_views": at_least(2),
            "radius": positive,
            "focal": positive,
            "image_size": positive,
            "sampler": one_of("ddim", "ddpm"),
            "steps": at_least(1),
            "eta": zero,
            "refine_iters": zero,
            "input_view_weight": positive,
            "smooth_steps": zero,
            "seed": zero,
            "retry_iters": zero,
            "outlier_factor": greater_than(1),
            "outlier_floor": zero,
            "max_gap": zero,
            "samples": at_least(1),
            "stage2_weight": in_range(0.0, 1.0),
        }
        check_fields(self, rules)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LiftResult:
    """Output of :func:`lift`: ``joints3d`` (B, T, J, 3) metres: valid and repaired points, NaN elsewhere
    (module docstring), ``root`` (B, T, 3) (NaN where a root joint is), ``views`` (B, K, T, J, 2)
    normalised, ``valid`` (B, T, J) bool (observed, in an unmasked frame, triangulated without a flag),
    ``cameras`` (the K-view ring), ``triangulated`` (B, T, J, 3) metres: the checked triangulation before the
    ``smooth_steps`` joint fit (flagged points repaired by interpolation, or NaN; the same values as
    ``joints3d`` when ``smooth_steps == 0``; the official bone consistency is scored on it), ``flags``
    (B, T, J) int32 (:class:`mvlift.ops.TriangulationFlag` bits | :data:`REPROJECTION_OUTLIER`), ``rms``
    (B, T, J) reprojection RMS (normalised units), ``repaired`` (B, T, J) bool (invalid points given a
    value), ``stage2`` (B, T, J, 3) metres: the stage-2 estimate fused into ``joints3d`` when
    ``LiftConfig.stage2_weight > 0`` (else None)."""

    joints3d: Tensor
    root: Tensor
    views: Tensor
    valid: Tensor
    cameras: Cameras
    triangulated: Tensor | None = None
    flags: Tensor | None = None
    rms: Tensor | None = None
    repaired: Tensor | None = None
    stage2: Tensor | None = None


def inference_ring(config: LiftConfig, *, device: torch.device | str = "cpu") -> Cameras:
    """The K-camera ring of :func:`lift`, float64, looking at (0, height, 0)."""
    return ring_from_config(config, device=device)


def sample_views(
    model: torch.nn.Module, x_input: Tensor, config: LiftConfig, *, mask: Tensor | None = None
) -> Tensor:
    """Generate the K views of each input sequence with the multi-view model; view 0 = the input exactly.

    Args:
        model: a :class:`mvlift.models.MultiViewDenoiser` (``model(x_t, t, cond, mask)``).
        x_input: (B, T, J, 2) normalised input 2D. mask: (B, T) bool.

    Returns:
        (B, K, T, J, 2).
    """
    B, T, J, _ = x_input.shape
    K = config.num_views
    if config.sampler == "ddim":
        scheduler: DDIMScheduler | DDPMScheduler = DDIMScheduler(config.steps, eta=config.eta)
        scheduler.set_timesteps(config.steps)
    else:
        scheduler = DDPMScheduler()
        scheduler.set_timesteps(scheduler.num_train_timesteps)
    known = torch.zeros(1, K, 1, 1, 1, dtype=torch.bool, device=x_input.device)
    known[:, 0] = True
    values = x_input[:, None].expand(B, K, T, J, 2)

    def model_fn(x_t: Tensor, t: Tensor) -> Tensor:
        return model(x_t, t, x_input, mask)

    was_training = model.training
    model.eval()
    try:
        views = sample(
            model_fn,
            (B, K, T, J, 2),
            scheduler,
            generator=config.seed,
            device=x_input.device,
            dtype=x_input.dtype,
            inpaint=(known, values),
            progress=config.progress,
        )
    finally:
        model.train(was_training)
    return views


def triangulate_checked(
    views: Tensor,
    cameras: Cameras,
    config: LiftConfig | None = None,
    *,
    weights: Tensor | None = None,
    observed: Tensor | None = None,
    refine_iters: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Triangulate normalised multi-view 2D and flag the points that must not be trusted (module docstring).

    Args:
        views: (B, V, T, J, 2) normalised, float32 or float64 (triangulated in float64).
        cameras: the V views' cameras (``P_normalized`` (V, 3, 4) or (B, V, 3, 4)).
        config: :class:`LiftConfig` (``retry_iters``, ``outlier_factor``, ``outlier_floor``; and
            ``refine_iters`` unless given).
        weights: optional (B, V, T, J) per-observation weights (0 = view ignored).
        observed: optional (B, T, J) bool: the points whose RMS makes the outlier threshold's median.

    Returns:
        ``(X, flags, rms)``: X (B, T, J, 3) float64 world metres (NaN for degenerate points), flags (B, T, J)
        int32 (:class:`mvlift.ops.TriangulationFlag` | :data:`REPROJECTION_OUTLIER`), rms (B, T, J) float64.
    """
    from mvlift.ops import TriangulationFlag, triangulate, triangulate_sequences

    config = config or LiftConfig()
    iters = config.refine_iters if refine_iters is None else refine_iters
    v = views.to(torch.float64)
    P = cameras.P_normalized.to(v)
    w = None if weights is None else weights.to(v)
    X, info = triangulate_sequences(v, P, weights=w, refine_iters=iters)
    flags, rms = info.flags.clone(), info.rms.clone()
    nc = (flags & int(TriangulationFlag.NOT_CONVERGED)) != 0
    if config.retry_iters > iters and bool(nc.any()):
        b, t, j = torch.nonzero(nc, as_tuple=True)
        pts = v.permute(0, 2, 3, 1, 4)[b, t, j]  # (N, V, 2)
        Pn = P if P.dim() == 3 else P[b]
        wn = None if w is None else w.permute(0, 2, 3, 1)[b, t, j]
        X2, info2 = triangulate(pts, Pn, weights=wn, refine_iters=config.retry_iters)
        X[b, t, j], rms[b, t, j], flags[b, t, j] = X2, info2.rms, info2.flags
    ok = (flags == 0) & torch.isfinite(rms)
    base = ok if observed is None else ok & observed.to(ok.device)
    median = torch.where(base, rms, torch.nan).flatten(1).nanmedian(dim=1).values  # (B,), NaN if none
    limit = torch.clamp(config.outlier_factor * median, min=config.outlier_floor)
    limit = torch.nan_to_num(limit, nan=config.outlier_floor)[:, None, None]
    flags = torch.where(ok & (rms > limit), flags | REPROJECTION_OUTLIER, flags)
    return X, flags, rms


def triangulate_repaired(
    views: Tensor,
    cameras: Cameras,
    config: LiftConfig | None = None,
    *,
    mask: Tensor | None = None,
    conf: Tensor | None = None,
    weights: Tensor | None = None,
    refine_iters: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:func:`triangulate_checked`, then the valid points, the repaired ones and NaN elsewhere.

    Args:
        views: (B, V, T, J, 2) normalised. cameras: their cameras. config: :class:`LiftConfig`.
        mask: (B, T) bool frames (others are NaN). conf: (B, T, J) input confidences (<= 0: not observed).
        weights: (B, V, T, J) triangulation weights. refine_iters: default ``config.refine_iters``.

    Returns:
        ``(X, raw, valid, repaired, flags, rms)``: X (B, T, J, 3) float64 metres (valid points, repaired
        points by interpolation in time, NaN elsewhere; module docstring), raw (B, T, J, 3) the triangulation
        itself, valid and repaired (B, T, J) bool, flags (B, T, J) int32, rms (B, T, J).
    """
    from mvlift.data.gaps import interpolate_gaps

    config = config or LiftConfig()
    B, _, T, J, _ = views.shape
    frames = (
        torch.ones(B, T, dtype=torch.bool, device=views.device) if mask is None else mask.to(views.device)
    )
    observed = frames[:, :, None].expand(B, T, J)
    if conf is not None:
        observed = observed & (conf.to(views.device) > 0)
    raw, flags, rms = triangulate_checked(
        views, cameras, config, weights=weights, observed=observed, refine_iters=refine_iters
    )
    valid = observed & (flags == 0) & torch.isfinite(raw).all(dim=-1)
    X_interp, fill = interpolate_gaps(raw, valid, max_gap=config.max_gap, extrapolate=True)
    repaired = fill & frames[:, :, None]
    nan = torch.full_like(raw, torch.nan)
    X = torch.where(valid[..., None], raw, torch.where(repaired[..., None], X_interp, nan))
    return X, raw, valid, repaired, flags, rms


def lift(
    model: torch.nn.Module,
    x_input: Tensor,
    config: LiftConfig | None = None,
    *,
    mask: Tensor | None = None,
    conf: Tensor | None = None,
    parents: tuple[int, ...] | None = None,
    root: tuple[int, ...] = (0,),
    stage2: Stage2Fusion | None = None,
) -> LiftResult:
    """Lift normalised 2D sequences (B, T, J, 2) to 3D world motion with a trained multi-view model.

    Args:
        model: the stage-4 :class:`~mvlift.models.MultiViewDenoiser`.
        x_input: (B, T, J, 2) in the normalised frame (apply :func:`mvlift.data.normalize.normalize_2d`
            to pixel detections first; :mod:`mvlift.stages.lift_input` for files). Finite.
        config: :class:`LiftConfig`.
        mask: (B, T) bool valid frames (masked frames are NaN in the result).
        conf: optional (B, T, J) input confidences: a joint with conf <= 0 is not observed (the input view
            does not enter its triangulation and the point is not valid; it may be repaired).
        parents: skeleton parents; needed when ``config.smooth_steps > 0``.
        root: joint indices whose mean is the root (e.g. the two hips).
        stage2: the stage-1 model, stage-2 config and skeleton of the stage-2 estimate; needed when
            ``config.stage2_weight > 0`` (:mod:`mvlift.stages.fusion`).

    Returns:
        :class:`LiftResult` (module docstring: which points are valid, repaired or NaN).
    """
    config = config or LiftConfig()
    if not isinstance(x_input, Tensor) or x_input.dim() != 4 or x_input.shape[-1] != 2:
        raise ValueError(f"x_input must have shape (B, T, J, 2), got {tuple(getattr(x_input, 'shape', ()))}")
    B, T, J, _ = x_input.shape
    if not bool(torch.isfinite(x_input).all()):
        raise ValueError("x_input must be finite (fill or mask missing joints: pass conf 0 for them)")
    if mask is not None and (mask.shape != (B, T) or mask.dtype != torch.bool):
        raise ValueError(
            f"mask must be a bool tensor of shape {(B, T)}, got {mask.dtype} {tuple(mask.shape)}"
        )
    if conf is not None and conf.shape != (B, T, J):
        raise ValueError(f"conf must have shape {(B, T, J)}, got {tuple(conf.shape)}")
    if config.smooth_steps > 0 and parents is None:
        raise ValueError("lift: smooth_steps > 0 needs the skeleton's parents")
    if config.stage2_weight > 0 and stage2 is None:
        raise ValueError(
            f"lift: stage2_weight = {config.stage2_weight} needs stage2=Stage2Fusion(stage-1 model, stage-2 "
            "config, skeleton); pass it or set stage2_weight to 0"
        )
    cams = inference_ring(config, device=x_input.device)
    K, n = config.num_views, config.samples
    with torch.no_grad():
        many = sample_views(
            model, x_input.repeat(n, 1, 1, 1), config, mask=None if mask is None else mask.repeat(n, 1)
        ).view(n, B, K, T, J, 2)
        views = many.mean(dim=0)
        # the input view once, then the K-1 generated views of each sample: (B, 1 + n (K-1), T, J, 2)
        tri_views = torch.cat([many[0, :, :1], many[:, :, 1:].transpose(0, 1).flatten(1, 2)], dim=1)
        tri_cams = cams if n == 1 else cams.select([0, *(list(range(1, K)) * n)])
        weights = None
        if config.input_view_weight != 1.0 or conf is not None:
            weights = torch.ones(tri_views.shape[:-1], dtype=torch.float64, device=views.device)
            weights[:, 0] = config.input_view_weight
            if conf is not None:
                weights[:, 0] *= (conf > 0).to(weights)
        triangulated, raw, valid, repaired, flags, rms = triangulate_repaired(
            tri_views, tri_cams, config, mask=mask, conf=conf, weights=weights
        )
    s2 = None
    if config.stage2_weight > 0:
        assert stage2 is not None
        s2 = stage2_estimate(stage2, x_input, config, mask=mask, conf=conf)
        raw = fuse_estimates(raw, valid, s2, config.stage2_weight)
    if config.smooth_steps > 0:
        Y = fit_joint_motion(
            raw, parents, valid=valid, mask=mask, config=Stage3Config(fit_steps=config.smooth_steps)
        )
        X = torch.where((valid | repaired)[..., None], Y, torch.nan)
    elif s2 is not None:
        X = torch.where(valid[..., None], raw, triangulated)
    else:
        X = triangulated
    X = X.to(x_input.dtype)
    root_traj = X[:, :, list(root)].mean(dim=2)
    return LiftResult(
        joints3d=X,
        root=root_traj,
        views=views,
        valid=valid,
        cameras=cams,
        triangulated=triangulated.to(x_input.dtype),
        flags=flags,
        rms=rms,
        repaired=repaired,
        stage2=None if s2 is None else s2.to(x_input.dtype),
    )
