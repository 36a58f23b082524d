"""Skeleton constants, helpers and joint-set conversions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mvlift.data.asf_amc import load_amc
from mvlift.data.motion import Motion, Sequence2D
from mvlift.data.skeletons import (
    BODY14,
    CMU31,
    COCO17,
    H36M17,
    OPENPOSE18,
    SKELETONS,
    SMPL24,
    Skeleton,
    available_mappings,
    convert,
    convert_confidence,
    get_skeleton,
)

OPENPOSE18_ORDER = (  # METHOD.md
    "nose",
    "neck",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_eye",
    "left_eye",
    "right_ear",
    "left_ear",
)
COCO17_ORDER = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)


def test_constants():
    assert OPENPOSE18.joint_names == OPENPOSE18_ORDER
    assert COCO17.joint_names == COCO17_ORDER
    assert BODY14.joint_names == ("head",) + OPENPOSE18_ORDER[1:14]
    assert [s.num_joints for s in (OPENPOSE18, COCO17, SMPL24, H36M17, CMU31, BODY14)] == [
        18,
        17,
        24,
        17,
        31,
        14,
    ]
    assert OPENPOSE18.root == (OPENPOSE18.index("right_hip"), OPENPOSE18.index("left_hip"))
    assert BODY14.root == (8, 11)
    assert CMU31.joint_names[0] == "root" and CMU31.root == (0,)
    assert SMPL24.parents[:4] == (-1, 0, 0, 0) and SMPL24.parents[15] == SMPL24.index("neck")
    assert H36M17.parents[H36M17.index("left_wrist")] == H36M17.index("left_elbow")
    for skel in SKELETONS.values():
        assert get_skeleton(skel.name) is skel
        assert len(skel.bones) == skel.num_joints - 1
        assert all(p < skel.num_joints and c != p for c, p in skel.bones)
    with pytest.raises(ValueError, match="unknown skeleton 'nope'"):
        get_skeleton("nope")
    with pytest.raises(ValueError, match="has no joint 'tail'"):
        OPENPOSE18.index("tail")


def test_cmu31_matches_asf_bone_order(cmu_dir: Path):
    text = (cmu_dir / "asfamc" / "05.asf").read_text().split()
    names = [text[i + 1] for i, t in enumerate(text) if t == "name"]  # bone names (":name" is the header)
    assert CMU31.joint_names == ("root", *names)


def test_root_position_numpy_and_torch(seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, 5, 18, 3))
    expected = 0.5 * (x[..., 8, :] + x[..., 11, :])
    np.testing.assert_allclose(OPENPOSE18.root_position(x), expected, atol=1e-15)
    xt = torch.tensor(x[..., :2], requires_grad=True)
    r = OPENPOSE18.root_position(xt)
    assert r.shape == (3, 5, 2)
    np.testing.assert_allclose(r.detach().numpy(), expected[..., :2], atol=1e-15)
    r.sum().backward()
    assert xt.grad[..., 8, :].eq(0.5).all() and xt.grad[..., 0, :].eq(0).all()
    with pytest.raises(ValueError, match=r"expected shape \(\.\.\., 18, D\)"):
        OPENPOSE18.root_position(x[..., :17, :])


@pytest.mark.parametrize("skel", [OPENPOSE18, COCO17, SMPL24, H36M17, CMU31, BODY14], ids=lambda s: s.name)
def test_left_right_swap(skel: Skeleton):
    swap = skel.left_right_swap
    names = skel.joint_names
    assert sorted(swap) == list(range(skel.num_joints))
    assert all(swap[swap[i]] == i for i in range(skel.num_joints))
    moved = 0
    for i, n in enumerate(names):
        m = names[swap[i]]
        if n.startswith("left_"):
            assert m == "right_" + n[5:]
        elif n.startswith("right_"):
            assert m == "left_" + n[6:]
        elif skel is CMU31 and n[0] in "lr" and n not in ("root", "lowerback", "lowerneck"):
            assert m == ("r" if n[0] == "l" else "l") + n[1:]
        else:
            assert m == n
        moved += m != n
    assert moved >= 12


def test_swap_flips_a_mirrored_pose(seed: int):
    """Mirroring x -> -x and applying the swap maps a symmetric pose onto itself."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(14, 3))
    swap = np.array(BODY14.left_right_swap)
    sym = x.copy()
    for i, j in enumerate(swap):  # make the pose mirror-symmetric
        if i < j:
            sym[j] = sym[i] * [-1, 1, 1]
        elif i == j:
            sym[i, 0] = 0.0
    flipped = (sym * [-1, 1, 1])[swap]
    np.testing.assert_allclose(flipped, sym, atol=1e-15)


def test_coco_to_openpose(seed: int):
    rng = np.random.default_rng(seed)
    coco = rng.normal(size=(4, 17, 2))
    op = convert(coco, COCO17, OPENPOSE18)
    assert op.shape == (4, 18, 2)
    for i, n in enumerate(OPENPOSE18.joint_names):
        if n == "neck":
            expected = 0.5 * (
                coco[:, COCO17.index("left_shoulder")] + coco[:, COCO17.index("right_shoulder")]
            )
        else:
            expected = coco[:, COCO17.index(n)]
        np.testing.assert_allclose(op[:, i], expected, atol=1e-15)


def test_coco_to_body14_is_composition(seed: int):
    rng = np.random.default_rng(seed)
    coco = rng.normal(size=(6, 17, 3))
    direct = convert(coco, COCO17, BODY14)
    via = convert(convert(coco, COCO17, OPENPOSE18), OPENPOSE18, BODY14)
    np.testing.assert_allclose(direct, via, atol=1e-14)
    np.testing.assert_allclose(direct[:, 0], coco[:, 0], atol=1e-15)  # head = nose


@pytest.mark.parametrize("src", [SMPL24, H36M17], ids=lambda s: s.name)
def test_smpl_h36m_to_body14(src: Skeleton, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 3, src.num_joints, 3))
    out = convert(x, src, BODY14)
    head = "head" if src is SMPL24 else "nose"
    np.testing.assert_allclose(out[..., 0, :], x[..., src.index(head), :])
    mid = 0.5 * (x[..., src.index("left_shoulder"), :] + x[..., src.index("right_shoulder"), :])
    np.testing.assert_allclose(out[..., 1, :], mid, atol=1e-15)
    for i, n in enumerate(BODY14.joint_names[2:], start=2):
        np.testing.assert_allclose(out[..., i, :], x[..., src.index(n), :])


def test_cmu_to_body14_definitions(cmu_dir: Path):
    d = cmu_dir / "asfamc"
    motion = load_amc(d / "60_01.amc", d / "60.asf", max_frames=40)
    p = motion.positions
    body = convert(p, CMU31, BODY14)
    c = CMU31.index
    expected = {
        "head": p[:, c("head")],
        "right_shoulder": p[:, c("rclavicle")],
        "left_shoulder": p[:, c("lclavicle")],
        "right_elbow": p[:, c("rhumerus")],
        "left_elbow": p[:, c("lhumerus")],
        "right_wrist": p[:, c("rradius")],
        "left_wrist": p[:, c("lradius")],
        "right_hip": p[:, c("rhipjoint")],
        "left_hip": p[:, c("lhipjoint")],
        "right_knee": p[:, c("rfemur")],
        "left_knee": p[:, c("lfemur")],
        "right_ankle": p[:, c("rtibia")],
        "left_ankle": p[:, c("ltibia")],
        "neck": 0.5 * (p[:, c("rclavicle")] + p[:, c("lclavicle")]),
    }
    for n, e in expected.items():
        np.testing.assert_allclose(body[:, BODY14.index(n)], e, atol=1e-15)
    # the definition's justification: the neck (shoulder midpoint) lies between the thorax and lowerneck ends
    neck = body[:, 1]
    assert np.all(p[:, c("thorax"), 1] < neck[:, 1]) and np.all(neck[:, 1] < p[:, c("lowerneck"), 1])
    # the CMU humerus starts where the clavicle ends (shoulder) and the femur where the hipjoint ends (hip)
    lengths = np.linalg.norm(body[:, 3] - body[:, 2], axis=-1)  # right upper arm
    assert 0.2 < lengths.mean() < 0.4


def test_unknown_mapping_lists_available():
    assert ("coco17", "openpose18") in available_mappings()
    assert ("cmu31", "body14") in available_mappings()
    with pytest.raises(
        ValueError, match=r"no joint mapping from 'body14' to 'coco17'; available: .*coco17->openpose18"
    ):
        convert(np.zeros((14, 2)), BODY14, COCO17)
    with pytest.raises(ValueError, match=r"expected shape \(\.\.\., 17, D\)"):
        convert(np.ones((18, 2)), COCO17, BODY14)


def test_identity_and_nan_locality(seed: int):
    rng = np.random.default_rng(seed)
    coco = rng.normal(size=(5, 17, 2))
    same = convert(coco, COCO17, COCO17)
    np.testing.assert_array_equal(same, coco)
    assert same is not coco
    coco[:, COCO17.index("left_eye")] = np.nan
    coco[2, COCO17.index("left_shoulder")] = np.nan
    body = convert(coco, COCO17, BODY14)
    bad = np.isnan(body).any(-1)
    assert bad.sum() == 2  # only neck and left_shoulder of frame 2
    assert bad[2, BODY14.index("neck")] and bad[2, BODY14.index("left_shoulder")]


def test_convert_torch_and_confidence(seed: int):
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.normal(size=(3, 17, 2)), requires_grad=True)
    out = convert(x, COCO17, BODY14)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 14, 2) and out.dtype == torch.float64
    np.testing.assert_allclose(out.detach().numpy(), convert(x.detach().numpy(), COCO17, BODY14), atol=1e-15)
    out[:, 1].sum().backward()  # neck = mean of the two shoulders
    g = x.grad
    assert g[:, COCO17.index("left_shoulder")].eq(0.5).all() and g[:, 0].eq(0).all()
    conf = rng.uniform(size=(3, 17))
    c = convert_confidence(conf, COCO17, BODY14)
    np.testing.assert_allclose(c[:, 1], np.minimum(conf[:, 5], conf[:, 6]))
    np.testing.assert_allclose(c[:, 0], conf[:, 0])
    ct = convert_confidence(torch.tensor(conf), COCO17, BODY14)
    np.testing.assert_allclose(ct.numpy(), c)


def test_skeleton_validation():
    with pytest.raises(ValueError, match="exactly one joint must have parent -1"):
        Skeleton("bad", ("a", "b"), (-1, -1), (0,))
    with pytest.raises(ValueError, match="cycle"):
        Skeleton("bad", ("a", "b", "c"), (-1, 2, 1), (0,))
    with pytest.raises(ValueError, match="root indices"):
        Skeleton("bad", ("a", "b"), (-1, 0), (2,))
    with pytest.raises(ValueError, match="not unique"):
        Skeleton("bad", ("a", "a"), (-1, 0), (0,))


def test_motion_and_sequence_to_skeleton(seed: int):
    rng = np.random.default_rng(seed)
    coco = rng.normal(size=(4, 17, 3))
    m = Motion(coco, 60.0, COCO17.joint_names, COCO17.parents, COCO17, "synthetic:test")
    b = m.to_skeleton(BODY14)
    assert b.skeleton is BODY14 and b.fps == 60.0 and b.parents == BODY14.parents
    np.testing.assert_allclose(b.positions, convert(coco, COCO17, BODY14))
    bare = Motion(coco, 60.0, COCO17.joint_names, COCO17.parents, None, "synthetic:bare")
    with pytest.raises(ValueError, match="no registered skeleton"):
        bare.to_skeleton(BODY14)
    seq = Sequence2D(coco[..., :2], rng.uniform(size=(4, 17)), 30.0, COCO17.joint_names, (640, 480), COCO17)
    s2 = seq.to_skeleton(OPENPOSE18)
    assert s2.keypoints.shape == (4, 18, 2) and s2.confidence.shape == (4, 18) and s2.image_size == (640, 480)
    with pytest.raises(ValueError, match=r"Motion.positions: expected shape \(T, J, 3\)"):
        Motion(coco[..., :2], 60.0, COCO17.joint_names, COCO17.parents)
    with pytest.raises(ValueError, match="fps"):
        Motion(coco, 0.0, COCO17.joint_names, COCO17.parents)
