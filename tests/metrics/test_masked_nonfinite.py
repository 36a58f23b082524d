"""Direct metric calls with NaN / inf: masked frames may hold anything and give the figure of the valid frames
alone; a non-finite value in a valid frame is a ValueError naming the argument and the frames (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mvlift.metrics as M
from mvlift.data.skeletons import BODY14
from mvlift.metrics._arrays import fill_masked

T, J = 12, 14


def _pair(gen: torch.Generator, *batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    gt = torch.randn(*batch, T, J, 3, generator=gen, dtype=torch.float64) * 0.3 + torch.tensor(
        [0.0, 1.0, 4.0]
    )
    pred = gt + 0.05 * torch.randn(*batch, T, J, 3, generator=gen, dtype=torch.float64) + 0.1
    return pred, gt


def _mask(gen: torch.Generator, *batch: int) -> torch.Tensor:
    """Random masks with the first frame always masked (so "first frame" means the first VALID one)."""
    mask = torch.rand(*batch, T, generator=gen) < 0.6
    mask[..., 0] = False
    mask[..., 1 + int(torch.randint(T - 1, (1,), generator=gen))] = True  # at least one valid frame
    return mask


def _poison(x: torch.Tensor, mask: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """NaN, +inf and -inf scattered over the masked frames only."""
    out = x.clone()
    bad = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=x.dtype)
    choice = bad[torch.randint(3, x.shape, generator=gen)]
    return torch.where(mask[..., None, None], out, choice)


P = torch.tensor(
    [[800.0, 0.0, 320.0, 0.0], [0.0, 800.0, 240.0, 0.0], [0.0, 0.0, 1.0, 0.0]], dtype=torch.float64
)


def _project(x):
    """Pixels of (..., J, 3) points in the camera P (numpy in, numpy out)."""
    if isinstance(x, np.ndarray):
        return _project(torch.from_numpy(x)).numpy()
    h = x @ P[:, :3].T + P[:, 3]
    return h[..., :2] / h[..., 2:]


def _camera(like):
    return P.numpy() if isinstance(like, np.ndarray) else P


METRICS = {
    "mpjpe": lambda p, g, m: M.mpjpe(p, g, mask=m),
    "pa_mpjpe": lambda p, g, m: M.pa_mpjpe(p, g, mask=m),
    "pa_mpjpe_root_relative": lambda p, g, m: M.pa_mpjpe(p, g, mask=m, root_relative=True),
    "t_root": lambda p, g, m: M.t_root(p, g, mask=m),
    "t_root_paper": lambda p, g, m: M.t_root_paper(p, g, mask=m),
    "global_mpjpe": lambda p, g, m: M.global_mpjpe(p, g, mask=m),
    "bone_std": lambda p, g, m: M.bone_length_consistency(p, BODY14, mask=m),
    "bone_ratio": lambda p, g, m: M.bone_length_ratio(p, mask=m),
    "j2d": lambda p, g, m: M.j2d(p, _project(g), _camera(p), mask=m),
    "j2d_paper": lambda p, g, m: M.j2d_paper(p, _project(g), _camera(p), mask=m),
}


@pytest.mark.parametrize("name", sorted(METRICS))
def test_non_finite_masked_frames_give_the_valid_frames_figure(name, seed):
    gen = torch.Generator().manual_seed(seed)
    metric = METRICS[name]
    pred, gt = _pair(gen)
    mask = _mask(gen)
    # the poisoned gt enters j2d as NaN 2D keypoints, j2d_paper too
    got = metric(_poison(pred, mask, gen), _poison(gt, mask, gen), mask)
    want = metric(pred[mask], gt[mask], None)
    assert torch.isfinite(got)
    assert float(got) == pytest.approx(float(want), rel=1e-9, abs=1e-12)
    assert float(want) > 1e-6  # a real figure, not a trivial zero

    # batched: each sequence as if called alone on its valid frames; numpy in, numpy out
    pred_b, gt_b = _pair(gen, 3)
    mask_b = _mask(gen, 3)
    got_b = metric(_poison(pred_b, mask_b, gen).numpy(), _poison(gt_b, mask_b, gen).numpy(), mask_b.numpy())
    assert isinstance(got_b, np.ndarray) and got_b.shape == (3,)
    for i in range(3):
        want_i = metric(pred_b[i][mask_b[i]], gt_b[i][mask_b[i]], None)
        assert got_b[i] == pytest.approx(float(want_i), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", sorted(METRICS))
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_valid_frame_is_an_error_naming_argument_and_frames(name, bad, seed):
    gen = torch.Generator().manual_seed(seed)
    metric = METRICS[name]
    pred, gt = _pair(gen)
    mask = _mask(gen)
    valid = mask.nonzero()[:, 0].tolist()
    frame = valid[int(torch.randint(len(valid), (1,), generator=gen))]
    joint = (8, 11)[int(torch.randint(2, (1,), generator=gen))]  # a hip: root and limb joint, used by all
    pred[frame, joint, int(torch.randint(3, (1,), generator=gen))] = bad
    msg = rf"(pred|positions).* is not finite \(NaN or inf\) in valid frames \[{frame}\] \(1 in all\)"
    with pytest.raises(ValueError, match=msg):
        metric(pred, gt, mask)
    # no mask: every frame is valid; the gt side is named too (t_root via the root, bones via the limbs)
    pred, gt = _pair(gen)
    gt[frame, 8, 0] = bad  # the right hip: root joint and a bone joint
    if name.startswith("j2d"):
        with pytest.raises(ValueError, match=rf"gt_2d is not finite .* frames \[{frame}\]"):
            metric(pred, gt, None)
    elif name.startswith("bone"):
        metric(pred, gt, None)  # the bone metrics read pred only
    else:
        with pytest.raises(ValueError, match=rf"gt.* not finite .* frames \[{frame}\]"):
            metric(pred, gt, None)


def test_batched_error_lists_sequence_frame_pairs(seed):
    gen = torch.Generator().manual_seed(seed)
    pred, gt = _pair(gen, 2)
    pred[1, 5, 0, 0] = float("nan")
    pred[0, 7, 3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"pred is not finite .* pairs \[\(0, 7\), \(1, 5\)\] \(2 in all\)"):
        M.pa_mpjpe(pred, gt)
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[0, 7] = False
    with pytest.raises(ValueError, match=r"pairs \[\(1, 5\)\] \(1 in all\)"):
        M.mpjpe(pred, gt, mask=mask)
    mask[1, 5] = False
    assert torch.isfinite(M.mpjpe(pred, gt, mask=mask)).all()


def test_procrustes_align_fits_valid_frames_and_keeps_masked_frames(seed):
    gen = torch.Generator().manual_seed(seed)
    pred, gt = _pair(gen)
    mask = _mask(gen)
    holey = _poison(pred, mask, gen)
    out = M.procrustes_align(holey, gt, mask=mask)
    torch.testing.assert_close(out[mask], M.procrustes_align(pred[mask], gt[mask]), rtol=1e-9, atol=1e-12)
    # masked frames are transformed too: finite ones as the valid frames are, non-finite ones stay so
    assert not torch.isfinite(out[~mask]).any()
    full = M.procrustes_align(pred, gt, mask=mask)
    torch.testing.assert_close(full[mask], out[mask], rtol=0, atol=0)
    assert torch.isfinite(full).all()


def test_j2d_ignores_non_finite_joints_of_confidence_zero(seed):
    gen = torch.Generator().manual_seed(seed)
    pred, gt = _pair(gen)
    uv = _project(gt) + torch.randn(T, J, 2, generator=gen, dtype=torch.float64)
    conf = torch.rand(T, J, generator=gen, dtype=torch.float64) + 0.1
    conf[4, 6] = 0.0
    ref = M.j2d(pred, uv, P, conf=conf)
    uv_nan = uv.clone()
    uv_nan[4, 6] = float("nan")  # an undetected joint stored as NaN with confidence 0
    assert float(M.j2d(pred, uv_nan, P, conf=conf)) == pytest.approx(float(ref), rel=1e-12)
    conf[4, 6] = 0.5
    with pytest.raises(ValueError, match=r"gt_2d is not finite .* valid frames \[4\]"):
        M.j2d(pred, uv_nan, P, conf=conf)


def test_evaluate_sequence_names_the_non_finite_valid_frame(seed):
    gen = torch.Generator().manual_seed(seed)
    pred, gt = _pair(gen)
    mask = _mask(gen)
    frame = int(mask.nonzero()[-1, 0])
    pred[frame, 0, 1] = float("nan")  # a valid frame: an error before the alignment spreads the NaN
    with pytest.raises(ValueError, match=rf"pred is not finite .* valid frames \[{frame}\] \(1 in all\)"):
        M.evaluate_sequence(pred, gt, skeleton=BODY14, mask=mask)


def test_fill_masked_takes_the_nearest_valid_frame(seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, T, 5, 2, generator=gen)
    mask = torch.rand(4, T, generator=gen) < 0.4
    mask[:, int(torch.randint(T, (1,), generator=gen))] = True
    got = fill_masked(x, mask)
    for b in range(4):
        valid = mask[b].nonzero()[:, 0].tolist()
        for t in range(T):
            nearest = min(valid, key=lambda v: (abs(v - t), v))  # ties: the earlier frame
            torch.testing.assert_close(got[b, t], x[b, nearest], rtol=0, atol=0)


def test_a_mask_without_valid_frames_names_the_sequences(seed):
    gen = torch.Generator().manual_seed(seed)
    pred, gt = _pair(gen, 3)
    mask = _mask(gen, 3)
    empty = int(torch.randint(3, (1,), generator=gen))
    mask[empty] = False
    with pytest.raises(
        ValueError, match=rf"mask leaves sequences \[{empty}\] without any valid frame \(True"
    ):
        M.mpjpe(pred, gt, mask=mask)
    with pytest.raises(ValueError, match=r"mask leaves the sequence without any valid frame"):
        M.pa_mpjpe(pred[empty], gt[empty], mask=mask[empty])
