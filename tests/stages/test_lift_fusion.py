"""Lifting fused with stage 2 (``LiftConfig.stage2_weight``, :mod:`mvlift.stages.fusion`): the stage-4
triangulation and the stage-2 estimate of the same input mixed point by point before the joint fit."""

from __future__ import annotations

import importlib

import pytest
import torch

from mvlift._fields import ConfigError
from mvlift.data import BODY14, generate_motion
from mvlift.stages.fusion import Stage2Fusion, fuse_estimates, stage2_estimate
from mvlift.stages.lift import LiftConfig, inference_ring, lift
from mvlift.stages.pipeline import PipelineConfig
from mvlift.stages.stage2 import Stage2Config

lift_module = importlib.import_module("mvlift.stages.lift")  # (mvlift.stages.lift is also the function)


def _identity_denoiser(x_t, t, lines, mask):
    """A stand-in stage-1 model: predicts its noisy input (any callable with the model's signature)."""
    return x_t


def _stage2_config(**kw) -> Stage2Config:
    base = dict(parameterization="depth", init="single_view", steps=3, lr=1e-3, progress=False, seed=3)
    return Stage2Config(**{**base, **kw})


def _ring_views(frames: int = 17, seed: int = 0):
    """A dance seen by the inference ring with a little noise: (1, 4, T, 14, 2) normalised, and its 3D."""
    cams = inference_ring(LiftConfig())
    X = torch.as_tensor(generate_motion("dance", frames, seed=seed).positions)
    X = X - X[0, list(BODY14.root)].mean(0) + torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    views = cams.project(X, normalized=True)[None].clone()
    g = torch.Generator().manual_seed(seed)
    return views + 0.004 * torch.randn(views.shape, generator=g, dtype=views.dtype), X


def test_fuse_estimates_mixes_valid_finite_points(seed):
    g = torch.Generator().manual_seed(seed)
    tri = torch.randn(2, 7, 5, 3, generator=g, dtype=torch.float64)
    s2 = torch.randn(2, 7, 5, 3, generator=g, dtype=torch.float64)
    valid = torch.rand(2, 7, 5, generator=g) > 0.3
    s2[0, 3, 1] = torch.nan  # a stage-2 point without a value keeps the triangulation
    valid[0, 3, 1] = True
    out = fuse_estimates(tri, valid, s2, 0.25)
    use = valid.clone()
    use[0, 3, 1] = False
    torch.testing.assert_close(out[use], 0.75 * tri[use] + 0.25 * s2[use], rtol=0, atol=1e-12)
    torch.testing.assert_close(out[~use], tri[~use], rtol=0, atol=0)
    torch.testing.assert_close(fuse_estimates(tri, valid, s2, 0.0), tri, rtol=0, atol=0)


def test_fuse_estimates_rejects_bad_weight_and_shape():
    tri = torch.randn(1, 3, 2, 3)
    valid = torch.ones(1, 3, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"weight must lie in \[0, 1\], got 1.5"):
        fuse_estimates(tri, valid, tri, 1.5)
    with pytest.raises(ValueError, match=r"stage2 must have the triangulation's shape \(1, 3, 2, 3\)"):
        fuse_estimates(tri, valid, tri[:, :2], 0.5)


@pytest.mark.parametrize("weight", [0.5, 1.0])
def test_lift_mixes_the_stage2_estimate_into_the_triangulation(monkeypatch, weight):
    """Without the joint fit, every valid point is (1 - w) triangulation + w stage 2, the stage-2 estimate
    being the one :func:`stage2_estimate` gives for the same input (seeded)."""
    views, _ = _ring_views()
    monkeypatch.setattr(lift_module, "sample_views", lambda model, x, config, mask=None: views.float())
    x = views[:, 0].float()
    fusion = Stage2Fusion(_identity_denoiser, _stage2_config(), BODY14)
    config = LiftConfig(steps=1, progress=False, stage2_weight=weight)
    res = lift(None, x, config, root=BODY14.root, stage2=fusion)
    expected_s2 = stage2_estimate(fusion, x, config)
    assert res.stage2 is not None and res.stage2.shape == x.shape[:3] + (3,)
    torch.testing.assert_close(res.stage2, expected_s2.float())
    tri = res.triangulated.double()
    v = res.valid
    assert v.float().mean() > 0.9
    mixed = (1 - weight) * tri[v] + weight * expected_s2.double()[v]
    torch.testing.assert_close(res.joints3d.double()[v], mixed, rtol=1e-5, atol=1e-6)
    plain = lift(None, x, LiftConfig(steps=1, progress=False), root=BODY14.root)
    assert plain.stage2 is None
    assert (plain.joints3d[v] - res.joints3d[v]).abs().max() > 1e-4  # the fusion moved the points


def test_lift_fuses_then_fits(monkeypatch):
    views, _ = _ring_views()
    monkeypatch.setattr(lift_module, "sample_views", lambda model, x, config, mask=None: views.float())
    fusion = Stage2Fusion(_identity_denoiser, _stage2_config(), BODY14)
    config = LiftConfig(steps=1, progress=False, stage2_weight=0.5, smooth_steps=5)
    res = lift(None, views[:, 0].float(), config, root=BODY14.root, parents=BODY14.parents, stage2=fusion)
    assert torch.isfinite(res.joints3d).all()


def test_lift_stage2_weight_needs_the_fusion_inputs():
    x = _ring_views()[0][:, 0].float()
    with pytest.raises(ValueError, match=r"stage2_weight = 0.5 needs stage2=Stage2Fusion"):
        lift(None, x, LiftConfig(steps=1, progress=False, stage2_weight=0.5))
    with pytest.raises(ValueError, match="stage2_weight"):
        LiftConfig(stage2_weight=1.5)


def test_stage2_estimate_needs_the_depth_parameterisation_and_a_shared_camera_0():
    x = _ring_views()[0][:, 0].float()
    lift_config = LiftConfig(progress=False)
    views_cfg = Stage2Config(parameterization="views", progress=False)
    with pytest.raises(ValueError, match="parameterization='depth'"):
        stage2_estimate(Stage2Fusion(_identity_denoiser, views_cfg, BODY14), x, lift_config)
    other_ring = _stage2_config(radius=4.0)
    with pytest.raises(ValueError, match=r"stage2.radius = 4.0 but lift.radius = 3.0"):
        stage2_estimate(Stage2Fusion(_identity_denoiser, other_ring, BODY14), x, lift_config)
    with pytest.raises(ValueError, match="the skeleton has 14 joints, x_input has 5"):
        stage2_estimate(Stage2Fusion(_identity_denoiser, _stage2_config(), BODY14), x[:, :, :5], lift_config)


def test_pipeline_config_checks_the_fusion_early():
    """A run fails at its config, not after hours of training, when lifting cannot fuse stage 2."""
    with pytest.raises(ConfigError, match="stage2.parameterization: depth"):
        PipelineConfig(stage2=Stage2Config(parameterization="views"), lift=LiftConfig(stage2_weight=0.5))
    depth = Stage2Config(parameterization="depth", init="single_view")
    with pytest.raises(ConfigError, match=r"lift.focal.*expected stage2.focal \(1000.0\)"):
        PipelineConfig(stage2=depth, lift=LiftConfig(stage2_weight=0.5, focal=900.0))
    PipelineConfig(stage2=depth, lift=LiftConfig(stage2_weight=0.5))  # consistent: accepted
