"""Tests of the single-view optimisation baseline (mvlift.baselines.single_view)."""

from __future__ import annotations

import math

import pytest
import torch

from mvlift.baselines import (
    BODY14_BONE_PROPORTIONS,
    SingleViewFitConfig,
    body14_bone_lengths,
    default_camera,
    fit_single_view,
)
from mvlift.data.skeletons import BODY14, Skeleton
from mvlift.geometry import Cameras, random_cameras, ring_cameras
from mvlift.metrics import mpjpe, pa_mpjpe

J = BODY14.num_joints
IDX = BODY14.index


def _lengths_of_subject() -> dict[tuple[str, str], float]:
    """A 1.62 m body whose segments differ from the template by a few percent (left = right; the shoulder
    width stays twice the neck-shoulder distance, as in the motion below)."""
    base = body14_bone_lengths(1.62)
    factor = {
        "head": 1.05,
        "shoulder": 0.96,
        "elbow": 1.03,
        "wrist": 0.97,
        "hip": 1.02,
        "knee": 0.97,
        "ankle": 1.04,
    }
    out = {}
    for (a, b), v in base.items():
        segment = b.split("_")[-1]
        out[(a, b)] = v * factor[segment] if a == "neck" or a.split("_")[0] == b.split("_")[0] else v
    out[("right_shoulder", "left_shoulder")] = 2.0 * out[("neck", "right_shoulder")]
    out[("right_hip", "left_hip")] = base[("right_hip", "left_hip")] * 1.1
    return out


def _rot_y(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float64)


def _marching(lengths: dict[tuple[str, str], float], T: int = 30, yaw: float = 0.0) -> torch.Tensor:
    """BODY14 marching on the spot around (0, 0.9, 0): thighs lift forward, shanks hang back, arms swing
    sideways; the body faces +Z (the default camera) turned by ``yaw`` about the vertical. (T, 14, 3) m."""

    def g(a: str, b: str) -> float:
        return lengths[(a, b)]

    t = torch.arange(T, dtype=torch.float64) / 30.0
    phase = 2.0 * math.pi * 0.8 * t
    zero = torch.zeros_like(t)
    X = torch.zeros(T, J, 3, dtype=torch.float64)
    half_hip, half_sho = g("right_hip", "left_hip") / 2, g("right_shoulder", "left_shoulder") / 2
    torso = math.sqrt(g("neck", "right_hip") ** 2 - half_hip**2)
    pelvis = torch.stack([0.02 * torch.sin(phase), 0.9 + 0.02 * torch.cos(2 * phase), zero], -1)
    neck = pelvis + torch.tensor([0.0, torso, 0.0], dtype=torch.float64)
    X[:, IDX("neck")] = neck
    X[:, IDX("head")] = neck + g("neck", "head") * torch.tensor(
        [0.0, math.cos(0.5), math.sin(0.5)], dtype=torch.float64
    )
    for side, sign, offset in (("right", -1.0, 0.0), ("left", 1.0, math.pi)):
        X[:, IDX(f"{side}_hip")] = pelvis + torch.tensor([sign * half_hip, 0.0, 0.0], dtype=torch.float64)
        X[:, IDX(f"{side}_shoulder")] = neck + torch.tensor([sign * half_sho, 0.0, 0.0], dtype=torch.float64)
        lift = 0.5 - 0.5 * torch.cos(phase + offset)  # 0..1
        hip_flex, knee_flex = 0.7 * lift, 0.15 + 1.1 * lift
        thigh = torch.stack([zero, -torch.cos(hip_flex), torch.sin(hip_flex)], -1)
        shank = torch.stack([zero, -torch.cos(hip_flex - knee_flex), torch.sin(hip_flex - knee_flex)], -1)
        knee = X[:, IDX(f"{side}_hip")] + g(f"{side}_hip", f"{side}_knee") * thigh
        X[:, IDX(f"{side}_knee")] = knee
        X[:, IDX(f"{side}_ankle")] = knee + g(f"{side}_knee", f"{side}_ankle") * shank
        abduct = 0.3 + 0.8 * lift
        upper = torch.stack([sign * torch.sin(abduct), -torch.cos(abduct), zero], -1)
        fore = torch.stack([sign * torch.sin(abduct + 0.6), -torch.cos(abduct + 0.6), zero], -1)
        elbow = X[:, IDX(f"{side}_shoulder")] + g(f"{side}_shoulder", f"{side}_elbow") * upper
        X[:, IDX(f"{side}_elbow")] = elbow
        X[:, IDX(f"{side}_wrist")] = elbow + g(f"{side}_elbow", f"{side}_wrist") * fore
    return X @ _rot_y(yaw).T


def _pair_lengths(
    X: torch.Tensor, lengths: dict[tuple[str, str], float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Measured (..., P) and prior (P,) lengths of the pairs of ``lengths``."""
    a = [IDX(p[0]) for p in lengths]
    b = [IDX(p[1]) for p in lengths]
    measured = (X[..., a, :] - X[..., b, :]).norm(dim=-1)
    return measured, torch.tensor(list(lengths.values()), dtype=X.dtype)


def _reprojection_error(X: torch.Tensor, x2d: torch.Tensor, camera: Cameras) -> torch.Tensor:
    """Per-entry reprojection distance (B, T, J), normalised units; camera batch () or (B,)."""
    proj = camera.project(X, normalized=True)[..., 0, :, :, :]
    return (proj - x2d).norm(dim=-1)


@pytest.fixture(scope="module")
def subject() -> dict[tuple[str, str], float]:
    return _lengths_of_subject()


@pytest.fixture(scope="module")
def camera() -> Cameras:
    return default_camera()


@pytest.fixture(scope="module")
def facing_fits(subject, camera):
    """Fits of the marching body seen from the front and from the back (yaw 0.3 rad and pi + 0.3)."""
    out = {}
    for yaw in (0.3, math.pi + 0.3):
        X = _marching(subject, T=30, yaw=yaw)
        x2d = camera.project(X[None], normalized=True)[:, 0]
        fit = fit_single_view(x2d, BODY14, SingleViewFitConfig(bone_lengths=subject), camera=camera)
        start = fit_single_view(
            x2d, BODY14, SingleViewFitConfig(steps=0, bone_lengths=subject), camera=camera
        )
        out[yaw] = (X, x2d, fit, start)
    return out


def test_the_test_motion_has_the_subject_lengths(subject):
    X = _marching(subject, T=30, yaw=0.7)
    measured, prior = _pair_lengths(X, subject)
    torch.testing.assert_close(measured, prior.expand_as(measured), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------------- quality
@pytest.mark.parametrize("yaw", [0.3, math.pi + 0.3])
def test_fit_reprojects_and_meets_the_prior_lengths(facing_fits, subject, camera, yaw):
    X, x2d, fit, start = facing_fits[yaw]
    assert fit.shape == (1, 30, J, 3) and fit.dtype == torch.float64
    assert float(_reprojection_error(fit, x2d, camera).max()) < 1e-3
    measured, prior = _pair_lengths(fit[0], subject)
    measured0, _ = _pair_lengths(start[0], subject)
    err, err0 = (measured - prior).abs().mean(), (measured0 - prior).abs().mean()
    assert float(err) < 0.005, f"mean bone length error {float(err):.4f} m"
    assert float(err) < 0.2 * float(err0)


@pytest.mark.parametrize("yaw", [0.3, math.pi + 0.3])
def test_fit_beats_the_flat_start_in_3d(facing_fits, yaw):
    X, _, fit, start = facing_fits[yaw]
    fit_err, flat_err = float(mpjpe(fit[0], X)), float(mpjpe(start[0], X))
    assert fit_err < 0.7 * flat_err, f"MPJPE fit {fit_err:.4f} m vs flat start {flat_err:.4f} m"
    assert float(pa_mpjpe(fit[0], X, root_relative=True)) < float(pa_mpjpe(start[0], X, root_relative=True))


@pytest.mark.parametrize("yaw", [0.3, math.pi + 0.3])
def test_facing_prior_bends_the_knees_forward_and_puts_the_nose_in_front(facing_fits, yaw):
    """Measured along the body's true forward direction (front and back view): each fitted knee lies in front
    of its hip-ankle line, and the head is in front of the neck, wherever the truth is clearly so."""
    X, _, fit, _ = facing_fits[yaw]
    forward = _rot_y(yaw) @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)

    def knee_offset(Y: torch.Tensor, side: str) -> torch.Tensor:
        hip, knee, ankle = (Y[:, IDX(f"{side}_{n}")] for n in ("hip", "knee", "ankle"))
        axis = (ankle - hip) / (ankle - hip).norm(dim=-1, keepdim=True)
        rel = knee - hip
        return (rel - (rel * axis).sum(-1, keepdim=True) * axis) @ forward

    offsets = [(knee_offset(X, s), knee_offset(fit[0], s)) for s in ("right", "left")]
    offsets.append(
        (
            (X[:, IDX("head")] - X[:, IDX("neck")]) @ forward,
            (fit[0, :, IDX("head")] - fit[0, :, IDX("neck")]) @ forward,
        )
    )
    for name, (true, got) in zip(("right knee", "left knee", "head"), offsets, strict=True):
        clear = true > 0.03
        assert int(clear.sum()) >= 10
        share = (got[clear] > 0).double().mean()
        assert float(share) >= 0.9, f"{name}: in front in {float(share):.0%} of the frames"


# ---------------------------------------------------------------------------------------------- the start
def test_zero_steps_returns_the_flat_back_projection(subject, camera):
    X = _marching(subject, T=8, yaw=0.5)
    x2d = camera.project(X[None], normalized=True)[:, 0]
    flat = fit_single_view(x2d, BODY14, SingleViewFitConfig(steps=0, scale_start=False, depth=2.5))
    assert float(_reprojection_error(flat, x2d, camera).max()) < 1e-12
    depth = camera.depth(flat)[0, 0]  # (T, J)
    torch.testing.assert_close(depth, torch.full_like(depth, 2.5), rtol=0, atol=1e-12)

    scaled = fit_single_view(x2d, BODY14, SingleViewFitConfig(steps=0, bone_lengths=subject))
    assert float(_reprojection_error(scaled, x2d, camera).max()) < 1e-12
    depth = camera.depth(scaled)[0, 0]
    assert float((depth - depth[:, :1]).abs().max()) < 1e-12  # each frame is a flat cut-out
    measured, prior = _pair_lengths(scaled[0], subject)  # (T, P): least-squares scale per frame
    torch.testing.assert_close((measured * prior).sum(-1) / measured.square().sum(-1), torch.ones(8).double())


# ------------------------------------------------------------------------------- masks and confidences
def test_masked_frames_and_unobserved_joints_are_never_read(subject, camera):
    X = _marching(subject, T=16, yaw=0.4)
    x2d = camera.project(X[None], normalized=True)[:, 0]
    mask = torch.ones(1, 16, dtype=torch.bool)
    mask[0, [0, 7, 15]] = False
    conf = torch.ones(1, 16, J, dtype=torch.float64)
    conf[0, 3:6, IDX("left_wrist")] = 0.0  # occluded for three frames
    conf[0, :, IDX("right_ankle")] = 0.0  # never seen
    conf[0, 9, IDX("head")] = 0.5
    cfg = SingleViewFitConfig(steps=150, bone_lengths=subject)
    clean = fit_single_view(x2d, BODY14, cfg, mask=mask, conf=conf)

    poisoned = x2d.clone()
    poisoned[0, [0, 7, 15]] = float("nan")
    poisoned[0, 3:6, IDX("left_wrist")] = 1e3
    poisoned[0, :, IDX("right_ankle")] = float("nan")
    again = fit_single_view(poisoned, BODY14, cfg, mask=mask, conf=conf)
    assert torch.equal(clean, again)
    assert bool(torch.isfinite(clean).all())
    # masked frames repeat the nearest valid frame
    assert torch.equal(clean[0, 0], clean[0, 1]) and torch.equal(clean[0, 15], clean[0, 14])
    assert torch.equal(clean[0, 7], clean[0, 6])  # tie: the earlier frame
    # the observed entries still reproject; the unobserved joints keep their bone lengths
    err = _reprojection_error(clean, x2d, camera)[0]
    seen = (conf[0] > 0) & mask[0, :, None]
    assert float(err[seen].max()) < 2e-3
    measured, prior = _pair_lengths(clean[0, mask[0]], subject)
    assert float((measured - prior).abs().max()) < 0.02


def test_zero_confidence_everywhere_in_a_sequence_is_an_error(subject):
    x2d = default_camera().project(_marching(subject, T=5)[None], normalized=True)[:, 0].repeat(2, 1, 1, 1)
    conf = torch.ones(2, 5, J, dtype=torch.float64)
    conf[1] = 0.0
    with pytest.raises(ValueError, match=r"sequences \[1\] have no observed joint"):
        fit_single_view(x2d, BODY14, SingleViewFitConfig(steps=1), conf=conf)


# ------------------------------------------------------------------------- batches, cameras, determinism
def test_batch_equals_single_fits_and_is_deterministic(subject):
    motions = torch.stack([_marching(subject, T=12, yaw=y) for y in (0.2, 2.0)])
    cams = random_cameras(
        2,
        azimuth_range=(0.0, 2.0 * math.pi),
        distance_range=(2.5, 4.0),
        target=(0.0, 1.0, 0.0),
        generator=torch.Generator().manual_seed(3),
    )
    x2d = cams.project(motions, normalized=True)[:, 0]  # (2, T, J, 2)
    cfg = SingleViewFitConfig(steps=80, bone_lengths=subject)
    batch = fit_single_view(x2d, BODY14, cfg, camera=cams)
    assert torch.equal(batch, fit_single_view(x2d, BODY14, cfg, camera=cams))
    for b in range(2):
        single = fit_single_view(x2d[b : b + 1], BODY14, cfg, camera=cams[b : b + 1])
        torch.testing.assert_close(single[0], batch[b], rtol=0, atol=1e-9)
    assert float(_reprojection_error(batch, x2d, cams).max()) < 5e-3


def test_default_camera_is_the_ring_camera_zero(subject):
    ring = ring_cameras(1, radius=3.0, height=1.0, look_at=(0.0, 1.0, 0.0))
    cam = default_camera()
    torch.testing.assert_close(cam.P, ring.P)
    torch.testing.assert_close(cam.centers[0], torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64))
    x2d = cam.project(_marching(subject, T=6)[None], normalized=True)[:, 0]
    cfg = SingleViewFitConfig(steps=20)
    assert torch.equal(fit_single_view(x2d, BODY14, cfg), fit_single_view(x2d, BODY14, cfg, camera=cam))


def test_float32_input(subject, camera):
    X = _marching(subject, T=12, yaw=0.3)
    x2d = camera.project(X[None], normalized=True)[:, 0]
    cfg = SingleViewFitConfig(steps=150, bone_lengths=subject)
    out32 = fit_single_view(x2d.float(), BODY14, cfg, camera=camera)
    out64 = fit_single_view(x2d, BODY14, cfg, camera=camera)
    assert out32.dtype == torch.float32
    assert float(_reprojection_error(out32.double(), x2d, camera).max()) < 2e-3
    assert float(mpjpe(out32[0].double(), out64[0])) < 0.01


def test_other_skeleton_keeps_bone_lengths_constant():
    """A joint set without template names: every bone gets the constancy term, no facing prior."""
    chain = Skeleton("chain5", ("a", "b", "c", "d", "e"), (-1, 0, 1, 2, 1), (0,))
    t = torch.arange(20, dtype=torch.float64) / 30.0
    root = torch.stack([0.1 * torch.sin(t), 1.0 + 0.0 * t, 0.2 * torch.cos(t)], -1)
    dirs = []
    for k, rate in enumerate((1.0, 1.7, 2.3, 0.8)):
        ang = rate * t + k
        dirs.append(torch.stack([torch.cos(ang), torch.sin(ang), 0.6 * torch.sin(2 * ang)], -1))
    dirs = [d / d.norm(dim=-1, keepdim=True) for d in dirs]
    a = root
    b = a + 0.3 * dirs[0]
    c = b + 0.25 * dirs[1]
    d = c + 0.2 * dirs[2]
    e = b + 0.15 * dirs[3]
    X = torch.stack([a, b, c, d, e], 1)
    cam = default_camera()
    x2d = cam.project(X[None], normalized=True)[:, 0]
    start = fit_single_view(x2d, chain, SingleViewFitConfig(steps=0))
    fit = fit_single_view(x2d, chain, SingleViewFitConfig(steps=200))
    assert float(_reprojection_error(fit, x2d, cam).max()) < 2e-3

    def spread(Y: torch.Tensor) -> float:
        lengths = torch.stack([(Y[:, c] - Y[:, p]).norm(dim=-1) for c, p in chain.bones], -1)
        return float((lengths.std(dim=0) / lengths.mean(dim=0)).mean())

    assert spread(fit[0]) < 0.5 * spread(start[0])


# -------------------------------------------------------------------------------------- template, config
def test_body14_template():
    lengths = body14_bone_lengths(1.7)
    bones = {frozenset((BODY14.joint_names[c], BODY14.joint_names[p])) for c, p in BODY14.bones}
    assert bones <= {frozenset(k) for k in lengths}
    assert len(lengths) == 15  # 13 bones + shoulder width + hip width
    assert lengths[("right_hip", "right_knee")] == pytest.approx(0.245 * 1.7)
    assert lengths[("neck", "right_shoulder")] * 2 == pytest.approx(
        lengths[("right_shoulder", "left_shoulder")]
    )
    for (a, b), v in lengths.items():  # left / right symmetric
        mirror = (
            a.replace("right", "LEFT").replace("left", "right").replace("LEFT", "left"),
            b.replace("right", "LEFT").replace("left", "right").replace("LEFT", "left"),
        )
        other = lengths.get(mirror, lengths.get(mirror[::-1]))
        assert other == pytest.approx(v)
    # standing height: ankle (0.039 H above the floor) -> knee -> hip -> shoulder line along a vertical line
    torso = math.sqrt(lengths[("neck", "right_hip")] ** 2 - (lengths[("right_hip", "left_hip")] / 2) ** 2)
    shoulder = (
        0.039 * 1.7 + lengths[("right_knee", "right_ankle")] + lengths[("right_hip", "right_knee")] + torso
    )
    assert shoulder == pytest.approx(0.818 * 1.7, rel=1e-3)
    assert body14_bone_lengths(1.5)[("neck", "head")] == pytest.approx(
        BODY14_BONE_PROPORTIONS[("neck", "head")] * 1.5
    )
    with pytest.raises(ValueError, match="height"):
        body14_bone_lengths(-1.0)


def test_template_is_close_to_cmu_subjects(cmu_dir):
    """Scaled to each CMU subject's size, the template is within 20 % of the subject's distances.

    Left out: the head (CMU's is the head top, the template's the nose) and the forearm (CMU's ``radius``
    bone ends 0.6-0.9 of the anatomical forearm before the wrist).
    """
    from mvlift.data.loading import load_mocap
    from mvlift.data.skeletons import CMU31, convert

    skip = {("neck", "head"), ("right_elbow", "right_wrist"), ("left_elbow", "left_wrist")}
    keys = [k for k in BODY14_BONE_PROPORTIONS if k not in skip]
    for trial in ("05_01", "60_01", "61_01", "16_02", "64_01"):
        path = next(cmu_dir.glob(f"asfamc/**/{trial}.amc"))
        X = torch.as_tensor(convert(load_mocap(path, max_frames=1).positions, CMU31, BODY14))[0]
        measured = {k: float((X[IDX(k[0])] - X[IDX(k[1])]).norm()) for k in keys}
        height = sum(measured.values()) / sum(BODY14_BONE_PROPORTIONS[k] for k in keys)
        assert 1.4 < height < 1.8, (trial, height)
        template = body14_bone_lengths(height)
        for k in keys:
            assert abs(measured[k] / template[k] - 1.0) < 0.2, (trial, k, measured[k], template[k])


def test_config_round_trip_and_validation(subject):
    cfg = SingleViewFitConfig(steps=7, bone_lengths=subject, image_size=(640, 480))
    data = cfg.to_dict()
    assert data["bone_lengths"]["right_hip-right_knee"] == pytest.approx(subject[("right_hip", "right_knee")])
    again = SingleViewFitConfig.from_dict(data)
    assert again == cfg
    assert SingleViewFitConfig.from_dict(SingleViewFitConfig().to_dict()) == SingleViewFitConfig()
    bad = [
        (dict(steps=-1), ValueError, "steps"),
        (dict(steps=1.5), ValueError, "steps"),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(bone_weight=-1.0), ValueError, "bone_weight"),
        (dict(smooth_weight=float("nan")), TypeError, "smooth_weight"),
        (dict(final_lr_fraction=0.0), ValueError, "final_lr_fraction"),
        (dict(depth=-3.0), ValueError, "depth"),
        (dict(image_size=(640,)), ValueError, "image_size"),
        (dict(multi_start=1), TypeError, "multi_start"),
        (dict(bone_lengths=[0.3]), TypeError, "bone_lengths"),
        (dict(bone_lengths={"neck": 0.3}), TypeError, "pairs"),
        (dict(bone_lengths={("neck", "head"): -0.1}), ValueError, "> 0"),
        (dict(bone_lengths={("neck", "head"): 0.1, ("head", "neck"): 0.2}), ValueError, "twice"),
    ]
    for kwargs, exc, match in bad:
        with pytest.raises(exc, match=match):
            SingleViewFitConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown SingleViewFitConfig fields"):
        SingleViewFitConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="joint_a-joint_b"):
        SingleViewFitConfig.from_dict({"bone_lengths": {"a-b-c": 0.3}})


# -------------------------------------------------------------------------------------------- bad inputs
def test_bad_inputs_raise_clear_errors(subject):
    cam = default_camera()
    x2d = cam.project(_marching(subject, T=4)[None], normalized=True)[:, 0]
    cfg = SingleViewFitConfig(steps=1)
    two_views = ring_cameras(2)
    cases = [
        (dict(x2d=x2d.numpy()), TypeError, "x2d must be a torch.Tensor"),
        (dict(x2d=x2d[..., :1]), ValueError, r"x2d must have shape \(B, T, 14, 2\)"),
        (dict(x2d=x2d[0]), ValueError, "x2d must have shape"),
        (dict(x2d=x2d[:, :, :5]), ValueError, "for skeleton 'body14'"),
        (dict(x2d=x2d.long()), TypeError, "floating-point"),
        (dict(x2d=x2d[:, :0]), ValueError, "at least one"),
        (dict(skeleton="body14"), TypeError, "skeleton must be"),
        (dict(config={"steps": 1}), TypeError, "config must be"),
        (dict(mask=torch.ones(1, 3, dtype=torch.bool)), ValueError, r"mask must have shape \(B, T\)"),
        (dict(mask=torch.ones(1, 4)), TypeError, "mask must be a bool"),
        (dict(mask=torch.zeros(1, 4, dtype=torch.bool)), ValueError, "no observed joint"),
        (dict(conf=torch.ones(1, 4, 13, dtype=torch.float64)), ValueError, "conf must have shape"),
        (dict(conf=-torch.ones(1, 4, J, dtype=torch.float64)), ValueError, "conf must be finite and >= 0"),
        (dict(conf=torch.ones(1, 4, J, dtype=torch.long)), TypeError, "conf must be a floating"),
        (dict(camera=cam.P), TypeError, "camera must be a mvlift.geometry.Cameras"),
        (dict(camera=two_views), ValueError, "exactly one view"),
        (dict(camera=random_cameras(3)), ValueError, "batch shape"),
        (dict(config=SingleViewFitConfig(bone_lengths={("neck", "nose"): 0.1})), ValueError, "'nose'"),
    ]
    for override, exc, match in cases:
        kwargs = dict(x2d=x2d, skeleton=BODY14, config=cfg) | override
        x, skel, config = kwargs.pop("x2d"), kwargs.pop("skeleton"), kwargs.pop("config")
        with pytest.raises(exc, match=match):
            fit_single_view(x, skel, config, **kwargs)
    poisoned = x2d.clone()
    poisoned[0, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="x2d must be finite wherever a joint is observed"):
        fit_single_view(poisoned, BODY14, cfg)
