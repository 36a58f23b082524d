"""CPU training-step time of the ``cmu_cpu.yaml`` models: eager vs ``torch.compile``, threads, batch shapes.

What a CPU-only user of ``mvlift/configs/cmu_cpu.yaml`` needs to pick ``threads`` and the batch sizes: one
full optimizer step (:func:`gpu_training.training_step`: objective, backward, clipping, AdamW, EMA) of the
stage-1 model (B windows of T frames) and of the stage-4 multi-view model (B samples of K = 4 views), at the
config's size (d_model 128, 3 layers, 4 heads, FFN 256, BODY14, T = 120), float32, SDPA attention.

``compile`` is ``model.compile()`` (TorchInductor's C++ backend, the model's forward and backward); its
one-off compile time is printed beside the step time. Each cell is the median of ``--steps`` steps after
``--warmup`` steps. Run it on an otherwise idle machine: the thread columns are only meaningful then.

    python benchmarks/cpu_training.py                       # the table in benchmarks/RESULTS.md
    python benchmarks/cpu_training.py --models multiview --batches 32 --threads 1 --steps 3
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location("gpu_training", Path(__file__).with_name("gpu_training.py"))
gt = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("gpu_training", gt)
_spec.loader.exec_module(gt)

SIZE = dict(d_model=128, num_layers=3, num_heads=4, ffn_dim=256)
"""``mvlift/configs/cmu_cpu.yaml``'s model section (dropout and skip do not change the cost)."""


def time_setting(
    model: str, batch: int, threads: int, mode: str, frames: int, steps: int, warmup: int
) -> dict[str, float]:
    """Median step seconds (and compile seconds for ``mode == "compile"``) of one setting."""
    torch.set_num_threads(threads)
    setting = gt.Setting(model, "sdpa", "sdpa" if model == "multiview" else None)
    config = setting.config(14, 4, SIZE)
    dataset = gt.make_data(model, batch, frames, 14, 4)
    batch_t = gt.device_batch(dataset, batch, torch.device("cpu"), device_noise=False)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = gt.make_trainer(setting, config, dataset, batch, torch.device("cpu"), False, tmp)
        compile_s = 0.0
        if mode == "compile":
            torch._dynamo.reset()
            trainer.model.compile(dynamic=False)
            t0 = time.perf_counter()
            gt.training_step(trainer, batch_t)  # traces and compiles forward and backward
            compile_s = time.perf_counter() - t0
        for _ in range(warmup):
            gt.training_step(trainer, batch_t)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            gt.training_step(trainer, batch_t)
            times.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(times), "compile_s": compile_s}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["stage1", "multiview"], choices=["stage1", "multiview"])
    p.add_argument("--batches", nargs="+", type=int, default=None, help="default: 32 64 (stage 1), 16 32 (4)")
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--modes", nargs="+", default=["eager", "compile"], choices=["eager", "compile"])
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args(argv)
    import os

    print(f"torch {torch.__version__}, {os.cpu_count()} cores, 1-min load {os.getloadavg()[0]:.2f}")
    print("| model | batch | threads | mode | step s | samples/s | compile s |")
    print("|---|---|---|---|---|---|---|")
    for model in args.models:
        batches = args.batches or ([32, 64] if model == "stage1" else [16, 32])
        for batch in batches:
            for threads in args.threads:
                for mode in args.modes:
                    r = time_setting(model, batch, threads, mode, args.frames, args.steps, args.warmup)
                    compile_s = f"{r['compile_s']:.0f}" if mode == "compile" else "-"
                    print(
                        f"| {model} | {batch} | {threads} | {mode} | {r['step_s']:.3f} | "
                        f"{batch / r['step_s']:.1f} | {compile_s} |",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
