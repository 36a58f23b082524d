"""The GPU table scripts in benchmarks/ run end to end (on the CPU, at toy sizes) and print their tables.

They are meant for a GPU, which this project's CI does not have; running them here keeps them from rotting
between the rare sessions that get one. Timings from these runs mean nothing (interpreted kernels).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

SCRIPTS = {
    "gpu_losses.py": (
        ["--device", "cpu", "--frames", "8", "--joints", "5", "--views", "3", "--batches", "2"],
        ["| epipolar |", "| line |", "| stage1 |", "| ours |", "| eager |"],
    ),
    "gpu_triangulate.py": (
        [
            "--device",
            "cpu",
            "--sequences",
            "2",
            "--frames",
            "4",
            "--joints",
            "5",
            "--adam-steps",
            "5",
            "--fp64",
        ],
        ["| ours dlt |", "| ours lm3 fp64 |", "| torch svd |", "| adam 5 |"],
    ),
    "gpu_cross_view_attention.py": (
        ["--device", "cpu", "--n", "33", "--views", "4", "--heads", "2", "--dim", "16", "--dtypes", "fp32"],
        ["| sdpa |", "| ours |", "fwd+bwd"],
    ),
    "gpu_training.py": (
        [
            "--device",
            "cpu",
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
        ]
        + ["--heads", "2", "--ffn", "16", "--iters", "1", "--warmup", "1"],
        ["| stage1 | 5 | sdpa |", "temporal sdpa, cross kernel", "unavailable: xformers"],
    ),
}


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_gpu_script_runs_on_cpu(script, tmp_path):
    args, expected = SCRIPTS[script]
    env = {**os.environ, "TRITON_INTERPRET": "1", "MPLBACKEND": "Agg"}
    # cwd outside the checkout, so that `import mvlift` finds the installed package in a non-editable install.
    run = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    for text in expected:
        assert text in run.stdout, (text, run.stdout[-3000:])


def test_gpu_all_runs_on_cpu_at_toy_sizes(tmp_path, cmu_dir):
    """benchmarks/gpu_all.sh in its toy mode (MVLIFT_GPU_ALL_TOY=1): every step but the build and the CUDA
    tests runs at toy sizes on the CPU (five real CMU clips for the short pipeline run), each step's output
    lands in its own file under one folder, and the summary says every step is ok."""
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("05.asf", "05_01.amc", "05_02.amc", "05_03.amc", "05_04.amc", "05_05.amc"):
        (clips / name).symlink_to(cmu_dir / "asfamc" / name)
    out = tmp_path / "gpu_all"
    env = {
        **os.environ,
        "MVLIFT_GPU_ALL_TOY": "1",
        "MVLIFT_GPU_ALL_DATA": str(clips),
        "MVLIFT_GPU_ALL_RUN_DIR": str(tmp_path / "run"),  # not the checkout's runs/: a rerun starts afresh
        "PYTHON": sys.executable,
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
    }
    run = subprocess.run(
        ["bash", str(BENCH / "gpu_all.sh"), str(out)], env=env, capture_output=True, text=True, timeout=900
    )
    summary = (out / "summary.md").read_text() if (out / "summary.md").is_file() else ""
    assert run.returncode == 0, summary + run.stdout[-4000:] + run.stderr[-2000:]
    steps = ["env", "gpu_losses", "gpu_triangulate", "gpu_cross_view_attention", "gpu_training"]
    for step in [*steps, "profile_stage2", "cmu_gpu_run"]:
        assert f"| {step} | ok |" in summary, (step, summary)
        assert (out / f"{step}.log").is_file()
    for step in ("build", "compile_check", "pytest_cuda"):
        assert f"| {step} | skipped (toy mode" in summary
    assert "| epipolar |" in (out / "gpu_losses.md").read_text()
    assert "| ours dlt |" in (out / "gpu_triangulate.md").read_text()
    assert "| sdpa |" in (out / "gpu_cross_view_attention.md").read_text()
    assert "| stage1 | 5 | sdpa |" in (out / "gpu_training.md").read_text()
    assert "| mvlift |" in (out / "cmu_gpu_metrics.md").read_text()
    log = (out / "all.log").read_text()
    assert "=== profile_stage2" in log and "every step ok" in log
