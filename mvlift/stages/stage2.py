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
        init: where the free views start. ``"zeros"`` (the code) or ``"input"`` (every view a copy of the
            input view), for the ``"views"`` parameterisation; ``"flat"`` (every joint at the depth of the
            ring's centre), for ``"depth"``; ``"single_view"`` (the single-view optimisation baseline's 3D,
            :func:`mvlift.baselines.fit_single_view` in camera 0, projected to the ring), for both.
        parameterization: ``"views"`` (the paper: the 2D of every free view is a free variable, tied to
            the others by the epipolar and line terms) or ``"depth"`` (each input joint's camera-0 depth is
            the variable; the 3D point on the input ray is projected to every view, so the views agree and
            the input view is kept exactly by construction; joints with confidence 0 also get a free 2D
            offset). The SDS gradient of the free views flows through the projection into the depths.
        bone_weight: ``"depth"`` only: weight of the bone-constancy term, the mean over bones and valid
            frames of (length - the bone's mean length over the window)^2 (metres^2; no length template).
        smooth_weight: ``"depth"`` only: weight of the mean squared 3D acceleration of the joints
            (metres^2 per frame^4).
        sds_normalize: give the denoiser each free view the way stage 1 saw its training data: moved and
            scaled with the paper's 2D normalisation (:mod:`mvlift.data.normalize`: first-frame box's longer
            relative side 0.5 of the canvas, first-frame root at the centre; a per-sequence similarity,
            held fixed within a step), with its line conditions mapped alike; the SDS gradient is taken
            back through that similarity. Without it the free views keep the ring's raw framing, which the
            stage-1 model never saw (the root off the centre, another size).
        sds_views: free views that receive SDS in an iteration (a random subset of the V-1, drawn per
            iteration; ``0`` = all). Fewer views per iteration cut the denoiser cost proportionally.
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
    parameterization: str = "views"
    bone_weight: float = 0.0
    smooth_weight: float = 0.0
    sds_views: int = 0
    sds_normalize: bool = False
    backend: str = "fused"
    bf16: bool = True
    seed: int = 0
    progress: bool = True
    log_every: int = 50

    def __post_init__(self) -> None:
        check_fields(self, _STAGE2_RULES)  # every field by its annotation, ranges from _STAGE2_RULES
        if self.num_views < 2:
            raise ValueError(f"num_views must be >= 2, got {self.num_views}")
        for name in ("pairs", "sds_space", "init", "parameterization", "backend"):
            allowed = {
                "pairs": ("all", "ring"),
                "sds_space": ("eps", "x0"),
                "init": ("zeros", "input", "flat", "single_view"),
                "parameterization": ("views", "depth"),
                "backend": ("fused", "eager"),
            }[name]
            if getattr(self, name) not in allowed:
                raise ValueError(f"Stage2Config.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        valid_init = {"views": ("zeros", "input", "single_view"), "depth": ("flat", "single_view")}
        if self.init not in valid_init[self.parameterization]:
            raise ValueError(
                f"Stage2Config.init={self.init!r} does not apply to parameterization="
                f"{self.parameterization!r}; use one of {valid_init[self.parameterization]}"
            )
        if not 0 <= self.sds_views < self.num_views:
            raise ValueError(f"Stage2Config.sds_views must lie in [0, num_views - 1], got {self.sds_views}")
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
    "bone_weight": at_least(0),
    "smooth_weight": at_least(0),
    "sds_views": at_least(0),
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
        joints3d: (B, T, J, 3) world points (metres) whose projections are ``views``, for the ``"depth"``
            parameterisation; None for ``"views"`` (triangulate the views instead).
    """

    views: Tensor
    cameras: Cameras
    F: Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    joints3d: Tensor | None = None


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


def _renormalization(
    y: Tensor, mask: Tensor | None, image_size: tuple[int, int], target: float = 0.5
) -> tuple[Tensor, Tensor]:
    """The paper's 2D normalisation of sequences already in a normalised frame, as ``scale * y + shift``.

    Args:
        y: (N, T, J, 2) normalised [-1, 1] coordinates (of some camera); mask: (N, T) valid frames.
        image_size: (W, H) of the canvas; target: the first-frame box's longer relative side.

    Returns:
        scale (N,) and shift (N, 2) such that ``scale * y + shift`` has its first valid frame's box's
        longer relative side equal to ``target`` and its first-frame root (hips midpoint for 14/18 joints,
        else joint 0: :func:`mvlift.metrics._arrays.resolve_root`) at the centre (0, 0).
    """
    from mvlift.metrics._arrays import first_valid, resolve_root

    N, T, J, _ = y.shape
    m = torch.ones(N, T, dtype=torch.bool, device=y.device) if mask is None else mask
    first = first_valid(y, m)  # (N, J, 2)
    # relative extent in a normalised frame: (hi - lo) / 2 per axis (the canvas spans 2 units per axis)
    rel = ((first.amax(dim=1) - first.amin(dim=1)) / 2).amax(dim=-1).clamp_min(1e-6)  # (N,)
    scale = target / rel
    root = first[:, list(resolve_root(None, J))].mean(dim=1)  # (N, 2)
    return scale, -scale[:, None] * root


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
        """SDS gradient for the free views y (B, V-1, T, J, 2); no graph is kept through the denoiser.

        With ``config.sds_views = k > 0`` only k randomly drawn free views (the same for every sequence)
        get a gradient, scaled by (V-1)/k so that its expectation is the all-view gradient; the others get 0.
        """
        cfg = self.config
        B, W, T, J, _ = y.shape
        if 0 < cfg.sds_views < W:
            idx = torch.randperm(W, device=y.device, generator=generator)[: cfg.sds_views]
            idx = idx.sort().values
            sub = self._sds_gradient(y[:, idx], self.lines[:, idx], generator) * (W / cfg.sds_views)
            out = torch.zeros_like(y)
            out[:, idx] = sub
            return out
        return self._sds_gradient(y, self.lines, generator)

    def _sds_gradient(self, y: Tensor, lines: Tensor, generator: torch.Generator | None) -> Tensor:
        cfg = self.config
        B, W, T, J, _ = y.shape
        n = B * W
        t = torch.randint(cfg.t_min, cfg.t_max + 1, (n,), device=y.device, generator=generator)
        noise = torch.randn(y.shape, device=y.device, dtype=y.dtype, generator=generator)
        mask_views = None if self.mask is None else self.mask[:, None].expand(B, W, T).reshape(-1, T)
        with torch.no_grad():
            y_flat = y.detach().reshape(n, T, J, 2)
            lines = lines.reshape(n, T, J, 3)
            scale = None
            if cfg.sds_normalize:
                scale, shift = _renormalization(y_flat, mask_views, cfg.image_size)
                y_flat = scale[:, None, None, None] * y_flat + shift[:, None, None, :]
                c = scale[:, None, None] * lines[..., 2] - (lines[..., :2] * shift[:, None, None, :]).sum(-1)
                lines = torch.cat([lines[..., :2], c[..., None]], dim=-1)
            x_t = self.schedule.add_noise(y_flat, noise.reshape(n, T, J, 2), t)
            bf16 = cfg.bf16 and y.device.type == "cuda"
            with torch.autocast(y.device.type, dtype=torch.bfloat16, enabled=bf16):
                x0_pred = self.denoiser(x_t, t, lines, mask_views)
            x0_pred = x0_pred.to(y.dtype).clamp(-1.0, 1.0)
            diff = y_flat - x0_pred  # (n, T, J, 2)
            if cfg.sds_space == "eps":
                # eps_pred - eps = sqrt(a) / sqrt(1 - a) * (y - x0_pred) for x-prediction models.
                sqrt_ab, sqrt_1m_ab = self.schedule.coefficients(t, y_flat)
                diff = diff * (sqrt_ab / sqrt_1m_ab.clamp_min(1e-4))
            if mask_views is not None:
                diff = diff * mask_views[:, :, None, None].to(diff.dtype)
            if scale is not None:
                diff = diff * scale[:, None, None, None]  # chain rule through y_n = scale * y + shift
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


class DepthParameterization(torch.nn.Module):
    """The free variables of stage 2's ``"depth"`` parameterisation and the views they make.

    Every input joint (view 0, normalised coordinates) is a point on its camera-0 ray at camera depth
    ``exp(log_depth)`` (metres); joints with confidence 0 also get a free 2D offset (normalised units) in
    view 0, since their input position is unknown. The world points are projected into every camera of
    the ring, so all views are projections of one 3D motion: the epipolar and line constraints hold by
    construction and view 0 reproduces the observed joints exactly.

    Args:
        x_input: (B, T, J, 2) view-0 2D, normalised [-1, 1].
        cameras: the ring (V views, float64, unbatched); camera 0 is the input view.
        depth: (B, T, J) start depths in camera 0, metres (> 0).
        conf: optional (B, T, J) confidences; 0 = unobserved (gets a free offset).
    """

    def __init__(self, x_input: Tensor, cameras: Cameras, depth: Tensor, conf: Tensor | None = None) -> None:
        super().__init__()
        dtype = x_input.dtype
        self.register_buffer("x_input", x_input.detach().clone())
        self.register_buffer("P", cameras.P_normalized.to(dtype))  # (V, 3, 4)
        self.register_buffer("K_inv", torch.linalg.inv(cameras.K_normalized[0]).to(dtype))
        self.register_buffer("R", cameras.R[0].to(dtype))
        self.register_buffer("t", cameras.t[0].to(dtype))
        self.log_depth = torch.nn.Parameter(depth.to(dtype).clamp_min(0.05).log())
        free = None if conf is None else (conf <= 0)
        if free is not None and bool(free.any()):
            self.register_buffer("free", free[..., None].to(dtype))
            self.offset = torch.nn.Parameter(torch.zeros_like(x_input))
        else:
            self.free = None
            self.offset = None

    def points(self) -> Tensor:
        """(B, T, J, 3) world points, metres."""
        uv = self.x_input if self.offset is None else self.x_input + self.offset * self.free
        ray = torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1) @ self.K_inv.T  # z = 1
        x_cam = ray * (self.log_depth.exp() / ray[..., 2])[..., None]
        return (x_cam - self.t) @ self.R  # R^T (x_cam - t), row-vector form

    def views(self, X: Tensor) -> Tensor:
        """(B, V, T, J, 2) normalised projections of world points X (B, T, J, 3) into every camera."""
        Xh = torch.cat([X, torch.ones_like(X[..., :1])], dim=-1)
        uvw = torch.einsum("vij,btkj->bvtki", self.P, Xh)
        return uvw[..., :2] / uvw[..., 2:]


def bone_constancy(X: Tensor, parents: tuple[int, ...] | list[int], mask: Tensor | None = None) -> Tensor:
    """Mean over sequences, bones and valid frames of (bone length - its mean over the valid frames)^2.

    Args:
        X: (B, T, J, 3) points, metres. parents: the skeleton's parent index per joint (-1 = tree root).
        mask: (B, T) bool, True = valid frame.

    Returns:
        A scalar in metres^2 (no template: every bone keeps its own length).
    """
    child = [j for j, p in enumerate(parents) if p >= 0]
    parent = [parents[j] for j in child]
    lengths = (X[:, :, child] - X[:, :, parent]).norm(dim=-1)  # (B, T, nb)
    w = torch.ones(lengths.shape[:2], dtype=X.dtype, device=X.device) if mask is None else mask.to(X.dtype)
    count = w.sum(1).clamp_min(1.0)[:, None]  # (B, 1)
    mean = (lengths * w[..., None]).sum(1) / count  # (B, nb)
    var = ((lengths - mean[:, None]) ** 2 * w[..., None]).sum(1) / count
    return var.mean()


def acceleration(X: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared second temporal difference of X (B, T, J, 3) over valid frame triples (metres^2)."""
    if X.shape[1] < 3:
        return X.new_zeros(())
    acc = (X[:, 2:] - 2 * X[:, 1:-1] + X[:, :-2]).pow(2).sum(-1).mean(-1)  # (B, T-2)
    if mask is None:
        return acc.mean()
    w = (mask[:, 2:] & mask[:, 1:-1] & mask[:, :-2]).to(X.dtype)
    return (acc * w).sum() / w.sum().clamp_min(1.0)


def _single_view_start(
    x_input: Tensor,
    cams: Cameras,
    skeleton: Any,
    config: Stage2Config,
    mask: Tensor | None,
    conf: Tensor | None,
) -> Tensor:
    """(B, T, J, 3) world joints of the single-view optimisation baseline fitted in camera 0 of the ring."""
    from mvlift.baselines import SingleViewFitConfig, fit_single_view

    fit = SingleViewFitConfig(focal=config.focal, image_size=config.image_size)
    cam0 = cams.select([0]).to(dtype=x_input.dtype)
    return fit_single_view(x_input, skeleton, fit, mask=mask, conf=conf, camera=cam0).detach()


def optimize_views(
    denoiser: Callable[..., Tensor],
    schedule: Any,
    x_input: Tensor,
    config: Stage2Config | None = None,
    *,
    mask: Tensor | None = None,
    conf: Tensor | None = None,
    skeleton: Any = None,
    start3d: Tensor | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> Stage2Result:
    """Optimise the V-1 unseen views of a camera ring for a batch of input sequences.

    Args:
        denoiser: the stage-1 model (or any callable with its signature), in eval mode.
        schedule: its diffusion schedule (``add_noise``, ``coefficients``), e.g. a CosineSchedule.
        x_input: (B, T, J, 2) input 2D in the normalised [-1, 1] frame (view 0 of the ring).
        config: :class:`Stage2Config`.
        mask: (B, T) bool, True = valid frame.
        conf: (B, T, J) keypoint confidences of the input (weights of the input's epipolar terms; in the
            ``"depth"`` parameterisation, joints with confidence 0 get a free 2D offset).
        skeleton: the :class:`mvlift.data.skeletons.Skeleton` of the joints; needed for
            ``init="single_view"`` and for ``bone_weight > 0``.
        start3d: optional (B, T, J, 3) world joints (metres, the ring's frame) to start from instead of
            ``config.init`` (their camera-0 depths, or their projections for ``"views"``).
        callback: called as ``callback(step, losses)`` at every logged step.

    Returns:
        :class:`Stage2Result` with the (B, V, T, J, 2) views (and the 3D joints in the ``"depth"``
        parameterisation).
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
    needs_skeleton = (config.init == "single_view" and start3d is None) or (
        config.parameterization == "depth" and config.bone_weight > 0
    )
    if needs_skeleton and skeleton is None:
        raise ValueError(
            "optimize_views: init='single_view' and bone_weight > 0 need the skeleton= of the joints"
        )
    if skeleton is not None and len(skeleton.parents) != J:
        raise ValueError(f"skeleton has {len(skeleton.parents)} joints, x_input has J={J}")
    cams, F = make_ring(config, dtype=dtype, device=device)
    losses = Stage2Losses(denoiser, schedule, config, F, x_input, mask=mask, conf=conf)

    if start3d is not None:
        if start3d.shape != (B, T, J, 3):
            raise ValueError(
                f"start3d must have shape (B, T, J, 3) = ({B}, {T}, {J}, 3), got {tuple(start3d.shape)}"
            )
        start3d = start3d.to(dtype=dtype, device=device)
    elif config.init == "single_view":
        start3d = _single_view_start(x_input, cams, skeleton, config, mask, conf)
    depth_model: DepthParameterization | None = None
    if config.parameterization == "depth":
        if start3d is not None:
            depth0 = cams.select([0]).to(dtype=dtype).depth(start3d)[0]
        else:
            centre = torch.tensor([0.0, config.height, 0.0], dtype=torch.float64, device=device)
            depth0 = torch.full(
                (B, T, J), float(cams.select([0]).depth(centre[None])[0, 0]), dtype=dtype, device=device
            )
        depth_model = DepthParameterization(x_input, cams, depth0, conf).to(device)
        params = list(depth_model.parameters())
    else:
        if start3d is not None:
            P = cams.P_normalized.to(dtype)[1:]
            Xh = torch.cat([start3d, torch.ones_like(start3d[..., :1])], dim=-1)
            uvw = torch.einsum("vij,btkj->bvtki", P, Xh)
            y0 = (uvw[..., :2] / uvw[..., 2:]).contiguous()
        elif config.init == "zeros":
            y0 = torch.zeros(B, V - 1, T, J, 2, dtype=dtype, device=device)
        else:
            y0 = x_input[:, None].expand(B, V - 1, T, J, 2).clone()
        y_param = torch.nn.Parameter(y0)
        params = [y_param]
    opt = torch.optim.Adam(params, lr=config.lr)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    history: list[dict[str, float]] = []
    parents = None if skeleton is None else tuple(skeleton.parents)
    zero = torch.zeros((), dtype=dtype, device=device)
    bar = tqdm(range(config.steps), desc="stage2", disable=not config.progress, unit="it")
    for step in bar:
        logging = step % config.log_every == 0 or step == config.steps - 1
        bone = smooth = zero
        if depth_model is not None:
            X = depth_model.points()
            y = depth_model.views(X)[:, 1:]
            if config.bone_weight > 0:
                bone = bone_constancy(X, parents, mask)
            if config.smooth_weight > 0:
                smooth = acceleration(X, mask)
            if logging:
                with torch.no_grad():
                    epi, line = losses.consistency(y.detach())
            else:
                epi = line = zero
            consistency = config.bone_weight * bone + config.smooth_weight * smooth
        else:
            y = y_param
            epi, line = losses.consistency(y)
            consistency = config.epipolar_weight * epi + config.line_weight * line
        grad_sds = losses.sds_gradient(y, gen)
        # SDS as a surrogate loss whose gradient w.r.t. y is sds_weight * grad_sds / B (summed over a
        # sequence's elements, averaged over sequences, as SDS is usually scaled).
        loss_sds = (grad_sds.detach() * y).sum() / B
        loss = config.sds_weight * loss_sds + consistency
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if logging:
            rec = {
                "step": float(step),
                "epipolar": float(epi.detach()),
                "line": float(line.detach()),
                "sds_grad_rms": float(grad_sds.pow(2).mean().sqrt()),
                "time": time.time(),
            }
            if depth_model is not None:
                rec["bone"] = float(bone.detach())
                rec["smooth"] = float(smooth.detach())
            history.append(rec)
            bar.set_postfix(epi=f"{rec['epipolar']:.2e}", line=f"{rec['line']:.2e}")
            if callback is not None:
                callback(step, rec)
    joints3d = None
    with torch.no_grad():
        if depth_model is not None:
            joints3d = depth_model.points()
            views = depth_model.views(joints3d)
            # View 0 is the observation itself (bit-exact), except where a joint was unobserved.
            observed = None if depth_model.free is None else depth_model.free == 0
            views[:, 0] = x_input if observed is None else torch.where(observed, x_input, views[:, 0])
        else:
            views = torch.cat([x_input[:, None], y_param.detach()], dim=1)
    if not math.isfinite(float(views.abs().max())):
        raise FloatingPointError("stage 2 diverged (non-finite views); lower lr or the loss weights")
    return Stage2Result(views=views, cameras=cams, F=F, history=history, joints3d=joints3d)


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
