"""Deterministic sharded data order, seed derivation and the weight EMA."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from mvlift.training import EMA, ShardedBatchSampler, derive_seed, init_distributed
from mvlift.training.distributed import all_gather_objects, all_reduce_mean


def _take(sampler: ShardedBatchSampler, n: int) -> list[list[tuple[int, int]]]:
    return list(itertools.islice(iter(sampler), n))


def test_epochs_are_permutations_and_shards_partition_the_global_batch():
    n, b, w = 23, 3, 2  # 23 // 6 = 3 global micro-batches per epoch, tail of 5 dropped
    shards = [ShardedBatchSampler(n, b, seed=5, rank=r, world_size=w) for r in range(w)]
    single = ShardedBatchSampler(n, b * w, seed=5)
    assert single.batches_per_epoch == 3
    streams = [_take(s, 9) for s in shards]
    for k, global_batch in enumerate(_take(single, 9)):
        assert streams[0][k] + streams[1][k] == global_batch
    for epoch in range(3):
        keys = [key for batch in _take(single, 9)[3 * epoch : 3 * epoch + 3] for key in batch]
        assert all(e == epoch for e, _ in keys)
        assert len({i for _, i in keys}) == 18  # no repeats within an epoch
    assert _take(single, 3) != _take(single, 6)[3:]  # epochs reshuffle


def test_resuming_the_stream_at_any_position_replays_it():
    full = _take(ShardedBatchSampler(10, 3, seed=1), 12)
    for start in (0, 1, 3, 7):
        resumed = _take(ShardedBatchSampler(10, 3, seed=1, start=start), 12 - start)
        assert resumed == full[start:]
        assert ShardedBatchSampler(10, 3, seed=1).batch(start) == full[start]
    assert _take(ShardedBatchSampler(10, 3, seed=2), 4) != full[:4]


def test_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="fewer than one global micro-batch"):
        ShardedBatchSampler(3, 2, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        ShardedBatchSampler(10, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="start"):
        ShardedBatchSampler(10, 2, start=-1)


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3)
    seeds = {derive_seed(s, e, i) for s in range(3) for e in range(3) for i in range(3)}
    assert len(seeds) == 27
    assert all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(ValueError):
        derive_seed(-1)


def test_ema_matches_the_closed_form(seed):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = EMA(model, decay=0.9, every=2, start=0)
    expected = {k: v.detach().clone().double() for k, v in model.named_parameters()}
    for step in range(1, 7):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.add_(1.0)
        updated = ema.update(model, step)
        assert updated == (step % 2 == 0)
        if updated:
            for k, p in model.named_parameters():
                expected[k] = 0.9 * expected[k] + 0.1 * p.detach().double()
    for k, p in ema.module.named_parameters():
        torch.testing.assert_close(p.double(), expected[k], rtol=1e-6, atol=1e-6)
        assert not p.requires_grad
    torch.testing.assert_close(ema.module[1].running_mean, model[1].running_mean)  # buffers copied


def test_ema_copies_before_start_and_round_trips_state(seed):
    model = nn.Linear(5, 2)
    ema = EMA(model, decay=0.5, every=1, start=3)
    with torch.no_grad():
        model.weight.mul_(3.0)
    ema.update(model, 2)
    torch.testing.assert_close(ema.module.weight, model.weight)
    other = EMA(nn.Linear(5, 2), decay=0.5)
    other.load_state_dict(ema.state_dict())
    torch.testing.assert_close(other.module.weight, model.weight)
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.5)
    with pytest.raises(TypeError, match="nn.Module"):
        EMA("model")  # type: ignore[arg-type]


def test_single_process_without_torchrun(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.backend) == (0, 1, None)
    assert info.is_main and not info.distributed
    assert info.device == torch.device("cpu")
    t = torch.tensor([1.0, 2.0])
    assert all_reduce_mean(t, info) is t and all_gather_objects({"a": 1}, info) == [{"a": 1}]
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        init_distributed("cpu")
