"""Checkpoints are verified: a checksum is written with every tensors file and checked on load, so a
truncated or damaged file is named in a clear error instead of a raw SafetensorError or silently wrong
weights (issue #12), and the tensors file gets the permissions of every other output."""

from __future__ import annotations

import hashlib
import json
import os
import random
import stat
import warnings

import pytest
import torch

from mvlift.models import DenoiserConfig, build_model
from mvlift.training.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint


def _config() -> DenoiserConfig:
    return DenoiserConfig(
        num_joints=5, d_model=16, num_layers=1, num_heads=2, ffn_dim=16, dropout=0.0, max_frames=8
    )


def _save(folder, seed: int = 0):
    """A small model's checkpoint (the JSON sidecar's path) and the model."""
    model = build_model(_config(), seed=seed)
    state = model.state_dict()
    path = save_checkpoint(
        folder / "checkpoints",
        3,
        model_state=state,
        ema_state=state,
        optimizer_state=None,
        rng_states=None,
        meta={"model_config": _config().to_dict()},
    )
    return path, model


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_sidecar_records_size_and_sha256_and_a_good_checkpoint_loads(tmp_path):
    json_path, model = _save(tmp_path)
    tensors = json_path.with_suffix(".safetensors")
    meta = json.loads(json_path.read_text())
    data = tensors.read_bytes()
    assert meta["tensors_bytes"] == len(data)
    assert meta["tensors_sha256"] == hashlib.sha256(data).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a verified checkpoint loads without a warning
        assert _same_weights(load_model(tmp_path), model)


def test_a_truncated_tensors_file_is_named_in_a_clear_error(tmp_path):
    json_path, _ = _save(tmp_path)
    tensors = json_path.with_suffix(".safetensors")
    tensors.write_bytes(tensors.read_bytes()[: tensors.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or damaged") as info:
        load_model(tmp_path)
    assert str(tensors) in str(info.value) and "delete" in str(info.value)
    assert isinstance(info.value, ValueError)  # the CLI prints it as one line


def test_four_kilobytes_overwritten_inside_is_detected(tmp_path):
    json_path, _ = _save(tmp_path)
    tensors = json_path.with_suffix(".safetensors")
    data = bytearray(tensors.read_bytes())
    assert len(data) > 8192
    data[4096:8192] = os.urandom(4096)  # inside the weights: safetensors itself reads it without complaint
    tensors.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256") as info:
        load_model(tmp_path)
    assert str(tensors) in str(info.value)
    with pytest.raises(CheckpointError):
        read_checkpoint(json_path)  # the trainer's resume path too


def test_a_missing_tensors_file_or_a_damaged_sidecar_is_a_clear_error(tmp_path):
    json_path, _ = _save(tmp_path)
    tensors = json_path.with_suffix(".safetensors")
    tensors.rename(tmp_path / "elsewhere.safetensors")
    with pytest.raises(CheckpointError, match="is missing"):
        load_model(json_path)
    (tmp_path / "elsewhere.safetensors").rename(tensors)
    json_path.write_text(json_path.read_text()[:40])
    with pytest.raises(CheckpointError, match="not valid JSON") as info:
        load_model(json_path)
    assert str(json_path) in str(info.value)


def test_a_checkpoint_from_before_the_checksum_loads_with_a_warning(tmp_path):
    json_path, model = _save(tmp_path)
    meta = json.loads(json_path.read_text())
    del meta["tensors_sha256"], meta["tensors_bytes"]
    json_path.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="without a checksum"):
        loaded = load_model(tmp_path)
    assert _same_weights(loaded, model)


def test_the_tensors_file_has_the_permissions_of_other_outputs(tmp_path):
    old = os.umask(0o022)
    try:
        json_path, _ = _save(tmp_path)
    finally:
        os.umask(old)
    mode = stat.S_IMODE(json_path.with_suffix(".safetensors").stat().st_mode)
    assert mode == stat.S_IMODE(json_path.stat().st_mode) == 0o644


def test_fuzz_corrupted_checkpoints_give_a_clean_error_or_the_right_weights(tmp_path):
    """Random damage to the tensors file or the sidecar: every load either raises CheckpointError naming a
    file of the checkpoint or returns exactly the saved weights, never other weights or another error."""
    json_path, model = _save(tmp_path)
    tensors = json_path.with_suffix(".safetensors")
    good = {json_path: json_path.read_bytes(), tensors: tensors.read_bytes()}
    rng = random.Random(7)
    outcomes = {"error": 0, "same": 0}
    for trial in range(120):
        for p, data in good.items():
            p.write_bytes(data)
        target = tensors if trial % 2 == 0 else json_path
        data = bytearray(good[target])
        kind = rng.randrange(4)
        if kind == 0:  # a few bytes changed
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:  # a block overwritten
            start = rng.randrange(len(data))
            data[start : start + rng.randint(1, 512)] = os.urandom(rng.randint(1, 512))
        elif kind == 2:  # truncated
            del data[rng.randrange(len(data)) :]
        else:  # garbage appended
            data += os.urandom(rng.randint(1, 64))
        target.write_bytes(bytes(data))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loaded = load_model(json_path)
        except CheckpointError as exc:
            assert str(json_path.parent) in str(exc), str(exc)
            outcomes["error"] += 1
            continue
        assert _same_weights(loaded, model), (trial, kind, target.name)
        outcomes["same"] += 1
    assert outcomes["error"] > 60, outcomes
