"""TrainConfig: defaults, validation, JSON round trip and YAML loading."""

from __future__ import annotations

import json

import pytest
import torch

from mvlift.training import TrainConfig, load_train_config


def test_defaults_follow_the_paper_code():
    cfg = TrainConfig()
    assert cfg.lr == 2e-4
    assert cfg.batch_size == 32 and cfg.grad_accum == 2
    assert cfg.ema_decay == 0.995 and cfg.ema_every == 10
    assert cfg.grad_clip == 1.0
    assert cfg.num_workers == 0
    assert cfg.resolved_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_json_round_trip(tmp_path):
    cfg = TrainConfig(lr=1e-3, betas=(0.8, 0.95), batch_size=3, max_steps=7, out_dir=str(tmp_path), seed=11)
    text = cfg.to_json(tmp_path / "c.json")
    assert json.loads(text)["betas"] == [0.8, 0.95]
    back = TrainConfig.from_json(tmp_path / "c.json")
    assert back == cfg
    assert TrainConfig.from_json(text) == cfg
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_yaml_loading_with_and_without_section(tmp_path):
    p = tmp_path / "exp.yaml"
    p.write_text("model:\n  d_model: 64\ntrain:\n  lr: 0.001\n  max_steps: 12\n  betas: [0.9, 0.99]\n")
    cfg = load_train_config(p)
    assert cfg.lr == 0.001 and cfg.max_steps == 12 and cfg.betas == (0.9, 0.99)
    flat = tmp_path / "flat.yml"
    flat.write_text("batch_size: 4\ngrad_accum: 1\n")
    cfg = load_train_config(flat)
    assert cfg.batch_size == 4 and cfg.grad_accum == 1


def test_unknown_and_invalid_fields_raise(tmp_path):
    with pytest.raises(ValueError, match="unknown TrainConfig field.*'lrate'"):
        TrainConfig.from_dict({"lrate": 1.0})
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=-1.0)
    with pytest.raises(ValueError, match="device"):
        TrainConfig(device="not-a-device")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_train_config(bad)
    with pytest.raises(FileNotFoundError):
        load_train_config(tmp_path / "missing.yaml")
