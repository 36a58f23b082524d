"""`mvlift lift INPUT`: read a 2D file, lift it with a trained stage-4 checkpoint, write npz + pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvlift.cli import main
from mvlift.data import BODY14, generate_motion
from mvlift.data.motion import Sequence2D
from mvlift.data.npz import save_sequence2d_npz
from mvlift.geometry import ring_cameras
from mvlift.models import DenoiserConfig, build_model
from mvlift.schedulers import CosineSchedule
from mvlift.stages.lift_io import lift_file, read_sequence2d
from mvlift.training import MultiViewDataset, Stage4Objective, TrainConfig, Trainer


@pytest.fixture(scope="module")
def stage4_run(tmp_path_factory):
    """A (barely) trained 4-view model checkpoint, good enough to exercise the I/O path."""
    out = tmp_path_factory.mktemp("stage4")
    torch.manual_seed(0)
    views = torch.rand(4, 4, 16, BODY14.num_joints, 2) - 0.5
    model = build_model(
        DenoiserConfig(
            num_joints=14,
            kind="multiview",
            d_model=32,
            num_layers=1,
            num_heads=2,
            ffn_dim=32,
            dropout=0.0,
            max_frames=32,
        )
    )
    cfg = TrainConfig(batch_size=2, grad_accum=1, max_steps=2, out_dir=str(out), device="cpu", progress=False)
    Trainer(model, Stage4Objective(CosineSchedule()), MultiViewDataset(views), cfg).fit()
    return out


def _sequence_file(tmp_path, frames: int = 20, kind: str = "walk"):
    X = torch.as_tensor(generate_motion(kind, frames, seed=3).positions)
    root = X[0, list(BODY14.root)].mean(0)
    cams = ring_cameras(1, radius=4.0, look_at=root)
    kp = cams.project(X)[0].numpy()
    conf = np.ones(kp.shape[:2])
    conf[5, 2] = 0.0
    kp[5, 2] = np.nan  # a missing detection
    seq = Sequence2D(kp, conf, 30.0, BODY14.joint_names, (1920, 1080), BODY14, "test")
    path = tmp_path / "seq.npz"
    save_sequence2d_npz(path, seq)
    return path


def test_lift_file_writes_motion_and_pictures(tmp_path, stage4_run, cpu_training):
    path = _sequence_file(tmp_path)
    assert read_sequence2d(path).keypoints.shape == (20, 14, 2)
    written = lift_file(path, stage4_run, tmp_path / "out", steps=2)
    with np.load(written["lifted"]) as z:
        assert z["joints3d"].shape == (20, 14, 3)
        assert z["root"].shape == (20, 3)
        assert z["views"].shape == (4, 20, 14, 2)
        np.testing.assert_allclose(z["root"], z["joints3d"][:, list(BODY14.root)].mean(1))
    for key in ("view0", "motion3d"):
        assert (tmp_path / "out").joinpath(written[key].split("/")[-1]).stat().st_size > 1000


def test_lift_cli_and_errors(tmp_path, stage4_run, cpu_training, capsys):
    path = _sequence_file(tmp_path)
    assert (
        main(["lift", str(path), "--model", str(stage4_run), "--out", str(tmp_path / "o"), "--steps", "2"])
        == 0
    )
    assert "lifted" in capsys.readouterr().out
    assert (
        main(["lift", str(tmp_path / "missing.npz"), "--model", str(stage4_run), "--out", str(tmp_path)]) == 2
    )
    bad = tmp_path / "x.txt"
    bad.write_text("nothing")
    with pytest.raises(ValueError, match="expected .npz"):
        read_sequence2d(bad)


def test_sequences_longer_than_the_model_are_cut_with_a_warning(tmp_path, stage4_run, cpu_training):
    path = _sequence_file(tmp_path, frames=40, kind="dance")  # the fixture model covers 32 frames
    with pytest.warns(UserWarning, match="lifting the first 32 frames"):
        written = lift_file(path, stage4_run, tmp_path / "out", steps=2)
    assert written["frames"].startswith("32 of ")
    with np.load(written["lifted"]) as z:
        assert z["joints3d"].shape[0] == 32
