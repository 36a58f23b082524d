"""Fixtures of the stage tests."""

from __future__ import annotations

import copy
from typing import Any

import pytest

# The whole pipeline at micro scale: every step runs in a second or two on one CPU core.
_MICRO: dict[str, Any] = {
    "device": "cpu",
    "data": {
        "source": "procedural",
        "train_clips": 6,
        "eval_clips": 2,
        "clip_frames": 24,
        "window": 24,
        "min_length": 16,
    },
    "model": {
        "d_model": 32,
        "num_layers": 1,
        "num_heads": 2,
        "ffn_dim": 32,
        "dropout": 0.0,
        "max_frames": 32,
    },
    "stage1": {
        "batch_size": 4,
        "grad_accum": 1,
        "max_steps": 6,
        "log_every": 2,
        "ckpt_every": 3,
        "ema_every": 1,
        "progress": False,
    },
    "stage2": {"steps": 4, "progress": False, "log_every": 2},
    "stage2_batch": 4,
    "stage3": {"refine_iters": 1, "fit_steps": 3},
    "stage4": {
        "batch_size": 4,
        "grad_accum": 1,
        "max_steps": 6,
        "log_every": 2,
        "ckpt_every": 3,
        "ema_every": 1,
        "progress": False,
    },
    "lift": {"steps": 2, "progress": False},
}


@pytest.fixture
def micro_config() -> dict[str, Any]:
    """A fresh (deep) copy of the micro pipeline config, as a dict (without out_dir)."""
    return copy.deepcopy(_MICRO)


@pytest.fixture(scope="session")
def train_tiny_stage4_fn():
    """:func:`train_tiny_stage4`, for the module-scoped model fixtures of the lifting tests."""
    return train_tiny_stage4


def train_tiny_stage4(out: Any, max_frames: int) -> Any:
    """A run folder in ``out`` as the pipeline writes it, enough to exercise the lifting paths: a barely
    trained 4-view BODY14 model (``out/stage4``: 2 steps on random views, seed 0), a barely trained stage-1
    model (``out/stage1``) and ``out/config.json`` whose stage 2 (depth, single-view start, 2 steps) lifting
    fuses by default; returns ``out/stage4``. ``max_frames``: the longest input the models take."""
    from pathlib import Path

    import torch

    from mvlift.atomic import atomic_write_json
    from mvlift.data import BODY14
    from mvlift.models import DenoiserConfig, build_model
    from mvlift.schedulers import CosineSchedule
    from mvlift.stages.pipeline import PipelineConfig
    from mvlift.stages.stage2 import Stage2Config
    from mvlift.training import (
        MultiViewDataset,
        Stage1Dataset,
        Stage1Objective,
        Stage4Objective,
        TrainConfig,
        Trainer,
    )

    out = Path(out)
    torch.manual_seed(0)
    views = torch.rand(4, 4, 16, BODY14.num_joints, 2) - 0.5
    size = dict(d_model=32, num_layers=1, num_heads=2, ffn_dim=32, dropout=0.0, max_frames=max_frames)
    for kind, objective, data in (
        ("multiview", Stage4Objective(CosineSchedule()), MultiViewDataset(views)),
        ("stage1", Stage1Objective(CosineSchedule()), Stage1Dataset(views[:, 0])),
    ):
        config = DenoiserConfig(num_joints=BODY14.num_joints, kind=kind, **size)
        folder = out / ("stage4" if kind == "multiview" else "stage1")
        cfg = TrainConfig(
            batch_size=2, grad_accum=1, max_steps=2, out_dir=str(folder), device="cpu", progress=False
        )
        Trainer(build_model(config), objective, data, cfg).fit()
    stage2 = Stage2Config(parameterization="depth", init="single_view", steps=2, progress=False)
    atomic_write_json(out / "config.json", PipelineConfig(out_dir=str(out), stage2=stage2).to_dict())
    return out / "stage4"
