"""The `mvlift` command line: data show, profile, help, and clear errors."""

from __future__ import annotations

import pytest

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
