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
    """A barely trained 4-view BODY14 model checkpoint in ``out`` (2 steps on random views, seed 0), enough to
    exercise the lifting paths; ``max_frames``: the longest input it takes."""
    import torch

    from mvlift.data import BODY14
    from mvlift.models import DenoiserConfig, build_model
    from mvlift.schedulers import CosineSchedule
    from mvlift.training import MultiViewDataset, Stage4Objective, TrainConfig, Trainer

    torch.manual_seed(0)
    views = torch.rand(4, 4, 16, BODY14.num_joints, 2) - 0.5
    config = DenoiserConfig(
        num_joints=BODY14.num_joints,
        kind="multiview",
        d_model=32,
        num_layers=1,
        num_heads=2,
        ffn_dim=32,
        dropout=0.0,
        max_frames=max_frames,
    )
    cfg = TrainConfig(batch_size=2, grad_accum=1, max_steps=2, out_dir=str(out), device="cpu", progress=False)
    Trainer(build_model(config), Stage4Objective(CosineSchedule()), MultiViewDataset(views), cfg).fit()
    return out
