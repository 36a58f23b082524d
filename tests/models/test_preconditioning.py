"""DenoiserConfig.skip: the EDM-style skip preconditioning of both denoisers."""

from __future__ import annotations

import pytest
import torch

from mvlift.models import DenoiserConfig, build_model
from mvlift.models.preconditioning import SkipPreconditioning
from mvlift.schedulers import CosineSchedule


def _model(kind: str, skip: bool):
    cfg = DenoiserConfig(
        num_joints=5, kind=kind, d_model=16, num_layers=1, num_heads=2, ffn_dim=16, dropout=0.0, skip=skip
    )
    return build_model(cfg, seed=0).eval()


def test_coefficients_match_the_formula():
    sd = 0.3
    pre = SkipPreconditioning(sd)
    ab = CosineSchedule().alphas_cumprod
    for t in (0, 17, 500, 999):
        s2 = float((1 - ab[t]) / ab[t])
        c_skip = sd**2 / (s2 + sd**2) / float(ab[t]) ** 0.5
        c_out = s2**0.5 * sd / (s2 + sd**2) ** 0.5
        torch.testing.assert_close(pre.table[t].double(), torch.tensor([c_skip, c_out], dtype=torch.float64))


@pytest.mark.parametrize("kind", ["stage1", "multiview"])
def test_low_noise_output_is_the_input_and_weights_are_unchanged(seed, kind):
    g = torch.Generator().manual_seed(seed)
    shape = (3, 4, 7, 5, 2) if kind == "multiview" else (3, 7, 5, 2)
    x = torch.randn(shape, generator=g) * 0.3
    cond = torch.randn(3, 7, 5, 2 if kind == "multiview" else 3, generator=g)
    with torch.no_grad():
        out = _model(kind, True)(x, torch.zeros(3, dtype=torch.long), cond)
        far = _model(kind, True)(x, torch.full((3,), 999), cond)
    assert (out - x).abs().max() < 0.05 * x.abs().max()  # c_out(0) is tiny: the input passes through
    assert (far - x).abs().max() > 0.1 * x.abs().max()  # at high noise the network's prediction rules
    # the schedule table is not part of the weights: checkpoints of both variants have the same keys
    assert set(_model(kind, True).state_dict()) == set(_model(kind, False).state_dict())
