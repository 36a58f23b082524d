"""Training of the two learned priors: one trainer for the stage-1 and the stage-4 denoisers.

- :class:`TrainConfig` / :func:`load_train_config`: hyper-parameters (JSON round trip, YAML loading).
- :class:`Trainer`: AdamW, EMA, clipping, bf16 autocast on CUDA, accumulation, DDP under torchrun,
  safetensors checkpoints, exact resume, progress bar, CSV loss log and PNG loss plot.
- :func:`load_model`: rebuild a trained model from a checkpoint alone.
- :class:`Stage1Objective`, :class:`Stage4Objective`: the diffusion training losses.
- :class:`Stage1Dataset`, :class:`MultiViewDataset`, :class:`MultiViewMotionDataset`,
  :func:`multiview_from_motion`: training data.
- :func:`init_distributed`, :class:`ShardedBatchSampler`: multi-process helpers.

Typical use::

    model = build_model(DenoiserConfig(num_joints=18))
    trainer = Trainer(model, Stage1Objective(scheduler), Stage1Dataset(windows, masks), TrainConfig(...))
    trainer.fit(resume=True)
    sampler_model = load_model(trainer.out_dir)  # EMA weights
"""

from mvlift.training.checkpoint import list_checkpoints, load_model, read_checkpoint, resolve_checkpoint
from mvlift.training.config import TrainConfig, load_train_config
from mvlift.training.datasets import (
    MultiViewDataset,
    MultiViewMotionDataset,
    Stage1Dataset,
    multiview_from_motion,
)
from mvlift.training.distributed import (
    DistInfo,
    ShardedBatchSampler,
    cleanup_distributed,
    derive_seed,
    init_distributed,
)
from mvlift.training.ema import EMA
from mvlift.training.logging import LossLog
from mvlift.training.objectives import Stage1Objective, Stage4Objective, masked_l1
from mvlift.training.trainer import FitResult, Trainer

__all__ = [
    "EMA",
    "DistInfo",
    "FitResult",
    "LossLog",
    "MultiViewDataset",
    "MultiViewMotionDataset",
    "ShardedBatchSampler",
    "Stage1Dataset",
    "Stage1Objective",
    "Stage4Objective",
    "TrainConfig",
    "Trainer",
    "cleanup_distributed",
    "derive_seed",
    "init_distributed",
    "list_checkpoints",
    "load_model",
    "load_train_config",
    "masked_l1",
    "multiview_from_motion",
    "read_checkpoint",
    "resolve_checkpoint",
]
