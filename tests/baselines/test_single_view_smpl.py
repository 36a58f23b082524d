"""The single-view SMPL + VPoser baseline (mvlift.baselines.single_view_smpl), on the synthetic SMPL model
and a random VPoser: the ground truth is that model posed by known latents, orientations and translations,
seen by the default camera."""

from __future__ import annotations

import math

import pytest
import torch

from mvlift.baselines import (
    SingleViewFitConfig,
    SingleViewSMPLConfig,
    SingleViewSMPLFit,
    default_camera,
    fit_single_view,
    fit_single_view_smpl,
)
from mvlift.body import body_rotations, decode_rotations, smpl_joints_to_skeleton
from mvlift.data.skeletons import BODY14, COCO17, OPENPOSE18
from mvlift.metrics import mpjpe

B, T = 2, 8


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny fits: one intra-op thread is faster than several on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _ground_truth(layer, vposer, skeleton, seed, *, b=B, t=T):
    """World joints (b, t, J, 3) of the SMPL model in front of the default camera (at (0, 1, 3), looking
    along -Z), facing it within +-43 degrees and turning slowly, feet near the floor, walking a little;
    per-sequence latents ~ N(0, 0.7^2 I) plus a slow random walk. Returns (joints, latents)."""
    from smplx.lbs import batch_rodrigues

    g = torch.Generator().manual_seed(seed)
    z = 0.7 * torch.randn(b, 1, 32, generator=g) + 0.1 * torch.randn(b, t, 32, generator=g).cumsum(dim=1)
    yaw = 1.5 * (torch.rand(b, 1, generator=g) - 0.5) + 0.05 * torch.arange(t)
    axis_angle = torch.zeros(b, t, 3)
    axis_angle[..., 1] = yaw
    orient = batch_rodrigues(axis_angle.reshape(-1, 3)).reshape(b * t, 1, 3, 3)
    body = body_rotations(decode_rotations(vposer, z)).reshape(b * t, 23, 3, 3)
    start = torch.tensor([0.0, 1.15, 0.0]) + torch.randn(b, 1, 3, generator=g) * torch.tensor(
        [0.3, 0.03, 0.3]
    )
    transl = start + 0.02 * torch.arange(t)[None, :, None] * torch.tensor([1.0, 0.0, 0.5])
    with torch.no_grad():
        out = layer(
            betas=torch.zeros(b * t, 10),
            global_orient=orient,
            body_pose=body,
            transl=transl.reshape(-1, 3),
            pose2rot=False,
        )
    joints = smpl_joints_to_skeleton(out.joints, skeleton).reshape(b, t, skeleton.num_joints, 3)
    return joints, z


def _project(X):
    """(B, T, J, 2) normalised projections by the default camera (float32)."""
    return default_camera(dtype=torch.float32).project(X, normalized=True)[0]


def _fast(**kw) -> SingleViewSMPLConfig:
    return SingleViewSMPLConfig(**{"steps": 30, "init_steps": 30, **kw})


# ------------------------------------------------------------------------------------------- accuracy
def test_fit_reprojects_and_recovers_3d_better_than_its_start(smpl_layer, vposer, seed):
    b, t = 4, 6  # one view leaves limbs ambiguous: a single sequence may end in a wrong basin, 4 average it
    gt, _ = _ground_truth(smpl_layer, vposer, BODY14, seed, b=b, t=t)
    x2d = _project(gt)
    joint = fit_single_view(x2d, BODY14)  # the joint-position baseline (default settings)
    start = fit_single_view_smpl(x2d, BODY14, smpl_layer, vposer, SingleViewSMPLConfig(steps=0), init=joint)
    fit = fit_single_view_smpl(x2d, BODY14, smpl_layer, vposer, init=joint)  # default settings
    rep = (_project(fit.joints) - x2d).norm(dim=-1).mean(dim=(1, 2))
    torch.testing.assert_close(fit.reprojection_error, rep, rtol=1e-4, atol=1e-7)
    errors = {"joint": mpjpe(joint, gt), "start": mpjpe(start.joints, gt), "fit": mpjpe(fit.joints, gt)}
    print("reprojection start", start.reprojection_error.tolist(), "fit", fit.reprojection_error.tolist())
    print("MPJPE (m)", {k: v.tolist() for k, v in errors.items()})
    # Measured over 24 random batches (96 sequences): each sequence's reprojection error fell 1.9-8x, the
    # batch mean 3.0-5.9x (to at most 8 px); the batch-mean root-relative MPJPE of the fit was 0.29-0.72 of
    # the start's and 0.22-0.58 of the joint baseline's (single sequences: up to 1.14 of the start's).
    assert (fit.reprojection_error < start.reprojection_error / 1.5).all()
    assert fit.reprojection_error.mean() < start.reprojection_error.mean() / 2.5
    assert errors["fit"].mean() < 0.85 * errors["start"].mean()
    assert errors["fit"].mean() < 0.75 * errors["joint"].mean()


def test_outputs_reproduce_smplx(smpl_layer, vposer, seed):
    gt, _ = _ground_truth(smpl_layer, vposer, BODY14, seed)
    g = torch.Generator().manual_seed(seed)
    init = gt + 0.05 * torch.randn(gt.shape, generator=g)
    fit = fit_single_view_smpl(_project(gt), BODY14, smpl_layer, vposer, _fast(), init=init)
    assert isinstance(fit, SingleViewSMPLFit)
    shapes = {
        "joints": (B, T, 14, 3),
        "global_orient": (B, T, 3),
        "body_pose": (B, T, 69),
        "latent": (B, T, 32),
        "transl": (B, T, 3),
        "betas": (B, 10),
        "reprojection_error": (B,),
    }
    for name, shape in shapes.items():
        value = getattr(fit, name)
        assert value.shape == shape and value.dtype == torch.float32 and torch.isfinite(value).all(), name
    assert (fit.body_pose[..., 63:] == 0).all()  # hands at rest
    out = smpl_layer(
        betas=fit.betas[:, None].expand(B, T, 10).reshape(-1, 10),
        global_orient=fit.global_orient.reshape(-1, 3),
        body_pose=fit.body_pose.reshape(-1, 69),
        transl=fit.transl.reshape(-1, 3),
    )
    joints = smpl_joints_to_skeleton(out.joints, BODY14).reshape(B, T, 14, 3)
    torch.testing.assert_close(joints, fit.joints, rtol=0, atol=1e-5)
    from smplx.lbs import batch_rodrigues

    pose = batch_rodrigues(fit.body_pose[..., :63].reshape(-1, 3)).reshape(B, T, 21, 3, 3)
    torch.testing.assert_close(pose, decode_rotations(vposer, fit.latent), rtol=0, atol=1e-5)
    # given shapes are kept (and padded to the layer's 10 components)
    short = fit_single_view_smpl(
        _project(gt), BODY14, smpl_layer, vposer, _fast(steps=2), init=init, betas=torch.ones(3)
    )
    torch.testing.assert_close(short.betas, torch.cat([torch.ones(B, 3), torch.zeros(B, 7)], dim=1))


# ---------------------------------------------------------------------------------------------- prior
def test_the_latent_prior_is_live(smpl_layer, vposer, seed):
    gt, z = _ground_truth(smpl_layer, vposer, BODY14, seed)
    x2d = _project(gt)
    g = torch.Generator().manual_seed(seed)
    init = gt + 0.03 * torch.randn(gt.shape, generator=g)
    start = fit_single_view_smpl(x2d, BODY14, smpl_layer, vposer, _fast(steps=0, init_steps=60), init=init)
    free = fit_single_view_smpl(
        x2d, BODY14, smpl_layer, vposer, _fast(steps=80, init_steps=60, prior_weight=0.0), init=init
    )
    strong = fit_single_view_smpl(
        x2d, BODY14, smpl_layer, vposer, _fast(steps=80, init_steps=60, prior_weight=1e-4), init=init
    )
    norms = {
        k: f.latent.norm(dim=-1).mean().item()
        for k, f in (("start", start), ("free", free), ("strong", strong))
    }
    print("mean latent norms", norms, "ground truth", z.norm(dim=-1).mean().item())
    assert not torch.allclose(free.latent, start.latent, atol=1e-2)  # the 2D term moves the latents
    assert norms["strong"] < 0.8 * norms["free"]  # the prior pulls them toward 0
    assert norms["strong"] < 0.8 * norms["start"]


# ------------------------------------------------------------------------------- masks and confidences
def test_masked_frames_and_zero_confidence_joints_have_no_influence(smpl_layer, vposer, seed):
    gt, _ = _ground_truth(smpl_layer, vposer, BODY14, seed)
    x2d = _project(gt)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, [0, 5]] = False
    mask[1, T - 1] = False
    conf = torch.ones(B, T, 14)
    conf[0, 2:4, BODY14.index("left_wrist")] = 0.0
    conf[1, :, BODY14.index("right_ankle")] = 0.0
    conf[1, 3, BODY14.index("head")] = 0.5
    cfg = _fast(steps=40)
    joint_cfg = SingleViewFitConfig(steps=30)  # the start runs the joint baseline too
    clean = fit_single_view_smpl(
        x2d, BODY14, smpl_layer, vposer, cfg, mask=mask, conf=conf, joint_config=joint_cfg
    )
    poisoned = x2d.clone()
    poisoned[~mask] = float("nan")
    poisoned[0, 2:4, BODY14.index("left_wrist")] = 5.0
    poisoned[1, :, BODY14.index("right_ankle")] = float("nan")
    again = fit_single_view_smpl(
        poisoned, BODY14, smpl_layer, vposer, cfg, mask=mask, conf=conf, joint_config=joint_cfg
    )
    for name in ("joints", "global_orient", "body_pose", "latent", "transl", "reprojection_error"):
        assert torch.equal(getattr(clean, name), getattr(again, name)), name
        assert torch.isfinite(getattr(clean, name)).all(), name
    # masked frames repeat the nearest valid frame (ties: the earlier one)
    assert torch.equal(clean.joints[0, 0], clean.joints[0, 1])
    assert torch.equal(clean.joints[0, 5], clean.joints[0, 4])
    assert torch.equal(clean.transl[1, T - 1], clean.transl[1, T - 2])
    # a confidence > 0 is read: moving that keypoint changes the fit
    moved = x2d.clone()
    moved[1, 3, BODY14.index("head")] += 0.05
    other = fit_single_view_smpl(
        moved, BODY14, smpl_layer, vposer, cfg, mask=mask, conf=conf, joint_config=joint_cfg
    )
    assert not torch.equal(other.joints, clean.joints)


def test_openpose18_neck_is_ignored_by_default(smpl_layer, vposer, seed):
    gt, _ = _ground_truth(smpl_layer, vposer, OPENPOSE18, seed)
    x2d = _project(gt)
    g = torch.Generator().manual_seed(seed)
    init = gt + 0.03 * torch.randn(gt.shape, generator=g)
    moved = x2d.clone()
    moved[:, :, OPENPOSE18.index("neck")] += 0.1
    a = fit_single_view_smpl(x2d, OPENPOSE18, smpl_layer, vposer, _fast(), init=init)
    b = fit_single_view_smpl(moved, OPENPOSE18, smpl_layer, vposer, _fast(), init=init)
    assert torch.equal(a.joints, b.joints) and a.joints.shape == (B, T, 18, 3)
    c = fit_single_view_smpl(moved, OPENPOSE18, smpl_layer, vposer, _fast(), init=init, ignore_joints=())
    assert not torch.equal(a.joints, c.joints)


# ----------------------------------------------------------------------------------------- bad inputs
def test_bad_inputs_raise_clear_errors(smpl_layer, vposer):
    x2d = torch.zeros(B, T, 14, 2)

    def fit(*args, **kw):
        return fit_single_view_smpl(*args, **{"config": _fast(steps=1, init_steps=1), **kw})

    with pytest.raises(ValueError, match=r"x2d must have shape \(B, T, 14, 2\)"):
        fit(x2d[:, :, :13], BODY14, smpl_layer, vposer)
    with pytest.raises(TypeError, match="x2d must be a torch.Tensor"):
        fit(x2d.numpy(), BODY14, smpl_layer, vposer)
    with pytest.raises(ValueError, match="skeleton: an SMPL fit needs one of"):
        fit(torch.zeros(B, T, 17, 2), COCO17, smpl_layer, vposer)
    with pytest.raises(ValueError, match=r"mask must have shape \(B, T\) = \(2, 8\)"):
        fit(x2d, BODY14, smpl_layer, vposer, mask=torch.ones(B, T + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="conf must be finite and >= 0"):
        fit(x2d, BODY14, smpl_layer, vposer, conf=-torch.ones(B, T, 14))
    with pytest.raises(ValueError, match=r"init must have shape \(B, T, J, 3\) = \(2, 8, 14, 3\)"):
        fit(x2d, BODY14, smpl_layer, vposer, init=torch.zeros(B, T, 14, 2))
    with pytest.raises(TypeError, match="init must be a floating-point tensor"):
        fit(x2d, BODY14, smpl_layer, vposer, init=torch.zeros(B, T, 14, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="smpl_layer: expected an smplx.SMPL layer"):
        fit(x2d, BODY14, object(), vposer)
    with pytest.raises(TypeError, match="vposer: expected a VPoser v1 model"):
        fit(x2d, BODY14, smpl_layer, torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="config must be a SingleViewSMPLConfig"):
        fit(x2d, BODY14, smpl_layer, vposer, config=SingleViewFitConfig())
    with pytest.raises(TypeError, match="joint_config must be a SingleViewFitConfig"):
        fit(x2d, BODY14, smpl_layer, vposer, joint_config=_fast())
    with pytest.raises(ValueError, match="has no joint 'nose'"):
        fit(x2d, BODY14, smpl_layer, vposer, ignore_joints=["nose"])
    with pytest.raises(ValueError, match="betas"):
        fit(x2d, BODY14, smpl_layer, vposer, betas=torch.zeros(3, 10))
    no_joint = torch.ones(B, T, 14)
    no_joint[1] = 0.0
    with pytest.raises(ValueError, match=r"sequences \[1\] have no observed joint"):
        fit(x2d, BODY14, smpl_layer, vposer, conf=no_joint)


def test_missing_model_files_raise(smplx_module, hbp_module, tmp_path):
    from mvlift.body import load_vposer, smplx_layer

    with pytest.raises(FileNotFoundError, match="SMPL model file not found"):
        smplx_layer(tmp_path / "SMPL_NEUTRAL.pkl")
    with pytest.raises(FileNotFoundError, match="weights_path"):
        load_vposer(tmp_path / "vposer_v1_0")


def test_config_round_trip_and_validation():
    cfg = SingleViewSMPLConfig(steps=12, prior_weight=3e-6, image_size=[640, 480])
    assert cfg.image_size == (640, 480)
    assert SingleViewSMPLConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown SingleViewSMPLConfig fields"):
        SingleViewSMPLConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="steps must be an int >= 0"):
        SingleViewSMPLConfig(steps=-1)
    with pytest.raises(ValueError, match="init_steps must be an int >= 0"):
        SingleViewSMPLConfig(init_steps=1.5)
    with pytest.raises(ValueError, match="lr must be > 0"):
        SingleViewSMPLConfig(lr=0.0)
    with pytest.raises(ValueError, match="prior_weight must be >= 0"):
        SingleViewSMPLConfig(prior_weight=-1.0)
    with pytest.raises(TypeError, match="smooth_weight must be a finite number"):
        SingleViewSMPLConfig(smooth_weight=math.inf)
    with pytest.raises(ValueError, match=r"final_lr_fraction must be in \(0, 1\]"):
        SingleViewSMPLConfig(final_lr_fraction=0.0)
    with pytest.raises(ValueError, match="image_size must be"):
        SingleViewSMPLConfig(image_size=(640,))
