"""The paper's 2D normalisation: scale rule, centring, cut, confidences, exact inverse, batching."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from mvlift.data.normalize import Normalization2D, denormalize_2d, normalize_2d, normalize_2d_batch


def _poses(rng: np.random.Generator, lead: tuple[int, ...], t: int, j: int, noise: float) -> np.ndarray:
    """Random poses (*lead, T, J, 2) in [400, 700]^2 px with the hips (8, 11) near the box centre, so that a
    little jitter over time never pushes a joint off the normalised canvas."""
    kp = rng.uniform(400, 700, size=(*lead, 1, j, 2))
    kp[..., 8, :] = [540.0, 550.0]
    kp[..., 11, :] = [560.0, 550.0]
    return kp + rng.normal(scale=noise, size=(*lead, t, j, 2))


def test_hand_computed_example():
    kp = np.array([[[100.0, 100.0], [100.0, 300.0], [150.0, 200.0]]])  # 1 frame, 3 joints
    out, p = normalize_2d(kp, root=2)
    # box 50 x 200 px -> relative (50/1920, 200/1080); the height is the longer: s = 0.5 / (200/1080) = 2.7
    assert float(p.scale) == pytest.approx(2.7)
    # root (150, 200) -> (960, 540); joint 0 -> (960 - 2.7*50, 540 - 2.7*100) = (825, 270)
    np.testing.assert_allclose(out[0, 0], [2 * 825 / 1920 - 1, 2 * 270 / 1080 - 1])
    np.testing.assert_allclose(out[0, 2], [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(out[0, 1], [2 * 825 / 1920 - 1, 2 * 810 / 1080 - 1])
    assert int(p.length) == 1


def test_longer_relative_side_is_half_the_canvas(seed):
    rng = np.random.default_rng(seed)
    for extent in ([300.0, 900.0], [1500.0, 200.0]):  # tall, then wide
        kp = rng.uniform(0, 1, size=(5, 14, 2)) * extent + 50
        kp[1:] = kp[0] + rng.normal(scale=2.0, size=(4, 14, 2))
        out, p = normalize_2d(kp)
        span = out[0].max(0) - out[0].min(0)  # normalized units: relative size x 2
        assert span.max() == pytest.approx(1.0, rel=1e-12)
        axis = int(np.argmax((kp[0].max(0) - kp[0].min(0)) / [1920, 1080]))
        assert int(np.argmax(span)) == axis
        root = out[0, [8, 11]].mean(0)
        np.testing.assert_allclose(root, [0.0, 0.0], atol=1e-12)


def test_exact_inverse_numpy_and_torch(seed):
    rng = np.random.default_rng(seed)
    kp = _poses(rng, (), 30, 18, 20.0)
    out, p = normalize_2d(kp)
    np.testing.assert_allclose(denormalize_2d(out, p), kp[: len(out)], atol=1e-9)
    out_t, p_t = normalize_2d(torch.as_tensor(kp, dtype=torch.float32))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    torch.testing.assert_close(out_t, torch.as_tensor(out, dtype=torch.float32), rtol=1e-5, atol=1e-5)
    back = denormalize_2d(out_t.double(), p_t)
    torch.testing.assert_close(back, torch.as_tensor(kp[: len(out)]), rtol=0, atol=1e-3)


def test_cut_at_first_frame_leaving_the_canvas():
    # a 2-joint "body" 100 px tall moving right by 50 px/frame; root = their midpoint
    t = 40
    kp = np.zeros((t, 2, 2))
    kp[:, 0] = [500.0, 500.0]
    kp[:, 1] = [500.0, 600.0]
    kp[:, :, 0] += 50.0 * np.arange(t)[:, None]
    out, p = normalize_2d(kp, root=(0, 1))
    # s = 0.5 / (100/1080) = 5.4; root starts at u = 960 and moves 270 px/frame: leaves (u >= 1920) at
    # 960 + 270 k >= 1920 -> k = 4 (2040 px); frames 0..3 are kept
    assert float(p.scale) == pytest.approx(5.4)
    assert int(p.length) == 4 and out.shape == (4, 2, 2)
    assert np.abs(out).max() < 1
    # the same rule in batched form keeps the padded shape and reports it in the mask
    outb, mask, pb = normalize_2d_batch(kp[None], root=(0, 1))
    assert outb.shape == (1, t, 2, 2)
    assert mask[0].tolist() == [True] * 4 + [False] * (t - 4)
    assert pb.length.tolist() == [4]


def test_zero_confidence_joints_are_ignored(seed):
    rng = np.random.default_rng(seed)
    kp = _poses(rng, (), 10, 14, 3.0)
    conf = np.ones((10, 14))
    garbage = kp.copy()
    garbage[:, 3] = 0.0  # a dropped joint reported at the image corner
    garbage[5, 4] = 5000.0  # and one far away
    conf[:, 3] = 0.0
    conf[5, 4] = 0.0
    ref, p_ref = normalize_2d(
        np.delete(kp, 3, axis=1), root=(7, 10)
    )  # hips are 8, 11 -> 7, 10 after deletion
    out, p = normalize_2d(garbage, conf=conf)
    assert int(p.length) == 10 == int(p_ref.length)
    assert float(p.scale) == pytest.approx(float(p_ref.scale), rel=1e-12)
    kept = np.delete(out, 3, axis=1)
    kept[5, 3] = ref[5, 3]  # the far-away unconfident joint is transformed like the others, not compared
    np.testing.assert_allclose(kept, ref, atol=1e-12)


def test_nan_in_unconfident_joints_is_tolerated(seed):
    rng = np.random.default_rng(seed)
    kp = _poses(rng, (), 8, 14, 2.0)
    conf = np.ones((8, 14))
    ref, p_ref = normalize_2d(kp, conf=conf)
    kp[:, 8] = np.nan  # a hip, part of the root, missing everywhere
    conf[:, 8] = 0.0
    out, p = normalize_2d(kp, conf=conf)
    assert np.isfinite(np.delete(out, 8, axis=1)).all() and np.isnan(out[:, 8]).all()
    assert int(p.length) == 8 and float(p.scale) == pytest.approx(float(p_ref.scale))
    np.testing.assert_allclose(out[0, 11], [0.0, 0.0], atol=1e-12)  # the remaining root joint is centred


def test_root_fallback_to_box_centre_when_root_unseen():
    kp = np.array([[[0.0, 0.0], [100.0, 200.0], [50.0, 100.0]]])
    conf = np.array([[1.0, 1.0, 0.0]])
    out, _ = normalize_2d(kp, root=2, conf=conf)
    np.testing.assert_allclose(out[0, :2].mean(0), [0.0, 0.0], atol=1e-12)


def test_batched_matches_single_and_respects_padding(seed):
    rng = np.random.default_rng(seed)
    kp = _poses(rng, (3,), 12, 14, 3.0)
    mask = np.ones((3, 12), bool)
    mask[1, 8:] = False
    kp[1, 8:] = 1e6  # padding far outside: must not cut
    out, m, p = normalize_2d_batch(kp, mask=mask)
    assert m.tolist() == mask.tolist()
    for i in range(3):
        n = int(mask[i].sum())
        single, ps = normalize_2d(kp[i, :n])
        np.testing.assert_allclose(out[i, :n], single, atol=1e-12)
        assert float(ps.scale) == pytest.approx(float(p.scale[i]))
    np.testing.assert_allclose(denormalize_2d(out, p), kp, rtol=1e-12)
    # parameters survive an npz round trip
    p2 = Normalization2D.from_dict(p.to_dict())
    np.testing.assert_array_equal(p2.scale, p.scale)
    assert p2.canvas == p.canvas and p[1].length == p.length[1]


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"kp": np.ones((5, 14, 3))}, ValueError, "(T, J, 2)"),
        ({"kp": [[1.0, 2.0]]}, TypeError, "kp must be"),
        ({"kp": np.ones((5, 14, 2))}, ValueError, "no extent"),
        (
            {"kp": np.random.default_rng(0).uniform(size=(5, 14, 2)), "conf": np.ones((5, 13))},
            ValueError,
            "conf",
        ),
        ({"kp": np.random.default_rng(0).uniform(size=(5, 14, 2)), "canvas": (0, 5)}, ValueError, "canvas"),
    ],
)
def test_bad_input(kwargs, exc, words):
    with pytest.raises(exc, match=re.escape(words)):
        normalize_2d(**kwargs)
