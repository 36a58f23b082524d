"""Lifting (MVLift inference): one 2D sequence -> K views (stage-4 model) -> triangulation -> 3D motion.

The input sequence, in the paper's normalised [-1, 1] frame, is taken as view 0 of a K-camera ring
(default 4 cameras, 90 degrees apart, 3 m radius, horizontal, looking at the first-frame root). The
multi-view model generates the other K-1 views in one sampling pass (DDIM, few steps, by default) with view 0
held at the observation (x0 inpainting), and the K views are triangulated with the ring's normalised
projection matrices. The result is in the ring's world frame (Y up, metres): joints (B, T, J, 3) and the
root trajectory (B, T, 3).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from mvlift._fields import at_least, check_fields, greater_than, one_of
from mvlift.geometry import Cameras
from mvlift.schedulers import DDIMScheduler, DDPMScheduler, sample
from mvlift.stages.stage2 import ring_from_config
from mvlift.stages.stage3 import Stage3Config, fit_joint_motion, triangulate_views


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
        }
        check_fields(self, rules)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LiftResult:
    """Output of :func:`lift`: ``joints3d`` (B, T, J, 3) metres (NaN where triangulation failed, see
    ``valid``), ``root`` (B, T, 3), ``views`` (B, K, T, J, 2) normalised, ``cameras`` (the K-view ring),
    ``triangulated`` (B, T, J, 3) metres: the triangulation before the ``smooth_steps`` joint fit (the same
    values as ``joints3d`` when ``smooth_steps == 0``; the official bone consistency is scored on it)."""

    joints3d: Tensor
    root: Tensor
    views: Tensor
    valid: Tensor
    cameras: Cameras
    triangulated: Tensor | None = None


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


def lift(
    model: torch.nn.Module,
    x_input: Tensor,
    config: LiftConfig | None = None,
    *,
    mask: Tensor | None = None,
    parents: tuple[int, ...] | None = None,
    root: tuple[int, ...] = (0,),
) -> LiftResult:
    """Lift normalised 2D sequences (B, T, J, 2) to 3D world motion with a trained multi-view model.

    Args:
        model: the stage-4 :class:`~mvlift.models.MultiViewDenoiser`.
        x_input: (B, T, J, 2) in the normalised frame (apply :func:`mvlift.data.normalize.normalize_2d`
            to pixel detections first).
        config: :class:`LiftConfig`.
        mask: (B, T) bool valid frames.
        parents: skeleton parents; needed when ``config.smooth_steps > 0``.
        root: joint indices whose mean is the root (e.g. the two hips).
    """
    config = config or LiftConfig()
    if x_input.dim() != 4 or x_input.shape[-1] != 2:
        raise ValueError(f"x_input must have shape (B, T, J, 2), got {tuple(x_input.shape)}")
    cams = inference_ring(config, device=x_input.device)
    with torch.no_grad():
        views = sample_views(model, x_input, config, mask=mask)
        weights = None
        if config.input_view_weight != 1.0:
            weights = torch.ones(views.shape[:-1], dtype=torch.float64, device=views.device)
            weights[:, 0] = config.input_view_weight
        X, valid = triangulate_views(
            views.to(torch.float64), cams, refine_iters=config.refine_iters, weights=weights
        )
    triangulated = X.to(x_input.dtype)
    if config.smooth_steps > 0:
        if parents is None:
            raise ValueError("lift: smooth_steps > 0 needs the skeleton's parents")
        X = fit_joint_motion(
            X, parents, valid=valid, mask=mask, config=Stage3Config(fit_steps=config.smooth_steps)
        )
    X = X.to(x_input.dtype)
    root_traj = X[:, :, list(root)].mean(dim=2)
    return LiftResult(
        joints3d=X, root=root_traj, views=views, valid=valid, cameras=cams, triangulated=triangulated
    )
