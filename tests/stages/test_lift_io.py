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
from mvlift.stages.lift_io import lift_file, read_sequence2d


@pytest.fixture(scope="module")
def stage4_run(tmp_path_factory, train_tiny_stage4_fn):
    """A (barely) trained 4-view model checkpoint, good enough to exercise the I/O path."""
    return train_tiny_stage4_fn(tmp_path_factory.mktemp("stage4"), max_frames=32)


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
    for key in ("view0", "motion3d", "viewpoints"):
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


def test_lift_cli_defaults_are_lift_files_measured_defaults(monkeypatch, tmp_path):
    """The command line and :func:`lift_file` share the measured lifting defaults (samples, input-view
    weight, joint fit), and the flags reach :func:`mvlift.stages.lift.lift`."""
    import importlib
    import inspect

    lift_io = importlib.import_module("mvlift.stages.lift_io")
    defaults = inspect.signature(lift_io.lift_file).parameters
    seen = {}
    monkeypatch.setattr(lift_io, "lift_file", lambda *a, **k: seen.update(k) or {"summary": "s"})
    assert main(["lift", "in.npz", "--out", str(tmp_path / "o")]) == 0
    names = ("steps", "samples", "input_view_weight", "smooth_steps", "stage2_weight")
    for name in names:
        assert seen[name] == defaults[name].default, name
    assert tuple(seen[n] for n in names) == (20, 8, 100.0, 100, 0.5)
    args = ["lift", "in.npz", "--out", str(tmp_path / "o"), "--samples", "3", "--input-view-weight", "2.5"]
    assert main([*args, "--smooth-steps", "0"]) == 0
    assert (seen["samples"], seen["input_view_weight"], seen["smooth_steps"]) == (3, 2.5, 0)
    assert main([*args, "--stage2-weight", "1"]) == 0 and seen["stage2_weight"] == 1.0
    with pytest.raises(SystemExit):  # argparse: "expected a number in [0, 1], got 1.5"
        main([*args, "--stage2-weight", "1.5"])
    with pytest.raises(SystemExit):  # argparse: "expected an int >= 1, got 0"
        main(["lift", "in.npz", "--out", str(tmp_path / "o"), "--samples", "0"])


def test_sequences_longer_than_the_model_are_cut_with_a_warning(tmp_path, stage4_run, cpu_training):
    path = _sequence_file(tmp_path, frames=40, kind="dance")  # the fixture model covers 32 frames
    with pytest.warns(UserWarning, match="lifting the first 32 frames"):
        written = lift_file(path, stage4_run, tmp_path / "out", steps=2)
    assert written["frames"].startswith("32 of ")
    with np.load(written["lifted"]) as z:
        assert z["joints3d"].shape[0] == 32


def test_lift_with_smpl_writes_parameters_that_reproduce_the_joints(
    tmp_path, stage4_run, cpu_training, monkeypatch, seed, smplx_module, hbp_module, synthetic_model
):
    """The fit runs on the lifted joints in their world frame and its parameters land in lifted.npz. The
    barely trained fixture model lifts garbage, so the lifted joints are replaced by a posed SMPL body."""
    import dataclasses

    from mvlift.body import load_body_models, smpl_joints_to_skeleton, write_smpl_pickle
    from mvlift.stages import lift_io

    smpl = write_smpl_pickle(tmp_path / "smpl.pkl", synthetic_model)
    layer, _ = load_body_models(smpl, None)
    T = 20
    yaw = torch.linspace(0.0, 1.0, T)
    orient = torch.stack([torch.zeros(T), yaw, torch.zeros(T)], dim=-1)
    transl = torch.stack([torch.linspace(-0.3, 0.3, T), torch.full((T,), 1.0), torch.zeros(T)], dim=-1)
    body = layer(global_orient=orient, body_pose=0.1 * torch.randn(T, 69), transl=transl)
    target = smpl_joints_to_skeleton(body.joints, BODY14).detach()  # (T, 14, 3) metres, world frame

    real_lift = lift_io.lift

    def lift_then_replace(*args, **kwargs):
        res = real_lift(*args, **kwargs)
        return dataclasses.replace(
            res, joints3d=target[None], root=target[None][:, :, list(BODY14.root)].mean(2)
        )

    monkeypatch.setattr(lift_io, "lift", lift_then_replace)
    path = _sequence_file(tmp_path, frames=T)
    with pytest.warns(UserWarning, match="randomly initialised VPoser"):
        written = lift_file(path, stage4_run, tmp_path / "out", steps=2, smpl_model=smpl, smpl_steps=150)
    with np.load(written["lifted"]) as z:
        shapes = {k: z[k].shape for k in z.files if k.startswith("smpl_")}
        params = {k: torch.as_tensor(z[k]) for k in shapes}
    assert shapes == {
        "smpl_global_orient": (T, 3),
        "smpl_body_pose": (T, 69),
        "smpl_transl": (T, 3),
        "smpl_betas": (10,),
        "smpl_latent": (T, 32),
        "smpl_joints": (T, 14, 3),
    }
    # The parameters reproduce the fitted joints through the smplx layer ...
    out = layer(
        betas=params["smpl_betas"].expand(T, -1),
        global_orient=params["smpl_global_orient"],
        body_pose=params["smpl_body_pose"],
        transl=params["smpl_transl"],
    )
    torch.testing.assert_close(
        smpl_joints_to_skeleton(out.joints, BODY14), params["smpl_joints"], atol=1e-4, rtol=0
    )
    # ... and the body fits the lifted joints in their own frame: a canonical fit would have moved the first
    # root (at x = -0.3 m) to x = z = 0 and the feet to the floor.
    # (The random VPoser cannot pose the body exactly, so single frames miss by a few cm.)
    root_err = (
        params["smpl_joints"][:, list(BODY14.root)].mean(1) - target[:, list(BODY14.root)].mean(1)
    ).norm(dim=-1)
    assert root_err.mean() < 0.04 and root_err.max() < 0.15, root_err
    assert (params["smpl_joints"] - target).norm(dim=-1).mean() < 0.08


def test_lift_with_smpl_checks_its_inputs_before_lifting(tmp_path, stage4_run, cpu_training, smplx_module):
    path = _sequence_file(tmp_path)
    with pytest.raises(FileNotFoundError, match="smpl_model: SMPL model file not found"):
        lift_file(path, stage4_run, tmp_path / "out", steps=2, smpl_model=tmp_path / "none.pkl")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="vposer_weights is given without smpl_model"):
        lift_file(path, stage4_run, tmp_path / "out", vposer_weights=tmp_path)
    with pytest.raises(ValueError, match="smpl_steps must be an int >= 1"):
        lift_file(path, stage4_run, tmp_path / "out", smpl_model=tmp_path / "none.pkl", smpl_steps=0)
    argv = ["lift", str(path), "--model", str(stage4_run), "--out", str(tmp_path / "o")]
    assert main([*argv, "--smpl-model", str(tmp_path / "x.pkl")]) == 2


def test_input_view_weight_pulls_the_joints_onto_the_observed_rays(stage4_run, cpu_training, seed):
    """LiftConfig.input_view_weight: the heavier the observed view, the smaller its reprojection error (the
    barely trained fixture model generates inconsistent views, so with weight 1 the error is large)."""
    from mvlift.stages.lift import LiftConfig, lift
    from mvlift.training import load_model

    model = load_model(stage4_run)
    x = (torch.rand(2, 12, 14, 2) - 0.5) * 0.6
    errors = []
    for w in (1.0, 100.0):
        res = lift(model, x, LiftConfig(steps=2, progress=False, input_view_weight=w, seed=seed % 1000))
        assert torch.equal(res.views[:, 0], x)
        X = res.joints3d.double()
        P0 = res.cameras.P_normalized[0]
        uv = torch.einsum("ij,btkj->btki", P0, torch.cat([X, torch.ones_like(X[..., :1])], dim=-1))
        err = (uv[..., :2] / uv[..., 2:] - x.double()).norm(dim=-1)
        errors.append(err[res.valid].mean().item())
    assert errors[1] < 0.2 * errors[0], errors
    with pytest.raises(ValueError, match="input_view_weight: expected a number > 0"):
        LiftConfig(input_view_weight=0.0)


def test_lift_file_fuses_the_stage2_of_the_models_run(tmp_path, stage4_run, cpu_training):
    """By default `mvlift lift` mixes in the stage-2 estimate made with the stage-1 model and stage-2
    settings of the run the stage-4 model comes from; a checkpoint outside a run folder is a clear error
    that says how to lift without the fusion."""
    import shutil

    path = _sequence_file(tmp_path)
    written = lift_file(path, stage4_run, tmp_path / "out", steps=2)
    assert written["stage1_model"] == str(stage4_run.parent / "stage1")
    with np.load(written["lifted"]) as z:
        assert z["stage2"].shape == (20, 14, 3)
        assert np.isfinite(z["stage2"]).all()
    plain = lift_file(path, stage4_run, tmp_path / "plain", steps=2, stage2_weight=0.0)
    assert "stage1_model" not in plain
    with np.load(plain["lifted"]) as z:
        assert "stage2" not in z.files
    bare = tmp_path / "bare" / "stage4"
    shutil.copytree(stage4_run, bare)
    with pytest.raises(ValueError, match=r"no run folder .* or pass --stage2-weight 0"):
        lift_file(path, bare, tmp_path / "o2", steps=2)
    assert "stage2" not in np.load(lift_file(path, bare, tmp_path / "o3", steps=2, stage2_weight=0)["lifted"])
    shutil.copytree(stage4_run, tmp_path / "bare" / "stage1")  # a run folder whose stage1/ is not stage 1
    shutil.copy(stage4_run.parent / "config.json", tmp_path / "bare" / "config.json")
    with pytest.raises(ValueError, match=r"expected the run's stage-1 model on 14 joints .* 'multiview'"):
        lift_file(path, bare, tmp_path / "o4", steps=2)
