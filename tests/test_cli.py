"""The `mvlift` command line: data show, profile, help, and clear errors."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

import pytest
import torch

from mvlift.cli import build_parser, main


def test_data_show_plots_a_real_clip(tmp_path, cmu_dir):
    out = tmp_path / "clip.png"
    assert (
        main(["data", "show", str(cmu_dir / "asfamc" / "05_01.amc"), "--out", str(out), "--frames", "3"]) == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_profile_stage2_prints_both_backends(capsys, cpu_training):
    args = [
        "profile",
        "stage2",
        "--batch",
        "2",
        "--frames",
        "8",
        "--joints",
        "5",
        "--d-model",
        "16",
        "--layers",
        "1",
        "--heads",
        "2",
        "--iters",
        "2",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| eager |" in out and "| fused |" in out and "vs eager" in out
    assert "fused+bf16" not in out  # CUDA only (autocast is off on the CPU)


def test_help_lists_every_command():
    text = build_parser().format_help()
    for cmd in ("demo", "run", "data", "stage1", "stage2", "stage3", "stage4", "eval", "lift", "profile"):
        assert cmd in text


def test_missing_config_is_a_clear_error(tmp_path, capsys):
    assert main(["stage1", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["frobnicate"])


# ---------------------------------------------------------------- clear errors instead of tracebacks


def _checkpoint(folder, kind: str) -> None:
    """An untrained model's checkpoint in ``folder`` (enough for the checks that precede lifting)."""
    from mvlift.models import DenoiserConfig, build_model
    from mvlift.training.checkpoint import save_checkpoint

    cfg = DenoiserConfig(
        num_joints=14,
        kind=kind,
        d_model=16,
        num_layers=1,
        num_heads=2,
        ffn_dim=16,
        dropout=0.0,
        max_frames=32,
    )
    state = build_model(cfg, seed=0).state_dict()
    meta = {"model_config": cfg.to_dict()}
    save_checkpoint(folder / "checkpoints", 1, model_state=state, ema_state=state, optimizer_state=None,
                    rng_states=None, meta=meta)  # fmt: skip


def _sequence(tmp_path):
    import numpy as np

    from mvlift.data import BODY14
    from mvlift.data.motion import Sequence2D
    from mvlift.data.npz import save_sequence2d_npz

    rng = np.random.default_rng(0)
    kp = 900 + 80 * rng.standard_normal((12, 14, 2))
    seq = Sequence2D(kp, np.ones((12, 14)), 30.0, BODY14.joint_names, (1920, 1080), BODY14, "test")
    path = tmp_path / "seq.npz"
    save_sequence2d_npz(path, seq)
    return path


@pytest.fixture
def no_lifting(monkeypatch):
    """Fails the test if ``mvlift lift`` starts the lifting itself: the errors must come before it."""
    import mvlift.stages.lift_io as lift_io

    def fail(*args, **kwargs):
        raise AssertionError("the lifting ran before the error")

    monkeypatch.setattr(lift_io, "lift", fail)


def _lift(tmp_path, model, *extra):
    """``mvlift lift`` of a bare checkpoint (no run folder around it, so no stage-2 fusion)."""
    argv = ["lift", str(_sequence(tmp_path)), "--model", str(model), "--steps", "2", "--stage2-weight", "0"]
    return main([*argv, *extra])


def test_lift_with_a_stage1_model_says_it_needs_the_stage4_model(tmp_path, capsys, no_lifting):
    _checkpoint(tmp_path / "stage1", "stage1")
    assert _lift(tmp_path, tmp_path / "stage1", "--out", str(tmp_path / "out"), "--device", "cpu") == 2
    err = capsys.readouterr().err
    assert "'stage1' (single-view) model; lifting needs the stage-4 multi-view model" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_a_device_this_machine_lacks_is_a_clear_error(tmp_path, capsys, no_lifting):
    _checkpoint(tmp_path / "stage4", "multiview")
    out = str(tmp_path / "out")
    assert _lift(tmp_path, tmp_path / "stage4", "--out", out, "--device", "cuda") == 2
    err = capsys.readouterr().err
    assert "--device: 'cuda' was asked for, but" in err and "use 'cpu' or 'auto'" in err
    assert _lift(tmp_path, tmp_path / "stage4", "--out", out, "--device", "gpu") == 2
    assert "--device: expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got 'gpu'" in capsys.readouterr().err
    assert main(["profile", "stage2", "--device", "cuda", "--iters", "1"]) == 2
    assert "--device: 'cuda' was asked for" in capsys.readouterr().err


def _unwritable_folder(tmp_path):
    """A folder this process cannot write into (root ignores permission bits: a sysfs folder then)."""
    import os
    import tempfile

    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o500)
        return folder
    for folder in (Path("/sys/kernel"), Path("/proc/self")):
        try:
            os.close(tempfile.mkstemp(dir=folder)[0])
        except OSError:
            return folder
    pytest.skip("no unwritable folder on this machine")


def test_an_unusable_output_folder_fails_before_any_work(tmp_path, capsys, no_lifting):
    _checkpoint(tmp_path / "stage4", "multiview")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    cases = [
        (blocker, "exists and is not a folder"),
        (blocker / "out", f"{blocker} is a file"),
        (_unwritable_folder(tmp_path), "cannot write into the folder"),
    ]
    for out, message in cases:
        assert _lift(tmp_path, tmp_path / "stage4", "--out", str(out), "--device", "cpu") == 2
        err = capsys.readouterr().err
        assert "--out: " in err and message in err and "Traceback" not in err, err


def test_run_checks_device_and_out_dir_before_it_starts(tmp_path, capsys, monkeypatch):
    import mvlift.stages.pipeline as pipeline

    def fail(*args, **kwargs):
        raise AssertionError("the data step ran before the error")

    monkeypatch.setattr(pipeline, "prepare_data", fail)
    config = Path(str(resources.files("mvlift") / "configs" / "demo.yaml"))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["run", str(config), "--out", str(blocker / "run")]) == 2
    assert (
        f"out_dir: cannot create the folder {blocker / 'run'}: {blocker} is a file" in capsys.readouterr().err
    )
    if not torch.cuda.is_available():
        assert main(["run", str(config), "--out", str(tmp_path / "run"), "--device", "cuda"]) == 2
        assert "device: 'cuda' was asked for, but" in capsys.readouterr().err
        assert not (tmp_path / "run").exists()


def test_a_step_without_its_input_names_the_step_that_writes_it(tmp_path, capsys, cpu_training):
    """`mvlift stage1 CONFIG` in a fresh folder: the data step has not run."""
    import yaml

    config = yaml.safe_load((resources.files("mvlift") / "configs" / "demo.yaml").read_text())
    config["data"].update(train_clips=3, eval_clips=1, clip_frames=24, window=24, min_length=16)
    config["model"].update(d_model=16, num_layers=1, num_heads=2, ffn_dim=16, max_frames=32)
    config["out_dir"] = str(tmp_path / "run")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    for step, needs, fix in [
        ("stage1", "data/train", "mvlift run CONFIG --steps data"),
        ("stage4", "synthetic", "mvlift stage2 CONFIG"),
        ("eval", "data/eval", "mvlift run CONFIG --steps data"),
    ]:
        assert main([step, str(path)]) == 2
        err = capsys.readouterr().err
        assert "needs the" in err and needs in err and f"`{fix}` first" in err and "Traceback" not in err
    assert main(["run", str(path), "--steps", "data"]) == 0  # the step the message names
    assert (tmp_path / "run" / "data" / "train" / "manifest.json").is_file()
    assert main(["stage2", str(path)]) == 2
    assert "the 'stage1' step writes" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- help


def _parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _parsers(sub)


def test_help_has_no_markup_and_every_option_is_described_with_its_default():
    parsers = list(_parsers(build_parser()))
    assert len(parsers) >= 12
    for parser in parsers:
        text = parser.format_help()
        assert "``" not in text and "::" not in text and ":func:" not in text, parser.prog
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, (parser.prog, action.dest)
    lift = next(p for p in parsers if p.prog == "mvlift lift")
    text = " ".join(lift.format_help().split())
    assert "DDIM steps (default: 20)" in text and "sampling seed (default: 0)" in text
    run = next(p for p in parsers if p.prog == "mvlift run")
    assert "--check" in run.format_help()
    assert "mvlift/configs/demo.yaml" in build_parser().format_help()


def test_bad_option_values_are_rejected_by_the_parser(capsys):
    for argv in (
        ["lift", "x.npz", "--model", "m", "--out", "o", "--steps", "-3"],
        ["profile", "stage2", "--batch", "0"],
    ):
        with pytest.raises(SystemExit):
            main(argv)
        assert "expected an int >= 1" in capsys.readouterr().err
