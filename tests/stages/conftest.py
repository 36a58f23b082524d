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
