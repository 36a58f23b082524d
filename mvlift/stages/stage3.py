"""Stage 3: synthetic, strictly consistent multi-view 2D data from the stage-2 views.

1. Triangulate the V optimised views (:func:`mvlift.ops.triangulate_sequences`, DLT + Gauss-Newton
   refinement, in the normalised frame of the stage-2 ring).
2. Fit a clean 3D motion to the triangulated joints: with SMPL model files, SMPL under the VPoser prior
   (:func:`mvlift.body.fit_smpl`, the paper's choice); without them, the joint-position fit — free 3D
   joints pulled to the triangulation, with a bone-length-constancy and a temporal-smoothness term (Adam).
   Joints that could not be triangulated (NaN, flagged) are ignored by the data term.
3. Put the motion on the floor, move its first-frame root to the origin, and reproject it to a ring of
   ``out_views`` cameras (default 4, 90 degrees apart, 2.8 m, random start azimuth per sequence): every
   output view is an exact projection of the same 3D motion, so the multi-view data is consistent by
   construction.

World frame: Y up, metres (``docs/conventions.md``); output 2D in the normalised [-1, 1] frame of each
output camera (``Cameras.P_normalized``); output view 0 is the view the stage-4 model receives as input.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from mvlift._fields import ConfigError, at_least, check_fields, greater_than
from mvlift.geometry import Cameras, fundamental_matrices, ring_cameras


@dataclass
class Stage3Config:
    """Stage-3 settings.

    Attributes:
        refine_iters: Gauss-Newton steps after the DLT in the triangulation.
        fit_steps, fit_lr: Adam iterations / learning rate of the joint-position fit (0 steps = no fit).
        bone_weight: weight of the bone-length variance term (metres^2).
        smooth_weight: weight of the squared second temporal difference (metres^2 per frame^2).
        out_views, out_radius, out_height: the output ring (views, metres, camera height above the floor).
        focal, image_size: output cameras' intrinsics (pixels, (W, H)).
        seed: seeds the output rings' random start azimuths.
        smpl_model: path to an SMPL model ``.pkl`` (official or chumpy-pickled); when given (with
            ``vposer_weights``), step 2 is the SMPL fit under the VPoser prior (:func:`mvlift.body.fit_smpl`)
            instead of the joint-position fit. Needs ``mvlift[smpl]`` and human-body-prior.
        vposer_weights: VPoser v1 weights (folder or ``.pt``); None with ``smpl_model`` set uses a randomly
            initialised VPoser (for tests only: it is no pose prior).
        smpl_steps, smpl_lr: Adam steps / learning rate of the SMPL fit (the paper's code: 1000, 1e-2).
        rerender: stage 4 trains on the synthetic 3D motions rendered into a fresh random ring (same
            ``out_views``, ``out_radius``, ``focal``, ``image_size``) for every item and epoch
            (:class:`mvlift.training.MultiViewMotionDataset`) instead of the one ring per motion stored in
            the shards (the paper's code). More views of the same motions: no new information, but far
            less to learn by heart when there are few motions.
        mirror: with ``rerender``, also flip every other rendering left-right (joints swapped).
    """

    refine_iters: int = 5
    fit_steps: int = 200
    fit_lr: float = 1e-2
    bone_weight: float = 1.0
    smooth_weight: float = 1e-1
    out_views: int = 4
    out_radius: float = 2.8
    out_height: float = 1.0
    focal: float = 1000.0
    image_size: tuple[int, int] = (1920, 1080)
    seed: int = 0
    smpl_model: str | None = None
    vposer_weights: str | None = None
    smpl_steps: int = 1000
    smpl_lr: float = 1e-2
    rerender: bool = False
    mirror: bool = False

    def __post_init__(self) -> None:
        zero, positive = at_least(0), greater_than(0)
        rules = {
            "refine_iters": zero,
            "fit_steps": zero,
            "fit_lr": positive,
            "bone_weight": zero,
            "smooth_weight": zero,
            "out_views": at_least(2),
            "out_radius": positive,
            "focal": positive,
            "image_size": positive,
            "seed": zero,
            "smpl_steps": at_least(1),
            "smpl_lr": positive,
        }
        check_fields(self, rules)
        if self.mirror and not self.rerender:
            raise ConfigError("Stage3Config", "mirror", "expected false unless rerender is true, got true")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_smpl_motion(X: Tensor, skeleton: Any, config: Stage3Config, *, mask: Tensor | None = None) -> Tensor:
    """Step 2 with SMPL: fit SMPL under the VPoser prior to triangulated joints (B, T, J, 3) and return the
    fitted model's joints in ``skeleton``'s order (canonical: on the floor, first-frame root at x = z = 0)."""
    from mvlift.body import fit_smpl, load_body_models

    if config.smpl_model is None:
        raise ValueError("Stage3Config.smpl_model is not set: give the path of an SMPL model .pkl")
    layer, vposer = load_body_models(
        config.smpl_model,
        config.vposer_weights,
        skeleton=skeleton,
        where="stage3.",
        seed=config.seed,
        device=X.device,
        dtype=X.dtype,
    )
    fit = fit_smpl(
        X, skeleton, layer, vposer, mask=mask, steps=config.smpl_steps, lr=config.smpl_lr, progress=False
    )
    return fit.joints.detach()


def triangulate_views(
    views: Tensor,
    cameras: Cameras,
    *,
    refine_iters: int = 5,
    weights: Tensor | None = None,
    mask: Tensor | None = None,
    lift_config: Any = None,
) -> tuple[Tensor, Tensor]:
    """Triangulate normalised multi-view 2D (B, V, T, J, 2) seen by ``cameras`` (V views).

    A point is valid only when the triangulation vouches for it, by the rules of lifting
    (:func:`mvlift.stages.lift.triangulate_checked`): not ``DEGENERATE``, ``BEHIND_CAMERA`` or, after a
    retry with more Levenberg-Marquardt steps, ``NOT_CONVERGED`` (:class:`mvlift.ops.TriangulationFlag`),
    and not a reprojection outlier (RMS above ``max(outlier_factor * median, outlier_floor)``). Invalid
    points are NaN in X, so they never enter the joint fit's data term.

    Args:
        views: (B, V, T, J, 2) normalised (triangulated in float64).
        cameras: the V views' cameras.
        refine_iters: Gauss-Newton steps of the triangulation.
        weights: optional per-observation confidences (B, V, T, J) (:func:`mvlift.ops.triangulate_sequences`).
        mask: optional (B, T) bool frames; points of other frames are invalid and do not enter the outlier
            median.
        lift_config: the :class:`mvlift.stages.lift.LiftConfig` whose ``retry_iters``, ``outlier_factor``
            and ``outlier_floor`` set the flags; default ``LiftConfig()``.

    Returns:
        (X (B, T, J, 3) world metres in ``views``' dtype, NaN where not valid; valid (B, T, J) bool).
    """
    from mvlift.stages.lift import triangulate_checked  # lift imports this module

    observed = (
        None if mask is None else mask.to(views.device)[:, :, None].expand(*mask.shape, views.shape[-2])
    )
    X, flags, _ = triangulate_checked(
        views, cameras, lift_config, weights=weights, observed=observed, refine_iters=refine_iters
    )
    valid = (flags == 0) & torch.isfinite(X).all(dim=-1)
    if observed is not None:
        valid = valid & observed
    X = torch.where(valid[..., None], X, torch.full_like(X, torch.nan)).to(views.dtype)
    return X, valid


def _bone_lengths(Y: Tensor, parents: tuple[int, ...]) -> Tensor:
    child = [j for j, p in enumerate(parents) if p >= 0]
    par = [parents[j] for j in child]
    return (Y[..., child, :] - Y[..., par, :]).norm(dim=-1)  # (B, T, bones)


@torch.enable_grad()  # an optimisation of its own: works when called under torch.no_grad()
def fit_joint_motion(
    X: Tensor,
    parents: tuple[int, ...],
    *,
    valid: Tensor | None = None,
    mask: Tensor | None = None,
    config: Stage3Config | None = None,
) -> Tensor:
    """Fit smooth 3D joints with constant bone lengths to triangulated joints.

    Minimises ``mean_valid |Y - X|^2 + bone_weight * mean Var_t(bone length) + smooth_weight *
    mean |Y[t+1] - 2 Y[t] + Y[t-1]|^2`` over Y (B, T, J, 3), starting from X (NaN joints start from the
    mean of their sequence's valid positions of that joint, or 0).

    Args:
        X: (B, T, J, 3) metres, NaN where not triangulated.
        parents: the skeleton's parent indices (-1 for the root).
        valid: (B, T, J) bool; default ``isfinite(X)``.
        mask: (B, T) bool valid frames (padded frames don't enter any term).
    """
    config = config or Stage3Config()
    valid = torch.isfinite(X).all(-1) if valid is None else valid
    if mask is not None:
        valid = valid & mask[:, :, None]
    w = valid.to(X.dtype)[..., None]
    X0 = torch.where(valid[..., None], X, torch.zeros_like(X))
    # Fill invalid joints with their per-sequence mean to start somewhere sensible.
    mean = (X0 * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0)
    Y = torch.nn.Parameter(torch.where(valid[..., None], X0, mean.expand_as(X0)).detach().clone())
    if config.fit_steps <= 0:
        return Y.detach()
    fmask = torch.ones(X.shape[:2], dtype=X.dtype, device=X.device) if mask is None else mask.to(X.dtype)
    opt = torch.optim.Adam([Y], lr=config.fit_lr)
    wsum = w.sum().clamp_min(1.0)
    for _ in range(config.fit_steps):
        data = (((Y - X0) ** 2) * w).sum() / wsum
        L = _bone_lengths(Y, parents)  # (B, T, nb)
        fm = fmask[..., None]
        Lmean = (L * fm).sum(1, keepdim=True) / fm.sum(1, keepdim=True).clamp_min(1.0)
        bone = (((L - Lmean) ** 2) * fm).sum() / (fm.sum() * L.shape[-1]).clamp_min(1.0)
        loss = data + config.bone_weight * bone
        if Y.shape[1] >= 3:
            acc = Y[:, 2:] - 2 * Y[:, 1:-1] + Y[:, :-2]
            am = (fmask[:, 2:] * fmask[:, 1:-1] * fmask[:, :-2])[..., None, None]
            loss = loss + config.smooth_weight * ((acc**2) * am).sum() / (am.sum() * acc.shape[2]).clamp_min(
                1.0
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return Y.detach()


def canonicalize(Y: Tensor, root: tuple[int, ...], *, mask: Tensor | None = None) -> Tensor:
    """Put motions on the floor (lowest valid joint at y = 0) and move the first-frame root to x = z = 0.

    Args:
        Y: (B, T, J, 3) metres, Y up. root: joint indices whose mean is the root.
    """
    Y = Y.clone()
    if mask is not None:
        big = torch.finfo(Y.dtype).max
        ymin = torch.where(mask[:, :, None], Y[..., 1], torch.full_like(Y[..., 1], big)).amin(dim=(1, 2))
    else:
        ymin = Y[..., 1].amin(dim=(1, 2))
    Y[..., 1] -= ymin[:, None, None]
    r0 = Y[:, 0, list(root)].mean(dim=1)  # (B, 3)
    Y[..., 0] -= r0[:, None, None, 0]
    Y[..., 2] -= r0[:, None, None, 2]
    return Y


def reproject_to_ring(
    Y: Tensor,
    root: tuple[int, ...],
    config: Stage3Config | None = None,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Cameras]:
    """Project canonical motions (B, T, J, 3) into a ring of ``out_views`` cameras per sequence.

    Each sequence gets its own random start azimuth; its ring looks at its first-frame root, horizontally,
    from ``out_radius`` metres.

    Returns:
        (views (B, K, T, J, 2) normalised frame, F (B, K, K, 3, 3) normalised frame, cameras batch (B, K)).
    """
    config = config or Stage3Config()
    B = Y.shape[0]
    az = torch.rand(B, generator=generator, dtype=torch.float64) * (2 * math.pi)
    target = Y[:, 0, list(root)].mean(dim=1).to(torch.float64).cpu()  # (B, 3)
    cams = ring_cameras(
        config.out_views,
        radius=config.out_radius,
        start_azimuth=az,
        focal=config.focal,
        image_size=config.image_size,
        look_at=target,
        dtype=torch.float64,
    ).to(device=Y.device)
    views = cams.project(Y.to(torch.float64), normalized=True).to(Y.dtype)  # (B, K, T, J, 2)
    F = fundamental_matrices(cams.P_normalized).to(Y.dtype)
    return views, F, cams


def synthesize(
    views: Tensor,
    cameras: Cameras,
    parents: tuple[int, ...],
    root: tuple[int, ...],
    config: Stage3Config | None = None,
    *,
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
    skeleton: Any = None,
) -> dict[str, Tensor]:
    """Stage 3 for one batch: stage-2 views (B, V, T, J, 2) -> consistent multi-view training data.

    Returns a dict of tensors: ``views`` (B, K, T, J, 2) normalised, ``F`` (B, K, K, 3, 3), ``joints3d``
    (B, T, J, 3) canonical metres, ``triangulated_valid`` (B, T, J) bool (the points the fit was given:
    :func:`triangulate_views`' rules, flagged points excluded), ``mask`` (B, T) bool.
    """
    config = config or Stage3Config()
    X, valid = triangulate_views(views, cameras, refine_iters=config.refine_iters, mask=mask)
    if config.smpl_model is not None:
        if skeleton is None:
            raise ValueError("synthesize: the SMPL path needs the skeleton (BODY14 or OPENPOSE18)")
        Y = fit_smpl_motion(torch.where(valid[..., None], X, torch.nan), skeleton, config, mask=mask)
    else:
        Y = fit_joint_motion(X, parents, valid=valid, mask=mask, config=config)
    Y = canonicalize(Y, root, mask=mask)
    out_views, F, _ = reproject_to_ring(Y, root, config, generator=generator)
    B, T = Y.shape[:2]
    m = torch.ones(B, T, dtype=torch.bool, device=Y.device) if mask is None else mask
    return {"views": out_views, "F": F, "joints3d": Y, "triangulated_valid": valid, "mask": m}
