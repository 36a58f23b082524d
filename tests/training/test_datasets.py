"""Stage-1 and multi-view training datasets, and multi-view data from 3D motion."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import default_collate

from mvlift.data.skeletons import BODY14
from mvlift.geometry import ring_epipoles
from mvlift.training import MultiViewDataset, MultiViewMotionDataset, Stage1Dataset, multiview_from_motion
from mvlift.training.datasets import _RING_SALT
from mvlift.training.distributed import derive_seed

from ._helpers import HIPS, J, procedural_positions, smooth_motions_2d


def _residual(x: torch.Tensor, lines: torch.Tensor) -> torch.Tensor:
    return (lines[..., 0] * x[..., 0] + lines[..., 1] * x[..., 1] + lines[..., 2]).abs()


def test_stage1_items_lines_pass_through_joint_and_epipole(seed):
    g = torch.Generator().manual_seed(seed)
    seqs = smooth_motions_2d(5, 7, g)
    masks = torch.rand(5, 7, generator=g) > 0.3
    conf = torch.rand(5, 7, J, generator=g)
    ds = Stage1Dataset(seqs, masks, conf, seed=seed % 1000)
    assert len(ds) == 5
    item = ds[(2, 3)]
    assert item["x0"].shape == (7, J, 2) and item["lines"].shape == (7, J, 3)
    assert item["mask"].dtype == torch.bool and torch.equal(item["mask"], masks[3])
    assert torch.equal(item["conf"], conf[3]) and torch.equal(item["x0"], seqs[3])
    assert item["noise_seed"].dtype == torch.int64 and item["noise_seed"].ndim == 0
    lines = item["lines"]
    torch.testing.assert_close(lines[..., :2].norm(dim=-1), torch.ones(7, J))
    assert _residual(item["x0"], lines).max() < 1e-5
    ep = item["epipole"].expand(7, J, 2)
    scale = 1.0 + item["epipole"].abs().max()
    assert (_residual(ep, lines) / scale).max() < 1e-5
    batch = default_collate([ds[(0, i)] for i in range(5)])
    assert batch["x0"].shape == (5, 7, J, 2) and batch["noise_seed"].shape == (5,)


def test_stage1_randomness_is_a_function_of_seed_epoch_index(seed):
    seqs = smooth_motions_2d(6, 4, torch.Generator().manual_seed(seed))
    a, b = Stage1Dataset(seqs, seed=3), Stage1Dataset(seqs, seed=3)
    for key in ((0, 1), (4, 5), (4, 1)):
        ia, ib = a[key], b[key]
        assert torch.equal(ia["epipole"], ib["epipole"]) and torch.equal(ia["noise_seed"], ib["noise_seed"])
    assert torch.equal(a[1]["epipole"], a[(0, 1)]["epipole"])
    epipoles = torch.stack([a.epipoles(e) for e in range(4)])  # fresh epipoles every epoch
    assert all(not torch.equal(epipoles[e], epipoles[0]) for e in range(1, 4))
    seeds = {int(a[(e, i)]["noise_seed"]) for e in range(3) for i in range(6)}
    assert len(seeds) == 18
    c = Stage1Dataset(seqs, seed=4)
    assert not torch.equal(c.epipoles(0), a.epipoles(0))


def test_stage1_epipoles_mix_ring_and_uniform():
    ds = Stage1Dataset(torch.zeros(400, 2, J, 2) + 0.1, p_ring=0.5, box=3.0, seed=0)
    ep = ds.epipoles(0)
    ring = ring_epipoles().to(torch.float32)
    on_ring = torch.cdist(ep, ring).min(dim=1).values < 1e-5
    assert 0.4 < on_ring.float().mean() < 0.6
    assert ep[~on_ring].abs().max() <= 3.0
    only_ring = Stage1Dataset(torch.zeros(50, 2, J, 2) + 0.1, p_ring=1.0, seed=0).epipoles(0)
    assert torch.cdist(only_ring, ring).min(dim=1).values.max() < 1e-5


def test_dataset_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"sequences must have shape \(N, T, J, 2\)"):
        Stage1Dataset(torch.zeros(3, 4, 2))
    with pytest.raises(TypeError, match="masks must have dtype torch.bool"):
        Stage1Dataset(torch.zeros(3, 4, J, 2), torch.ones(3, 4))
    with pytest.raises(ValueError, match=r"masks must have shape \(N, T\)"):
        Stage1Dataset(torch.zeros(3, 4, J, 2), torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="non-finite"):
        Stage1Dataset(torch.full((1, 2, J, 2), float("nan")))
    with pytest.raises(ValueError, match="p_ring"):
        Stage1Dataset(torch.zeros(3, 4, J, 2), p_ring=2.0)
    with pytest.raises(IndexError):
        Stage1Dataset(torch.zeros(3, 4, J, 2))[3]
    with pytest.raises(ValueError, match="K >= 2"):
        MultiViewDataset(torch.zeros(2, 1, 4, J, 2))
    with pytest.raises(ValueError, match=r"F must have shape"):
        MultiViewDataset(torch.zeros(2, 3, 4, J, 2), F=torch.zeros(2, 2, 2, 3, 3))
    with pytest.raises(ValueError, match=r"positions must be a tensor of shape \(N, T, J, 3\)"):
        multiview_from_motion(torch.zeros(2, 3, 4))


def test_multiview_from_motion_is_epipolar_consistent(seed):
    X = procedural_positions(3, 6, seed % 10_000)
    views, F, masks = multiview_from_motion(X, num_views=4, radius=3.0, root_joints=HIPS, seed=seed % 1000)
    assert views.shape == (3, 4, 6, J, 2) and F.shape == (3, 4, 4, 3, 3) and masks.shape == (3, 6)
    assert views.dtype == torch.float32 and masks.all()
    assert views[:, :, :, 0, 1].max() < 0  # the head is above the hips (image y points down)
    # the cameras look at the first-frame root (here joint 1): it projects to the image centre in every view
    neck_views, _, _ = multiview_from_motion(X, num_views=5, radius=6.0, root_joints=1, seed=seed % 1000)
    assert neck_views[:, :, 0, 1].abs().max() < 1e-5
    # x_j^T F[i, j] x_i = 0 for every pair of views
    xh = torch.cat([views, torch.ones_like(views[..., :1])], dim=-1).double()
    for i in range(4):
        for j in range(4):
            r = torch.einsum("ntja,nab,ntjb->ntj", xh[:, j], F[:, i, j].double(), xh[:, i])
            assert r.abs().max() < 1e-5
    torch.testing.assert_close(F[:, 1, 0], F[:, 0, 1].transpose(-1, -2))
    ds = MultiViewDataset(views, masks, F)
    item = ds[(1, 2)]
    assert torch.equal(item["cond"], views[2, 0]) and torch.equal(item["x0_views"], views[2])
    assert torch.equal(item["F"], F[2])


def test_multiview_masks_cut_at_the_first_frame_leaving_the_image():
    X = procedural_positions(1, 8, 0)
    X[0, 5:, :, 0] += 10.0  # walks far out of every view from frame 5
    views, _, masks = multiview_from_motion(X, num_views=3, root_joints=HIPS)
    assert masks[0].tolist() == [True] * 5 + [False] * 3
    assert torch.equal(views[0, :, 5:], torch.zeros_like(views[0, :, 5:]))


def _epipolar_residual(views: torch.Tensor, F: torch.Tensor) -> float:
    """max |x_j^T F[i, j] x_i| over the view pairs of one item: views (K, T, J, 2), F (K, K, 3, 3)."""
    xh = torch.cat([views, torch.ones_like(views[..., :1])], dim=-1).double()
    k = views.shape[0]
    return max(
        float(torch.einsum("tja,ab,tjb->tj", xh[j], F[i, j].double(), xh[i]).abs().max())
        for i in range(k)
        for j in range(k)
    )


def test_rerendered_items_are_consistent_fresh_per_epoch_and_reproducible(seed):
    X = procedural_positions(3, 9, seed % 10_000)
    masks = torch.ones(3, 9, dtype=torch.bool)
    masks[1, 6:] = False
    ds = MultiViewMotionDataset(X, masks, num_views=4, radius=2.8, root_joints=HIPS, seed=seed % 1000)
    assert len(ds) == 3
    a, b = ds[(0, 1)], ds[(1, 1)]
    assert a["x0_views"].shape == (4, 9, J, 2) and a["F"].shape == (4, 4, 3, 3)
    assert torch.equal(a["cond"], a["x0_views"][0])
    assert a["mask"].tolist() == [True] * 6 + [False] * 3  # the motion's own mask is kept
    assert _epipolar_residual(a["x0_views"], a["F"]) < 1e-5
    assert (a["x0_views"] - b["x0_views"]).abs().max() > 1e-2  # another ring in another epoch
    again = ds[(1, 1)]
    assert all(torch.equal(b[k], again[k]) for k in b)  # a pure function of (seed, epoch, index)
    # the shapes of the motion are kept: the same bone in two renderings has the same 3D length, and the
    # head stays above the hips (image y points down) in every view
    assert (a["x0_views"][:, :6, 0, 1] < a["x0_views"][:, :6, HIPS[0], 1]).all()
    batch = default_collate([ds[(2, i)] for i in range(3)])
    assert batch["x0_views"].shape == (3, 4, 9, J, 2) and batch["noise_seed"].shape == (3,)


def test_rerendered_mirror_is_a_flipped_motion_rendered_directly():
    X = procedural_positions(1, 5, 3)
    swap = BODY14.left_right_swap
    flipped = X[:, :, list(swap)] * X.new_tensor([-1.0, 1.0, 1.0])  # x -> -x, left <-> right
    ds = MultiViewMotionDataset(X, num_views=3, root_joints=HIPS, swap=swap, mirror=True, seed=5)
    parities = set()
    for epoch in range(12):
        draw = derive_seed(5, _RING_SALT, epoch, 0)
        parities.add(draw % 2)
        motion = [X, flipped][draw % 2].float()
        want, F, _ = multiview_from_motion(motion, num_views=3, radius=2.8, root_joints=HIPS, seed=draw)
        item = ds[(epoch, 0)]
        torch.testing.assert_close(item["x0_views"], want[0])
        torch.testing.assert_close(item["F"], F[0])
    assert parities == {0, 1}  # both the motion and its mirror image were drawn


def test_rerendered_dataset_errors_name_the_argument():
    X = procedural_positions(2, 5, 0)
    with pytest.raises(ValueError, match="swap"):
        MultiViewMotionDataset(X, mirror=True)
    with pytest.raises(ValueError, match="swap"):
        MultiViewMotionDataset(X, mirror=True, swap=[0] * J)
    bad = X.clone()
    bad[1, 2, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="positions holds non-finite"):
        MultiViewMotionDataset(bad)
    with pytest.raises(ValueError, match="num_views"):
        MultiViewMotionDataset(X, num_views=1)
    with pytest.raises(ValueError, match="positions"):
        MultiViewMotionDataset(torch.zeros(2, 5, J, 2))
