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
