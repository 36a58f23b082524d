"""One trainer for both learned priors (stage 1 and stage 4).

AdamW, an EMA of the weights, gradient clipping, bf16 autocast on CUDA, gradient accumulation,
DistributedDataParallel under ``torchrun``, safetensors checkpoints that rebuild the model alone, exact
resume after a kill (same data order, same randomness), a tqdm progress bar, a CSV loss log and a PNG
loss plot.

Run folder layout (``config.out_dir``)::

    train_config.json          the TrainConfig of the run
    loss_log.csv               step, loss components, lr, grad_norm, time_s
    loss_plot.png              the loss components against the step (at checkpoints and at the end)
    checkpoints/step_*.{safetensors,json}

Exact resume: the data stream is :class:`~mvlift.training.distributed.ShardedBatchSampler`, a pure
function of (seed, micro-batch number); per-sample diffusion randomness comes from the datasets'
``noise_seed``; torch's CPU/CUDA RNG states (dropout) and the trainer's generator are checkpointed per
rank. A run resumed from step s therefore logs the same losses from step s + 1 on as the run that was
never interrupted (on the same device, process count and thread settings).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mvlift.training.checkpoint import (
    prune_checkpoints,
    read_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
    unflatten_optimizer_state,
)
from mvlift.training.config import TrainConfig
from mvlift.training.distributed import (
    DistInfo,
    ShardedBatchSampler,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    broadcast_object,
    derive_seed,
    init_distributed,
)
from mvlift.training.ema import EMA
from mvlift.training.logging import LossLog
from mvlift.training.objectives import HOST_KEYS

logger = logging.getLogger(__name__)

Objective = Callable[..., dict[str, Tensor]]


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` ends with.

    Attributes:
        step: optimizer steps done.
        last_row: the last loss-log row (rank 0; empty elsewhere or when nothing was logged).
        checkpoint: the JSON sidecar of the last checkpoint written, or None.
    """

    step: int
    last_row: dict[str, float]
    checkpoint: Path | None


def _model_config_dict(model: nn.Module, model_config: Any) -> dict[str, Any]:
    cfg = model_config if model_config is not None else getattr(model, "config", None)
    if cfg is None:
        raise ValueError(
            "Trainer: the model has no .config and no model_config= was given; checkpoints need the "
            "DenoiserConfig to rebuild the model"
        )
    if isinstance(cfg, dict):
        return dict(cfg)
    if not hasattr(cfg, "to_dict"):
        raise TypeError(f"Trainer: model_config must be a DenoiserConfig or dict, got {type(cfg).__name__}")
    return cfg.to_dict()


def _same_model_config(saved: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether a checkpoint's model config describes the current model.

    Equal dicts match; otherwise, when both are :class:`~mvlift.models.DenoiserConfig` dicts, the parsed
    configs are compared, so a checkpoint written before a field was added (absent key = the field's
    default, e.g. ``cross_view_backend``) still resumes.
    """
    if saved == current:
        return True
    from mvlift.models import DenoiserConfig

    try:
        return DenoiserConfig.from_dict(saved) == DenoiserConfig.from_dict(current)
    except (TypeError, ValueError):
        return False


class Trainer:
    """Trains a denoiser with an objective on a training dataset.

    Args:
        model: the denoiser (e.g. :func:`mvlift.models.build_model`); moved to the training device.
        objective: ``objective(model, batch, generator=...) -> {"loss": ..., <components>}``, e.g.
            :class:`~mvlift.training.objectives.Stage1Objective`.
        dataset: a map-style dataset accepting ``(epoch, index)`` keys (the datasets of
            :mod:`mvlift.training.datasets`), collated into dicts of tensors.
        config: the :class:`TrainConfig`.
        model_config: the model's :class:`~mvlift.models.DenoiserConfig` (default: ``model.config``),
            stored in every checkpoint so that :func:`~mvlift.training.checkpoint.load_model` rebuilds it.
        collate_fn: DataLoader collate function (default: torch's default_collate).
        dist_info: process placement; default :func:`init_distributed` (joins torchrun's process group).

    Attributes:
        model: the trained module (unwrapped).
        ema: the :class:`EMA` (``ema.module`` is the model to sample from).
        optimizer: the AdamW optimizer.
        step: optimizer steps done so far.
        log: the :class:`LossLog` (rows on rank 0).
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        dataset: Dataset,
        config: TrainConfig,
        *,
        model_config: Any = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        dist_info: DistInfo | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"Trainer: model must be an nn.Module, got {type(model).__name__}")
        if not callable(objective):
            raise TypeError(f"Trainer: objective must be callable, got {type(objective).__name__}")
        if not isinstance(config, TrainConfig):
            raise TypeError(f"Trainer: config must be a TrainConfig, got {type(config).__name__}")
        try:
            n_items = len(dataset)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError("Trainer: dataset must be a map-style dataset with __len__") from None
        self.config = config
        self.info = dist_info if dist_info is not None else init_distributed(config.device)
        self.device = self.info.device if self.info.distributed else config.resolved_device()
        global_batch = config.batch_size * self.info.world_size
        if n_items < global_batch:
            raise ValueError(
                f"Trainer: the dataset has {n_items} items, fewer than one global micro-batch "
                f"(batch_size {config.batch_size} x {self.info.world_size} processes)"
            )
        self.model_config = _model_config_dict(model, model_config)
        self.model = model.to(self.device)
        self.objective = objective
        self.dataset = dataset
        self.collate_fn = collate_fn
        self.train_model: nn.Module = self.model
        if self.info.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = self._build_optimizer()
        self.ema = EMA(self.model, config.ema_decay, config.ema_every, config.ema_start)
        self.generator = torch.Generator(self.device).manual_seed(derive_seed(config.seed, 1, self.info.rank))
        self.step = 0
        self.micro_batches = 0
        self.elapsed_s = 0.0
        self.out_dir = Path(config.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.log = LossLog(self.out_dir / "loss_log.csv", self.out_dir / "loss_plot.png")
        self.use_bf16 = bool(config.bf16 and self.device.type == "cuda")
        self.last_checkpoint: Path | None = None

    # ------------------------------------------------------------------------------------------ setup
    def _build_optimizer(self) -> torch.optim.AdamW:
        cfg = self.config
        decay, no_decay = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
        groups = [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        kwargs: dict[str, Any] = {}
        if self.device.type == "cuda":
            kwargs["fused"] = True
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, **kwargs)

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based): linear warm-up, then constant."""
        w = self.config.warmup_steps
        return self.config.lr * (min(1.0, (step + 1) / w) if w > 0 else 1.0)

    def _loader(self) -> Iterator[Any]:
        sampler = ShardedBatchSampler(
            len(self.dataset),  # type: ignore[arg-type]
            self.config.batch_size,
            seed=self.config.seed,
            rank=self.info.rank,
            world_size=self.info.world_size,
            start=self.micro_batches,
        )
        # Own generator for the workers' base seed, so that making the iterator never draws from (and
        # shifts) torch's global RNG.
        loader_gen = torch.Generator().manual_seed(derive_seed(self.config.seed, 2, self.micro_batches))
        loader = DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=self.config.num_workers,
            collate_fn=self.collate_fn,
            pin_memory=self.device.type == "cuda",
            generator=loader_gen,
        )
        return iter(loader)

    def _to_device(self, batch: Any) -> Any:
        if isinstance(batch, dict):
            return {
                k: (
                    v if k in HOST_KEYS or not isinstance(v, Tensor) else v.to(self.device, non_blocking=True)
                )
                for k, v in batch.items()
            }
        if isinstance(batch, Tensor):
            return batch.to(self.device, non_blocking=True)
        return batch

    # ------------------------------------------------------------------------------------ RNG states
    def _rng_state(self) -> dict[str, Tensor]:
        state = {"torch": torch.get_rng_state(), "generator": self.generator.get_state().cpu()}
        if torch.cuda.is_available() and self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device).cpu()
        return state

    def _set_rng_state(self, state: dict[str, Tensor]) -> None:
        torch.set_rng_state(state["torch"].cpu())
        self.generator.set_state(state["generator"].to(self.generator.get_state().device))
        if "cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"].cpu(), self.device)

    # ----------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0 writes; every rank must call). Returns its path."""
        rng_states = all_gather_objects(self._rng_state(), self.info)
        path = None
        if self.info.is_main:
            meta = {
                "model_config": self.model_config,
                "train_config": self.config.to_dict(),
                "micro_batches": self.micro_batches,
                "data_epoch": self.micro_batches // self._batches_per_epoch(),
                "data_position": self.micro_batches % self._batches_per_epoch(),
                "world_size": self.info.world_size,
                "elapsed_s": self.elapsed_s,
                "torch_version": torch.__version__,
            }
            path = save_checkpoint(
                self.ckpt_dir,
                self.step,
                model_state=self.model.state_dict(),
                ema_state=self.ema.state_dict(),
                optimizer_state=self.optimizer.state_dict(),
                rng_states=rng_states,
                meta=meta,
            )
            prune_checkpoints(self.ckpt_dir, self.config.keep_checkpoints)
            self.log.plot()
        barrier(self.info)
        self.last_checkpoint = path
        return path

    def _batches_per_epoch(self) -> int:
        return len(self.dataset) // (self.config.batch_size * self.info.world_size)  # type: ignore[arg-type]

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore weights, EMA, optimizer, data position, step and RNG states from a checkpoint."""
        meta, sections = read_checkpoint(path, device="cpu")
        if not _same_model_config(meta["model_config"], json.loads(json.dumps(self.model_config))):
            raise ValueError(
                f"checkpoint {meta['_path']} was written for model config {meta['model_config']}, "
                f"but this trainer's model has {self.model_config}"
            )
        self.model.load_state_dict(sections["model"], strict=True)
        self.ema.load_state_dict(sections["ema"])
        if "optimizer" in meta:
            self.optimizer.load_state_dict(unflatten_optimizer_state(sections["optim"], meta["optimizer"]))
        self.step = int(meta["step"])
        self.micro_batches = int(meta["micro_batches"])
        self.elapsed_s = float(meta.get("elapsed_s", 0.0))
        saved = meta.get("train_config", {})
        saved_global = saved.get("batch_size", self.config.batch_size) * meta.get("world_size", 1)
        this_global = self.config.batch_size * self.info.world_size
        if saved_global != this_global:
            warnings.warn(
                f"checkpoint {meta['_path']} was trained with {saved_global} sequences per global "
                f"micro-batch, this run uses {this_global}: the data stream "
                "continues at the same micro-batch count but not with the same items",
                stacklevel=2,
            )
        rng = sections["rng"]
        if len(rng) == self.info.world_size:
            self._set_rng_state(rng[self.info.rank])
        else:
            warnings.warn(
                f"checkpoint {meta['_path']} holds RNG states of {len(rng)} processes, this run has "
                f"{self.info.world_size}: RNG streams are re-seeded and the data stream position is kept, "
                "so the run does not replay the original exactly",
                stacklevel=2,
            )
            torch.manual_seed(derive_seed(self.config.seed, 3, self.step, self.info.rank))
        self.last_checkpoint = Path(meta["_path"])
        logger.info("resumed from %s at step %d", meta["_path"], self.step)

    def _find_resume(self, resume: bool | str | Path) -> Path | None:
        if resume is False or resume is None:
            return None
        path = None
        if self.info.is_main:
            if resume is True:
                try:
                    path = str(resolve_checkpoint(self.ckpt_dir))
                except FileNotFoundError:
                    path = None
            else:
                path = str(resolve_checkpoint(resume))
        path = broadcast_object(path, self.info)
        return Path(path) if path is not None else None

    # ------------------------------------------------------------------------------------------ train
    def fit(self, *, resume: bool | str | Path = False, stop_at: int | None = None) -> FitResult:
        """Train up to ``config.max_steps`` optimizer steps.

        Args:
            resume: False: start fresh (the run folder's old loss log is replaced). True: continue from
                the latest checkpoint in ``out_dir/checkpoints`` if there is one (else start fresh). A path:
                continue from that checkpoint.
            stop_at: stop after this step without a final checkpoint (what a kill at that step leaves:
                only the periodic checkpoints); default: run to ``max_steps`` and checkpoint there.

        A fresh run seeds torch's global RNG (dropout) from ``(config.seed, rank)``; a resumed run restores
        the RNG states saved in the checkpoint. Every rank must call ``fit`` (collective operations).

        Returns:
            A :class:`FitResult`.
        """
        cfg = self.config
        ckpt = self._find_resume(resume)
        if ckpt is not None:
            self.load_checkpoint(ckpt)
        else:
            torch.manual_seed(derive_seed(cfg.seed, 3, 0, self.info.rank))
        if self.info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            cfg.to_json(self.out_dir / "train_config.json")
            if ckpt is not None:
                self.log.load(up_to_step=self.step)
            else:
                self.log.csv_path.unlink(missing_ok=True)
                self.log.load()
        target = cfg.max_steps if stop_at is None else min(int(stop_at), cfg.max_steps)
        batches = self._loader()
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.step,
            desc=f"train {self.model_config.get('kind', 'model')}",
            unit="step",
            disable=not (cfg.progress and self.info.is_main),
            dynamic_ncols=True,
        )
        window: dict[str, Tensor] = {}
        window_steps = 0
        grad_norm_sum = torch.zeros((), device=self.device)
        t_start = time.perf_counter()
        elapsed_at_start = self.elapsed_s
        params = [p for p in self.model.parameters() if p.requires_grad]
        try:
            while self.step < target:
                lr = self.lr_at(self.step)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                comps = self._accumulate(batches)
                max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
                grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
                self.optimizer.step()
                self.step += 1
                self.ema.update(self.model, self.step)
                for k, v in comps.items():
                    window[k] = window[k] + v if k in window else v
                grad_norm_sum = grad_norm_sum + grad_norm.detach().float()
                window_steps += 1
                self.elapsed_s = elapsed_at_start + (time.perf_counter() - t_start)
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == target:
                    self._write_row(window, grad_norm_sum, window_steps, lr, bar)
                    window, window_steps = {}, 0
                    grad_norm_sum = torch.zeros((), device=self.device)
                if (cfg.ckpt_every > 0 and self.step % cfg.ckpt_every == 0) or self.step == cfg.max_steps:
                    self.save_checkpoint()
        finally:
            bar.close()
        last = self.log.rows[-1] if self.log.rows else {}
        return FitResult(self.step, dict(last), self.last_checkpoint)

    def _accumulate(self, batches: Iterator[Any]) -> dict[str, Tensor]:
        """Forward/backward ``grad_accum`` micro-batches; returns the step's mean loss components."""
        cfg = self.config
        self.train_model.train()
        self.optimizer.zero_grad(set_to_none=True)
        comps: dict[str, Tensor] = {}
        for micro in range(cfg.grad_accum):
            batch = self._to_device(next(batches))
            self.micro_batches += 1
            last = micro == cfg.grad_accum - 1
            sync = contextlib.nullcontext()
            if self.info.distributed and not last:
                sync = self.train_model.no_sync()  # type: ignore[operator]
            with sync:
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
                    out = self.objective(self.train_model, batch, generator=self.generator)
                if not isinstance(out, dict) or "loss" not in out:
                    raise TypeError("the objective must return a dict holding 'loss'")
                (out["loss"].float() / cfg.grad_accum).backward()
            for k, v in out.items():
                v = v.detach().float() / cfg.grad_accum
                comps[k] = comps[k] + v if k in comps else v
        return comps

    def _write_row(
        self, window: dict[str, Tensor], grad_norm_sum: Tensor, n: int, lr: float, bar: tqdm
    ) -> None:
        keys = list(window)
        stacked = torch.stack([window[k] for k in keys] + [grad_norm_sum]) / n
        stacked = all_reduce_mean(stacked, self.info).cpu().tolist()
        row = {"step": float(self.step)}
        row.update({k: v for k, v in zip(keys, stacked[:-1], strict=True)})
        if not math.isfinite(row["loss"]):
            raise FloatingPointError(f"training loss is {row['loss']} at step {self.step}")
        row.update({"lr": lr, "grad_norm": stacked[-1], "time_s": self.elapsed_s})
        if self.info.is_main:
            self.log.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4g}", refresh=False)
