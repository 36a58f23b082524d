"""Sharded writer: atomic shards, manifest, resume without loss or duplication, rank split."""

from __future__ import annotations

import json

import pytest
import torch

from mvlift.stages.shards import ShardedWriter, load_shards, merge_manifests


def _make(index: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(index)
    return {"x": torch.randn(3, 4, generator=g), "idx": torch.full((3,), index)}


def test_resume_after_kill_loses_and_duplicates_nothing(tmp_path):
    calls: list[int] = []

    def flaky(index: int) -> dict[str, torch.Tensor]:
        if index == 3 and not calls.count(-1):
            calls.append(-1)
            raise KeyboardInterrupt  # simulated kill in the middle of the job
        calls.append(index)
        return _make(index)

    w = ShardedWriter(tmp_path, 6, {"seed": 1})
    with pytest.raises(KeyboardInterrupt):
        w.run(flaky, progress=False)
    assert sorted(json.loads((tmp_path / "manifest.json").read_text())["shards"]) == ["0", "1", "2"]
    assert not list(tmp_path.glob("*.tmp"))  # no half-written file left behind

    w2 = ShardedWriter(tmp_path, 6, {"seed": 1})
    assert w2.pending() == [3, 4, 5]
    assert w2.run(flaky, progress=False) == [3, 4, 5]
    assert calls == [0, 1, 2, -1, 3, 4, 5]  # every shard computed exactly once
    data = load_shards(tmp_path)
    assert data["idx"].tolist() == [i for i in range(6) for _ in range(3)]
    torch.testing.assert_close(data["x"][9:12], _make(3)["x"])


def test_config_mismatch_refuses_resume(tmp_path):
    ShardedWriter(tmp_path, 2, {"seed": 1}).run(_make, progress=False)
    with pytest.raises(ValueError, match="different config"):
        ShardedWriter(tmp_path, 2, {"seed": 2})


def test_missing_file_is_recomputed(tmp_path):
    w = ShardedWriter(tmp_path, 2, {})
    w.run(_make, progress=False)
    w.shard_path(1).unlink()
    assert ShardedWriter(tmp_path, 2, {}).pending() == [1]


def test_ranks_split_and_merge(tmp_path):
    for rank in range(2):
        ShardedWriter(tmp_path, 5, {"a": 1}, rank=rank, world_size=2).run(_make, progress=False)
    merged = merge_manifests(tmp_path)
    assert sorted(int(i) for i in merged["shards"]) == [0, 1, 2, 3, 4]
    assert load_shards(tmp_path)["idx"].unique().tolist() == [0, 1, 2, 3, 4]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="rank"):
        ShardedWriter(tmp_path, 2, {}, rank=2, world_size=2)
    with pytest.raises(FileNotFoundError, match="manifest"):
        load_shards(tmp_path / "nothing")
