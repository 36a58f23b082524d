"""The training losses under bf16 autocast, as the trainer runs them on a GPU (``TrainConfig.bf16``).

There is no GPU here, so the same dtype plumbing runs under the CPU's bf16 autocast: the models' linear layers
then return bf16, which reaches the fused stage-1 loss (a Triton kernel, in the interpreter) and, for stage 4,
the cross-view attention kernel with bf16 q/k/v. Losses must match fp32 to bf16 accuracy and every
gradient must be finite.
"""

from __future__ import annotations

import pytest
import torch

from mvlift.models import DenoiserConfig, build_model
from mvlift.models.attention import last_backend
from mvlift.ops import _backend
from mvlift.schedulers import CosineSchedule
from mvlift.training.objectives import Stage1Objective, Stage4Objective

B, T, J, K = 3, 11, 5, 4
SMALL = dict(d_model=32, num_layers=2, num_heads=2, ffn_dim=48, max_frames=16, dropout=0.0)


def _run(model, objective, batch, bf16: bool) -> tuple[dict[str, float], list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = objective(model, batch)
    out["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return {k: float(v.detach()) for k, v in out.items()}, grads


@pytest.fixture
def triton_path():
    if not _backend.triton_interpret():
        pytest.skip("the Triton interpreter path is off (no TRITON_INTERPRET or no triton)")


def test_stage1_loss_under_bf16_autocast(seed, triton_path):
    model = build_model(DenoiserConfig(num_joints=J, kind="stage1", **SMALL))
    ab = torch.nn.functional.normalize(torch.randn(B, T, J, 2), dim=-1)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 8:] = False
    batch = {
        "x0": torch.rand(B, T, J, 2) - 0.5,
        "lines": torch.cat([ab, 0.3 * torch.randn(B, T, J, 1)], dim=-1),
        "mask": mask,
        "noise_seed": torch.randint(0, 2**31, (B,), dtype=torch.int64),
    }
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lines = batch["lines"]
        pred = model(batch["x0"], torch.zeros(B, dtype=torch.int64), lines, mask)
    assert pred.dtype == torch.bfloat16  # the fused loss really receives bf16 predictions
    objective = Stage1Objective(CosineSchedule())
    ref, _ = _run(model, objective, batch, bf16=False)
    got, grads = _run(model, objective, batch, bf16=True)
    assert set(got) == set(ref)
    for key in ref:
        assert got[key] == pytest.approx(ref[key], rel=0.05), key
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("cross_view_backend", ["sdpa", "kernel"])
def test_stage4_loss_under_bf16_autocast(seed, triton_path, cross_view_backend):
    model = build_model(
        DenoiserConfig(
            num_joints=J, kind="multiview", num_views=K, cross_view_backend=cross_view_backend, **SMALL
        )
    )
    views = torch.rand(B, K, T, J, 2) - 0.5
    batch = {
        "x0_views": views,
        "cond": views[:, 0],
        "mask": torch.ones(B, T, dtype=torch.bool),
        "noise_seed": torch.randint(0, 2**31, (B,), dtype=torch.int64),
    }
    objective = Stage4Objective(CosineSchedule())
    ref, _ = _run(model, objective, batch, bf16=False)
    got, grads = _run(model, objective, batch, bf16=True)
    assert last_backend() == cross_view_backend  # the last attention call of the forward was cross-view
    assert got["loss"] == pytest.approx(ref["loss"], rel=0.05)
    assert grads and all(torch.isfinite(g).all() for g in grads)
