"""Worker of the DDP test: ``torchrun --nproc_per_node 2 ddp_worker.py OUT_DIR`` (gloo on CPU).

Trains the tiny stage-1 model for two optimizer steps with DistributedDataParallel and writes, on rank 0,
the last step's (all-reduced, clipped) gradients and the updated parameters to ``OUT_DIR/ddp.safetensors``.
The test runs the same recipe in one process on the same global batches and compares.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from mvlift.models import build_model
from mvlift.schedulers import CosineSchedule
from mvlift.training import (
    Stage1Dataset,
    Stage1Objective,
    TrainConfig,
    Trainer,
    cleanup_distributed,
    init_distributed,
)

if __package__:  # imported by the test
    from ._helpers import smooth_motions_2d, tiny_config
else:  # run as a script by torchrun
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _helpers import smooth_motions_2d, tiny_config

STEPS = 2
GLOBAL_BATCH = 4
GRAD_ACCUM = 2


def make_trainer(out_dir: Path, batch_size: int, dist_info=None) -> Trainer:
    """The shared recipe: same model init, data, objective and config apart from the per-process batch."""
    torch.manual_seed(0)
    model = build_model(tiny_config())
    data = Stage1Dataset(smooth_motions_2d(12, 8, torch.Generator().manual_seed(1)), seed=2)
    cfg = TrainConfig(
        lr=1e-3, batch_size=batch_size, grad_accum=GRAD_ACCUM, max_steps=STEPS, log_every=1, ckpt_every=0,
        out_dir=str(out_dir), device="cpu", progress=False, grad_clip=0.5, ema_every=1,
    )  # fmt: skip
    return Trainer(model, Stage1Objective(CosineSchedule()), data, cfg, dist_info=dist_info)


def result_tensors(tr: Trainer) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in tr.model.named_parameters():
        out[f"param/{name}"] = p.detach().clone()
        out[f"grad/{name}"] = p.grad.detach().clone()
    out["loss"] = torch.tensor([row["loss"] for row in tr.log.rows], dtype=torch.float64)
    return out


def main() -> None:
    out_dir = Path(sys.argv[1])
    info = init_distributed("cpu")
    assert info.world_size == 2 and info.backend == "gloo", info
    tr = make_trainer(out_dir / "run", GLOBAL_BATCH // info.world_size, dist_info=info)
    tr.fit()
    if info.is_main:
        save_file(result_tensors(tr), str(out_dir / "ddp.safetensors"))
    cleanup_distributed()


if __name__ == "__main__":
    main()
