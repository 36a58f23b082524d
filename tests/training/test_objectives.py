"""Stage-1 and stage-4 training objectives against float64 plain-torch references."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import default_collate

from mvlift.models import build_model
from mvlift.reference.losses import epipolar_loss as ref_epipolar_loss
from mvlift.reference.losses import stage1_loss as ref_stage1_loss
from mvlift.schedulers import CosineSchedule
from mvlift.training import (
    MultiViewDataset,
    Stage1Dataset,
    Stage1Objective,
    Stage4Objective,
    masked_l1,
    multiview_from_motion,
)
from mvlift.training.objectives import draw_steps_and_noise

from ._helpers import HIPS, J, procedural_positions, smooth_motions_2d, tiny_config


def _stage1_batch(seed: int, n: int = 3, frames: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    seqs = smooth_motions_2d(n, frames, g)
    masks = torch.ones(n, frames, dtype=torch.bool)
    masks[0, -2:] = False  # a padded tail
    ds = Stage1Dataset(seqs, masks, seed=seed % 1000)
    return default_collate([ds[(1, i)] for i in range(n)])


def test_noise_and_step_depend_only_on_the_sample_seed(seed):
    seeds = torch.tensor([seed % 2**62, 7, 123456789], dtype=torch.int64)
    t, noise = draw_steps_and_noise(seeds, (3, 4, J, 2), 1000, device=torch.device("cpu"))
    t2, noise2 = draw_steps_and_noise(seeds[[2, 0]], (2, 4, J, 2), 1000, device=torch.device("cpu"))
    assert t.dtype == torch.int64 and t.min() >= 0 and t.max() < 1000
    assert torch.equal(t2, t[[2, 0]]) and torch.equal(noise2, noise[[2, 0]])
    assert noise.std() > 0.5
    g = torch.Generator().manual_seed(1)
    t3, n3 = draw_steps_and_noise(None, (5, 2, 3), 10, device=torch.device("cpu"), generator=g)
    assert t3.shape == (5,) and n3.shape == (5, 2, 3)
    with pytest.raises(ValueError, match="seeds"):
        draw_steps_and_noise(seeds, (2, 4), 10, device=torch.device("cpu"))


def test_masked_l1_matches_float64_reference(seed):
    pred, target = torch.randn(3, 4, 7, 5, 2), torch.randn(3, 4, 7, 5, 2)
    mask = torch.rand(3, 7) > 0.4
    mask[0, 0] = True
    diff = (pred.double() - target.double()).abs()
    w = mask.double()[:, None, :, None, None].expand_as(diff)
    expected = (diff * w).sum() / w.sum()
    torch.testing.assert_close(masked_l1(pred, target, mask).double(), expected, rtol=1e-5, atol=0)
    p4, t4 = pred[:, 0], target[:, 0]
    w4 = mask.double()[:, :, None, None].expand_as(p4)
    expected4 = ((p4.double() - t4.double()).abs() * w4).sum() / w4.sum()
    torch.testing.assert_close(masked_l1(p4, t4, mask).double(), expected4, rtol=1e-5, atol=0)
    torch.testing.assert_close(masked_l1(p4, t4, None).double(), (p4.double() - t4.double()).abs().mean())
    assert masked_l1(p4, t4, torch.zeros(3, 7, dtype=torch.bool)) == 0


def test_stage1_objective_matches_reference(seed):
    torch.manual_seed(seed)
    model = build_model(tiny_config()).eval()
    sched = CosineSchedule()
    batch = _stage1_batch(seed)
    out = Stage1Objective(sched, line_weight=0.7)(model, batch)
    assert set(out) == {"loss", "l1", "line"}
    t, noise = draw_steps_and_noise(
        batch["noise_seed"], tuple(batch["x0"].shape), 1000, device=torch.device("cpu")
    )
    with torch.no_grad():
        pred = model(sched.add_noise(batch["x0"], noise, t), t, batch["lines"], batch["mask"])
    total, l1, line = ref_stage1_loss(
        pred.double(), batch["x0"].double(), batch["lines"].double(), mask=batch["mask"], line_weight=0.7
    )
    for key, ref in (("loss", total), ("l1", l1), ("line", line)):
        torch.testing.assert_close(out[key].double(), ref, rtol=1e-4, atol=1e-6)
    out["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_stage4_objective_matches_reference(seed):
    torch.manual_seed(seed)
    model = build_model(tiny_config("multiview", num_views=3)).eval()
    sched = CosineSchedule()
    views, F, masks = multiview_from_motion(
        procedural_positions(2, 5, seed % 10_000), num_views=3, root_joints=HIPS
    )
    masks[1, -1] = False
    ds = MultiViewDataset(views, masks, F, seed=1)
    batch = default_collate([ds[(0, i)] for i in range(2)])
    out = Stage4Objective(sched)(model, batch)
    assert set(out) == {"loss", "l1", "epipolar"}
    assert out["epipolar"].grad_fn is None  # a metric only at weight 0
    t, noise = draw_steps_and_noise(batch["noise_seed"], tuple(views.shape), 1000, device=torch.device("cpu"))
    with torch.no_grad():
        pred = model(sched.add_noise(batch["x0_views"], noise, t), t, batch["cond"], batch["mask"])
    diff = (pred.double() - views.double()).abs()
    w = batch["mask"].double()[:, None, :, None, None].expand_as(diff)
    torch.testing.assert_close(out["l1"].double(), (diff * w).sum() / w.sum(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out["loss"], out["l1"])
    epi = ref_epipolar_loss(pred.double(), F.double(), mask=batch["mask"])
    torch.testing.assert_close(out["epipolar"].double(), epi, rtol=1e-4, atol=1e-6)

    weighted = Stage4Objective(sched, epipolar_weight=2.0)(model, batch)
    torch.testing.assert_close(weighted["loss"], weighted["l1"] + 2.0 * weighted["epipolar"])
    weighted["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_objective_errors_name_the_problem(seed):
    sched = CosineSchedule()
    model = build_model(tiny_config())
    batch = _stage1_batch(seed)
    with pytest.raises(ValueError, match=r"lacks key\(s\) \['lines'\]"):
        Stage1Objective(sched)(model, {"x0": batch["x0"]})
    with pytest.raises(ValueError, match=r"batch\['lines'\] must have shape"):
        Stage1Objective(sched)(model, {**batch, "lines": batch["lines"][:, :, :3]})
    with pytest.raises(TypeError, match="scheduler"):
        Stage1Objective(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="line_weight"):
        Stage1Objective(sched, line_weight=-1.0)
    mv = {"x0_views": torch.zeros(2, 3, 4, J, 2), "cond": torch.zeros(2, 4, J, 2)}
    with pytest.raises(ValueError, match="needs 'F'"):
        Stage4Objective(sched, epipolar_weight=1.0)(build_model(tiny_config("multiview", num_views=3)), mv)
    with pytest.raises(ValueError, match=r"batch\['cond'\] must have shape"):
        Stage4Objective(sched)(model, {**mv, "cond": torch.zeros(2, 3, J, 2)})
    with pytest.raises(ValueError, match="distance"):
        Stage4Objective(sched, distance="l2")
