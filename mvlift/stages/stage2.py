"""Stage 2: multi-view 2D optimisation with score distillation (SDS) and epipolar consistency.

For a batch of input 2D sequences (view 0), the 2D sequences of the other V-1 views of a virtual camera
ring are optimised so that

- each view looks like a plausible motion to the stage-1 line-conditioned diffusion model (SDS: a random
  diffusion step per view and iteration, the line condition of view v being the epipolar lines of the
  input view's joints in view v), and
- all views agree with each other (the fused all-pairs epipolar loss, :func:`mvlift.ops.epipolar_loss`)
  and with the input view's epipolar lines (:func:`mvlift.ops.line_matching_loss`).

All 2D coordinates are in the paper's normalised [-1, 1] frame (see ``docs/conventions.md``); the ring's
projection matrices are therefore ``Cameras.P_normalized`` and the fundamental matrices map normalised
points. View v of the result corresponds to camera v of the ring; view 0 is the input, unchanged.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from mvlift._fields import at_least, check_fields, greater_than, in_range, one_of
from mvlift.geometry import Cameras, all_pairs, epipolar_line_conditions, fundamental_matrices, ring_cameras
from mvlift.geometry.epipolar import ring_pairs


@dataclass
class Stage2Config:
    """Stage-2 settings. Defaults follow the paper (6-view ring, 60 degrees apart, all 15 pairs) and its
    code's numbers (Adam lr 1e-3, 5000 steps, epipolar weight 1e3, SDS weight 1).

    The objective is ``sds_weight * L_SDS + epipolar_weight * E + line_weight * L`` with ``L_SDS`` the SDS
    surrogate whose gradient is ``grad_sds / B`` (summed over each input sequence's V-1 views), ``E`` the
    weighted mean symmetric epipolar distance over the pairs (:func:`mvlift.ops.epipolar_loss`) and ``L`` the
    mean distance of the free views' joints to the input view's epipolar lines. The official code reduces
    differently (lijiaman/mvlift_release, ``opt_paired_2d_w_sds_loss_and_jnts2line_dist_loss``): its SDS
    surrogate is divided by ``B (V-1)``, and ``1e3`` multiplies the pair-averaged *sum* of the two directed
    distances, and again the pair-averaged sum of both views' distances to the input's lines. Its balance is
    therefore about ``sds_weight=1/(V-1)``, ``epipolar_weight=2e3``, ``line_weight=2e3``, ``pairs="ring"``
    here (its input-view terms are the directed distances to the input's lines only). At the demo's scale that
    balance puts the joints on the input's lines (line loss 7e-4) but gives worse 3D (benchmarks/RESULTS.md),
    so the defaults keep SDS at full weight and the line term at 1.

    Attributes:
        num_views: V, cameras on the ring (view 0 = the input).
        radius, height, focal, image_size: the ring (metres, metres, pixels, (W, H) pixels). The ring looks
            at (0, height, 0); with the paper's normalisation the input's first-frame root sits at the image
            centre, i.e. on camera 0's optical axis.
        start_azimuth: azimuth of camera 0, radians.
        steps, lr: Adam iterations and learning rate.
        sds_weight, epipolar_weight, line_weight: loss weights.
        pairs: "all" (the paper: all V(V-1)/2 pairs) or "ring" (the official code: ring neighbours + input).
        distance: "symmetric" or "sampson" epipolar distance.
        t_min, t_max: SDS diffusion steps are drawn uniformly from [t_min, t_max].
        sds_space: "eps" (the code: gradient w(t) (eps_pred - eps), w = 1) or "x0" (gradient y - x0_pred).
        init: "zeros" (the code) or "input" (start every view from the input view).
        backend: "fused" (mvlift.ops kernels) or "eager" (the plain-PyTorch references), for profiling.
        bf16: run the SDS denoiser forward under bf16 autocast on CUDA (always off on CPU), as the trainer
            does for training. The prediction only steers the SDS gradient, which is formed in the views'
            precision; the consistency losses and the optimised views stay in that precision too.
        seed: seeds the SDS noise and steps.
    """

    num_views: int = 6
    radius: float = 3.0
    height: float = 1.0
    focal: float = 1000.0
    image_size: tuple[int, int] = (1920, 1080)
    start_azimuth: float = 0.0
    steps: int = 5000
    lr: float = 1e-3
    sds_weight: float = 1.0
    epipolar_weight: float = 1e3
    line_weight: float = 1.0
    pairs: str = "all"
    distance: str = "symmetric"
    t_min: int = 1
    t_max: int = 999
    sds_space: str = "eps"
    init: str = "zeros"
    backend: str = "fused"
    bf16: bool = True
    seed: int = 0
    progress: bool = True
    log_every: int = 50

    def __post_init__(self) -> None:
        check_fields(self, _STAGE2_RULES)  # every field by its annotation, ranges from _STAGE2_RULES
        if self.num_views < 2:
            raise ValueError(f"num_views must be >= 2, got {self.num_views}")
        for name in ("pairs", "sds_space", "init", "backend"):
            allowed = {
                "pairs": ("all", "ring"),
                "sds_space": ("eps", "x0"),
                "init": ("zeros", "input"),
                "backend": ("fused", "eager"),
            }[name]
            if getattr(self, name) not in allowed:
                raise ValueError(f"Stage2Config.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not 0 <= self.t_min <= self.t_max:
            raise ValueError(f"need 0 <= t_min <= t_max, got t_min={self.t_min}, t_max={self.t_max}")
        self.image_size = tuple(self.image_size)  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_STAGE2_RULES = {
    "num_views": at_least(2),
    "radius": greater_than(0),
    "focal": greater_than(0),
    "image_size": greater_than(0),
    "steps": at_least(1),
    "lr": greater_than(0),
    "sds_weight": at_least(0),
    "epipolar_weight": at_least(0),
    "line_weight": at_least(0),
    "distance": one_of("symmetric", "sampson"),
    "t_min": in_range(0, 999),  # the steps of the 1000-step schedule the stage-1 model is trained with
    "t_max": in_range(0, 999),
    "seed": at_least(0),
    "log_every": at_least(1),
}


@dataclass
class Stage2Result:
    """Output of :func:`optimize_views`.

    Attributes:
        views: (B, V, T, J, 2) normalised 2D of all views; views[:, 0] is the input.
        cameras: the ring (V views) whose ``P_normalized`` maps world points to these coordinates.
        F: (V, V, 3, 3) fundamental matrices in the normalised frame (convention of docs/conventions.md).
        history: per logged step, the loss components.
    """

    views: Tensor
    cameras: Cameras
    F: Tensor
    history: list[dict[str, float]] = field(default_factory=list)


def ring_from_config(config: Any, *, device: torch.device | str = "cpu") -> Cameras:
    """The horizontal camera ring a stage config describes (its ``num_views``, ``radius``, ``height``,
    ``start_azimuth``, ``focal``, ``image_size``), float64, looking at (0, height, 0). Used by stage 2
    (6 views) and lifting (4 views) alike."""
    return ring_cameras(
        config.num_views,
        radius=config.radius,
        height=config.height,
        start_azimuth=config.start_azimuth,
        focal=config.focal,
        image_size=config.image_size,
        look_at=(0.0, config.height, 0.0),
        dtype=torch.float64,
        device=device,
    )


def make_ring(
    config: Stage2Config, *, dtype: torch.dtype, device: torch.device | str
) -> tuple[Cameras, Tensor]:
    """The stage-2 camera ring and its normalised-frame fundamental matrices (V, V, 3, 3)."""
    cams = ring_from_config(config, device=device)
    return cams, fundamental_matrices(cams.P_normalized).to(dtype)


def _pair_tensor(config: Stage2Config, device: torch.device) -> Tensor:
    if config.pairs == "all":
        return all_pairs(config.num_views, device=device)
    return ring_pairs(config.num_views, 0, device=device)


class Stage2Losses:
    """The stage-2 objective for one iteration, with its phases timed (see :mod:`mvlift.stages.profile`).

    ``denoiser(x_t (N, T, J, 2), t (N,), lines (N, T, J, 3), mask (N, T)) -> x0_pred`` is the stage-1 model;
    ``schedule`` provides ``add_noise`` and ``coefficients`` (a :class:`mvlift.schedulers.CosineSchedule`).
    """

    def __init__(
        self,
        denoiser: Callable[..., Tensor],
        schedule: Any,
        config: Stage2Config,
        F: Tensor,
        x_input: Tensor,
        *,
        mask: Tensor | None = None,
        conf: Tensor | None = None,
    ) -> None:
        if config.backend == "fused":
            from mvlift.ops import epipolar_loss, line_matching_loss

            # F and the weights are checked once here, not with a host sync every iteration.
            self._epipolar_loss = functools.partial(epipolar_loss, check_values=False)
        else:
            from mvlift.reference.losses import epipolar_loss, line_matching_loss

            self._epipolar_loss = epipolar_loss
        self._line_loss = line_matching_loss
        self.denoiser = denoiser
        self.schedule = schedule
        self.config = config
        self.F = F
        self.x_input = x_input
        self.mask = mask
        if not bool(torch.isfinite(F).all()):
            raise ValueError("stage 2: the ring's fundamental matrices are not finite")
        if conf is not None and not bool(((conf >= 0) & torch.isfinite(conf)).all()):
            raise ValueError("conf must hold finite confidences >= 0")
        B, T, J, _ = x_input.shape
        V = config.num_views
        self.pairs = _pair_tensor(config, x_input.device)
        # Line conditions of views 1..V-1: epipolar lines of the input view's joints, fixed (they depend on
        # the input only). (B, V-1, T, J, 3)
        self.lines = torch.stack([epipolar_line_conditions(x_input, F[0, v]) for v in range(1, V)], dim=1).to(
            x_input.dtype
        )
        self.weights = None
        if conf is not None:
            w = torch.ones(B, V, T, J, dtype=x_input.dtype, device=x_input.device)
            w[:, 0] = conf.to(x_input.dtype)
            self.weights = w
        self.mask_views = None if mask is None else mask[:, None].expand(B, V - 1, T).reshape(-1, T)

    def sds_gradient(self, y: Tensor, generator: torch.Generator | None) -> Tensor:
        """SDS gradient for the free views y (B, V-1, T, J, 2); no graph is kept through the denoiser."""
        cfg = self.config
        B, W, T, J, _ = y.shape
        n = B * W
        t = torch.randint(cfg.t_min, cfg.t_max + 1, (n,), device=y.device, generator=generator)
        noise = torch.randn(y.shape, device=y.device, dtype=y.dtype, generator=generator)
        with torch.no_grad():
            y_flat = y.detach().reshape(n, T, J, 2)
            x_t = self.schedule.add_noise(y_flat, noise.reshape(n, T, J, 2), t)
            bf16 = cfg.bf16 and y.device.type == "cuda"
            with torch.autocast(y.device.type, dtype=torch.bfloat16, enabled=bf16):
                x0_pred = self.denoiser(x_t, t, self.lines.reshape(n, T, J, 3), self.mask_views)
            x0_pred = x0_pred.to(y.dtype).clamp(-1.0, 1.0)
            diff = y_flat - x0_pred  # (n, T, J, 2)
            if cfg.sds_space == "eps":
                # eps_pred - eps = sqrt(a) / sqrt(1 - a) * (y - x0_pred) for x-prediction models.
                sqrt_ab, sqrt_1m_ab = self.schedule.coefficients(t, y_flat)
                diff = diff * (sqrt_ab / sqrt_1m_ab.clamp_min(1e-4))
            if self.mask_views is not None:
                diff = diff * self.mask_views[:, :, None, None].to(diff.dtype)
        return diff.reshape(y.shape)

    def consistency(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """(epipolar loss over the chosen pairs of all V views, line loss of the free views to the input's
        epipolar lines), both differentiable w.r.t. y."""
        B, W, T, J, _ = y.shape
        x = torch.cat([self.x_input[:, None].to(y.dtype), y], dim=1)  # (B, V, T, J, 2)
        epi = self._epipolar_loss(
            x, self.F, weights=self.weights, mask=self.mask, pairs=self.pairs, distance=self.config.distance
        )
        mask = None if self.mask is None else self.mask_views
        line = self._line_loss(y.reshape(B * W, T, J, 2), self.lines.reshape(B * W, T, J, 3), mask=mask)
        return epi, line


def optimize_views(
    denoiser: Callable[..., Tensor],
    schedule: Any,
    x_input: Tensor,
    config: Stage2Config | None = None,
    *,
    mask: Tensor | None = None,
    conf: Tensor | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> Stage2Result:
    """Optimise the V-1 unseen views of a camera ring for a batch of input sequences.

    Args:
        denoiser: the stage-1 model (or any callable with its signature), in eval mode.
        schedule: its diffusion schedule (``add_noise``, ``coefficients``), e.g. a CosineSchedule.
        x_input: (B, T, J, 2) input 2D in the normalised [-1, 1] frame (view 0 of the ring).
        config: :class:`Stage2Config`.
        mask: (B, T) bool, True = valid frame.
        conf: (B, T, J) keypoint confidences of the input (weights of the input's epipolar terms).
        callback: called as ``callback(step, losses)`` at every logged step.

    Returns:
        :class:`Stage2Result` with the (B, V, T, J, 2) views.
    """
    config = config or Stage2Config()
    if x_input.dim() != 4 or x_input.shape[-1] != 2:
        raise ValueError(f"x_input must have shape (B, T, J, 2), got {tuple(x_input.shape)}")
    if not x_input.is_floating_point():
        raise TypeError(f"x_input must be a floating tensor, got {x_input.dtype}")
    B, T, J, _ = x_input.shape
    V = config.num_views
    device, dtype = x_input.device, x_input.dtype
    if mask is not None and (mask.shape != (B, T) or mask.dtype != torch.bool):
        raise ValueError(
            f"mask must be a (B, T) = ({B}, {T}) bool tensor, got {tuple(mask.shape)} {mask.dtype}"
        )
    if conf is not None and conf.shape != (B, T, J):
        raise ValueError(f"conf must have shape (B, T, J) = ({B}, {T}, {J}), got {tuple(conf.shape)}")
    cams, F = make_ring(config, dtype=dtype, device=device)
    losses = Stage2Losses(denoiser, schedule, config, F, x_input, mask=mask, conf=conf)

    if config.init == "zeros":
        y0 = torch.zeros(B, V - 1, T, J, 2, dtype=dtype, device=device)
    else:
        y0 = x_input[:, None].expand(B, V - 1, T, J, 2).clone()
    y = torch.nn.Parameter(y0)
    opt = torch.optim.Adam([y], lr=config.lr)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    history: list[dict[str, float]] = []
    bar = tqdm(range(config.steps), desc="stage2", disable=not config.progress, unit="it")
    for step in bar:
        grad_sds = losses.sds_gradient(y, gen)
        epi, line = losses.consistency(y)
        # SDS as a surrogate loss whose gradient w.r.t. y is sds_weight * grad_sds / B (summed over a
        # sequence's elements, averaged over sequences, as SDS is usually scaled).
        loss_sds = (grad_sds.detach() * y).sum() / B
        loss = config.sds_weight * loss_sds + config.epipolar_weight * epi + config.line_weight * line
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % config.log_every == 0 or step == config.steps - 1:
            rec = {
                "step": float(step),
                "epipolar": float(epi.detach()),
                "line": float(line.detach()),
                "sds_grad_rms": float(grad_sds.pow(2).mean().sqrt()),
                "time": time.time(),
            }
            history.append(rec)
            bar.set_postfix(epi=f"{rec['epipolar']:.2e}", line=f"{rec['line']:.2e}")
            if callback is not None:
                callback(step, rec)
    views = torch.cat([x_input[:, None], y.detach()], dim=1)
    if not math.isfinite(float(views.abs().max())):
        raise FloatingPointError("stage 2 diverged (non-finite views); lower lr or the loss weights")
    return Stage2Result(views=views, cameras=cams, F=F, history=history)


def sample_views_stage1_only(
    denoiser: Callable[..., Tensor],
    x_input: Tensor,
    config: Stage2Config | None = None,
    *,
    mask: Tensor | None = None,
    steps: int = 50,
    seed: int = 0,
    progress: bool = False,
) -> Stage2Result:
    """The paper's "stage 1 only" ablation: sample each unseen view of the ring independently from the
    stage-1 model, conditioned on the input view's epipolar lines in that view (DDIM, ``steps`` steps), with
    no joint optimisation and no epipolar loss between the generated views.

    Args and result as in :func:`optimize_views` (``history`` is empty).
    """
    from mvlift.schedulers import DDIMScheduler, sample

    config = config or Stage2Config()
    if x_input.dim() != 4 or x_input.shape[-1] != 2:
        raise ValueError(f"x_input must have shape (B, T, J, 2), got {tuple(x_input.shape)}")
    B, T, J, _ = x_input.shape
    V = config.num_views
    cams, F = make_ring(config, dtype=x_input.dtype, device=x_input.device)
    lines = torch.cat([epipolar_line_conditions(x_input, F[0, v]) for v in range(1, V)], dim=0).to(
        x_input.dtype
    )
    mask_rep = None if mask is None else mask.repeat(V - 1, 1)  # view-major, like ``lines``
    scheduler = DDIMScheduler(steps)
    scheduler.set_timesteps(steps)

    def model_fn(x_t: Tensor, t: Tensor) -> Tensor:
        return denoiser(x_t, t, lines, mask_rep)

    with torch.no_grad():
        y = sample(
            model_fn,
            (B * (V - 1), T, J, 2),
            scheduler,
            generator=seed,
            device=x_input.device,
            dtype=x_input.dtype,
            progress=progress,
        )
    views = torch.cat([x_input[:, None], y.reshape(V - 1, B, T, J, 2).transpose(0, 1)], dim=1)
    return Stage2Result(views=views, cameras=cams, F=F)
