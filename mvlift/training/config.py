"""Training configuration: one dataclass for both stages, serialisable to JSON and loadable from YAML."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mvlift._fields import (
    ConfigError,
    at_least,
    check_device_name,
    check_fields,
    checked_fields,
    greater_than,
    in_range,
)


@dataclass
class TrainConfig:
    """Hyper-parameters and run settings of :class:`mvlift.training.Trainer`.

    Defaults follow the paper's code for stage 1 (Adam at lr 2e-4, batch 32 with 2-step accumulation,
    EMA 0.995 every 10 steps); ``weight_decay=0`` makes AdamW the paper's Adam.

    Batch sizes are per process: with ``W`` processes (torchrun) one optimizer step sees
    ``batch_size * grad_accum * W`` sequences.

    Attributes:
        lr: peak learning rate (constant after the optional linear warm-up).
        betas: AdamW betas.
        eps: AdamW epsilon.
        weight_decay: AdamW decoupled weight decay.
        warmup_steps: linear warm-up from 0 to ``lr`` over this many optimizer steps (0 = none).
        batch_size: sequences per micro-batch and per process.
        grad_accum: micro-batches accumulated per optimizer step.
        max_steps: optimizer steps of the whole run.
        grad_clip: max global gradient L2 norm (``<= 0`` disables clipping).
        ema_decay: EMA decay per EMA update.
        ema_every: EMA update every this many optimizer steps.
        ema_start: before this optimizer step the EMA copies the weights instead of averaging them.
        bf16: bf16 autocast for the forward pass on CUDA (always off on CPU).
        seed: seeds the model-independent randomness: data order, per-sequence epipoles and noise, dropout.
        log_every: write a loss-log row (mean over the steps since the previous row) every this many steps.
        ckpt_every: write a checkpoint every this many steps (and always at the end; ``<= 0``: end only).
        keep_checkpoints: how many of the most recent checkpoints to keep on disk.
        out_dir: run folder (checkpoints, loss log CSV, loss plot PNG).
        num_workers: DataLoader worker processes (0 = load in the main process).
        device: ``"auto"`` (CUDA when available, else CPU), or a torch device string.
        progress: show a tqdm progress bar on rank 0.
    """

    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0
    batch_size: int = 32
    grad_accum: int = 2
    max_steps: int = 600_000
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    ema_every: int = 10
    ema_start: int = 0
    bf16: bool = True
    seed: int = 0
    log_every: int = 50
    ckpt_every: int = 5000
    keep_checkpoints: int = 2
    out_dir: str = "runs/train"
    num_workers: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field's type and range (stores ``betas`` as a tuple, ints given for floats as floats).

        Raises:
            mvlift._fields.ConfigError: (a ValueError) naming the first invalid field, e.g.
                ``"TrainConfig.max_steps: expected an int >= 1, got 0"``.
        """
        one, zero = at_least(1), at_least(0)
        rules = {
            "lr": greater_than(0),
            "betas": in_range(0.0, 1.0, hi_open=True),
            "eps": greater_than(0),
            "weight_decay": at_least(0),
            "warmup_steps": zero,
            "batch_size": one,
            "grad_accum": one,
            "max_steps": one,
            "ema_decay": in_range(0.0, 1.0, hi_open=True),
            "ema_every": one,
            "ema_start": zero,
            "seed": zero,
            "log_every": one,
            "keep_checkpoints": one,
            "num_workers": zero,
        }
        check_fields(self, rules)
        if check_device_name(self.device) is not None:
            raise ConfigError(
                "TrainConfig",
                "device",
                f"expected 'auto' or a torch device (cpu, cuda, cuda:N), got {self.device!r}",
            )

    def resolved_device(self) -> torch.device:
        """The torch device this config selects (``"auto"``: CUDA when available, else CPU).

        Raises:
            ValueError: the device does not exist on this machine (e.g. ``cuda`` without CUDA).
        """
        from mvlift._runtime import resolve_device

        return resolve_device(self.device, where="TrainConfig.device")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of all fields (``betas`` as a list)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`. Unknown keys raise ValueError naming them."""
        return cls(**checked_fields(cls, d, "TrainConfig fields"))

    def to_json(self, path: str | Path | None = None) -> str:
        """The config as a JSON string; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> TrainConfig:
        """Load from a JSON file path or a JSON string."""
        p = Path(path_or_text) if not str(path_or_text).lstrip().startswith("{") else None
        text = p.read_text() if p is not None else str(path_or_text)
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


def load_train_config(path: str | Path, *, section: str | None = "train") -> TrainConfig:
    """Load a :class:`TrainConfig` from a YAML (or JSON) file.

    Args:
        path: ``.yaml``/``.yml``/``.json`` file holding a mapping of TrainConfig fields.
        section: when the file's top-level mapping has this key (e.g. ``train:``), its value is used, so a
            single experiment file can also hold model/data sections. ``None`` uses the whole mapping.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config file not found: {path}")
    data = yaml.safe_load(path.read_text())
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of TrainConfig fields, got {type(data).__name__}")
    if section is not None and section in data:
        data = data[section]
        if not isinstance(data, dict):
            raise ValueError(f"{path}: section {section!r} must be a mapping, got {type(data).__name__}")
    return TrainConfig.from_dict(data)
