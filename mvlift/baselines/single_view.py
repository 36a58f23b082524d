"""Single-view optimisation baseline: SMPLify-style fitting of 3D joint positions to one 2D view.

The baseline that ``mvlift eval`` compares MVLift against (the paper's "SMPLify" row), here on joint
positions with hand-made priors instead of a learned pose prior (the SMPL + VPoser variant, which starts
from this fit, is :mod:`mvlift.baselines.single_view_smpl`). For every sequence, 3D joints are fitted to
the 2D keypoints of one camera by minimising, with Adam,

    E = E_2D + bone_weight E_bone + smooth_weight E_smooth + facing_weight E_facing
        + flatness_weight E_flat + root_depth_weight E_depth

- ``E_2D``: confidence-weighted mean squared reprojection error in the camera's normalised [-1, 1] frame
  (``Cameras.P_normalized``; unitless).
- ``E_bone`` (m^2): mean over valid frames and joint pairs of ``(|X_a - X_b| - L_ab)^2`` for every pair with
  a prior length ``L_ab`` (bone lengths; for BODY14 also the shoulder and hip widths); every tree bone
  without a prior length keeps a constant length instead: ``(l_t - mean_t l)^2`` over the valid frames.
- ``E_smooth`` (m^2): mean over joints and valid frame triples of ``|X[t+1] - 2 X[t] + X[t-1]|^2``.
- ``E_facing`` (m^2), for skeletons with the OpenPose/BODY14 joint names: human knees bend forward and the
  nose is in front of the neck. With the body's forward direction ``f = lateral x up`` (lateral = left
  minus right hips plus left minus right shoulders, up = hip midpoint to shoulder midpoint; held fixed
  within a step), ``d`` = the knee's offset from its hip-ankle line along ``f`` (each knee) and the head's
  offset from the neck along ``f``; the term is the mean of ``relu(facing_margin - d)^2``. It is zero once
  satisfied, and picks the forward solution of the legs' and head's depth ambiguity from the flat start.
- ``E_flat`` (m^2): mean squared camera-depth offset of the joints from their frame's root; a weak pull
  toward the fronto-parallel pose along directions that the other terms leave (nearly) free.
- ``E_depth`` (m^2): mean squared change of the root's camera depth from the start; pins the scale where no
  prior length does.

Parameterisation: each joint is ``X_c = z * ray(x + delta)`` in camera coordinates, with ``x`` its 2D
point (unobserved entries: the nearest frame where the joint is observed; a joint never observed starts
on its parent's track, one bone length behind it), ``delta`` a 2D offset (normalised units, starting at
0) and ``z`` its camera depth (optimised as ``log z``). A depth change never changes the reprojection,
which keeps the problem well conditioned. Both groups move about ``lr`` metres per step at the start (the
offsets' rate is converted at the mean start depth); the rate decays along a cosine to
``lr * final_lr_fraction``.

Start: the flat back-projection of the 2D at ``depth`` metres — a cut-out whose reprojection is exact. With
``scale_start`` each frame's cut-out is then moved along the rays to the depth where its lengths best match
the prior lengths (least squares; the per-frame analogue of SMPLify's similar-triangles depth guess). With
``multi_start`` (and the facing prior active) the fit also runs from the body turned either way about the
vertical (left-side joints ``turn_offset`` metres nearer / farther than the right side) and keeps, per
sequence, the start with the lowest final objective — as SMPLify tries two body orientations.

What a single view leaves open: which way a limb points along the viewing ray and the sign of the torso's
yaw. The bone lengths fix each bone's depth extent, the facing prior the legs and head, the multi-start
the torso when the knees or nose show the facing direction; arms stay ambiguous (a learned
pose prior narrows them: :mod:`mvlift.baselines.single_view_smpl`).

World frame (``docs/conventions.md``): Y up, metres. The default camera is camera 0 of the stage-2/lift
ring: at (0, 1, 3), looking horizontally along -Z at (0, 1, 0), f = 1000 px, 1920 x 1080.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mvlift._fields import checked_fields
from mvlift.data.skeletons import Skeleton
from mvlift.geometry.cameras import Cameras, ring_cameras

__all__ = [
    "BODY14_BONE_PROPORTIONS",
    "body14_bone_lengths",
    "default_camera",
    "SingleViewFitConfig",
    "fit_single_view",
]

BonePair = tuple[str, str]

# fmt: off
BODY14_BONE_PROPORTIONS: dict[BonePair, float] = {
    ("neck", "head"): 0.100,
    ("neck", "right_shoulder"): 0.1295,
    ("right_shoulder", "right_elbow"): 0.186,
    ("right_elbow", "right_wrist"): 0.146,
    ("neck", "left_shoulder"): 0.1295,
    ("left_shoulder", "left_elbow"): 0.186,
    ("left_elbow", "left_wrist"): 0.146,
    ("neck", "right_hip"): 0.2923,
    ("right_hip", "right_knee"): 0.245,
    ("right_knee", "right_ankle"): 0.246,
    ("neck", "left_hip"): 0.2923,
    ("left_hip", "left_knee"): 0.245,
    ("left_knee", "left_ankle"): 0.246,
    ("right_shoulder", "left_shoulder"): 0.259,
    ("right_hip", "left_hip"): 0.100,
}
# fmt: on
"""Adult joint-to-joint distances as fractions of the body height H (BODY14 joint names).

From the segment proportions of Winter (Biomechanics and Motor Control of Human Movement, Fig. 4.1):
shoulder height 0.818 H, hip joint (greater trochanter) 0.530 H, knee 0.285 H, ankle 0.039 H, shoulder
(biacromial) width 0.259 H, upper arm 0.186 H, forearm 0.146 H; so thigh 0.245 H, shank 0.246 H, neck
(the shoulder midpoint, as in BODY14) to shoulder 0.1295 H. The hip joint centres are taken 0.10 H apart,
so neck to hip = sqrt(0.288^2 + 0.05^2) H. ``head`` is the nose as a 2D detector places it (BODY14 puts the
head in the nose's slot): about 0.087 H above the shoulder line and 0.05 H in front, 0.10 H from the neck.
The two width pairs (shoulders, hips) are not tree bones; they keep the shoulder line straight and the
pelvis rigid. Seen on the CMU subjects 05, 16, 60, 61, 64 (1.5-1.65 m): neck-shoulder 0.18-0.22 m, upper
arm 0.26-0.32, thigh 0.36-0.43, shank 0.39-0.45, neck-hip 0.49-0.53, hip width 0.15-0.18 m (CMU's head is
the head top, 0.21-0.24 m above the neck).
"""


def body14_bone_lengths(height: float = 1.7) -> dict[BonePair, float]:
    """Prior joint-pair distances in metres for an adult of ``height`` metres (default 1.7 m).

    ``BODY14_BONE_PROPORTIONS`` times ``height``; keys are pairs of BODY14 joint names (the 13 tree bones,
    the shoulder width and the hip width).
    """
    if not isinstance(height, (int, float)) or isinstance(height, bool) or not height > 0:
        raise ValueError(f"height must be a positive number of metres, got {height!r}")
    return {pair: frac * float(height) for pair, frac in BODY14_BONE_PROPORTIONS.items()}


def default_camera(
    focal: float = 1000.0,
    image_size: tuple[int, int] = (1920, 1080),
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Cameras:
    """Camera 0 of the stage-2/lift ring: ``ring_cameras(1, radius=3.0, height=1.0, look_at=(0, 1, 0))``.

    The camera sits at (0, 1, 3) and looks horizontally along -Z at (0, 1, 0); focal length in pixels,
    image size (W, H), principal point at the centre. Unbatched, one view (K (1, 3, 3)).
    """
    return ring_cameras(
        1,
        radius=3.0,
        height=1.0,
        look_at=(0.0, 1.0, 0.0),
        focal=focal,
        image_size=image_size,
        dtype=dtype,
        device=device,
    )


@dataclass
class SingleViewFitConfig:
    """Settings of :func:`fit_single_view` (module docstring for the objective and the starts).

    Attributes:
        steps: Adam iterations per start (0 returns the start: the flat, scaled back-projection).
        lr: initial learning rate, metres per step (both parameter groups).
        final_lr_fraction: the cosine decay ends at ``lr * final_lr_fraction``.
        bone_weight: weight of the bone term (per m^2); 1e-2 puts a 1 cm length error on a par with a
            reprojection error of 1e-3 normalised units (about 1 px).
        smooth_weight: weight of the squared second temporal difference (per m^2).
        facing_weight: weight of the knee / nose facing prior (per m^2); 0 disables it (and the multi-start).
        facing_margin: the offset ``d`` (metres) beyond which the facing prior is zero.
        flatness_weight: weight of the depth-spread term (per m^2).
        root_depth_weight: weight of the root-depth term (per m^2).
        scale_start: scale each frame's start to the prior lengths.
        multi_start: also start from the body turned either way and keep the lowest objective (3x work).
        turn_offset: depth offset (metres) of the left / right joints in the turned starts.
        depth: camera depth of the flat back-projection, metres.
        focal, image_size: intrinsics of the default camera (pixels, (W, H)); ignored when a camera is
            given to :func:`fit_single_view`.
        bone_lengths: prior distances in metres keyed by pairs of joint names (tree bones or any other
            pairs). None = :func:`body14_bone_lengths` (``template_height``), applied to the pairs whose
            joint names the skeleton has; a dict given here must name joints of the skeleton and replaces
            the template.
        template_height: body height (metres) of the default template.
    """

    steps: int = 300
    lr: float = 1e-2
    final_lr_fraction: float = 1e-2
    bone_weight: float = 1e-2
    smooth_weight: float = 1e-2
    facing_weight: float = 1e-2
    facing_margin: float = 0.02
    root_depth_weight: float = 1e-6
    flatness_weight: float = 1e-5
    scale_start: bool = True
    multi_start: bool = True
    turn_offset: float = 0.1
    depth: float = 3.0
    focal: float = 1000.0
    image_size: tuple[int, int] = (1920, 1080)
    bone_lengths: dict[BonePair, float] | None = field(default=None)
    template_height: float = 1.7

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 0:
            raise ValueError(f"SingleViewFitConfig.steps must be an int >= 0, got {self.steps!r}")
        positive = ("lr", "facing_margin", "turn_offset", "depth", "focal", "template_height")
        non_negative = (
            "bone_weight",
            "smooth_weight",
            "facing_weight",
            "root_depth_weight",
            "flatness_weight",
        )
        for name in positive + non_negative + ("final_lr_fraction",):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise TypeError(f"SingleViewFitConfig.{name} must be a finite number, got {value!r}")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"SingleViewFitConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"SingleViewFitConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < self.final_lr_fraction <= 1:
            raise ValueError(
                f"SingleViewFitConfig.final_lr_fraction must be in (0, 1], got {self.final_lr_fraction!r}"
            )
        size = tuple(self.image_size)
        if len(size) != 2 or any(not isinstance(s, int) or isinstance(s, bool) or s <= 0 for s in size):
            raise ValueError(
                f"SingleViewFitConfig.image_size must be (W, H) positive ints, got {self.image_size!r}"
            )
        self.image_size = size  # type: ignore[assignment]
        for name in ("scale_start", "multi_start"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"SingleViewFitConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.bone_lengths is not None:
            self.bone_lengths = _check_bone_lengths(self.bone_lengths)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML/JSON: bone pairs become ``"a-b"`` strings, the image size a list."""
        out = asdict(self)
        out["image_size"] = list(self.image_size)
        if self.bone_lengths is not None:
            out["bone_lengths"] = {f"{a}-{b}": v for (a, b), v in self.bone_lengths.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SingleViewFitConfig:
        """Inverse of :meth:`to_dict` (``bone_lengths`` keys may be ``"a-b"`` strings or pairs)."""
        kwargs = checked_fields(cls, data, "SingleViewFitConfig fields")
        if "image_size" in kwargs:
            kwargs["image_size"] = tuple(kwargs["image_size"])
        lengths = kwargs.get("bone_lengths")
        if isinstance(lengths, Mapping):
            parsed = {}
            for key, value in lengths.items():
                if isinstance(key, str):
                    parts = key.split("-")
                    if len(parts) != 2:
                        raise ValueError(f"bone_lengths key {key!r} must read 'joint_a-joint_b'")
                    key = (parts[0], parts[1])
                parsed[key] = value
            kwargs["bone_lengths"] = parsed
        return cls(**kwargs)


def _check_bone_lengths(lengths: Any) -> dict[BonePair, float]:
    if not isinstance(lengths, Mapping):
        raise TypeError(
            f"bone_lengths must be a dict {{(joint_a, joint_b): metres}}, got {type(lengths).__name__}"
        )
    out: dict[BonePair, float] = {}
    for key, value in lengths.items():
        if (
            not isinstance(key, tuple)
            or len(key) != 2
            or not all(isinstance(k, str) for k in key)
            or key[0] == key[1]
        ):
            raise TypeError(f"bone_lengths keys must be pairs of two different joint names, got {key!r}")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise TypeError(f"bone_lengths[{key!r}] must be a finite number of metres, got {value!r}")
        if not value > 0:
            raise ValueError(f"bone_lengths[{key!r}] must be > 0 metres, got {value!r}")
        if (key[1], key[0]) in out:
            raise ValueError(f"bone_lengths names the pair {key!r} twice (in both orders)")
        out[key] = float(value)
    return out


# ------------------------------------------------------------------------------------------ input checks
def _check_tensor(x: Any, name: str, shape: tuple[int | None, ...], shape_doc: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape_doc}, got {type(x).__name__}")
    if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape, strict=True)):
        raise ValueError(f"{name} must have shape {shape_doc}, got {tuple(x.shape)}")
    return x


def _check_observations(
    x2d: Any, skeleton: Skeleton, mask: Any, conf: Any
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Validate the 2D input of a single-view fit (:func:`fit_single_view` for the conventions).

    Returns:
        x2d (B, T, J, 2) in float32 / float64 (half precision becomes float32), mask (B, T) bool, conf
        (B, T, J) in x2d's dtype and zero in masked frames, observed (B, T, J) bool (= conf > 0); all on
        x2d's device.
    """
    J = skeleton.num_joints
    x2d = _check_tensor(x2d, "x2d", (None, None, J, 2), f"(B, T, {J}, 2) for skeleton {skeleton.name!r}")
    if not x2d.is_floating_point():
        raise TypeError(f"x2d must be a floating-point tensor, got dtype {x2d.dtype}")
    B, T = x2d.shape[:2]
    if B == 0 or T == 0:
        raise ValueError(f"x2d needs at least one sequence and one frame, got shape {tuple(x2d.shape)}")
    dtype = x2d.dtype if x2d.dtype in (torch.float32, torch.float64) else torch.float32
    device = x2d.device
    x2d = x2d.to(dtype)

    if mask is None:
        mask = torch.ones(B, T, dtype=torch.bool, device=device)
    else:
        mask = _check_tensor(mask, "mask", (B, T), f"(B, T) = ({B}, {T})")
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = valid frame), got dtype {mask.dtype}")
        mask = mask.to(device)
    if conf is None:
        conf = torch.ones(B, T, J, dtype=dtype, device=device)
    else:
        conf = _check_tensor(conf, "conf", (B, T, J), f"(B, T, J) = ({B}, {T}, {J})")
        if not conf.is_floating_point():
            raise TypeError(f"conf must be a floating-point tensor, got dtype {conf.dtype}")
        conf = conf.to(device=device, dtype=dtype)
        if not bool(torch.isfinite(conf).all()) or bool((conf < 0).any()):
            raise ValueError("conf must be finite and >= 0 (0 = unobserved joint)")
    conf = torch.where(mask[..., None], conf, torch.zeros_like(conf))
    observed = conf > 0
    empty = ~observed.flatten(1).any(dim=1)
    if bool(empty.any()):
        raise ValueError(
            f"sequences {torch.nonzero(empty)[:, 0].tolist()} have no observed joint (mask True and "
            "conf > 0) in any frame; nothing to fit"
        )
    if not bool(torch.isfinite(x2d[observed]).all()):
        raise ValueError("x2d must be finite wherever a joint is observed (mask True and conf > 0)")
    return x2d, mask, conf, observed


def _select_camera(camera: Cameras, batch: int, dtype: torch.dtype, device: torch.device) -> Cameras:
    """One view per sequence: returns cameras of batch shape (B,) with V = 1."""
    if not isinstance(camera, Cameras):
        raise TypeError(f"camera must be a mvlift.geometry.Cameras or None, got {type(camera).__name__}")
    if camera.num_views != 1:
        raise ValueError(f"camera must hold exactly one view (V = 1), got V = {camera.num_views}")
    shape = tuple(camera.batch_shape)
    if shape not in ((), (batch,)):
        raise ValueError(
            f"camera must have batch shape () or (B,) = ({batch},) with one view, got batch shape {shape}"
        )
    cam = camera.to(dtype=dtype, device=device)
    K = cam.K.expand(batch, 1, 3, 3) if not shape else cam.K
    R = cam.R.expand(batch, 1, 3, 3) if not shape else cam.R
    t = cam.t.expand(batch, 1, 3) if not shape else cam.t
    return Cameras(K, R, t, cam.image_size)


# ---------------------------------------------------------------------------------------- bone pairs
def _pair_indices(
    skeleton: Skeleton, config: SingleViewFitConfig
) -> tuple[list[int], list[int], list[float]]:
    """Index pairs (a, b) and prior lengths of the prior term."""
    names = skeleton.joint_names
    if config.bone_lengths is None:
        template = body14_bone_lengths(config.template_height)
        items = [(k, v) for k, v in template.items() if k[0] in names and k[1] in names]
    else:
        items = list(config.bone_lengths.items())
        for (a, b), _ in items:
            for n in (a, b):
                if n not in names:
                    raise ValueError(
                        f"bone_lengths names joint {n!r}, which skeleton {skeleton.name!r} lacks; "
                        f"joints: {names}"
                    )
    ia = [names.index(a) for (a, _), _ in items]
    ib = [names.index(b) for (_, b), _ in items]
    return ia, ib, [v for _, v in items]


def _free_bones(skeleton: Skeleton, ia: list[int], ib: list[int]) -> tuple[list[int], list[int]]:
    """Tree bones (child, parent) that no prior pair covers: they get the length-constancy term."""
    covered = {frozenset(p) for p in zip(ia, ib, strict=True)}
    bones = [(c, p) for c, p in skeleton.bones if frozenset((c, p)) not in covered]
    return [c for c, _ in bones], [p for _, p in bones]


_FACING_JOINTS = (
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_shoulder",
    "left_shoulder",
)


def _facing_indices(skeleton: Skeleton) -> dict[str, int] | None:
    """Indices of the joints of the facing prior, or None when the skeleton lacks one of them.

    ``head`` is the joint named "head" or "nose", when the skeleton also has a "neck".
    """
    names = skeleton.joint_names
    if not all(n in names for n in _FACING_JOINTS):
        return None
    out = {n: names.index(n) for n in _FACING_JOINTS}
    head = next((n for n in ("head", "nose") if n in names), None)
    if head is not None and "neck" in names:
        out["head"], out["neck"] = names.index(head), names.index("neck")
    return out


# ------------------------------------------------------------------------------------- initialisation
def _nearest_index(valid: Tensor) -> Tensor:
    """For (..., T) bool, the index of the nearest True along T (ties: the earlier frame); some index
    in [0, T) where a row has no True."""
    T = valid.shape[-1]
    idx = torch.arange(T, device=valid.device).expand_as(valid)
    big = 2 * T + 1
    last = torch.where(valid, idx, torch.full_like(idx, -big)).cummax(dim=-1).values
    nxt = torch.where(valid, idx, torch.full_like(idx, big)).flip(-1).cummin(dim=-1).values.flip(-1)
    use_last = (idx - last) <= (nxt - idx)
    out = torch.where(use_last, last, nxt)
    return out.clamp(0, T - 1)


def _fill_unobserved(
    x2d: Tensor, observed: Tensor, skeleton: Skeleton, prior: dict[tuple[int, int], float], depth: float
) -> tuple[Tensor, Tensor]:
    """Starting 2D points and depths; unobserved entries never read ``x2d``.

    A joint unobserved in a frame takes its 2D point from the nearest frame where it is observed. A joint
    never observed in a sequence starts on its parent's 2D track (the tree root: the mean of the
    observed joints), one bone length (the prior, else 0.1 m) behind it.

    Returns:
        x0 (B, T, J, 2) and z0 (B, T, J).
    """
    B, T, J, _ = x2d.shape
    safe = torch.where(observed[..., None], x2d, torch.zeros_like(x2d))
    near = _nearest_index(observed.permute(0, 2, 1))  # (B, J, T)
    x0 = torch.gather(safe, 1, near.permute(0, 2, 1)[..., None].expand(B, T, J, 2))
    ever = observed.any(dim=1)  # (B, J)
    z0 = torch.full((B, T, J), float(depth), dtype=x2d.dtype, device=x2d.device)
    if bool(ever.all()):
        return x0, z0
    w = ever.to(x2d.dtype)[:, None, :, None]
    mean = (x0 * w).sum(2) / w.sum(2).clamp_min(1.0)  # (B, T, 2)
    order, seen = [], set()
    while len(order) < J:  # parents before children
        for j, p in enumerate(skeleton.parents):
            if j not in seen and (p < 0 or p in seen):
                order.append(j)
                seen.add(j)
    for j in order:
        p = skeleton.parents[j]
        miss = ~ever[:, j]  # (B,)
        if p < 0:
            src_x, src_z, behind = mean, z0[:, :, j], 0.0
        else:
            src_x, src_z = x0[:, :, p], z0[:, :, p]
            behind = prior.get((min(j, p), max(j, p)), 0.1)
        x0[:, :, j] = torch.where(miss[:, None, None], src_x, x0[:, :, j])
        z0[:, :, j] = torch.where(miss[:, None], src_z + behind, z0[:, :, j])
    return x0, z0


# ------------------------------------------------------------------------------------------ objective
@dataclass(frozen=True)
class _Terms:
    """Index sets of the objective: prior pairs (ia, ib, lengths), free bones (fa, fb), facing joints."""

    ia: list[int]
    ib: list[int]
    lengths: Tensor
    fa: list[int]
    fb: list[int]
    facing: dict[str, int] | None
    root: list[int]


def _lengths(X: Tensor, ia: list[int], ib: list[int]) -> Tensor:
    """Distances (N, T, P) between joints ia and ib, with a floor that keeps the gradient finite."""
    d = X[..., ia, :] - X[..., ib, :]
    return (d.square().sum(-1) + 1e-12).sqrt()


def _seq_mean(values: Tensor, weights: Tensor) -> Tensor:
    """Per-sequence weighted mean: values and weights broadcast to (N, ...) -> (N,)."""
    values, weights = torch.broadcast_tensors(values, weights)
    dims = tuple(range(1, values.ndim))
    return (values * weights).sum(dims) / weights.sum(dims).clamp_min(1e-12)


def _facing_offsets(X: Tensor, k: dict[str, int]) -> Tensor:
    """Signed offsets (N, T, 2 or 3), metres, along the body's forward direction (module docstring).

    Knees: the knee's offset from its hip-ankle line; head: the head's offset from the neck. The forward
    direction and the hips / neck are held fixed (detached): the prior moves knees, ankles and the head.
    """
    lateral = (X[..., k["left_hip"], :] - X[..., k["right_hip"], :]) + (
        X[..., k["left_shoulder"], :] - X[..., k["right_shoulder"], :]
    )
    up = 0.5 * (X[..., k["left_shoulder"], :] + X[..., k["right_shoulder"], :]) - 0.5 * (
        X[..., k["left_hip"], :] + X[..., k["right_hip"], :]
    )
    forward = F.normalize(torch.linalg.cross(lateral, up, dim=-1), dim=-1, eps=1e-9).detach()
    offsets = []
    for side in ("right", "left"):
        hip = X[..., k[f"{side}_hip"], :].detach()
        knee, ankle = X[..., k[f"{side}_knee"], :], X[..., k[f"{side}_ankle"], :]
        axis = F.normalize(ankle - hip, dim=-1, eps=1e-9)
        rel = knee - hip
        off = rel - (rel * axis).sum(-1, keepdim=True) * axis  # the knee's offset from the hip-ankle line
        offsets.append((off * forward).sum(-1))
    if "head" in k:
        offsets.append(((X[..., k["head"], :] - X[..., k["neck"], :].detach()) * forward).sum(-1))
    return torch.stack(offsets, dim=-1)


def _energy(
    X: Tensor,
    z: Tensor,
    z_ref: Tensor,
    target: Tensor,
    conf: Tensor,
    fmask: Tensor,
    P_nT: Tensor,
    terms: _Terms,
    config: SingleViewFitConfig,
) -> Tensor:
    """The objective of every sequence, (N,) (module docstring).

    X (N, T, J, 3) world joints, z (N, T, J) their camera depths, z_ref (N, T) the start's root depth.
    """
    xh = torch.cat([X, torch.ones_like(X[..., :1])], dim=-1)
    proj = xh @ P_nT
    uv = proj[..., :2] / proj[..., 2:]
    energy = _seq_mean((uv - target).square().sum(-1), conf)
    fm = fmask[..., None]  # (N, T, 1)
    if config.bone_weight > 0 and (terms.ia or terms.fa):
        parts = []
        if terms.ia:
            parts.append((_lengths(X, terms.ia, terms.ib) - terms.lengths).square())
        if terms.fa:
            lf = _lengths(X, terms.fa, terms.fb)
            mean = (lf * fm).sum(1, keepdim=True) / fm.sum(1, keepdim=True)
            parts.append((lf - mean).square())
        energy = energy + config.bone_weight * _seq_mean(torch.cat(parts, dim=-1), fm)
    if config.smooth_weight > 0 and X.shape[1] >= 3:
        triple = (fmask[:, 2:] * fmask[:, 1:-1] * fmask[:, :-2])[..., None]  # (N, T-2, 1)
        acc = (X[:, 2:] - 2 * X[:, 1:-1] + X[:, :-2]).square().sum(-1)
        energy = energy + config.smooth_weight * _seq_mean(acc, triple)
    if config.facing_weight > 0 and terms.facing is not None:
        d = _facing_offsets(X, terms.facing)
        energy = energy + config.facing_weight * _seq_mean(torch.relu(config.facing_margin - d).square(), fm)
    z_root = z[..., terms.root].mean(-1)  # (N, T)
    if config.root_depth_weight > 0:
        energy = energy + config.root_depth_weight * _seq_mean((z_root - z_ref).square(), fmask)
    if config.flatness_weight > 0:
        energy = energy + config.flatness_weight * _seq_mean((z - z_root[..., None]).square(), fm)
    return energy


def _optimise(
    x0: Tensor,
    z0: Tensor,
    conf: Tensor,
    fmask: Tensor,
    cams: tuple[Tensor, ...],
    terms: _Terms,
    config: SingleViewFitConfig,
) -> tuple[Tensor, Tensor]:
    """Adam from the start (x0, z0). Returns the joints (N, T, J, 3) and the energies (N,).

    The variables are in metres: a depth step ``a`` and a 2D offset ``e``, with ``z = z0 exp(a / d)`` and
    ``x = x0 + e f / d`` per sequence (d: its mean start root depth, f: its mean normalised focal length),
    so one learning rate moves every sequence's joints about ``lr`` metres per step at the start, and
    sequences never share a step size.
    """
    K_invT, P_nT, R_b, t_b, f_n = cams
    z_ref = z0[..., terms.root].mean(-1)  # (N, T)
    d = z_ref.mean(-1)[:, None, None]  # (N, 1, 1)
    a = torch.zeros_like(z0, requires_grad=True)
    e = torch.zeros_like(x0, requires_grad=True)

    def joints() -> tuple[Tensor, Tensor]:
        x = x0 + e * (f_n[:, None, None] / d)[..., None]
        ray = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1) @ K_invT  # (N, T, J, 3), camera frame
        z = z0 * torch.exp(a / d)
        return (ray * (z / ray[..., 2])[..., None] - t_b) @ R_b, z  # world: R^T (X_c - t)

    if config.steps > 0:
        opt = torch.optim.Adam([a, e], lr=config.lr, eps=1e-12)
        frac, steps = config.final_lr_fraction, config.steps
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: frac + (1.0 - frac) * 0.5 * (1.0 + math.cos(math.pi * k / steps))
        )
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            X, z = joints()
            _energy(X, z, z_ref, x0, conf, fmask, P_nT, terms, config).sum().backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        X, z = joints()
        return X, _energy(X, z, z_ref, x0, conf, fmask, P_nT, terms, config)


def _scale_start(x0: Tensor, z0: Tensor, observed: Tensor, K_invT: Tensor, terms: _Terms) -> Tensor:
    """Per-frame depths that scale each frame's flat cut-out to the prior lengths (least squares).

    The cut-out at depths z0 has lengths l_p (p over the prior pairs observed in the frame); scaling the
    frame by ``s = sum l_p L_p / sum l_p^2`` (depth and size scale together along the rays) fits them best.
    Frames without an observed prior pair take the scale of the nearest frame that has one; sequences
    without any keep z0.

    Returns:
        (N, T, J) depths.
    """
    if not terms.ia:
        return z0
    xh = torch.cat([x0, torch.ones_like(x0[..., :1])], dim=-1)
    ray = xh @ K_invT
    Xc = ray * (z0 / ray[..., 2])[..., None]
    l = _lengths(Xc, terms.ia, terms.ib)  # (N, T, P)
    w = (observed[..., terms.ia] & observed[..., terms.ib]).to(l.dtype)
    num, den = (w * l * terms.lengths).sum(-1), (w * l.square()).sum(-1)  # (N, T)
    has = den > 0
    scale = torch.where(has, num / den.clamp_min(1e-12), torch.ones_like(num))
    scale = torch.gather(scale, 1, _nearest_index(has))
    return z0 * scale[..., None]


def _hold_masked(X: Tensor, mask: Tensor) -> Tensor:
    """Frames with mask False repeat the nearest valid frame."""
    near = _nearest_index(mask)  # (B, T)
    return torch.gather(X, 1, near[:, :, None, None].expand_as(X))


def _side_signs(skeleton: Skeleton, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(J,) +1 for joints named left_*, -1 for right_*, 0 otherwise."""
    signs = [
        1.0 if n.startswith("left") else -1.0 if n.startswith("right") else 0.0 for n in skeleton.joint_names
    ]
    return torch.tensor(signs, dtype=dtype, device=device)


# ---------------------------------------------------------------------------------------------- fit
def fit_single_view(
    x2d: Tensor,
    skeleton: Skeleton,
    config: SingleViewFitConfig | None = None,
    *,
    mask: Tensor | None = None,
    conf: Tensor | None = None,
    camera: Cameras | None = None,
) -> Tensor:
    """Fit 3D joint motions to single-view 2D keypoint sequences (module docstring for the objective).

    Sequences are fitted independently (the objective is a sum of per-sequence terms and Adam acts per
    parameter), so a batch gives the same result as fitting its sequences one by one.

    Args:
        x2d: (B, T, J, 2) keypoints in the normalised [-1, 1] frame of the camera (``docs/conventions.md``);
            entries in masked frames or with zero confidence are never read (they may be NaN).
        skeleton: the joint set of ``x2d`` (J joints; its tree gives the bones).
        config: :class:`SingleViewFitConfig` (default settings when None).
        mask: (B, T) bool, True = valid frame. Masked frames enter no term; their output repeats the nearest
            valid frame.
        conf: (B, T, J) keypoint confidences >= 0 weighting the reprojection term; 0 = unobserved (the
            joint is then placed by the bone, smoothness and facing terms alone).
        camera: the view's :class:`~mvlift.geometry.Cameras`: one view, batch shape () (shared) or (B,);
            default: :func:`default_camera` with ``config.focal`` and ``config.image_size``.

    Returns:
        (B, T, J, 3) world joint positions, metres, in x2d's dtype (float32 for half-precision input), on
        x2d's device.

    Raises:
        TypeError / ValueError: malformed inputs (named in the message), or a sequence without any observed
        joint in its valid frames.
    """
    config = SingleViewFitConfig() if config is None else config
    if not isinstance(config, SingleViewFitConfig):
        raise TypeError(f"config must be a SingleViewFitConfig or None, got {type(config).__name__}")
    if not isinstance(skeleton, Skeleton):
        raise TypeError(f"skeleton must be a mvlift.data.skeletons.Skeleton, got {type(skeleton).__name__}")
    x2d, mask, conf, observed = _check_observations(x2d, skeleton, mask, conf)
    B, T, J = x2d.shape[:3]
    dtype, device = x2d.dtype, x2d.device

    if camera is None:
        camera = default_camera(config.focal, config.image_size, dtype=dtype, device=device)
    cam = _select_camera(camera, B, dtype, device)
    K_n = cam.K_normalized[:, 0]  # (B, 3, 3)
    f_n = 0.5 * (K_n[:, 0, 0].abs() + K_n[:, 1, 1].abs())  # (B,)
    cams = (
        torch.linalg.inv(K_n).transpose(-1, -2)[:, None],  # (B, 1, 3, 3): rays = xh @ K^-T
        cam.P_normalized[:, 0].transpose(-1, -2)[:, None],  # (B, 1, 4, 3): projection = Xh @ P^T
        cam.R[:, 0][:, None],  # (B, 1, 3, 3): world = (X_c - t) @ R
        cam.t[:, 0][:, None, None],  # (B, 1, 1, 3)
        f_n,
    )

    ia, ib, lengths = _pair_indices(skeleton, config)
    fa, fb = _free_bones(skeleton, ia, ib)
    terms = _Terms(
        ia,
        ib,
        torch.tensor(lengths, dtype=dtype, device=device),
        fa,
        fb,
        _facing_indices(skeleton),
        list(skeleton.root),
    )
    prior = {(min(a, b), max(a, b)): v for a, b, v in zip(ia, ib, lengths, strict=True)}
    x0, z0 = _fill_unobserved(x2d, observed, skeleton, prior, config.depth)
    if config.scale_start:
        z0 = _scale_start(x0, z0, observed, cams[0], terms)
    fmask = mask.to(dtype)

    if not (
        config.multi_start and config.steps > 0 and terms.facing is not None and config.facing_weight > 0
    ):
        X, _ = _optimise(x0, z0, conf, fmask, cams, terms, config)
        return _hold_masked(X, mask)
    # Three starts: flat, and the body turned either way about the vertical (left side nearer / farther by
    # turn_offset); keep the lowest objective (ties: the earlier start).
    turn = config.turn_offset * _side_signs(skeleton, dtype, device)
    n = 3

    def rep(x: Tensor) -> Tensor:
        return torch.cat([x] * n, dim=0)

    cams_n = tuple(rep(c) for c in cams)
    z_starts = torch.cat([z0, z0 + turn, z0 - turn], dim=0)
    X, energy = _optimise(rep(x0), z_starts, rep(conf), rep(fmask), cams_n, terms, config)
    X, energy = X.view(n, B, T, J, 3), energy.view(n, B)
    X = X[energy.argmin(dim=0), torch.arange(B, device=device)]
    return _hold_masked(X, mask)
