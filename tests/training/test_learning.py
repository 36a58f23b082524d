"""Short CPU trainings show that the priors learn what they are for.

- Stage 1: samples drawn with the lines of a sequence lie on those lines far better than samples of the same
  model drawn with another sequence's lines (so the model follows its line condition).
- Stage 4: the K views the model produces become epipolar-consistent (the epipolar distance of its x0
  predictions falls during training, and that of its DDIM samples ends far below the untrained model's).
"""

from __future__ import annotations

import pytest
import torch

from mvlift.geometry import line_conditions, sample_virtual_epipoles
from mvlift.models import build_model
from mvlift.reference.losses import epipolar_loss
from mvlift.schedulers import CosineSchedule, DDIMScheduler, sample
from mvlift.training import (
    MultiViewDataset,
    Stage1Dataset,
    Stage1Objective,
    Stage4Objective,
    TrainConfig,
    Trainer,
    multiview_from_motion,
)

from ._helpers import HIPS, J, procedural_positions, smooth_motions_2d, tiny_config

pytestmark = pytest.mark.usefixtures("cpu_training")


def _line_residual(x: torch.Tensor, lines: torch.Tensor) -> float:
    """Mean |a x + b y + c| (normalized units)."""
    return (lines[..., 0] * x[..., 0] + lines[..., 1] * x[..., 1] + lines[..., 2]).abs().mean().item()


def test_stage1_samples_follow_their_lines(tmp_path, seed):
    frames, n_eval = 8, 16
    torch.manual_seed(seed)
    data = Stage1Dataset(smooth_motions_2d(64, frames, torch.Generator().manual_seed(seed)), seed=seed % 1000)
    cfg = TrainConfig(
        lr=5e-3, batch_size=16, grad_accum=1, max_steps=300, log_every=50, ckpt_every=0,
        out_dir=str(tmp_path), device="cpu", progress=False, ema_every=1, ema_decay=0.9, seed=seed % 1000,
    )  # fmt: skip
    trainer = Trainer(build_model(tiny_config()), Stage1Objective(CosineSchedule()), data, cfg)
    trainer.fit()
    model = trainer.model.eval()

    g = torch.Generator().manual_seed(seed + 1)
    motion = smooth_motions_2d(n_eval, frames, g)  # unseen sequences
    epipoles = sample_virtual_epipoles(n_eval, generator=g, dtype=torch.float32)  # unseen epipoles
    lines = line_conditions(motion, epipoles)
    others = lines[torch.roll(torch.arange(n_eval), 1)]  # every sequence gets another one's lines
    sched = DDIMScheduler(10)

    def draw(cond: torch.Tensor) -> torch.Tensor:
        return sample(
            lambda x, t: model(x, t, cond), (n_eval, frames, J, 2), sched, generator=seed, progress=False
        )

    on_own = _line_residual(draw(lines), lines)
    on_other = _line_residual(draw(others), lines)
    assert on_own < 0.75 * on_other, (on_own, on_other)


def test_stage4_views_become_epipolar_consistent(tmp_path, seed):
    frames, views_k, n_eval = 8, 4, 8
    torch.manual_seed(seed)
    views, F, masks = multiview_from_motion(
        procedural_positions(48, frames, seed % 10_000), num_views=views_k, root_joints=HIPS, seed=seed % 1000
    )
    cfg = TrainConfig(
        lr=3e-3, batch_size=8, grad_accum=1, max_steps=150, log_every=25, ckpt_every=0,
        out_dir=str(tmp_path), device="cpu", progress=False, seed=seed % 1000,
    )  # fmt: skip
    model = build_model(tiny_config("multiview", num_views=views_k))
    trainer = Trainer(model, Stage4Objective(CosineSchedule()), MultiViewDataset(views, masks, F), cfg)

    test_views, test_F, _ = multiview_from_motion(
        procedural_positions(n_eval, frames, seed % 10_000 + 100), num_views=views_k, root_joints=HIPS, seed=7
    )
    known = torch.zeros(1, views_k, 1, 1, 1, dtype=torch.bool)
    known[:, 0] = True  # the input view is given

    def sampled_epipolar() -> float:
        model.eval()
        x = sample(
            lambda x, t: model(x, t, test_views[:, 0]), tuple(test_views.shape), DDIMScheduler(10),
            generator=seed, progress=False, inpaint=(known, test_views),
        )  # fmt: skip
        return epipolar_loss(x, test_F).item()

    before = sampled_epipolar()
    trainer.fit()
    after = sampled_epipolar()
    logged = [row["epipolar"] for row in trainer.log.rows]  # of the x0 predictions, on the training batches
    assert logged[-1] < 0.5 * logged[0], logged
    assert after < 0.25 * before, (before, after)
