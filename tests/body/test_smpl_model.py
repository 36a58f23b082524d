"""Synthetic SMPL-format model, joints-only SMPL evaluation, SMPL -> BODY14 / OpenPose-18 joints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvlift.body.smpl_io import SMPL_KEYS
from mvlift.body.smpl_model import (
    SYNTHETIC_REST_JOINTS,
    SMPLJointModel,
    make_synthetic_smpl,
    smpl_joints_to_skeleton,
)
from mvlift.data.skeletons import BODY14, COCO17, OPENPOSE18, SMPL24


def test_synthetic_model_is_valid_smpl_format(seed):
    m = make_synthetic_smpl(97, num_betas=7, seed=seed)
    v = m["v_template"]
    assert m["synthetic"] is True
    assert v.shape == (97, 3) and m["shapedirs"].shape == (97, 3, 7) and m["posedirs"].shape == (97, 3, 207)
    assert m["J_regressor"].shape == (24, 97) and m["weights"].shape == (97, 24)
    np.testing.assert_allclose(m["J_regressor"].sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(m["weights"].sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (m["J_regressor"] >= 0).all() and (m["weights"] >= 0).all()
    assert m["kintree_table"][0, 1:].tolist() == list(SMPL24.parents[1:])
    assert m["kintree_table"][1].tolist() == list(range(24))
    f = m["f"]
    assert f.shape == (95, 3) and f.min() >= 0 and f.max() < 97
    assert (f[:, 0] != f[:, 1]).all() and (f[:, 1] != f[:, 2]).all() and (f[:, 0] != f[:, 2]).all()
    # regressed rest joints are the designed T-pose (plus its 5 mm noise)
    joints = m["J_regressor"] @ v
    assert np.abs(joints - SYNTHETIC_REST_JOINTS).max() < 0.03
    assert sorted(m["vertex_ids"].values()) == list(range(97 - 21, 97))
    # the face vertices sit around the head joint, in front of it (+Z)
    nose = v[m["vertex_ids"]["nose"]]
    assert nose[2] > joints[15, 2] and np.linalg.norm(nose - joints[15]) < 0.2
    same = make_synthetic_smpl(97, num_betas=7, seed=seed)
    other = make_synthetic_smpl(97, num_betas=7, seed=seed + 1)
    for k in SMPL_KEYS:
        np.testing.assert_array_equal(same[k], m[k])
    assert not np.allclose(other["v_template"], v)


def _random_rotations(b: int, t: int, g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    from smplx.lbs import batch_rodrigues

    aa = 0.6 * torch.randn(b * t * 24, 3, generator=g, dtype=torch.float64)
    return batch_rodrigues(aa).reshape(b, t, 24, 3, 3).to(dtype)


def test_joint_model_matches_smplx_forward(smpl_layer, smpl_layer64, seed):
    g = torch.Generator().manual_seed(seed)
    b, t = 3, 5
    betas = torch.randn(b, 10, generator=g, dtype=torch.float64)
    rot = _random_rotations(b, t, g, torch.float64).requires_grad_(True)
    out = smpl_layer64(
        betas=betas[:, None].expand(b, t, 10).reshape(-1, 10),
        global_orient=rot[:, :, :1].reshape(-1, 1, 3, 3),
        body_pose=rot[:, :, 1:].reshape(-1, 23, 3, 3),
        transl=torch.zeros(b * t, 3, dtype=torch.float64),
        pose2rot=False,
    )
    ref = out.joints[:, :29].reshape(b, t, 29, 3)
    model = SMPLJointModel(smpl_layer64, betas)
    got = model(rot)
    assert got.shape == (b, t, 29, 3) and model.num_joints == 29
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    # gradients w.r.t. the rotations
    w = torch.randn(b, t, 29, 3, generator=g, dtype=torch.float64)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), rot)
    (g_got,) = torch.autograd.grad((model(rot) * w).sum(), rot)
    torch.testing.assert_close(g_got, g_ref, rtol=0, atol=1e-12)
    # float32 layer against the float64 reference
    model32 = SMPLJointModel(smpl_layer, betas.float())
    got32 = model32(rot.detach().float()).double()
    rel = (got32 - ref.detach()).norm() / ref.detach().norm()
    assert rel < 1e-4
    # without face joints: the 24 SMPL joints only
    body_only = SMPLJointModel(smpl_layer64, betas[:, :4], face_joints=False)(rot)
    short = smpl_layer64(
        betas=torch.cat([betas[:, :4], betas.new_zeros(b, 6)], 1)[:, None].expand(b, t, 10).reshape(-1, 10),
        global_orient=rot[:, :, :1].reshape(-1, 1, 3, 3),
        body_pose=rot[:, :, 1:].reshape(-1, 23, 3, 3),
        transl=torch.zeros(b * t, 3, dtype=torch.float64),
        pose2rot=False,
    )
    torch.testing.assert_close(body_only, short.joints[:, :24].reshape(b, t, 24, 3), rtol=0, atol=1e-12)


def test_joint_model_errors(smpl_layer):
    with pytest.raises(ValueError, match="betas"):
        SMPLJointModel(smpl_layer, torch.zeros(2, 11))
    with pytest.raises(TypeError, match="smpl_layer"):
        SMPLJointModel(object(), torch.zeros(2, 10))
    model = SMPLJointModel(smpl_layer, torch.zeros(2, 10))
    with pytest.raises(ValueError, match=r"rot_mats: expected shape \(2, T, 24, 3, 3\)"):
        model(torch.eye(3).expand(3, 4, 24, 3, 3))


def test_smpl_joints_to_skeleton(seed):
    g = torch.Generator().manual_seed(seed)
    j = torch.randn(4, 45, 3, generator=g)
    body = smpl_joints_to_skeleton(j, BODY14)
    assert body.shape == (4, 14, 3)
    n = SMPL24.joint_names
    torch.testing.assert_close(body[:, BODY14.index("head")], j[:, n.index("head")])
    torch.testing.assert_close(
        body[:, BODY14.index("neck")],
        0.5 * (j[:, n.index("left_shoulder")] + j[:, n.index("right_shoulder")]),
    )
    torch.testing.assert_close(body[:, BODY14.index("left_knee")], j[:, n.index("left_knee")])
    op = smpl_joints_to_skeleton(j, OPENPOSE18)
    assert op.shape == (4, 18, 3)
    for name, k in (("nose", 24), ("right_eye", 25), ("left_eye", 26), ("right_ear", 27), ("left_ear", 28)):
        torch.testing.assert_close(op[:, OPENPOSE18.index(name)], j[:, k])
    torch.testing.assert_close(op[:, 1:14], body[:, 1:14])
    torch.testing.assert_close(smpl_joints_to_skeleton(j, SMPL24), j[:, :24])
    np.testing.assert_allclose(smpl_joints_to_skeleton(j.numpy(), OPENPOSE18), op.numpy())
    with pytest.raises(ValueError, match="N >= 29"):
        smpl_joints_to_skeleton(j[:, :24], OPENPOSE18)
    with pytest.raises(ValueError, match="coco17"):
        smpl_joints_to_skeleton(j, COCO17)
    with pytest.raises(ValueError, match=r"\(\.\.\., N >= 24, 3\)"):
        smpl_joints_to_skeleton(j[..., :2], BODY14)
    with pytest.raises(TypeError, match="skeleton"):
        smpl_joints_to_skeleton(j, "body14")
