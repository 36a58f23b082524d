"""Frame-rate resampling and fixed-length windows."""

from __future__ import annotations

import numpy as np
import pytest

from mvlift.data.resample import make_windows, resample


def test_integer_ratio_picks_frames(seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(121, 14, 3))
    out = resample(x, 120, 30)
    np.testing.assert_array_equal(out, x[::4])
    assert out.shape == (31, 14, 3)
    np.testing.assert_array_equal(resample(x, 60, 30), x[::2])
    same = resample(x, 50, 50)
    np.testing.assert_array_equal(same, x)
    assert same is not x


@pytest.mark.parametrize(("fps_in", "fps_out", "t"), [(120, 45, 97), (30, 60, 11), (60, 25, 50), (24, 30, 7)])
def test_linear_interpolation_matches_np_interp(seed: int, fps_in: float, fps_out: float, t: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(t, 5, 2))
    out = resample(x, fps_in, fps_out)
    n_out = int(np.floor((t - 1) * fps_out / fps_in + 1e-9)) + 1
    assert out.shape == (n_out, 5, 2)
    t_in = np.arange(t) / fps_in
    t_out = np.arange(n_out) / fps_out
    ref = np.stack([np.interp(t_out, t_in, x[:, j, d]) for j in range(5) for d in range(2)], -1).reshape(
        n_out, 5, 2
    )
    np.testing.assert_allclose(out, ref, atol=1e-12)


def test_resample_keeps_float32_and_checks_arguments(seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(10, 3)).astype(np.float32)
    assert resample(x, 30, 45).dtype == np.float32
    assert resample(np.arange(9), 30, 20).dtype == np.float64
    with pytest.raises(ValueError, match="fps_in, fps_out"):
        resample(x, 0, 30)
    with pytest.raises(ValueError, match="positions"):
        resample(np.zeros((0, 3)), 30, 15)


def test_windows_padding_and_masks(seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 14, 2))
    w, m = make_windows(x)
    assert w.shape == (3, 120, 14, 2) and m.shape == (3, 120) and m.dtype == bool
    np.testing.assert_array_equal(w[0], x[:120])
    np.testing.assert_array_equal(w[1], x[120:240])
    np.testing.assert_array_equal(w[2, :60], x[240:])
    np.testing.assert_array_equal(w[2, 60:], np.broadcast_to(x[-1], (60, 14, 2)))  # last frame repeated
    assert m[:2].all() and m[2, :60].all() and not m[2, 60:].any()


def test_windows_short_clips_and_tails(seed: int):
    rng = np.random.default_rng(seed)
    w, m = make_windows(rng.normal(size=(59, 3)))
    assert w.shape == (0, 120, 3) and m.shape == (0, 120)
    w, m = make_windows(rng.normal(size=(60, 3)))
    assert w.shape == (1, 120, 3) and m.sum() == 60
    w, m = make_windows(rng.normal(size=(250, 3)))  # 2 full windows, the 10-frame tail is dropped
    assert w.shape == (2, 120, 3) and m.all()
    w, m = make_windows(rng.normal(size=(120, 3)))
    assert w.shape == (1, 120, 3) and m.all()


def test_windows_with_stride(seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 4))
    w, m = make_windows(x, length=100, stride=40, min_length=30)
    # starts 0, 40, 80, 120 (120 + 100 >= 200 stops); the last has 80 real frames
    assert w.shape == (4, 100, 4)
    for k, s in enumerate((0, 40, 80, 120)):
        real = min(100, 200 - s)
        np.testing.assert_array_equal(w[k, :real], x[s : s + real])
        assert m[k].sum() == real
    with pytest.raises(ValueError, match="min_length"):
        make_windows(x, length=10, min_length=11)
    with pytest.raises(ValueError, match="length, stride"):
        make_windows(x, length=10, stride=0)
