"""Stage 2's depth parameterisation, single-view start, SDS view subsets and regularisers."""

from __future__ import annotations

import pytest
import torch

from mvlift.data.skeletons import BODY14
from mvlift.geometry import project
from mvlift.schedulers import CosineSchedule
from mvlift.stages.stage2 import (
    DepthParameterization,
    Stage2Config,
    acceleration,
    bone_constancy,
    make_ring,
    optimize_views,
)


def _motion(B: int, T: int, J: int, cfg: Stage2Config, seed: int) -> torch.Tensor:
    """Random smooth-ish points around the ring's centre, (B, T, J, 3) float64 metres."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(B, 1, J, 3, generator=g, dtype=torch.float64) * 0.3
    X = X + 0.02 * torch.randn(B, T, J, 3, generator=g, dtype=torch.float64).cumsum(1)
    return X + torch.tensor([0.0, cfg.height, 0.0], dtype=torch.float64)


def _views(X: torch.Tensor, cfg: Stage2Config) -> torch.Tensor:
    cams, _ = make_ring(cfg, dtype=torch.float64, device="cpu")
    return torch.stack([project(X, cams.P_normalized[k]) for k in range(cfg.num_views)], dim=1)


def test_depth_parameterization_reproduces_points_and_views(seed):
    """Depths taken from known 3D points give back those points, and their exact projections in every view."""
    cfg = Stage2Config(parameterization="depth", init="flat")
    B, T, J = 2, 5, 7
    X = _motion(B, T, J, cfg, seed)
    cams, _ = make_ring(cfg, dtype=torch.float64, device="cpu")
    views = _views(X, cfg)
    depth = cams.select([0]).depth(X)[0]
    model = DepthParameterization(views[:, 0], cams, depth)
    Y = model.points()
    torch.testing.assert_close(Y, X, rtol=0, atol=1e-9)
    torch.testing.assert_close(model.views(Y), views, rtol=0, atol=1e-9)


def test_unobserved_joints_get_a_free_offset(seed):
    cfg = Stage2Config(parameterization="depth", init="flat")
    B, T, J = 1, 4, 5
    X = _motion(B, T, J, cfg, seed)
    cams, _ = make_ring(cfg, dtype=torch.float64, device="cpu")
    views = _views(X, cfg)
    conf = torch.ones(B, T, J, dtype=torch.float64)
    conf[0, 2, 3] = 0.0
    model = DepthParameterization(views[:, 0], cams, cams.select([0]).depth(X)[0], conf)
    assert model.offset is not None
    with torch.no_grad():
        model.offset.fill_(0.1)
    moved = model.views(model.points())[:, 0] - views[:, 0]
    assert moved[0, 2, 3].abs().min() > 0.05  # the unobserved joint moves in view 0
    moved[0, 2, 3] = 0.0
    assert moved.abs().max() < 1e-12  # observed joints never do


def test_oracle_prior_recovers_depth(seed):
    """With a denoiser that predicts the true views, SDS through the depths converges to the true 3D, every
    view stays consistent (epipolar distance ~ 0) and view 0 is the input, bit for bit."""
    cfg = Stage2Config(
        parameterization="depth", init="flat", steps=300, lr=1e-2, sds_space="x0", progress=False, seed=seed
    )
    B, T, J = 2, 6, 5
    X = _motion(B, T, J, cfg, seed)
    views = _views(X, cfg).float()
    truth = views[:, 1:].reshape(-1, T, J, 2)
    res = optimize_views(lambda *a: truth, CosineSchedule(), views[:, 0].clone(), cfg)
    assert torch.equal(res.views[:, 0], views[:, 0])
    assert res.joints3d is not None
    start = (X - torch.tensor([0.0, cfg.height, 0.0], dtype=torch.float64)).norm(dim=-1).mean()
    err = (res.joints3d.double() - X).norm(dim=-1)
    assert err.mean() < 0.05 * start, (err.mean(), start)
    assert res.history[-1]["epipolar"] < 1e-5


def test_sds_view_subset_is_unbiased_and_cheaper(seed):
    """sds_views=k: the denoiser sees k views per sequence per step, and the gradient is scaled by (V-1)/k."""
    cfg = Stage2Config(parameterization="depth", init="flat", steps=3, progress=False, sds_views=2, seed=seed)
    B, T, J = 2, 4, 5
    X = _motion(B, T, J, cfg, seed)
    views = _views(X, cfg).float()
    sizes = []

    def denoiser(x_t, t, lines, mask):
        sizes.append(x_t.shape[0])
        return torch.zeros_like(x_t)

    optimize_views(denoiser, CosineSchedule(), views[:, 0].clone(), cfg)
    assert sizes == [B * 2] * 3
    from mvlift.stages.stage2 import Stage2Losses

    _, F = make_ring(cfg, dtype=torch.float32, device="cpu")
    losses = Stage2Losses(
        lambda x_t, t, lines, mask: torch.zeros_like(x_t), CosineSchedule(), cfg, F, views[:, 0]
    )
    y = views[:, 1:].clone()
    g = losses.sds_gradient(y, torch.Generator().manual_seed(seed))
    nonzero = (g.abs().flatten(2).sum(-1) > 0).sum(1)
    assert nonzero.tolist() == [2, 2]


def test_bone_constancy_and_acceleration_reference(seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(2, 7, 14, 3, generator=g, dtype=torch.float64)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    parents = BODY14.parents
    ref = []
    for b in range(2):
        n = int(mask[b].sum())
        for j, p in enumerate(parents):
            if p < 0:
                continue
            lengths = (X[b, :n, j] - X[b, :n, p]).norm(dim=-1)
            ref.append(((lengths - lengths.mean()) ** 2).mean())
    torch.testing.assert_close(bone_constancy(X, parents, mask), torch.stack(ref).mean())
    acc = (X[:, 2:] - 2 * X[:, 1:-1] + X[:, :-2]).pow(2).sum(-1).mean(-1)
    w = torch.ones(2, 5, dtype=torch.float64)
    w[1, 3:] = 0.0
    torch.testing.assert_close(acceleration(X, mask), (acc * w).sum() / w.sum())
    assert torch.autograd.gradcheck(
        lambda Y: bone_constancy(Y, parents, mask[:, :4]), X[:, :4].clone().requires_grad_(True)
    )


def test_start3d_sets_the_start(seed):
    """A given 3D start is where both parameterisations begin (zero steps of change with lr ~ 0)."""
    B, T, J = 1, 4, 14
    for param, init in (("depth", "flat"), ("views", "zeros")):
        cfg = Stage2Config(parameterization=param, init=init, steps=1, lr=1e-12, progress=False, seed=seed)
        X = _motion(B, T, J, cfg, seed)
        views = _views(X, cfg).float()
        res = optimize_views(
            lambda x_t, *a: torch.zeros_like(x_t), CosineSchedule(), views[:, 0].clone(), cfg, start3d=X
        )
        torch.testing.assert_close(res.views, views, rtol=0, atol=1e-5)


def test_single_view_start_needs_the_skeleton():
    cfg = Stage2Config(parameterization="depth", init="single_view", steps=1, progress=False)
    x = torch.rand(1, 4, 14, 2) * 0.2
    with pytest.raises(ValueError, match="skeleton"):
        optimize_views(lambda x_t, *a: x_t, CosineSchedule(), x, cfg)


def test_init_must_fit_the_parameterization():
    with pytest.raises(ValueError, match="init"):
        Stage2Config(parameterization="depth", init="zeros")
    with pytest.raises(ValueError, match="init"):
        Stage2Config(parameterization="views", init="flat")
    with pytest.raises(ValueError, match="sds_views"):
        Stage2Config(sds_views=6)
