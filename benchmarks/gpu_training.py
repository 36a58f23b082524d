"""GPU table of training-step throughput per attention backend: the stage-1 and stage-4 models at paper size.

One training step is what :meth:`mvlift.training.Trainer.fit` does per optimizer step with
``grad_accum=1``, minus data loading and logging: ``zero_grad``; the stage's objective
(:class:`~mvlift.training.Stage1Objective`: forward + the fused stage-1 loss;
:class:`~mvlift.training.Stage4Objective`: forward + masked L1 + the no-grad epipolar metric) under the
trainer's autocast (bf16 on CUDA, or fp32); backward; gradient clipping; the trainer's AdamW step (fused on
CUDA) and its EMA update (every ``TrainConfig.ema_every`` steps). The optimizer, EMA, generator and
autocast setting are those of a real :class:`~mvlift.training.Trainer`; the batch is a collated batch
of the real training datasets (:class:`~mvlift.training.Stage1Dataset`,
:class:`~mvlift.training.MultiViewDataset` with ``F``) on synthetic motion, so each sample's diffusion
step and noise come from its ``noise_seed`` on the host, as in training (``--device-noise`` drops the
seeds and draws them on the device instead).

Attention configurations (forced per model through :class:`~mvlift.models.DenoiserConfig`):

- stage 1: the temporal attention via xformers and via SDPA (``attention_backend``);
- stage 4: every pair of temporal attention (xformers, SDPA) and cross-view attention (the Triton few-token
  kernel :func:`mvlift.ops.cross_view_attention`, xformers, SDPA; ``cross_view_backend``);
- for each model also ``auto`` (the default config), whose resolution the ``ran`` column shows.

A configuration whose backend cannot run here (xformers failing
:func:`mvlift.models.attention.probe_xformers` for the device and the dtype its attention sees, the
cross-view op missing or outside its limits) is listed as ``unavailable`` (the reason is printed once above
the table) and the table goes on. Before timing, each configuration's eval-mode loss on the batch is
compared with the all-SDPA configuration's (same initial weights), and the backends that really ran are
read from :func:`mvlift.models.last_backend` after each attention module (the ``ran`` column). Columns:
ms/step (mean of the timed steps, CUDA events per step; ± their standard deviation), sequences/s
(training samples per second; a stage-4 sample is K views of one sequence), peak memory
(``torch.cuda.max_memory_allocated`` over the timed steps: weights, AdamW state, EMA copy, activations).
A configuration that fails is listed as ``failed: <error>`` and the exit status is 1.

    python benchmarks/gpu_training.py [--batch 32] [--frames 120] [--joints 18 24] [--views 4]
                                      [--dtypes bf16 fp32] [--iters 50] [--warmup 10] [--out table.md]

Without CUDA it stops with a message; ``--device cpu`` runs the same table on the CPU with wall-clock times
(a smoke test of this script: use tiny sizes, e.g. ``--d-model 32 --layers 1 --batch 2 --frames 16``; on CPU
the ``kernel`` rows run the op's PyTorch reference, or Triton's interpreter under ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import default_collate

from mvlift.models import DenoiserConfig, build_model, last_backend
from mvlift.models.attention import cross_view_kernel_available, probe_xformers
from mvlift.schedulers import CosineSchedule
from mvlift.training import (
    MultiViewDataset,
    Stage1Dataset,
    Stage1Objective,
    Stage4Objective,
    TrainConfig,
    Trainer,
    multiview_from_motion,
)
from mvlift.training.objectives import HOST_KEYS

MODELS = ("stage1", "multiview")
TEMPORAL = ("xformers", "sdpa")
CROSS = ("kernel", "xformers", "sdpa")
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
COLUMNS = (
    "model", "J", "temporal", "cross-view", "dtype", "ran", "ms/step", "± std", "sequences/s",
    "peak memory (MB)", "loss vs all-SDPA",
)  # fmt: skip


@dataclass
class Setting:
    """One attention configuration of one model; ``cross`` is None for stage 1."""

    model: str
    temporal: str
    cross: str | None = None

    def config(self, num_joints: int, num_views: int, size: dict[str, Any]) -> DenoiserConfig:
        """The model's :class:`DenoiserConfig` with this configuration's backends forced."""
        extra = {"cross_view_backend": self.cross} if self.model == "multiview" else {}
        return DenoiserConfig(
            num_joints=num_joints,
            kind=self.model,
            num_views=num_views,
            attention_backend=self.temporal,
            **extra,
            **size,
        )


@dataclass
class Row:
    """One table row: a setting at one J and dtype, measured or with the reason it did not run."""

    setting: Setting
    joints: int
    dtype: str
    status: str = "ok"  # "ok", "unavailable: ..." or "failed: ..."
    ran: str = ""
    ms: list[float] = field(default_factory=list)
    batch: int = 0
    peak_mb: float = float("nan")
    loss_rel: float = float("nan")


def settings(models: list[str], temporal: list[str], cross: list[str]) -> list[Setting]:
    """Stage 1: each temporal backend; stage 4: each (temporal, cross-view) pair; then ``auto`` for each."""
    out: list[Setting] = []
    for model in models:
        if model == "stage1":
            out += [Setting("stage1", t) for t in temporal]
            out.append(Setting("stage1", "auto"))
        else:
            out += [Setting("multiview", t, c) for t in temporal for c in cross]
            out.append(Setting("multiview", "auto", "auto"))
    return out


def unavailable(
    setting: Setting, device: torch.device, dtype: torch.dtype, head_dim: int, views: int
) -> tuple[str, str] | None:
    """``(what, why)`` when ``setting`` cannot run on ``device`` with attention inputs of ``dtype``, e.g.
    ``("xformers on cuda/bfloat16", "ImportError: ...")``; None when it can."""
    if "xformers" in (setting.temporal, setting.cross):
        usable, reason = probe_xformers(device, dtype)
        if not usable:
            return f"xformers on {device.type}/{str(dtype).replace('torch.', '')}", reason
    if setting.cross == "kernel":
        if not cross_view_kernel_available():
            return "cross-view kernel", "mvlift.ops.cross_view_attention cannot be imported"
        from mvlift.ops.cross_view_attention import MAX_HEAD_DIM, MAX_TOKENS

        if views > MAX_TOKENS or head_dim > MAX_HEAD_DIM:
            why = f"it takes K <= {MAX_TOKENS}, D <= {MAX_HEAD_DIM}; here K = {views}, D = {head_dim}"
            return "cross-view kernel", why
    return None


def smooth_positions(n: int, frames: int, joints: int, generator: torch.Generator) -> torch.Tensor:
    """(n, T, J, 3) float64 metres, Y up: joints within ~0.5 m of a slowly walking root near (0, 1, 0), at
    30 fps."""
    t = torch.arange(frames, dtype=torch.float64).view(1, frames, 1, 1) / 30.0
    pose = (torch.rand(n, 1, joints, 3, generator=generator, dtype=torch.float64) - 0.5) * 0.8
    phase = torch.rand(n, 1, joints, 3, generator=generator, dtype=torch.float64) * (2 * math.pi)
    walk = torch.randn(n, 1, 1, 3, generator=generator, dtype=torch.float64) * 0.1
    walk[..., 1] = 0.0
    return pose + 0.05 * torch.sin(2.0 * t + phase) + walk * t + torch.tensor([0.0, 1.0, 0.0]).double()


def make_data(model: str, batch: int, frames: int, joints: int, views: int) -> torch.utils.data.Dataset:
    """A training dataset of ``batch`` synthetic samples for ``model`` (the classes the pipeline trains on):
    clips projected into a camera ring by :func:`mvlift.training.multiview_from_motion`; stage 1 gets view 0.
    """
    g = torch.Generator().manual_seed(0)
    x, F, masks = multiview_from_motion(smooth_positions(batch, frames, joints, g), num_views=max(views, 2))
    if model == "stage1":
        return Stage1Dataset(x[:, 0], masks)
    return MultiViewDataset(x, masks, F)


def device_batch(
    dataset: torch.utils.data.Dataset, batch: int, device: torch.device, device_noise: bool
) -> dict[str, torch.Tensor]:
    """Items 0..batch-1 collated as the trainer's DataLoader does, on ``device`` as ``Trainer`` moves them."""
    collated = default_collate([dataset[i] for i in range(batch)])
    if device_noise:
        collated.pop("noise_seed")
    return {k: v if k in HOST_KEYS else v.to(device) for k, v in collated.items()}


def make_trainer(
    setting: Setting,
    config: DenoiserConfig,
    dataset,
    batch: int,
    device: torch.device,
    bf16: bool,
    out_dir: str,
) -> Trainer:
    """A :class:`Trainer` of a freshly initialised model (seed 0: every setting starts from the same
    weights), in a temporary ``out_dir``."""
    torch.manual_seed(0)
    model = build_model(config)
    objective = (
        Stage1Objective(CosineSchedule()) if setting.model == "stage1" else Stage4Objective(CosineSchedule())
    )
    tc = TrainConfig(
        batch_size=batch, grad_accum=1, bf16=bf16, device=str(device), out_dir=out_dir, progress=False
    )
    return Trainer(model, objective, dataset, tc)


def training_step(trainer: Trainer, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """One optimizer step as :meth:`Trainer.fit` runs it (``grad_accum=1``); returns the detached loss."""
    cfg = trainer.config
    trainer.model.train()
    trainer.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(trainer.device.type, dtype=torch.bfloat16, enabled=trainer.use_bf16):
        out = trainer.objective(trainer.model, batch, generator=trainer.generator)
    out["loss"].float().backward()
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
    trainer.optimizer.step()
    trainer.step += 1
    trainer.ema.update(trainer.model, trainer.step)
    return out["loss"].detach()


def attention_modules(model: nn.Module) -> dict[str, list[nn.Module]]:
    """The temporal (and cross-view) attention modules of a stage-1 or multi-view model, by role."""
    if model.config.kind == "stage1":
        return {"temporal": [layer.attn for layer in model.layers]}
    return {
        "temporal": [layer.temporal for layer in model.layers],
        "cross": [layer.cross for layer in model.layers],
    }


def eval_loss_and_backends(trainer: Trainer, batch: dict[str, torch.Tensor]) -> tuple[float, str]:
    """The eval-mode (no dropout) loss on ``batch`` and the backends :func:`last_backend` reports after each
    attention module, e.g. ``"temporal sdpa, cross kernel"``."""
    seen: dict[str, set[str | None]] = {}
    hooks = []
    for role, modules in attention_modules(trainer.model).items():
        seen[role] = set()
        for m in modules:
            hooks.append(m.register_forward_hook(lambda *_, r=role: seen[r].add(last_backend())))
    trainer.model.eval()
    gen = torch.Generator(trainer.device).manual_seed(0)
    try:
        with (
            torch.no_grad(),
            torch.autocast(trainer.device.type, dtype=torch.bfloat16, enabled=trainer.use_bf16),
        ):
            loss = trainer.objective(trainer.model, batch, generator=gen)["loss"].item()
    finally:
        for h in hooks:
            h.remove()
    ran = ", ".join(f"{role} {'/'.join(sorted(str(b) for b in backends))}" for role, backends in seen.items())
    return loss, ran


def time_steps(
    trainer: Trainer, batch: dict[str, torch.Tensor], iters: int, warmup: int
) -> tuple[list[float], float]:
    """Per-step times in ms of ``iters`` training steps after ``warmup`` ones, and the peak memory in MB
    (CUDA: ``max_memory_allocated`` over the timed steps; CPU: NaN). Raises if a loss is not finite."""
    cuda = trainer.device.type == "cuda"
    losses = [training_step(trainer, batch) for _ in range(warmup)]
    ms: list[float] = []
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)
        ]
        for start, end in events:
            start.record()
            losses.append(training_step(trainer, batch))
            end.record()
        torch.cuda.synchronize()
        ms = [start.elapsed_time(end) for start, end in events]
        peak = torch.cuda.max_memory_allocated() / 1e6
    else:
        for _ in range(iters):
            t0 = time.perf_counter()
            losses.append(training_step(trainer, batch))
            ms.append((time.perf_counter() - t0) * 1e3)
        peak = float("nan")
    final = torch.stack(losses).float()
    if not bool(torch.isfinite(final).all()):
        raise FloatingPointError(f"non-finite training loss: {final.tolist()}")
    return ms, peak


def measure(
    rows: list[Row],
    *,
    batch: int,
    frames: int,
    views: int,
    size: dict[str, Any],
    device: torch.device,
    iters: int,
    warmup: int,
    device_noise: bool,
    reasons: dict[str, str],
) -> None:
    """Fill ``rows`` (all of one J and dtype) in place; record why a backend is unavailable in ``reasons``."""
    data: dict[str, tuple[torch.utils.data.Dataset, dict[str, torch.Tensor]]] = {}
    oracle: dict[str, float] = {}
    for row in rows:
        s = row.setting
        bf16 = row.dtype == "bf16"
        config = s.config(row.joints, views, size)
        missing = unavailable(s, device, DTYPES[row.dtype], config.resolved_head_dim, views)
        if missing is not None:
            row.status = f"unavailable: {missing[0]}"
            reasons[missing[0]] = missing[1]
            continue
        if s.model not in data:
            dataset = make_data(s.model, batch, frames, row.joints, views)
            data[s.model] = (dataset, device_batch(dataset, batch, device, device_noise))
        dataset, b = data[s.model]
        row.batch = batch
        try:
            with tempfile.TemporaryDirectory() as out_dir:
                if s.model not in oracle:  # the all-SDPA model's eval loss: same weights, same batch
                    sdpa = Setting(s.model, "sdpa", "sdpa" if s.model == "multiview" else None)
                    ref = make_trainer(
                        sdpa, sdpa.config(row.joints, views, size), dataset, batch, device, bf16, out_dir
                    )
                    oracle[s.model] = eval_loss_and_backends(ref, b)[0]
                    del ref
                trainer = make_trainer(s, config, dataset, batch, device, bf16, out_dir)
                loss, row.ran = eval_loss_and_backends(trainer, b)
                row.loss_rel = abs(loss - oracle[s.model]) / max(abs(oracle[s.model]), 1e-12)
                tol = 3e-2 if bf16 else 1e-4
                if not row.loss_rel <= tol:
                    raise AssertionError(
                        f"eval loss {loss:.6g} differs from the all-SDPA loss {oracle[s.model]:.6g} "
                        f"by {row.loss_rel:.2e} (> {tol})"
                    )
                row.ms, row.peak_mb = time_steps(trainer, b, iters, warmup)
                del trainer
        except Exception as exc:  # one broken configuration must not hide the others' figures
            row.status = f"failed: {type(exc).__name__}: {exc}".replace("\n", " ")
        if device.type == "cuda":
            torch.cuda.empty_cache()


def markdown(header: list[str], rows: list[Row]) -> str:
    """The header lines, then one markdown table of all rows."""
    lines = [*header, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        s = r.setting
        cells = [s.model, str(r.joints), s.temporal, s.cross or "—", r.dtype]
        if r.status != "ok":
            cells += [r.status] + ["—"] * 5
        else:
            mean = statistics.fmean(r.ms)
            std = statistics.stdev(r.ms) if len(r.ms) > 1 else 0.0
            peak = "—" if math.isnan(r.peak_mb) else f"{r.peak_mb:.0f}"
            cells += [
                r.ran,
                f"{mean:.2f}",
                f"{std:.2f}",
                f"{r.batch / mean * 1e3:.0f}",
                peak,
                f"{r.loss_rel:.1e}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def header_lines(args: argparse.Namespace, device: torch.device, size: dict[str, Any]) -> list[str]:
    """Card, versions, date and the measured shapes."""
    import triton

    try:
        import xformers

        xf = f"xformers {xformers.__version__}"
    except Exception as exc:  # not installed, or broken for this torch
        xf = f"xformers not importable ({type(exc).__name__})"
    card = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.processor() or 'cpu'})"
    )
    cfg = DenoiserConfig(num_joints=1, **size)
    lines = [
        f"Device: {card}; {datetime.date.today().isoformat()}; python {platform.python_version()}, "
        f"torch {torch.__version__}, triton {triton.__version__}, {xf}.",
        f"Models: {cfg.num_layers} layers, d_model {cfg.d_model}, {cfg.num_heads} heads of width "
        f"{cfg.resolved_head_dim}, FFN {cfg.ffn_dim}, dropout {cfg.dropout}; "
        f"B = {args.batch}, T = {args.frames}, "
        f"K = {args.views} views (stage 4); {args.iters} timed steps after {args.warmup} warm-up steps; "
        f"noise drawn {'on the device' if args.device_noise else 'per sample on the host (as in training)'}.",
    ]
    if device.type == "cuda":
        lines[-1] += f" TF32 matmul: {torch.backends.cuda.matmul.allow_tf32}."
    else:
        lines.append(
            "CPU run: wall-clock times, no peak memory; `kernel` rows run the op's PyTorch reference "
            "(Triton's interpreter under TRITON_INTERPRET=1), not the Triton kernel."
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--batch", type=int, default=32, help="sequences per step (TrainConfig default 32)")
    ap.add_argument("--frames", type=int, default=120, help="T")
    ap.add_argument("--joints", type=int, nargs="+", default=[18, 24], help="J")
    ap.add_argument("--views", type=int, default=4, help="K of the stage-4 model")
    ap.add_argument(
        "--dtypes", nargs="+", default=None, choices=list(DTYPES), help="default bf16 fp32 (CPU: fp32)"
    )
    ap.add_argument("--temporal", nargs="+", default=list(TEMPORAL), choices=TEMPORAL)
    ap.add_argument("--cross", nargs="+", default=list(CROSS), choices=CROSS)
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=512)
    ap.add_argument("--iters", type=int, default=50, help="timed steps")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first (kernel compilation, caches)")
    ap.add_argument(
        "--device-noise",
        action="store_true",
        help="draw t and noise on the device, not per sample on the host",
    )
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--out", help="also write the table (markdown) to this file")
    args = ap.parse_args(argv)
    for name in ("batch", "frames", "views", "d_model", "layers", "heads", "ffn", "iters"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        ap.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_training: no CUDA device (use --device cpu for a smoke run)", file=sys.stderr)
        return 1
    dtypes = args.dtypes or (["bf16", "fp32"] if args.device == "cuda" else ["fp32"])
    if args.device == "cpu" and "bf16" in dtypes:
        ap.error("--dtypes bf16: the trainer's bf16 autocast is CUDA-only; use fp32 with --device cpu")
    device = torch.device(args.device)
    size = dict(
        d_model=args.d_model,
        num_layers=args.layers,
        num_heads=args.heads,
        ffn_dim=args.ffn,
        max_frames=max(512, args.frames),
    )
    header = header_lines(args, device, size)
    rows: list[Row] = []
    reasons: dict[str, str] = {}
    for dtype in dtypes:
        for joints in args.joints:
            group = [Row(s, joints, dtype) for s in settings(args.models, args.temporal, args.cross)]
            measure(
                group,
                batch=args.batch,
                frames=args.frames,
                views=args.views,
                size=size,
                device=device,
                iters=args.iters,
                warmup=args.warmup,
                device_noise=args.device_noise,
                reasons=reasons,
            )
            rows += group
    header += [f"{what}: unavailable: {why}" for what, why in reasons.items()]
    text = markdown(header, rows)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    failed = [r for r in rows if r.status.startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
