"""Per-stage diagnostics: pixel distances, the truth placed in the ring, and a micro run's report."""

from __future__ import annotations

import json
import math

import torch
import yaml

from mvlift.cli import main
from mvlift.geometry import epipolar_line_conditions, project
from mvlift.stages.diagnostics import (
    _place_truth_in_ring,
    pixel_epipolar_distance,
    pixel_line_distance,
)
from mvlift.stages.pipeline import load_pipeline_config, run_pipeline
from mvlift.stages.stage2 import Stage2Config, make_ring


def test_pixel_line_distance_is_the_distance_in_pixels(seed):
    g = torch.Generator().manual_seed(seed)
    W, H = 1920, 1080
    px = torch.rand(50, 2, generator=g, dtype=torch.float64) * torch.tensor([W, H], dtype=torch.float64)
    # a pixel line through two random pixels, and its normalised-frame equation
    p, q = torch.rand(2, 2, generator=g, dtype=torch.float64) * torch.tensor([W, H], dtype=torch.float64)
    d = q - p
    n = torch.stack([-d[1], d[0]]) / d.norm()
    expected = ((px - p) @ n).abs()
    N = torch.tensor([[2.0 / W, 0, -1], [0, 2.0 / H, -1], [0, 0, 1]], dtype=torch.float64)
    l_px = torch.cat([n, -(n @ p)[None]])
    l_norm = torch.linalg.solve(N.T, l_px)  # l_px = N^T l_norm
    x_norm = px * torch.tensor([2.0 / W, 2.0 / H], dtype=torch.float64) - 1
    torch.testing.assert_close(pixel_line_distance(x_norm, l_norm.expand(50, 3)), expected)


def _ring_scene(seed: int):
    cfg = Stage2Config()
    cams, F = make_ring(cfg, dtype=torch.float64, device="cpu")
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(2, 9, 6, 3, generator=g, dtype=torch.float64) * 0.3 + torch.tensor([0.1, 1.0, -0.2])
    views = torch.stack([project(X, cams.P_normalized[k]) for k in range(cfg.num_views)], dim=1)
    return cfg, cams, F, X, views


def test_epipolar_distance_is_zero_for_consistent_views_and_grows_with_a_shift(seed):
    cfg, cams, F, X, views = _ring_scene(seed)
    assert pixel_epipolar_distance(views, F) < 1e-6
    shifted = views.clone()
    shifted[:, 3, ..., 1] += 20.0 / 540.0  # 20 px down in view 3
    assert pixel_epipolar_distance(shifted, F) > 1.0
    lines = epipolar_line_conditions(views[:, 0], F[0, 2])
    assert pixel_line_distance(views[:, 2], lines).max() < 1e-6


def test_truth_placed_in_the_ring_from_the_input_view(seed):
    """A motion known up to a rigid motion and a scale is moved back where camera 0 sees the input."""
    _, cams, _, X, views = _ring_scene(seed)
    X, x0 = X[0], views[0, 0]
    angle = 0.7
    R = torch.tensor(
        [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]],
        dtype=torch.float64,
    )
    truth = 1.3 * (X @ R.T) + torch.tensor([2.0, -0.5, 4.0], dtype=torch.float64)
    rough = X + 0.001 * torch.randn(X.shape, generator=torch.Generator().manual_seed(seed), dtype=X.dtype)
    mask = torch.ones(X.shape[0], dtype=torch.bool)
    placed = _place_truth_in_ring(truth, rough, x0, cams.P_normalized[0], mask)
    # the scale comes from the rough start (a projection cannot fix it): 1 mm noise, about 1 cm in depth
    assert (placed - X).norm(dim=-1).max() < 0.03
    reproj = project(placed, cams.P_normalized[0]) - x0
    assert (reproj * torch.tensor([960.0, 540.0], dtype=torch.float64)).norm(dim=-1).max() < 1.0  # < 1 px


def test_micro_run_writes_every_stage_line_and_the_cli_rebuilds_it(
    tmp_path, cpu_training, micro_config, capsys
):
    path = tmp_path / "micro.yaml"
    micro_config["stage2"].update({"parameterization": "depth", "init": "single_view"})
    # cmu_cpu.yaml's lifting: several samples and the joint fit (which needs the skeleton's parents)
    micro_config.setdefault("lift", {}).update({"samples": 2, "input_view_weight": 100.0, "smooth_steps": 5})
    path.write_text(yaml.safe_dump({**micro_config, "out_dir": str(tmp_path / "run")}))
    out = run_pipeline(load_pipeline_config(path))
    diag = out["diagnostics"]
    assert set(diag) == {"stage1", "stage2", "stage3", "single_view", "stage4"}
    assert diag["stage2"]["epipolar_px"] < 1e-2  # depth parameterisation: consistent views
    for key in ("line_px", "bone_spread_2d_samples", "bone_spread_2d_data"):
        assert math.isfinite(diag["stage1"][key]) and diag["stage1"][key] >= 0
    for key in ("mpjpe", "pa_mpjpe"):
        assert diag["stage3"][key] > 0 and diag["single_view"][key] > 0
    assert diag["stage4"]["generated_px"] > 0
    run = tmp_path / "run"
    saved = json.loads((run / "diagnostics.json").read_text())
    assert saved["stage3"]["pa_mpjpe"] == diag["stage3"]["pa_mpjpe"]
    assert "stage 3 synthetic 3D" in (run / "diagnostics.md").read_text()
    timings = json.loads((run / "timings.json").read_text())
    assert set(timings) == {"data", "stage1", "stage2_3", "stage4", "eval", "diagnose"}
    (run / "diagnostics.json").unlink()
    assert main(["diagnose", str(run), "--windows", "4"]) == 0
    assert "stage 2 views" in capsys.readouterr().out
    assert (run / "diagnostics.json").exists()


def test_stage2_window_subset_and_threads_setting():
    import numpy as np

    from mvlift.stages.pipeline import set_threads, stage2_window_indices

    assert stage2_window_indices(5, None).tolist() == [0, 1, 2, 3, 4]
    assert stage2_window_indices(5, 9).tolist() == [0, 1, 2, 3, 4]
    picked = stage2_window_indices(591, 192)
    assert len(picked) == 192 and picked[0] == 0 and picked[-1] == 590 and np.all(np.diff(picked) > 0)
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        assert 1 <= set_threads(0) <= (__import__("os").cpu_count() or 1)
    finally:
        torch.set_num_threads(before)


def test_run_pipeline_leaves_the_thread_count_as_it_was(tmp_path, cpu_training, micro_config):
    path = tmp_path / "micro.yaml"
    path.write_text(yaml.safe_dump({**micro_config, "out_dir": str(tmp_path / "run"), "threads": 1}))
    torch.set_num_threads(2)
    try:
        run_pipeline(load_pipeline_config(path), steps=("data",))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
