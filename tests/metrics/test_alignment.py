"""Facing, rotations about the vertical and MVLift's evaluation alignment."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import mvlift.metrics as M


def _body(gen: torch.Generator, t: int = 8) -> torch.Tensor:
    """A rough upright 14-joint OpenPose-layout body facing +Z (left hip at +X), wobbling a little."""
    base = torch.tensor(
        [
            [0.0, 1.70, 0.05],  # head
            [0.0, 1.50, 0.0],  # neck
            [-0.20, 1.45, 0.0],  # r shoulder
            [-0.25, 1.15, 0.05],  # r elbow
            [-0.25, 0.90, 0.10],  # r wrist
            [0.20, 1.45, 0.0],  # l shoulder
            [0.25, 1.15, 0.05],  # l elbow
            [0.25, 0.90, 0.10],  # l wrist
            [-0.10, 0.95, 0.0],  # r hip
            [-0.10, 0.50, 0.05],  # r knee
            [-0.10, 0.08, 0.0],  # r ankle
            [0.10, 0.95, 0.0],  # l hip
            [0.10, 0.50, 0.05],  # l knee
            [0.10, 0.08, 0.0],  # l ankle
        ],
        dtype=torch.float64,
    )
    seq = base + 0.02 * torch.randn(t, 14, 3, generator=gen, dtype=torch.float64)
    seq[..., 2] += torch.linspace(0, 1.0, t, dtype=torch.float64)[:, None]  # walks forward
    return seq


def test_facing_of_canonical_pose_is_plus_z():
    # a fixed seed: with 2 cm joint noise the two-hip facing itself is off by > 18 degrees for ~3% of seeds
    gen = torch.Generator().manual_seed(0)
    pose = _body(gen, 1)[0]
    f = M.facing_direction(pose, 11, 8)
    assert f[2] > 0.95 and abs(float(f[1])) < 1e-12
    torch.testing.assert_close(torch.linalg.norm(f), torch.tensor(1.0, dtype=f.dtype))
    # hips and shoulders together
    f2 = M.facing_direction(pose, (11, 5), (8, 2))
    assert f2[2] > 0.95


def test_rotation_about_axis_matches_right_hand_rule():
    R = M.rotation_about_axis(torch.tensor(math.pi / 2, dtype=torch.float64))
    # +90 degrees about +Y takes +Z to +X
    torch.testing.assert_close(
        R @ torch.tensor([0.0, 0, 1], dtype=torch.float64), torch.tensor([1.0, 0, 0], dtype=torch.float64)
    )
    Rn = M.rotation_about_axis(np.array([0.3, -1.1]), (1.0, 2.0, 0.5))
    assert Rn.shape == (2, 3, 3)
    np.testing.assert_allclose(Rn @ Rn.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (2, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(Rn), 1.0)


@pytest.mark.parametrize("angle_deg", [37.0, -150.0, 180.0])
def test_alignment_undoes_a_vertical_rotation_and_translation(seed, angle_deg):
    gen = torch.Generator().manual_seed(seed)
    pred = _body(gen)
    R = M.rotation_about_axis(torch.tensor(math.radians(angle_deg), dtype=torch.float64))
    gt = pred @ R.T + torch.tensor([3.0, 0.4, -2.0], dtype=torch.float64)
    pa, ga = M.align_for_evaluation(pred, gt)
    torch.testing.assert_close(pa, ga, atol=1e-9, rtol=0)
    # floor and origin
    assert float(pa[..., 1].min()) == pytest.approx(0.0, abs=1e-12)
    root0 = pa[0, [8, 11]].mean(0)
    assert float(root0[0]) == pytest.approx(0.0, abs=1e-12) and float(root0[2]) == pytest.approx(
        0.0, abs=1e-12
    )
    assert float(root0[1]) > 0.5  # heights are kept
    # the prediction itself is only translated
    torch.testing.assert_close(pa - pa[0, 0], pred - pred[0, 0])


@pytest.mark.parametrize("facing", ["lstsq", "hips"])
def test_alignment_only_rotates_gt_about_the_vertical(seed, facing):
    gen = torch.Generator().manual_seed(seed)
    pred = _body(gen)
    gt = _body(gen) @ M.rotation_about_axis(torch.tensor(2.0, dtype=torch.float64)).T
    pa, ga = M.align_for_evaluation(pred, gt, facing=facing)
    # per-frame heights relative to the floor are preserved by a vertical-axis rotation
    torch.testing.assert_close(ga[..., 1], gt[..., 1] - gt[..., 1].min())
    # horizontal distances between joints are preserved
    torch.testing.assert_close(torch.cdist(ga[3], ga[3]), torch.cdist(gt[3], gt[3]))
    if facing == "hips":  # the first frames' hip lines now agree
        torch.testing.assert_close(M.facing_direction(pred[0], 11, 8), M.facing_direction(ga[0], 11, 8))
    # whichever rule, applying it again finds nothing left to turn
    yaw = M.facing_yaw(pa, ga, facing=facing)
    assert abs(float(yaw)) < 1e-9


def test_lstsq_yaw_is_the_least_squares_rotation():
    """The closed form against a brute-force search over the angle, on two different bodies (masked)."""
    gen = torch.Generator().manual_seed(4)
    pred, gt = _body(gen, 30), _body(gen, 30) @ M.rotation_about_axis(torch.tensor(-1.1)).double().T
    mask = torch.ones(30, dtype=torch.bool)
    mask[:3] = False
    yaw = float(M.facing_yaw(pred, gt, facing_frames=10, mask=mask))
    g = gt[3:13] - gt[3:13, [8, 11]].mean(1, keepdim=True)
    p = pred[3:13] - pred[3:13, [8, 11]].mean(1, keepdim=True)
    angles = torch.linspace(-math.pi, math.pi, 20001, dtype=torch.float64)
    R = M.rotation_about_axis(angles)  # (A, 3, 3)
    g_h, p_h = g.clone(), p.clone()
    g_h[..., 1] = 0
    p_h[..., 1] = 0
    cost = ((torch.einsum("aij,tkj->atki", R, g_h) - p_h) ** 2).sum(dim=(1, 2, 3))
    assert yaw == pytest.approx(float(angles[cost.argmin()]), abs=1e-3)
    assert abs(yaw - 1.1) < 0.3  # undoes the turn applied to gt (the two bodies differ a little)
    assert float(M.facing_yaw(pred, gt, facing="none")) == 0.0
    nan_outside = pred.clone()
    nan_outside[:3] = float("nan")  # masked frames (e.g. padding) may hold anything
    nan_outside[20:] = float("nan")  # after the window
    assert float(M.facing_yaw(nan_outside, gt, facing_frames=10, mask=mask)) == pytest.approx(yaw, abs=1e-12)
    with pytest.raises(ValueError, match="facing must be one of"):
        M.facing_yaw(pred, gt, facing="hip")
    with pytest.raises(ValueError, match="facing_frames"):
        M.align_for_evaluation(pred, gt, facing_frames=0)


def test_alignment_batched_masked_and_numpy(seed):
    gen = torch.Generator().manual_seed(seed)
    pred = torch.stack([_body(gen), _body(gen)])
    R = M.rotation_about_axis(torch.tensor([0.5, -2.0], dtype=torch.float64))
    gt = torch.einsum("bij,btkj->btki", R, pred) + 1.0
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, :2] = False
    pa, ga = M.align_for_evaluation(pred, gt, mask=mask)
    torch.testing.assert_close(pa, ga, atol=1e-9, rtol=0)
    for i in range(2):
        pi, gi = M.align_for_evaluation(pred[i][mask[i]], gt[i][mask[i]])
        torch.testing.assert_close(pa[i][mask[i]], pi)
        torch.testing.assert_close(ga[i][mask[i]], gi)
    pn, gn = M.align_for_evaluation(pred[0].numpy(), gt[0].numpy())
    assert isinstance(pn, np.ndarray)
    np.testing.assert_allclose(pn, pa[0].numpy(), atol=1e-12)


def test_hip_rule_needs_hips_for_unknown_layouts():
    x = np.random.default_rng(0).normal(size=(3, 24, 3))
    with pytest.raises(ValueError, match="left= and right="):
        M.align_for_evaluation(x, x, facing="hips")
    pa, ga = M.align_for_evaluation(x, x, left=1, right=2, facing="hips")
    np.testing.assert_allclose(pa, ga)
    pa, ga = M.align_for_evaluation(x, x)  # the least-squares yaw needs only the root (joint 0 here)
    np.testing.assert_allclose(pa, ga, atol=1e-12)


def test_hip_indices_from_joint_names():
    class Skel:
        name = "toy"
        joint_names = ("pelvis", "left_hip", "right_hip", "spine")
        root = 0

    assert M.hip_indices(Skel()) == (1, 2)
    Skel.joint_names = ("root", "lhipjoint", "rhipjoint")
    assert M.hip_indices(Skel()) == (1, 2)


def test_defaults_match_the_registered_openpose_layouts():
    from mvlift.data.skeletons import BODY14, OPENPOSE18

    gen = torch.Generator().manual_seed(0)
    for sk in (BODY14, OPENPOSE18):
        a = torch.randn(4, sk.num_joints, 3, generator=gen, dtype=torch.float64)
        b = torch.randn(4, sk.num_joints, 3, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(M.mpjpe(a, b), M.mpjpe(a, b, root=sk))
        assert M.hip_indices(None, sk.num_joints) == M.hip_indices(sk)
