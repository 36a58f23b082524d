"""evaluate_sequence (the paper's protocol, mm) and MetricTable."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import mvlift.metrics as M


def _walk(rng: np.random.Generator, t: int = 12) -> np.ndarray:
    pose = rng.normal(scale=0.3, size=(14, 3)) + np.array([0, 1.0, 0])
    pose[[8, 11]] = [[-0.1, 0.9, 0.0], [0.1, 0.9, 0.0]]
    seq = pose + 0.01 * rng.normal(size=(t, 14, 3))
    seq[..., 2] += np.linspace(0, 1.2, t)[:, None]
    return seq


def test_perfect_prediction_up_to_vertical_rotation_scores_zero():
    rng = np.random.default_rng(1)
    gt = _walk(rng)
    c, s = math.cos(1.0), math.sin(1.0)
    R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    pred = gt @ R.T + np.array([2.0, 0.3, 1.0])
    out = M.evaluate_sequence(pred, gt)
    assert set(out) == {
        "t_root",
        "t_root_paper",
        "mpjpe",
        "pa_mpjpe",
        "pa_mpjpe_global",
        "global_mpjpe",
        "bone_ratio",
    }
    # the limbs of this toy walk wobble: the ratio is the prediction's own, unchanged by the rigid motion
    assert out.pop("bone_ratio") == pytest.approx(float(M.bone_length_ratio(gt)), abs=1e-12)
    for k, v in out.items():
        assert isinstance(v, float)
        assert v == pytest.approx(0.0, abs=1e-6), k


def test_units_are_millimetres_and_j2d_in_pixels():
    rng = np.random.default_rng(2)
    gt = _walk(rng)
    pred = gt.copy()
    pred[1:, :, 0] += 0.01  # 1 cm drift after the first frame
    out = M.evaluate_sequence(torch.as_tensor(pred), torch.as_tensor(gt))
    assert out["t_root"] == pytest.approx(10.0 * 11 / 12, rel=1e-6)
    assert out["mpjpe"] == pytest.approx(0.0, abs=1e-6)

    K = np.array([[1000.0, 0, 960], [0, 1000.0, 540], [0, 0, 1]])
    P = K @ np.hstack([np.eye(3), np.array([[0.0], [-1.0], [4.0]])])
    xh = gt @ P[:, :3].T + P[:, 3]
    uv = xh[..., :2] / xh[..., 2:]
    out = M.evaluate_sequence(gt, gt, input_2d=uv + [6.0, 8.0], camera=P)
    assert out["j2d"] == pytest.approx(10.0)


def test_skeleton_supplies_root_hips_and_bones():
    class Skel:
        name = "toy14"
        joint_names = tuple(f"j{i}" for i in range(14))
        parents = (-1, 0, 1, 2, 3, 1, 5, 6, 1, 8, 9, 1, 11, 12)
        root = (8, 11)

    Skel.joint_names = tuple(
        "right_hip" if i == 8 else "left_hip" if i == 11 else n for i, n in enumerate(Skel.joint_names)
    )
    rng = np.random.default_rng(3)
    gt = _walk(rng)
    out = M.evaluate_sequence(gt, gt, skeleton=Skel())
    assert out["bone_std"] == pytest.approx(float(M.bone_length_consistency(gt, Skel.parents)) * 1000)


def test_metric_table_means_and_formats():
    table = M.MetricTable()
    table.add({"mpjpe": 100.0, "t_root": 50.0}, name="a")
    table.add({"mpjpe": np.float32(120.0), "t_root": torch.tensor(70.0), "j2d": 4.0}, name="b")
    assert table.mean() == {"mpjpe": 110.0, "t_root": 60.0, "j2d": 4.0}
    assert table.count() == {"mpjpe": 2, "t_root": 2, "j2d": 1}
    md = table.to_markdown(per_sequence=True).splitlines()
    assert md[0] == "| sequence | mpjpe (mm) | t_root (mm) | j2d (px) |"
    assert md[2] == "| a | 100.0 | 50.0 | - |"
    assert md[-1] == "| mean (n=2) | 110.0 | 60.0 | 4.0 |"
    text = table.to_text()
    assert "110.0" in text and "mean (n=2)" in text
    with pytest.raises(ValueError, match="NaN"):
        table.add({"mpjpe": float("nan")})
    with pytest.raises(ValueError, match="empty"):
        M.MetricTable().to_markdown()


def test_procedural_motion_with_registered_skeleton():
    from mvlift.data.procedural import QUADRUPED17, generate_motion
    from mvlift.data.skeletons import BODY14

    for skel, kind in ((BODY14, "walk"), (QUADRUPED17, "trot")):
        gt = generate_motion(kind, 60, 30, seed=2, skeleton=skel.name).positions
        c, s = math.cos(-2.0), math.sin(-2.0)
        R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
        pred = gt @ R.T + np.array([5.0, 0.2, -3.0])
        out = M.evaluate_sequence(pred, gt, skeleton=skel)
        assert out.pop("bone_ratio", 1.0) == pytest.approx(1.0, abs=1e-9)  # rigid limbs (BODY14 only)
        assert max(out.values()) < 1e-6  # bone_std included: procedural bones are rigid
        noisy = pred + np.random.default_rng(0).normal(scale=0.01, size=pred.shape)
        out = M.evaluate_sequence(noisy, gt, skeleton=skel)
        assert 5.0 < out["mpjpe"] < 25.0 and out["pa_mpjpe"] <= out["mpjpe"] + 1e-9


def test_nan_in_masked_frames_does_not_reach_the_metrics(seed):
    """Lifting leaves NaN in frames it was not given; masked out, they must not turn any metric into NaN or
    an SVD failure, and the figures equal those of the same sequence with finite masked frames."""
    from mvlift.data.skeletons import BODY14
    from mvlift.metrics import evaluate_sequence

    g = torch.Generator().manual_seed(seed)
    gt = torch.randn(20, 14, 3, generator=g, dtype=torch.float64) * 0.3 + torch.tensor([0.0, 1.0, 0.0])
    pred = gt + 0.05 * torch.randn(20, 14, 3, generator=g, dtype=torch.float64)
    mask = torch.ones(20, dtype=torch.bool)
    mask[15:] = False
    clean = evaluate_sequence(pred.clone(), gt, skeleton=BODY14, mask=mask)
    holey = pred.clone()
    holey[15:] = float("nan")
    got = evaluate_sequence(holey, gt, skeleton=BODY14, mask=mask)
    for key in ("mpjpe", "pa_mpjpe", "t_root", "global_mpjpe"):
        assert got[key] == pytest.approx(clean[key], rel=1e-9), key
