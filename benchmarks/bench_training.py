"""pytest-benchmark timings of one full training step of each model, per attention backend.

One step is :func:`gpu_training.training_step` (``benchmarks/gpu_training.py``): what
:meth:`mvlift.training.Trainer.fit` does per optimizer step (the stage's objective through the trainer's
autocast, backward, clipping, the trainer's AdamW step, its EMA update), on a collated batch of the real
training datasets. ``extra_info`` holds the shape, the backends that ran (:func:`mvlift.models.last_backend`
after each attention module) and ``sequences_per_s`` (batch / median step time).

Shapes: on CPU small models (d_model 128, 2 layers, 4 heads, FFN 256), B = 8, T = 64, J = 18, K = 4, float32;
on CUDA the paper size (d_model 512, 4 layers, 4 heads, FFN 512), B = 32, T = 120, bf16 autocast.
Backends: the temporal attention via SDPA and via xformers (skipped where
:func:`mvlift.models.attention.probe_xformers` fails, with its reason); for the stage-4 model the
cross-view attention via SDPA, xformers and the Triton kernel (:func:`mvlift.ops.cross_view_attention`;
skipped on CPU, where the op runs its PyTorch reference, or Triton's interpreter under
``TRITON_INTERPRET=1``, a correctness tool far too slow to time).

    pytest benchmarks/bench_training.py --benchmark-only --benchmark-columns=min,median,mean,rounds

``pytest`` alone collects ``tests/`` only (``testpaths``), not these. The GPU table with every backend
pair, peak memory and the loss check is ``benchmarks/gpu_training.py``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location("gpu_training", Path(__file__).with_name("gpu_training.py"))
gt = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("gpu_training", gt)
_spec.loader.exec_module(gt)

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
BF16 = CUDA
SIZE = (
    dict(d_model=512, num_layers=4, num_heads=4, ffn_dim=512)
    if CUDA
    else dict(d_model=128, num_layers=2, num_heads=4, ffn_dim=256)
)
B, T = (32, 120) if CUDA else (8, 64)
J, K = 18, 4

CASES = [
    gt.Setting("stage1", "sdpa"),
    gt.Setting("stage1", "xformers"),
    gt.Setting("multiview", "sdpa", "sdpa"),
    gt.Setting("multiview", "sdpa", "kernel"),
    gt.Setting("multiview", "xformers", "xformers"),
    gt.Setting("multiview", "xformers", "kernel"),
]


def _case_id(s: gt.Setting) -> str:
    return f"{s.model}-{s.temporal}" + (f"-{s.cross}" if s.cross else "")


@pytest.mark.parametrize("setting", CASES, ids=_case_id)
def test_training_step(benchmark, setting: gt.Setting, tmp_path) -> None:
    if setting.cross == "kernel" and not CUDA:
        pytest.skip(
            "cross-view kernel: needs CUDA (on CPU the op runs its PyTorch reference, or Triton's "
            "interpreter under TRITON_INTERPRET=1, far too slow to time)"
        )
    config = setting.config(J, K, SIZE)
    missing = gt.unavailable(
        setting, DEVICE, torch.bfloat16 if BF16 else torch.float32, config.resolved_head_dim, K
    )
    if missing is not None:
        pytest.skip(f"{missing[0]} unavailable: {missing[1]}")
    dataset = gt.make_data(setting.model, B, T, J, K)
    batch = gt.device_batch(dataset, B, DEVICE, device_noise=False)
    trainer = gt.make_trainer(setting, config, dataset, B, DEVICE, BF16, str(tmp_path))
    _, ran = gt.eval_loss_and_backends(trainer, batch)
    for _ in range(2):  # warm-up: allocator, kernel compilation, AdamW state
        gt.training_step(trainer, batch)

    def run() -> torch.Tensor:
        loss = gt.training_step(trainer, batch)
        if CUDA:
            torch.cuda.synchronize()
        return loss

    benchmark.group = f"training step B={B} T={T} J={J} K={K} d={SIZE['d_model']}x{SIZE['num_layers']}"
    benchmark.extra_info.update(
        device=str(DEVICE), dtype="bf16 autocast" if BF16 else "fp32", batch=B, frames=T, joints=J, ran=ran
    )
    loss = benchmark(run)
    assert torch.isfinite(loss) and loss.item() > 0
    assert ran.startswith(f"temporal {setting.temporal}")
    if setting.cross is not None:
        assert ran.endswith(f"cross {setting.cross}")
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # absent under --benchmark-disable
        benchmark.extra_info["sequences_per_s"] = B / stats.stats.median
