"""Stage 2's optimisation loop makes no device->host sync per step.

On a GPU every ``.item()``, ``.tolist()``, ``bool(t)`` or ``float(t)`` of a device tensor waits for the GPU to
drain its queue, so one per step would serialise the loop. The CPU test counts the Python calls that would be
such syncs (the same code runs on both devices) in runs of different lengths: the count may not grow with the
step count. The CUDA test asks CUDA itself (``torch.cuda.set_sync_debug_mode``).

The loop logs at step 0 and at its last step (``log_every`` larger than the run), so both runs log equally.
Adam's ``.item()`` on its step counter is not counted: that counter is a CPU tensor on a GPU too (Adam is not
``capturable`` here), so it is no device sync.
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter

import pytest
import torch

from mvlift.models import DenoiserConfig, build_model
from mvlift.schedulers import CosineSchedule
from mvlift.stages.stage2 import Stage2Config, optimize_views

B, T, J = 2, 8, 5
SYNCS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__")


def _inputs(device: str, seed: int):
    torch.manual_seed(seed)
    model = build_model(
        DenoiserConfig(
            num_joints=J, kind="stage1", d_model=16, num_layers=1, num_heads=2, ffn_dim=16, max_frames=8
        )
    )
    x = (torch.rand(B, T, J, 2) - 0.5) * 0.8
    mask = torch.ones(B, T, dtype=torch.bool)
    conf = torch.rand(B, T, J)
    return model.to(device).eval(), x.to(device), mask.to(device), conf.to(device)


def _run(steps: int, device: str, seed: int, backend: str = "fused") -> None:
    model, x, mask, conf = _inputs(device, seed)
    cfg = Stage2Config(steps=steps, log_every=10_000, progress=False, seed=seed, backend=backend)
    optimize_views(model, CosineSchedule(), x, cfg, mask=mask, conf=conf)


@pytest.fixture
def sync_counter(monkeypatch):
    """Counts the calls of the tensor methods that sync a device tensor with the host, by caller."""
    calls: list[str] = []
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if "torch/optim/" not in caller.replace("\\", "/"):  # Adam's CPU step counter (module docstring)
                calls.append(f"{_name} from {caller}:{sys._getframe(1).f_lineno}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


@pytest.mark.parametrize("backend", ["fused", "eager"])
def test_stage2_loop_makes_no_sync_per_step(seed, sync_counter, cpu_training, backend):
    """The fused path (mvlift.ops, pairs given as a tensor) and the eager references alike."""
    _run(2, "cpu", seed, backend)
    short = list(sync_counter)
    sync_counter.clear()
    _run(6, "cpu", seed, backend)
    extra = Counter(sync_counter) - Counter(short)
    assert not extra, f"calls that grow with the step count (4 more steps): {dict(extra)}"


def test_epipolar_loss_reads_a_pair_tensor_once(seed, sync_counter, cpu_training):
    """The same (P, 2) tensor passed every call is read on the host once; an in-place change is seen."""
    from mvlift.ops import epipolar_loss

    def reads() -> int:
        return sum(c.startswith("tolist") for c in sync_counter)

    x = torch.rand(1, 3, 4, 5, 2)
    F = torch.randn(3, 3, 3, 3)
    pairs = torch.tensor([[0, 1], [1, 2]])
    first = epipolar_loss(x, F, pairs=pairs, check_values=False)
    assert reads() == 1
    for _ in range(3):
        assert torch.equal(epipolar_loss(x, F, pairs=pairs, check_values=False), first)
    assert reads() == 1
    pairs[1, 0] = 0  # in place: pairs (0, 1), (0, 2) now
    changed = epipolar_loss(x, F, pairs=pairs, check_values=False)
    assert reads() == 2
    assert torch.equal(changed, epipolar_loss(x, F, pairs=[(0, 1), (0, 2)], check_values=False))
    assert not torch.equal(changed, first)
    pairs[1, 1] = 0  # (0, 0): invalid, and caught although the tensor object is the cached one
    with pytest.raises(ValueError, match=r"each pair \(i, j\) needs"):
        epipolar_loss(x, F, pairs=pairs, check_values=False)


@pytest.mark.cuda
def test_stage2_loop_makes_no_cuda_sync_per_step(seed):
    """CUDA's sync debug mode reports every synchronising call: runs of 2 and 6 steps report as many."""
    counts = []
    for steps in (2, 6):
        _run(1, "cuda", seed)  # warm-up: Triton compiles its kernels on the first call
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                _run(steps, "cuda", seed)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts.append([str(w.message).splitlines()[0] for w in seen if "synchroniz" in str(w.message)])
    assert len(counts[1]) == len(counts[0]), counts[1]
