"""Stage 3: exact views triangulate back; the synthetic output is strictly multi-view consistent."""

from __future__ import annotations

import torch

from mvlift.data import BODY14, random_motion
from mvlift.geometry import project
from mvlift.reference.losses import epipolar_loss
from mvlift.stages.stage2 import Stage2Config, make_ring
from mvlift.stages.stage3 import Stage3Config, canonicalize, fit_joint_motion, synthesize, triangulate_views


def _procedural(B: int, T: int) -> torch.Tensor:
    X = torch.stack([torch.as_tensor(random_motion(s, T).positions) for s in range(B)])
    root = X[:, :1, list(BODY14.root)].mean(2, keepdim=True)
    return X - root + torch.tensor([0.0, 1.0, 0.0], dtype=X.dtype)  # first-frame root at the look-at point


def test_triangulation_of_exact_views_recovers_3d():
    X = _procedural(2, 20)
    cams, _ = make_ring(Stage2Config(), dtype=torch.float64, device="cpu")
    views = torch.stack([project(X, cams.P_normalized[k]) for k in range(6)], dim=1)
    Xt, valid = triangulate_views(views, cams, refine_iters=2)
    assert valid.all()
    assert (Xt - X).abs().max() < 1e-6


def test_fit_keeps_bones_constant_and_stays_close():
    X = _procedural(2, 24)
    noisy = X + 0.01 * torch.randn_like(X)
    Y = fit_joint_motion(noisy, BODY14.parents, config=Stage3Config(fit_steps=200, bone_weight=10.0))
    child = [j for j, p in enumerate(BODY14.parents) if p >= 0]
    par = [BODY14.parents[j] for j in child]
    std_fit = (Y[..., child, :] - Y[..., par, :]).norm(dim=-1).std(dim=1).mean()
    std_noisy = (noisy[..., child, :] - noisy[..., par, :]).norm(dim=-1).std(dim=1).mean()
    assert std_fit < 0.5 * std_noisy
    assert (Y - X).norm(dim=-1).mean() < 0.02
    with torch.no_grad():  # lifting runs the fit inside no_grad: the fit must still optimise
        Y_ng = fit_joint_motion(noisy, BODY14.parents, config=Stage3Config(fit_steps=200, bone_weight=10.0))
    torch.testing.assert_close(Y_ng, Y)


def test_missing_joints_are_ignored_by_the_fit():
    X = _procedural(1, 12)
    X_missing = X.clone()
    X_missing[0, 3, 5] = float("nan")
    Y = fit_joint_motion(X_missing, BODY14.parents, config=Stage3Config(fit_steps=50))
    assert torch.isfinite(Y).all()


def test_synthetic_views_are_consistent_and_canonical():
    X = _procedural(3, 16)
    cams, _ = make_ring(Stage2Config(), dtype=torch.float64, device="cpu")
    views = torch.stack([project(X, cams.P_normalized[k]) for k in range(6)], dim=1)
    out = synthesize(
        views,
        cams,
        BODY14.parents,
        BODY14.root,
        Stage3Config(fit_steps=20),
        generator=torch.Generator().manual_seed(0),
    )
    assert out["views"].shape == (3, 4, 16, 14, 2)
    assert epipolar_loss(out["views"], out["F"]) < 1e-8  # strictly consistent by construction
    Y = out["joints3d"]
    assert Y[..., 1].amin(dim=(1, 2)).abs().max() < 1e-9  # on the floor
    r0 = Y[:, 0, list(BODY14.root)].mean(1)
    assert r0[:, [0, 2]].abs().max() < 1e-9  # first-frame root at the origin (x, z)


def test_canonicalize_respects_mask():
    Y = torch.rand(1, 5, 14, 3, dtype=torch.float64) + 1.0
    Y[0, 4] = -100.0  # padding garbage
    mask = torch.tensor([[True, True, True, True, False]])
    out = canonicalize(Y, BODY14.root, mask=mask)
    assert out[0, :4, :, 1].min().abs() < 1e-12


def test_flagged_triangulation_is_not_valid_and_stays_out_of_the_fit(seed):
    """One view of one point corrupted: the reprojection outlier is flagged, so it is not valid (it was
    valid when "finite" was the rule) and the joint fit is the same as if that point had not been seen."""
    gen = torch.Generator().manual_seed(seed)
    B, T, J = 2, 12, 14
    X = torch.stack([torch.as_tensor(random_motion(seed % 10_000 + s, T).positions) for s in range(B)])
    X = X - X[:, :1, list(BODY14.root)].mean(2, keepdim=True) + torch.tensor([0.0, 1.0, 0.0], dtype=X.dtype)
    cams, _ = make_ring(Stage2Config(), dtype=torch.float64, device="cpu")
    views = torch.stack([project(X, cams.P_normalized[k]) for k in range(6)], dim=1)
    b, v, t, j = (int(torch.randint(n, (1,), generator=gen)) for n in (B, 6, T, J))
    direction = torch.randn(2, generator=gen, dtype=torch.float64)
    corrupted = views.clone()
    corrupted[b, v, t, j] += (0.3 + 0.5 * torch.rand(1, generator=gen).item()) * direction / direction.norm()

    Xt, valid = triangulate_views(corrupted, cams, refine_iters=5)
    assert not valid[b, t, j]
    assert torch.isnan(Xt[b, t, j]).all()  # not handed on as a number either
    others = torch.ones_like(valid)
    others[b, t, j] = False
    assert valid[others].all()
    assert (Xt[others] - X.reshape(-1, 3)[others.flatten()]).abs().max() < 1e-6

    # the fit's data term never sees the corrupted point: the same result as a point no view saw at all
    unseen = views.clone()
    unseen[b, :, t, j] = float("nan")
    cfg = Stage3Config(fit_steps=15)
    got = synthesize(
        corrupted, cams, BODY14.parents, BODY14.root, cfg, generator=torch.Generator().manual_seed(1)
    )
    ref = synthesize(
        unseen, cams, BODY14.parents, BODY14.root, cfg, generator=torch.Generator().manual_seed(1)
    )
    assert not got["triangulated_valid"][b, t, j]
    torch.testing.assert_close(got["triangulated_valid"], ref["triangulated_valid"], rtol=0, atol=0)
    torch.testing.assert_close(got["joints3d"], ref["joints3d"], rtol=0, atol=0)


def test_masked_frames_are_not_valid(seed):
    X = _procedural(1, 10)
    cams, _ = make_ring(Stage2Config(), dtype=torch.float64, device="cpu")
    views = torch.stack([project(X, cams.P_normalized[k]) for k in range(6)], dim=1)
    mask = torch.rand(1, 10) < 0.5
    mask[0, seed % 10] = True
    _, valid = triangulate_views(views, cams, mask=mask)
    assert torch.equal(valid, mask[:, :, None].expand(1, 10, 14))
