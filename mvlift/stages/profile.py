"""Built-in profiler of the stage-2 optimisation loop (``mvlift profile stage2``).

Runs the stage-2 iteration (SDS denoiser forward, consistency losses, backward, Adam step) on random
inputs for each configuration in :data:`CONFIGURATIONS` and reports per-phase times, iterations/s and
sequences/s side by side in one table:

- ``eager``: the plain-PyTorch reference losses and an fp32 denoiser forward (the eager pipeline);
- ``fused``: the :mod:`mvlift.ops` loss kernels, fp32 denoiser;
- ``fused+bf16``: the kernels and the denoiser forward under bf16 autocast (``Stage2Config.bf16``; the
  default stage-2 pipeline on CUDA). CUDA only: on the CPU autocast is off, so the row is left out.

On CUDA the phases are timed with CUDA events (one synchronisation per iteration, after it); on the CPU
with ``perf_counter``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch

from mvlift.models import DenoiserConfig, build_model
from mvlift.schedulers import CosineSchedule
from mvlift.stages.stage2 import Stage2Config, Stage2Losses, make_ring

PHASES = ("denoiser", "losses", "backward", "optimizer")

CONFIGURATIONS: dict[str, dict[str, object]] = {
    "eager": {"backend": "eager", "bf16": False},
    "fused": {"backend": "fused", "bf16": False},
    "fused+bf16": {"backend": "fused", "bf16": True},
}
"""Profiled configurations: name -> the :class:`~mvlift.stages.stage2.Stage2Config` fields they set."""


@dataclass
class ProfileResult:
    """Mean milliseconds per phase and per iteration, for one backend."""

    backend: str
    batch: int
    phase_ms: dict[str, float]
    iter_ms: float

    @property
    def iters_per_s(self) -> float:
        return 1000.0 / self.iter_ms

    @property
    def seqs_per_s(self) -> float:
        return self.batch * self.iters_per_s


class _Timer:
    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[tuple[str, object]] = []

    def mark(self, name: str) -> None:
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.marks.append((name, ev))
        else:
            self.marks.append((name, time.perf_counter()))

    def elapsed_ms(self) -> dict[str, float]:
        if self.cuda:
            torch.cuda.synchronize()
        out: dict[str, float] = {}
        for (_, a), (name, b) in zip(self.marks[:-1], self.marks[1:], strict=True):
            if self.cuda:
                out[name] = a.elapsed_time(b)  # type: ignore[attr-defined]
            else:
                out[name] = (b - a) * 1000.0  # type: ignore[operator]
        self.marks.clear()
        return out


def profile_stage2(
    *,
    batch: int = 64,
    frames: int = 120,
    joints: int = 18,
    model_config: DenoiserConfig | None = None,
    stage2: Stage2Config | None = None,
    backends: tuple[str, ...] = ("eager", "fused", "fused+bf16"),
    iters: int = 20,
    warmup: int = 3,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> list[ProfileResult]:
    """Time the stage-2 iteration for each backend on the same random inputs and model.

    Args:
        batch, frames, joints: B, T, J of the input sequences.
        model_config: the stage-1 denoiser (default: the paper's size, 4 layers x 512).
        stage2: stage-2 settings (views, pairs, distance); its ``backend`` and ``bf16`` are set per run.
        backends: names from :data:`CONFIGURATIONS` to time; ``fused+bf16`` is skipped on the CPU.
        iters, warmup: timed / untimed iterations per configuration.
    """
    unknown = [b for b in backends if b not in CONFIGURATIONS]
    if unknown:
        raise ValueError(f"backends: unknown {unknown}; choose from {list(CONFIGURATIONS)}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda":
        backends = tuple(b for b in backends if not CONFIGURATIONS[b]["bf16"])
    torch.manual_seed(seed)
    model_config = model_config or DenoiserConfig(num_joints=joints)
    model = build_model(model_config).to(device).eval()
    schedule = CosineSchedule()
    base = stage2 or Stage2Config()
    x_input = (torch.rand(batch, frames, joints, 2, device=device, dtype=dtype) - 0.5) * 0.8
    mask = torch.ones(batch, frames, dtype=torch.bool, device=device)
    results = []
    for backend in backends:
        cfg = replace(base, **CONFIGURATIONS[backend], progress=False)  # type: ignore[arg-type]
        _, F = make_ring(cfg, dtype=dtype, device=device)
        losses = Stage2Losses(model, schedule, cfg, F, x_input, mask=mask)
        y = torch.nn.Parameter(
            0.1 * torch.randn(batch, cfg.num_views - 1, frames, joints, 2, device=device, dtype=dtype)
        )
        opt = torch.optim.Adam([y], lr=cfg.lr)
        gen = torch.Generator(device=device).manual_seed(seed)
        timer = _Timer(device)
        totals = dict.fromkeys(PHASES, 0.0)
        for it in range(warmup + iters):
            timer.mark("start")
            grad_sds = losses.sds_gradient(y, gen)
            timer.mark("denoiser")
            epi, line = losses.consistency(y)
            loss = (grad_sds * y).sum() / batch + cfg.epipolar_weight * epi + cfg.line_weight * line
            timer.mark("losses")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            timer.mark("backward")
            opt.step()
            timer.mark("optimizer")
            ms = timer.elapsed_ms()
            if it >= warmup:
                for k in PHASES:
                    totals[k] += ms[k]
        phase_ms = {k: v / iters for k, v in totals.items()}
        results.append(ProfileResult(backend, batch, phase_ms, sum(phase_ms.values())))
    return results


def format_profile(results: list[ProfileResult], *, device: str = "") -> str:
    """A Markdown table: one row per backend, per-phase ms, iteration ms, it/s, seq/s, speedup vs eager."""
    eager = next((r for r in results if r.backend == "eager"), None)
    head = "| backend | " + " | ".join(f"{p} ms" for p in PHASES) + " | iter ms | it/s | seq/s | vs eager |"
    lines = [f"stage-2 iteration profile {device}".rstrip(), "", head, "|" + "---|" * (len(PHASES) + 5)]
    for r in results:
        speed = f"{eager.iter_ms / r.iter_ms:.2f}x" if eager is not None else "-"
        cells = " | ".join(f"{r.phase_ms[p]:.2f}" for p in PHASES)
        rate = f"{r.iters_per_s:.1f} | {r.seqs_per_s:.0f}"
        lines.append(f"| {r.backend} | {cells} | {r.iter_ms:.2f} | {rate} | {speed} |")
    return "\n".join(lines)
