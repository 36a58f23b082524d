"""interpolate_gaps: linear in time per joint over short runs of invalid frames, never beyond max_gap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvlift.data.gaps import interpolate_gaps


def test_short_inner_gaps_are_linear_and_long_or_open_ones_stay(seed):
    rng = np.random.default_rng(seed)
    T, J = 30, 4
    a, b = rng.normal(size=(J, 3)), rng.normal(size=(J, 3))
    truth = a + np.arange(T)[:, None, None] * b  # linear motion: interpolation is exact
    valid = np.ones((T, J), dtype=bool)
    valid[5:8, 0] = False  # 3 frames: filled
    valid[10:20, 1] = False  # 10 frames: too long
    valid[:2, 2] = False  # at the start: filled only with extrapolate
    valid[27:, 3] = False  # at the end: 3 frames
    values = np.where(valid[..., None], truth, np.nan)
    filled, was = interpolate_gaps(values, valid, max_gap=4)
    assert isinstance(filled, np.ndarray) and was.dtype == np.bool_
    np.testing.assert_array_equal(was, ~valid & (np.arange(J) == 0))
    np.testing.assert_allclose(filled[5:8, 0], truth[5:8, 0], rtol=0, atol=1e-12)
    assert np.isnan(filled[10:20, 1]).all() and np.isnan(filled[:2, 2]).all()
    np.testing.assert_array_equal(filled[valid], values[valid])  # valid entries untouched

    filled, was = interpolate_gaps(values, valid, max_gap=4, extrapolate=True)
    np.testing.assert_array_equal(filled[:2, 2], np.broadcast_to(truth[2, 2], (2, 3)))  # held
    np.testing.assert_array_equal(filled[27:, 3], np.broadcast_to(truth[26, 3], (3, 3)))
    assert was[:2, 2].all() and was[27:, 3].all() and not was[10:20, 1].any()


def test_batched_torch_and_limits():
    x = torch.arange(6.0).view(1, 6, 1, 1).expand(2, 6, 1, 2).clone()
    valid = torch.ones(2, 6, 1, dtype=torch.bool)
    valid[0, 1:5] = False  # 4 frames
    valid[1] = False  # never valid: never filled
    for gap, expect in ((3, False), (4, True)):
        filled, was = interpolate_gaps(x, valid, max_gap=gap, extrapolate=True)
        assert bool(was[0, 1:5].all()) is expect and not was[1].any()
    torch.testing.assert_close(filled[0, :, 0, 0], torch.arange(6.0))
    filled, was = interpolate_gaps(x, valid, max_gap=0)
    assert not was.any() and torch.equal(filled, x)
    with pytest.raises(ValueError, match="max_gap must be an int >= 0"):
        interpolate_gaps(x, valid, max_gap=-1)
    with pytest.raises(ValueError, match=r"valid must be a bool array of shape \(2, 6, 1\)"):
        interpolate_gaps(x, valid[..., 0], max_gap=2)
    with pytest.raises(TypeError, match="values must be a float"):
        interpolate_gaps(torch.zeros(2, 6, 1, 2, dtype=torch.long), valid, max_gap=2)
