"""Single-view SMPLify-style baseline with a body model: SMPL under the VPoser pose prior fitted to one view.

The variant of :mod:`mvlift.baselines.single_view` with SMPL and a learned pose prior, as SMPLify fits a body
model under a pose prior to one view (the paper's "SMPLify" row). Per sequence b and frame t the body is

    X[b, t] = J(R_bt, z_bt; betas_b) + transl_bt        (world frame of ``docs/conventions.md``: Y up, metres)

- ``R_bt`` the global orientation (per frame).
- ``z_bt`` the 32-d VPoser latent (per frame) decoded to the rotations of SMPL's 21 body joints; the two
  hand joints stay at the identity.
- ``transl_bt`` smplx's ``transl`` (per frame), in the world frame.
- ``betas_b`` the body shape, **fixed** (the ``betas`` argument; default 0, the mean shape). From one view
  the body's size trades off against its distance from the camera; a fixed size settles that trade-off the
  way the joint baseline's bone-length template does, and keeps the fit well conditioned.
- ``J`` the posed SMPL joints (``smpl_layer``'s kinematic tree) mapped to the skeleton's joint set
  (:func:`mvlift.body.smpl_joints_to_skeleton`: ``BODY14``, ``OPENPOSE18`` or ``SMPL24``). The model fixes
  every bone length, so no bone term is needed.

Two steps, both reusing existing fits:

1. **Start.** The joint-position baseline :func:`~mvlift.baselines.fit_single_view` lifts the 2D to 3D joints
   (or ``init`` gives them), and the stage-3 fit :func:`mvlift.body.fit_smpl` fits SMPL under VPoser to those
   joints (``init_steps`` Adam steps, ``init_lr``; Procrustes orientation, one scale ``s`` per sequence).
   ``fit_smpl`` returns the body at the model's own size (scale 1) with its root at the scaled fit's root;
   the start then moves each frame's root along its camera ray to ``1 / s`` of its camera depth (similar
   triangles: the model-sized body there projects like the scaled fit).
2. **Refinement against the 2D.** Adam (``steps``; the learning rate decays along a cosine from ``lr`` to
   ``lr * final_lr_fraction``) on the orientation (``R = exp([w]x) R_start``, ``w`` from 0), the latent and
   the root position, minimising per sequence

       E = E_2D + prior_weight E_prior + smooth_weight E_smooth

   - ``E_2D``: the confidence-weighted mean squared reprojection error in the camera's normalised [-1, 1]
     frame (``Cameras.P_normalized``; unitless), as in the joint baseline (about 1e-6 for 1 px).
   - ``E_prior``: mean over valid frames of ``|z|^2`` (VPoser's latent is standard normal: twice its
     negative log-density up to a constant).
   - ``E_smooth`` (m^2): mean over joints and valid frame triples of ``|X[t+1] - 2 X[t] + X[t-1]|^2``.

   The root (the skeleton's root joint(s), e.g. the hip midpoint) is placed on its camera ray: its ray
   slope ``(x / z, y / z)`` and log depth are the variables, both stepped in metres at the sequence's mean
   start depth, so a depth change never moves the root's projection (as in the joint baseline); the
   translation follows (``transl = root - root of J``). Sequences are independent (the objective is a sum
   of per-sequence terms; Adam acts per parameter).

Joints in ``ignore_joints`` (default: the neck for OpenPose-18, where SMPL has no joint) enter no data term.
Frames with mask False enter no term; their outputs repeat the nearest valid frame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from mvlift._fields import check_fields, checked_fields
from mvlift.baselines.single_view import (
    SingleViewFitConfig,
    _check_observations,
    _check_tensor,
    _select_camera,
    _seq_mean,
    default_camera,
    fit_single_view,
)
from mvlift.body.fit import _fill_nearest, _frozen, fit_smpl
from mvlift.body.loading import check_smpl_skeleton
from mvlift.body.smpl_io import import_optional
from mvlift.body.smpl_model import SMPLJointModel, smpl_joints_to_skeleton
from mvlift.body.vposer import body_rotations, decode_rotations, matrix_to_axis_angle
from mvlift.data.skeletons import OPENPOSE18, Skeleton
from mvlift.geometry.cameras import Cameras

__all__ = ["SingleViewSMPLConfig", "SingleViewSMPLFit", "fit_single_view_smpl"]


@dataclass
class SingleViewSMPLConfig:
    """Settings of :func:`fit_single_view_smpl` (module docstring for the model and the objective).

    Attributes:
        steps: Adam iterations of the refinement against the 2D (0 returns the start).
        lr: initial learning rate of the refinement: radians for the orientation, latent units, metres for
            the root position.
        final_lr_fraction: the cosine decay ends at ``lr * final_lr_fraction``.
        prior_weight: weight of the VPoser latent prior ``|z|^2``. For Gaussian 2D noise of ``sigma``
            normalised units per coordinate on J joints, the maximum a posteriori weight is
            ``sigma^2 / J``; the default 1e-6 is that of about 3.5 px of noise on 14 joints (1 px is about
            1.04e-3 normalised units across 1920 px).
        smooth_weight: weight of the squared second temporal difference of the joints (per m^2).
        init_steps, init_lr: Adam iterations / learning rate of the start's :func:`mvlift.body.fit_smpl`
            to the joint baseline's 3D (0 steps: the Procrustes start of ``fit_smpl``).
        focal, image_size: intrinsics of the default camera (pixels, (W, H)); ignored when a camera is
            given to :func:`fit_single_view_smpl`.
    """

    steps: int = 300
    lr: float = 5e-2
    final_lr_fraction: float = 0.1
    prior_weight: float = 1e-6
    smooth_weight: float = 1e-2
    init_steps: int = 200
    init_lr: float = 5e-2
    focal: float = 1000.0
    image_size: tuple[int, int] = (1920, 1080)

    def __post_init__(self) -> None:
        for name in ("steps", "init_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"SingleViewSMPLConfig.{name} must be an int >= 0, got {value!r}")
        positive = ("lr", "init_lr", "focal")
        non_negative = ("prior_weight", "smooth_weight")
        for name in positive + non_negative + ("final_lr_fraction",):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise TypeError(f"SingleViewSMPLConfig.{name} must be a finite number, got {value!r}")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"SingleViewSMPLConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"SingleViewSMPLConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < self.final_lr_fraction <= 1:
            raise ValueError(
                f"SingleViewSMPLConfig.final_lr_fraction must be in (0, 1], got {self.final_lr_fraction!r}"
            )
        size = tuple(self.image_size)
        if len(size) != 2 or any(not isinstance(s, int) or isinstance(s, bool) or s <= 0 for s in size):
            raise ValueError(
                f"SingleViewSMPLConfig.image_size must be (W, H) positive ints, got {self.image_size!r}"
            )
        self.image_size = size  # type: ignore[assignment]
        check_fields(self)  # the annotation of every field (one added later included)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML/JSON (the image size as a list)."""
        out = asdict(self)
        out["image_size"] = list(self.image_size)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SingleViewSMPLConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        kwargs = checked_fields(cls, data, "SingleViewSMPLConfig fields")
        if "image_size" in kwargs:
            kwargs["image_size"] = tuple(kwargs["image_size"])
        return cls(**kwargs)


@dataclass
class SingleViewSMPLFit:
    """Result of :func:`fit_single_view_smpl` (B sequences, T frames, J joints; on the layer's device and
    in its dtype).

    ``smpl_layer(betas, global_orient, body_pose, transl)`` reproduces ``joints`` (through
    :func:`mvlift.body.smpl_joints_to_skeleton`). Masked frames repeat the nearest valid frame.

    Attributes:
        joints: (B, T, J, 3) fitted world joints in the skeleton's joint set, metres.
        global_orient: (B, T, 3) axis-angle global orientation (smplx ``global_orient``).
        body_pose: (B, T, 69) axis-angle smplx ``body_pose`` (VPoser's 21 joints + 2 identity hands).
        latent: (B, T, D) VPoser latents (D = 32).
        transl: (B, T, 3) smplx ``transl``, metres, world frame.
        betas: (B, K) the fixed shape parameters.
        reprojection_error: (B,) confidence-weighted mean reprojection distance of the used observed joints,
            normalised [-1, 1] units.
    """

    joints: Tensor
    global_orient: Tensor
    body_pose: Tensor
    latent: Tensor
    transl: Tensor
    betas: Tensor
    reprojection_error: Tensor


def _check_models(smpl_layer: Any, vposer: Any) -> tuple[torch.dtype, torch.device]:
    layer_t = getattr(smpl_layer, "v_template", None)
    if not isinstance(layer_t, Tensor):
        raise TypeError(f"smpl_layer: expected an smplx.SMPL layer, got {type(smpl_layer).__name__}")
    vparams = list(vposer.parameters()) if callable(getattr(vposer, "parameters", None)) else []
    if not vparams or not isinstance(getattr(vposer, "latentD", None), int):
        raise TypeError(f"vposer: expected a VPoser v1 model, got {type(vposer).__name__}")
    if vparams[0].device != layer_t.device:
        raise ValueError(f"vposer: on {vparams[0].device}, expected the smpl_layer's device {layer_t.device}")
    return layer_t.dtype, layer_t.device


def fit_single_view_smpl(
    x2d: Tensor,
    skeleton: Skeleton,
    smpl_layer: Any,
    vposer: Any,
    config: SingleViewSMPLConfig | None = None,
    *,
    mask: Tensor | None = None,
    conf: Tensor | None = None,
    camera: Cameras | None = None,
    betas: Tensor | None = None,
    init: Tensor | None = None,
    joint_config: SingleViewFitConfig | None = None,
    ignore_joints: Sequence[str] | None = None,
) -> SingleViewSMPLFit:
    """Fit SMPL under the VPoser prior to single-view 2D keypoint sequences (module docstring).

    Args:
        x2d: (B, T, J, 2) keypoints in the normalised [-1, 1] frame of the camera (``docs/conventions.md``);
            entries in masked frames or with zero confidence are never read (they may be NaN).
        skeleton: ``BODY14``, ``OPENPOSE18`` or ``SMPL24`` (:mod:`mvlift.data.skeletons`).
        smpl_layer: an ``smplx.SMPL`` layer (:func:`mvlift.body.smplx_layer`); the fit runs on its device
            and in its dtype.
        vposer: a VPoser v1 model on the same device (:func:`mvlift.body.load_vposer`); used in eval mode
            with frozen parameters, its mode and ``requires_grad`` flags restored after.
        config: :class:`SingleViewSMPLConfig` (default settings when None).
        mask: (B, T) bool, True = valid frame.
        conf: (B, T, J) keypoint confidences >= 0 weighting the reprojection term; 0 = unobserved.
        camera: the view's :class:`~mvlift.geometry.Cameras`: one view, batch shape () or (B,); default:
            :func:`~mvlift.baselines.default_camera` with ``config.focal`` and ``config.image_size``.
        betas: (K,) or (B, K) fixed shape parameters; default zeros (the mean shape).
        init: (B, T, J, 3) world joints (metres) to start from, e.g. a :func:`fit_single_view` result
            already at hand; NaN = missing. Default: :func:`fit_single_view` with ``joint_config``.
        joint_config: :class:`~mvlift.baselines.SingleViewFitConfig` of the joint baseline run for the start
            (default settings when None; unused with ``init``).
        ignore_joints: joint names left out of every data term; default ``("neck",)`` for OpenPose-18, none
            otherwise.

    Returns:
        :class:`SingleViewSMPLFit`.

    Raises:
        TypeError / ValueError: malformed inputs (the message names the argument, the expected and the
        given), or a sequence without any observed joint in its valid frames.
        ImportError: smplx is not installed.
    """
    import_optional("smplx")
    from smplx.lbs import batch_rodrigues

    config = SingleViewSMPLConfig() if config is None else config
    if not isinstance(config, SingleViewSMPLConfig):
        raise TypeError(f"config must be a SingleViewSMPLConfig or None, got {type(config).__name__}")
    check_smpl_skeleton(skeleton)
    if joint_config is not None and not isinstance(joint_config, SingleViewFitConfig):
        got = type(joint_config).__name__
        raise TypeError(f"joint_config must be a SingleViewFitConfig or None, got {got}")
    dtype, dev = _check_models(smpl_layer, vposer)
    x2d, mask, conf, observed = _check_observations(x2d, skeleton, mask, conf)
    B, T, J = x2d.shape[:3]
    x2d, mask, conf, observed = x2d.to(dev, dtype), mask.to(dev), conf.to(dev, dtype), observed.to(dev)
    if init is not None:
        init = _check_tensor(init, "init", (B, T, J, 3), f"(B, T, J, 3) = ({B}, {T}, {J}, 3)")
        if not init.is_floating_point():
            raise TypeError(f"init must be a floating-point tensor, got dtype {init.dtype}")
    if ignore_joints is None:
        ignore_joints = ("neck",) if skeleton.name == OPENPOSE18.name else ()
    used = torch.ones(J, dtype=torch.bool, device=dev)
    for name in ignore_joints:
        used[skeleton.index(name)] = False
    if camera is None:
        camera = default_camera(config.focal, config.image_size, dtype=dtype, device=dev)
    cam = _select_camera(camera, B, dtype, dev)

    # --- step 1: the joint baseline's 3D, SMPL fitted to it, roots moved to the model's size ----------
    if init is None:
        init = fit_single_view(x2d, skeleton, joint_config, mask=mask, conf=conf, camera=cam)
    init = torch.where(mask[..., None, None], init.to(dev, dtype), torch.nan)
    start = fit_smpl(
        init,
        skeleton,
        smpl_layer,
        vposer,
        betas=betas,
        mask=mask,
        steps=config.init_steps,
        lr=config.init_lr,
        ignore_joints=ignore_joints,
        canonical=False,
        progress=False,
    )
    R, t = cam.R[:, 0], cam.t[:, 0]  # (B, 3, 3), (B, 3)
    root_idx = list(skeleton.root)
    with torch.no_grad():
        root = start.joints[:, :, root_idx].mean(dim=2)  # (B, T, 3) world, at the scaled fit's root
        root_cam0 = (root @ R.transpose(-1, -2) + t[:, None]) / start.scale[:, None, None]  # moved root
        ray0 = root_cam0[..., :2] / root_cam0[..., 2:]  # (B, T, 2): x / z, y / z in the camera frame
        depth0 = root_cam0[..., 2]  # (B, T), metres
        metres = depth0.mean(dim=1)[:, None]  # (B, 1): metres per unit of ray slope (and of log depth)
        r_start = batch_rodrigues(start.global_orient.reshape(-1, 3)).reshape(B, T, 3, 3)

    # --- step 2: Adam on orientation, latent and root position (on its camera ray) against the 2D -----
    model = SMPLJointModel(smpl_layer, start.betas, face_joints=skeleton.name == OPENPOSE18.name)
    rotvec = torch.zeros(B, T, 3, dtype=dtype, device=dev, requires_grad=True)
    latent = start.latent.clone().requires_grad_(True)
    ray_step = torch.zeros(B, T, 2, dtype=dtype, device=dev, requires_grad=True)  # metres at depth0
    depth_step = torch.zeros(B, T, dtype=dtype, device=dev, requires_grad=True)  # metres
    P_nT = cam.P_normalized[:, 0].transpose(-1, -2)[:, None]  # (B, 1, 4, 3): projection = Xh @ P^T
    target = torch.where(observed[..., None], x2d, torch.zeros_like(x2d))
    w = conf * used.to(dtype)  # (B, T, J)
    fmask = mask.to(dtype)
    triple = (fmask[:, 2:] * fmask[:, 1:-1] * fmask[:, :-2])[..., None]  # (B, T-2, 1)

    def forward() -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        rg = batch_rodrigues(rotvec.reshape(-1, 3)).reshape(B, T, 3, 3) @ r_start
        body = body_rotations(decode_rotations(vposer, latent))  # (B, T, 23, 3, 3)
        posed = smpl_joints_to_skeleton(model(torch.cat([rg[:, :, None], body], dim=2)), skeleton)
        posed_root = posed[:, :, root_idx].mean(dim=2)  # (B, T, 3)
        z = depth0 * torch.exp(depth_step / metres)
        ray = ray0 + ray_step / metres[..., None]
        root_world = (torch.cat([ray * z[..., None], z[..., None]], dim=-1) - t[:, None]) @ R
        transl = root_world - posed_root
        X = posed + transl[:, :, None]
        proj = torch.cat([X, torch.ones_like(X[..., :1])], dim=-1) @ P_nT
        return X, proj[..., :2] / proj[..., 2:], rg, body, transl

    def energy(X: Tensor, uv: Tensor) -> Tensor:
        e = _seq_mean((uv - target).square().sum(-1), w)
        if config.prior_weight > 0:
            e = e + config.prior_weight * _seq_mean(latent.square().sum(-1), fmask)
        if config.smooth_weight > 0 and T >= 3:
            acc = (X[:, 2:] - 2 * X[:, 1:-1] + X[:, :-2]).square().sum(-1)
            e = e + config.smooth_weight * _seq_mean(acc, triple)
        return e

    with _frozen(vposer):
        if config.steps > 0:
            opt = torch.optim.Adam([rotvec, latent, ray_step, depth_step], lr=config.lr, eps=1e-12)
            frac, steps = config.final_lr_fraction, config.steps
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda k: frac + (1.0 - frac) * 0.5 * (1.0 + math.cos(math.pi * k / steps))
            )
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                X, uv, _, _, _ = forward()
                energy(X, uv).sum().backward()
                opt.step()
                sched.step()
        with torch.no_grad():
            X, uv, rg, body, transl = forward()
            dist = (uv - target).norm(dim=-1)
            err = (w * dist).sum(dim=(1, 2)) / w.sum(dim=(1, 2)).clamp_min(1e-12)

    def hold(values: Tensor) -> Tensor:
        return _fill_nearest(values, mask)[0]

    return SingleViewSMPLFit(
        joints=hold(X),
        global_orient=hold(matrix_to_axis_angle(rg)),
        body_pose=hold(matrix_to_axis_angle(body).reshape(B, T, -1)),
        latent=hold(latent.detach()),
        transl=hold(transl.detach()),
        betas=start.betas,
        reprojection_error=err,
    )
