"""MPJPE, PA-MPJPE, T_root, global MPJPE, J_2D and bone-length consistency against hand-computed values,
an independent scipy Procrustes oracle, numpy/torch, float32/float64, batching and masks."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

import mvlift.metrics as M


def _rand_seq(gen: torch.Generator, *shape: int, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=dtype)


def _similarity(x: torch.Tensor, seed: int, s: float = 1.7) -> tuple[torch.Tensor, np.ndarray]:
    R = Rotation.random(random_state=seed % (2**31)).as_matrix()
    t = np.array([0.3, -1.2, 2.5])
    return s * x @ torch.as_tensor(R.T, dtype=x.dtype) + torch.as_tensor(t, dtype=x.dtype), R


def test_similarity_copy_gives_zero_pa_mpjpe_but_positive_mpjpe(seed):
    gen = torch.Generator().manual_seed(seed)
    gt = _rand_seq(gen, 9, 14, 3)
    pred, _ = _similarity(gt, seed)
    assert float(M.pa_mpjpe(pred, gt)) < 1e-10
    assert float(M.pa_mpjpe(pred, gt, root_relative=True)) < 1e-10
    assert float(M.mpjpe(pred, gt)) > 0.1


def test_pure_translation(seed):
    gen = torch.Generator().manual_seed(seed)
    gt = _rand_seq(gen, 11, 18, 3)
    shift = _rand_seq(gen, 11, 1, 3)  # a different translation per frame
    pred = gt + shift
    assert float(M.mpjpe(pred, gt)) < 1e-12
    expected = torch.linalg.norm(shift[:, 0] - shift[0, 0], dim=-1).mean()
    torch.testing.assert_close(M.t_root(pred, gt), expected)
    torch.testing.assert_close(M.global_mpjpe(pred, gt), expected)
    # a constant translation vanishes after first-frame alignment
    assert float(M.t_root(gt + shift[0], gt)) < 1e-12
    assert float(M.global_mpjpe(gt + shift[0], gt)) < 1e-12


def test_hand_computed_small_example():
    # 2 frames, 3 joints, root = joint 0.
    gt = np.array(
        [
            [[0, 0, 0], [1, 0, 0], [0, 1, 0]],
            [[1, 0, 0], [2, 0, 0], [1, 1, 0]],
        ],
        dtype=np.float64,
    )
    pred = gt.copy()
    pred[0, 1] += [0, 0, 2]  # frame 0: joint 1 off by 2
    pred[1] += [0, 3, 4]  # frame 1: whole pose shifted by 5
    pred[1, 2] += [0, 0, 1]  # ... and joint 2 off by 1 relative to the root
    # root-relative errors: frame 0 -> (0 + 2 + 0) / 3, frame 1 -> (0 + 0 + 1) / 3; mean = 0.5
    assert M.mpjpe(pred, gt, root=0) == pytest.approx(0.5, abs=1e-12)
    # root trajectory: frame 0 root error 0, frame 1 root error |(0, 3, 4)| = 5 -> mean 2.5
    assert M.t_root(pred, gt, root=0) == pytest.approx(2.5, abs=1e-12)
    # global: frame 0 -> 2 / 3, frame 1 -> (5 + 5 + |(0, 3, 5)|) / 3
    g = (2 / 3 + (10 + math.sqrt(34)) / 3) / 2
    assert M.global_mpjpe(pred, gt, root=0) == pytest.approx(g, abs=1e-12)
    # root as the mean of several joints: (joint 1 + joint 2) / 2
    rr_gt = gt - gt[:, [1, 2]].mean(1, keepdims=True)
    rr_pred = pred - pred[:, [1, 2]].mean(1, keepdims=True)
    assert M.mpjpe(pred, gt, root=(1, 2)) == pytest.approx(np.linalg.norm(rr_pred - rr_gt, axis=-1).mean())


def test_default_root_is_hips_midpoint_for_openpose_layouts():
    gen = torch.Generator().manual_seed(3)
    for j in (14, 18):
        gt = _rand_seq(gen, 5, j, 3)
        pred = _rand_seq(gen, 5, j, 3)
        torch.testing.assert_close(M.mpjpe(pred, gt), M.mpjpe(pred, gt, root=(8, 11)))
    gt = _rand_seq(gen, 5, 24, 3)
    pred = _rand_seq(gen, 5, 24, 3)
    torch.testing.assert_close(M.mpjpe(pred, gt), M.mpjpe(pred, gt, root=0))


def _scipy_similarity(src: np.ndarray, dst: np.ndarray):
    """Independent oracle: rotation from scipy's Kabsch solver on centred points, closed-form scale."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = dst - md, src - ms
    rot, _ = Rotation.align_vectors(a, b)
    R = rot.as_matrix()
    s = float(np.sum(a * (b @ R.T)) / np.sum(b * b))
    return s, R, md - s * R @ ms


def test_umeyama_matches_scipy_oracle_on_noisy_and_mirrored_points(seed):
    rng = np.random.default_rng(seed)
    src = rng.normal(size=(37, 3))
    dst, _ = _similarity(torch.as_tensor(src), seed)
    dst = dst.numpy() + 0.05 * rng.normal(size=src.shape)
    for target in (dst, dst * np.array([-1.0, 1.0, 1.0])):  # the second one is a mirror image
        s, R, t = M.similarity_procrustes(src, target)
        s_ref, R_ref, t_ref = _scipy_similarity(src, target)
        assert isinstance(R, np.ndarray)
        np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-10)
        np.testing.assert_allclose(R, R_ref, atol=1e-8)
        np.testing.assert_allclose(s, s_ref, rtol=1e-8)
        np.testing.assert_allclose(t, t_ref, atol=1e-8)


def test_reflection_does_not_sneak_in(seed):
    gen = torch.Generator().manual_seed(seed)
    gt = _rand_seq(gen, 6, 14, 3)
    mirrored = gt * torch.tensor([-1.0, 1.0, 1.0], dtype=gt.dtype)
    # A reflection would align a chiral point cloud perfectly; a proper rotation cannot.
    assert float(M.pa_mpjpe(mirrored, gt)) > 0.05
    _, R, _ = M.similarity_procrustes(mirrored.reshape(-1, 3), gt.reshape(-1, 3))
    torch.testing.assert_close(torch.linalg.det(R), torch.tensor(1.0, dtype=R.dtype))


def test_pa_mpjpe_is_one_transform_for_the_whole_sequence(seed):
    gen = torch.Generator().manual_seed(seed)
    gt = _rand_seq(gen, 4, 14, 3)
    pred = gt.clone()
    # rotate only the last frame: per-frame Procrustes would give 0, one transform for all frames cannot
    R = torch.as_tensor(Rotation.from_euler("y", 90, degrees=True).as_matrix(), dtype=gt.dtype)
    pred[-1] = pred[-1] @ R.T
    assert float(M.pa_mpjpe(pred, gt)) > 0.01
    assert float(M.pa_mpjpe(pred[-1:], gt[-1:])) < 1e-10


def test_numpy_and_torch_agree_and_types_follow_input(seed):
    gen = torch.Generator().manual_seed(seed)
    gt = _rand_seq(gen, 7, 14, 3)
    pred = gt + 0.1 * _rand_seq(gen, 7, 14, 3)
    for fn in (M.mpjpe, M.pa_mpjpe, M.t_root, M.global_mpjpe):
        out_t = fn(pred, gt)
        out_n = fn(pred.numpy(), gt.numpy())
        assert isinstance(out_t, torch.Tensor) and out_t.dim() == 0
        assert isinstance(out_n, np.floating)
        assert float(out_n) == pytest.approx(float(out_t), rel=1e-12)


def test_float32_matches_float64(seed):
    gen = torch.Generator().manual_seed(seed)
    gt = _rand_seq(gen, 13, 18, 3)
    pred, _ = _similarity(gt + 0.2 * _rand_seq(gen, 13, 18, 3), seed, s=0.8)
    for fn in (M.mpjpe, M.pa_mpjpe, M.t_root, M.global_mpjpe):
        r64 = fn(pred, gt)
        r32 = fn(pred.float(), gt.float())
        assert r32.dtype == torch.float32
        torch.testing.assert_close(r32.double(), r64, rtol=1e-4, atol=0)


def test_batched_matches_loop_and_masks_match_slicing(seed):
    gen = torch.Generator().manual_seed(seed)
    b, t, j = 3, 10, 14
    gt = _rand_seq(gen, b, t, j, 3)
    pred = gt + 0.3 * _rand_seq(gen, b, t, j, 3) + _rand_seq(gen, b, t, 1, 3)
    mask = torch.rand(b, t, generator=gen) > 0.4
    mask[:, 5] = True
    for fn in (M.mpjpe, M.pa_mpjpe, M.t_root, M.global_mpjpe):
        batched = fn(pred, gt)
        assert batched.shape == (b,)
        loop = torch.stack([fn(pred[i], gt[i]) for i in range(b)])
        torch.testing.assert_close(batched, loop, rtol=1e-10, atol=1e-12)
        masked = fn(pred, gt, mask=mask)
        sliced = torch.stack([fn(pred[i][mask[i]], gt[i][mask[i]]) for i in range(b)])
        torch.testing.assert_close(masked, sliced, rtol=1e-10, atol=1e-12)


def test_t_root_accepts_trajectories():
    gt = np.zeros((4, 3))
    pred = np.array([[5.0, 5, 5], [6, 5, 5], [5, 7, 5], [5, 5, 8]])
    # after moving the first frame to the origin the errors are 0, 1, 2, 3
    assert M.t_root(pred, gt) == pytest.approx(1.5)
    batch = np.stack([pred, pred * 0 + 1.0])
    np.testing.assert_allclose(M.t_root(batch, np.zeros_like(batch), trajectory=True), [1.5, 0.0])


def test_j2d_zero_for_exact_projection_and_known_offset(seed):
    gen = torch.Generator().manual_seed(seed)
    x = _rand_seq(gen, 5, 14, 3) * 0.3
    x[..., 2] += 4.0  # in front of the camera
    K = torch.tensor([[1000.0, 0, 960], [0, 1000.0, 540], [0, 0, 1]], dtype=x.dtype)
    P = K @ torch.cat([torch.eye(3, dtype=x.dtype), torch.zeros(3, 1, dtype=x.dtype)], dim=1)
    uv = (x @ K.T)[..., :2] / x[..., 2:3]
    assert float(M.j2d(x, uv, P)) < 1e-9
    torch.testing.assert_close(
        M.j2d(x, uv + torch.tensor([3.0, 4.0], dtype=x.dtype), P), torch.tensor(5.0, dtype=x.dtype)
    )
    # a view axis selects view 0; confidences weight joints
    Ps = torch.stack([P, 2 * P + 1])
    assert float(M.j2d(x, uv, Ps)) < 1e-9
    off = uv.clone()
    off[:, 0] += torch.tensor([30.0, 40.0], dtype=x.dtype)
    conf = torch.ones(5, 14, dtype=x.dtype)
    conf[:, 0] = 0
    assert float(M.j2d(x, off, P, conf=conf)) < 1e-9
    assert float(M.j2d(x, off, P)) == pytest.approx(50.0 / 14)
    # per-sequence cameras in a batch
    xb = torch.stack([x, x])
    uvb = torch.stack([uv, uv + torch.tensor([0.0, 2.0], dtype=x.dtype)])
    torch.testing.assert_close(M.j2d(xb, uvb, torch.stack([P, P])), torch.tensor([0.0, 2.0], dtype=x.dtype))


def test_bone_length_consistency_hand_values():
    parents = [-1, 0, 1]
    # bone 0->1 alternates length 1 and 3 (std 1), bone 1->2 is constant 2 (std 0)
    frames = []
    for i in range(6):
        a = 1.0 if i % 2 == 0 else 3.0
        frames.append([[0, 0, 0], [a, 0, 0], [a, 2, 0]])
    x = np.array(frames)
    assert M.bone_length_consistency(x, parents) == pytest.approx(0.5)
    assert M.bone_length_consistency(x, [(0, 1), (1, 2)], relative=True) == pytest.approx(0.25)
    mask = np.array([True, False] * 3)  # only the frames with length 1 -> no variation
    assert M.bone_length_consistency(x, parents, mask=mask) == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(M.bone_lengths(x, parents)[:2], [[1, 2], [3, 2]])


def test_rigid_motion_keeps_bones_constant(seed):
    gen = torch.Generator().manual_seed(seed)
    pose = _rand_seq(gen, 14, 3)
    seq = torch.stack(
        [
            pose @ torch.as_tensor(Rotation.from_euler("y", 10 * i, degrees=True).as_matrix()).T + i
            for i in range(8)
        ]
    )
    parents = [-1] + list(range(13))
    assert float(M.bone_length_consistency(seq, parents)) < 1e-12


def test_metrics_are_differentiable(seed):
    gen = torch.Generator().manual_seed(seed)
    gt = _rand_seq(gen, 3, 5, 3)
    pred = (gt + 0.2 * _rand_seq(gen, 3, 5, 3)).requires_grad_(True)
    torch.autograd.gradcheck(lambda p: M.mpjpe(p, gt, root=0), (pred,))
    torch.autograd.gradcheck(lambda p: M.pa_mpjpe(p, gt), (pred,))


@pytest.mark.parametrize(
    ("call", "exc", "words"),
    [
        (lambda: M.mpjpe(np.zeros((4, 3)), np.zeros((4, 3))), ValueError, "pred must have shape"),
        (lambda: M.mpjpe(np.ones((4, 5, 3)), np.ones((4, 6, 3))), ValueError, "same shape"),
        (lambda: M.mpjpe([[0.0]], np.ones((4, 5, 3))), TypeError, "pred must be"),
        (lambda: M.mpjpe(np.ones((4, 5, 3)), np.ones((4, 5, 3)), mask=np.ones(4)), TypeError, "dtype bool"),
        (
            lambda: M.mpjpe(np.ones((4, 5, 3)), np.ones((4, 5, 3)), mask=np.ones(3, bool)),
            ValueError,
            "mask must",
        ),
        (
            lambda: M.mpjpe(np.ones((4, 5, 3)), np.ones((4, 5, 3)), mask=np.zeros(4, bool)),
            ValueError,
            "valid",
        ),
        (lambda: M.mpjpe(np.ones((4, 5, 3)), np.ones((4, 5, 3)), root=7), ValueError, "root index 7"),
        (lambda: M.j2d(np.ones((4, 5, 3)), np.ones((4, 5, 2)), np.eye(3)), ValueError, "(..., 3, 4)"),
        (lambda: M.j2d(np.ones((4, 5, 3)), np.ones((4, 5, 3)), np.ones((3, 4))), ValueError, "gt_2d"),
        (lambda: M.bone_length_consistency(np.ones((4, 5, 3)), [0, 1]), ValueError, "parents list"),
    ],
)
def test_bad_input_raises_clear_errors(call, exc, words):
    with pytest.raises(exc, match=re.escape(words)):
        call()
