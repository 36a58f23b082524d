"""Single-view 2D dataset builder: determinism, projection of the hidden 3D, normalisation, noise and
drop statistics, masks, the 2D/3D split, the torch Dataset, and real CMU clips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mvlift.data.loading import load_mocap
from mvlift.data.motion import Motion
from mvlift.data.normalize import denormalize_2d
from mvlift.data.procedural import QUADRUPED17, generate_motion
from mvlift.data.singleview import (
    CameraRanges,
    SingleView2DDataset,
    build_singleview_dataset,
    load_singleview_dataset,
    load_singleview_eval,
)
from mvlift.data.skeletons import BODY14


def _clips(n: int = 3, frames: int = 150) -> list[Motion]:
    kinds = ["walk", "dance", "jump", "run", "turn"]
    return [generate_motion(kinds[i % 5], frames, 30, seed=i) for i in range(n)]


def _project(pos: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    xc = np.einsum("nij,ntkj->ntki", R, pos) + t[:, None, None]
    uv = np.einsum("nij,ntkj->ntki", K, xc)
    return uv[..., :2] / uv[..., 2:]


def test_deterministic_under_seed(tmp_path):
    clips = _clips()
    build_singleview_dataset(clips, tmp_path / "a", seed=3, noise_px=1.0, drop_prob=0.1)
    build_singleview_dataset(clips, tmp_path / "b", seed=3, noise_px=1.0, drop_prob=0.1)
    build_singleview_dataset(clips, tmp_path / "c", seed=4, noise_px=1.0, drop_prob=0.1)
    for name in ("train_2d.npz", "eval_3d.npz"):
        with np.load(tmp_path / "a" / name) as a, np.load(tmp_path / "b" / name) as b:
            assert sorted(a.files) == sorted(b.files)
            for k in a.files:
                np.testing.assert_array_equal(a[k], b[k])
    with np.load(tmp_path / "a" / "eval_3d.npz") as a, np.load(tmp_path / "c" / "eval_3d.npz") as c:
        assert not np.allclose(a["R"], c["R"])


def test_2d_is_the_projection_of_the_hidden_3d(tmp_path):
    ranges = CameraRanges(distance=(3.5, 5.0), focal=(900.0, 1200.0))
    man = build_singleview_dataset(_clips(4), tmp_path, seed=0, cameras=ranges)
    d, e = load_singleview_dataset(tmp_path), load_singleview_eval(tmp_path)
    assert len(d) == man["num_windows"] > 0
    proj = _project(e.positions, e.K, e.R, e.t)
    valid = d.mask[..., None] & np.ones(d.conf.shape, bool)
    assert np.abs(d.keypoints_px[valid] - proj[valid]).max() < 1e-6
    np.testing.assert_allclose(e.keypoints_px_clean, proj, atol=1e-6)
    # the same through mvlift.geometry.Cameras
    cams = e.cameras()
    uv = cams.project(torch.as_tensor(e.positions))[:, 0].numpy()
    assert np.abs(uv[valid] - d.keypoints_px[valid]).max() < 1e-6
    # normalized keypoints invert to the pixels; first-frame root at the centre; box side 0.5 of the canvas
    back = denormalize_2d(d.keypoints.astype(np.float64), d.normalization)
    np.testing.assert_allclose(back[valid], d.keypoints_px[valid], atol=2e-3)
    root0 = d.keypoints[:, 0][:, list(BODY14.root)].mean(1)
    np.testing.assert_allclose(root0, 0.0, atol=1e-5)
    span = (d.keypoints[:, 0].max(1) - d.keypoints[:, 0].min(1)).max(1)
    np.testing.assert_allclose(span, 1.0, atol=1e-5)
    assert np.abs(d.keypoints[d.mask]).max() < 1
    # cameras within the requested ranges, looking at the first-frame root
    centres = -np.einsum("nji,nj->ni", e.R, e.t)
    target = e.positions[:, 0][:, list(BODY14.root)].mean(1)
    dist = np.linalg.norm(centres - target, axis=-1)
    assert np.all((dist > 3.5 - 1e-9) & (dist < 5.0 + 1e-9))
    assert np.all((e.K[:, 0, 0] >= 900.0) & (e.K[:, 0, 0] <= 1200.0))
    np.testing.assert_allclose(e.K[:, :2, 2], np.broadcast_to([960.0, 540.0], (len(e.K), 2)))
    assert np.all(np.einsum("nj,nj->n", e.R[:, 2], target - centres) > 0)  # target in front


def test_noise_and_drop_statistics(tmp_path):
    build_singleview_dataset(_clips(5, 240), tmp_path, seed=2, noise_px=3.0, drop_prob=0.2)
    d, e = load_singleview_dataset(tmp_path), load_singleview_eval(tmp_path)
    frames = d.mask
    dropped = d.conf[frames] == 0
    assert dropped.mean() == pytest.approx(0.2, abs=0.02)
    seen = d.mask[..., None] & (d.conf > 0)
    err = (d.keypoints_px - e.keypoints_px_clean)[seen]
    assert err.mean() == pytest.approx(0.0, abs=0.1)
    assert err.std() == pytest.approx(3.0, rel=0.05)
    # dropped joints carry no position
    hidden = d.mask[..., None] & (d.conf == 0)
    assert np.isnan(d.keypoints_px[hidden]).all() and np.all(d.keypoints[hidden] == 0)


def test_masks_for_short_clips_and_cuts(tmp_path):
    clips = [
        generate_motion("dance", 80, 30, seed=1),  # one window, 80 real frames
        generate_motion("dance", 50, 30, seed=2),  # shorter than min_length: no window
        generate_motion("dance", 200, 60, seed=3),  # 60 fps -> 100 frames at 30 fps
    ]
    man = build_singleview_dataset(clips, tmp_path, seed=0)
    d, e = load_singleview_dataset(tmp_path), load_singleview_eval(tmp_path)
    assert man["dropped_windows"]["no_windows"] == 1
    assert [c["windows"] for c in man["clips"]] == [1, 0, 1]
    assert d.clip_index.tolist() == [0, 2]
    assert e.window_mask.sum(1).tolist() == [80, 100]
    # masks are prefixes, never longer than the real frames, with nothing outside them
    for m, wm, n in zip(d.mask, e.window_mask, d.lengths, strict=True):
        assert m[:n].all() and not m[n:].any() and n <= wm.sum()
    assert np.all(d.conf[~d.mask] == 0) and np.all(d.keypoints[~d.mask] == 0)
    # a sideways walk far from the camera leaves the canvas: the window is cut and stays >= min_valid
    walk = generate_motion("walk", 120, 30, seed=5, speed=1.6)
    man = build_singleview_dataset([walk] * 6, tmp_path / "walk", seed=1, min_valid=10)
    d = load_singleview_dataset(tmp_path / "walk")
    assert (d.lengths < 120).any() and (d.lengths >= 10).all()
    for kp, n in zip(d.keypoints, d.lengths, strict=True):
        assert np.abs(kp[:n]).max() < 1


def test_ground_truth_never_in_the_2d_file(tmp_path):
    build_singleview_dataset(_clips(2), tmp_path, seed=0)
    with np.load(tmp_path / "train_2d.npz") as z:
        assert not {"positions", "K", "R", "t", "keypoints_px_clean", "window_mask"} & set(z.files)
        for k in z.files:
            arr = z[k]
            assert not (arr.ndim >= 2 and arr.shape[-1] == 3 and arr.dtype.kind == "f"), k
    with np.load(tmp_path / "eval_3d.npz") as z:
        assert z["positions"].shape[-1] == 3


def test_torch_dataset_items_and_batches(tmp_path):
    build_singleview_dataset(_clips(3), tmp_path, seed=0, drop_prob=0.1)
    ds = SingleView2DDataset(tmp_path)
    item = ds[0]
    assert item["x"].shape == (120, 14, 2) and item["x"].dtype == torch.float32
    assert item["mask"].dtype == torch.bool and item["conf"].shape == (120, 14)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, shuffle=False)
    batch = next(iter(loader))
    assert batch["x"].shape == (2, 120, 14, 2) and batch["mask"].shape == (2, 120)
    assert int(batch["length"][0]) == int(batch["mask"][0].sum())
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_quadruped_dataset(tmp_path):
    clips = [generate_motion("trot", 150, 30, seed=s, skeleton="quadruped") for s in range(2)]
    man = build_singleview_dataset(clips, tmp_path, skeleton=QUADRUPED17, seed=0, min_valid=20)
    d = load_singleview_dataset(tmp_path)
    assert man["skeleton"] == "quadruped17" and d.skeleton is QUADRUPED17 and len(d) > 0
    np.testing.assert_allclose(d.keypoints[:, 0, 2], 0.0, atol=1e-5)  # root = spine_mid at the centre


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"drop_prob": 1.0}, ValueError, "drop_prob"),
        ({"noise_px": -1.0}, ValueError, "noise_px"),
        ({"min_valid": 500}, ValueError, "min_valid"),
        ({"skeleton": "body14"}, TypeError, "skeleton"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, exc, words):
    with pytest.raises(exc, match=words):
        build_singleview_dataset(_clips(1), tmp_path, **kwargs)


def test_empty_and_foreign_inputs(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        build_singleview_dataset([], tmp_path)
    with pytest.raises(TypeError, match="Motion"):
        build_singleview_dataset([np.zeros((100, 14, 3))], tmp_path)
    with pytest.raises(FileNotFoundError):
        load_singleview_dataset(tmp_path / "nothing")


def test_real_cmu_clips(cmu_dir, tmp_path):
    clips = []
    for name in ("05_01", "60_01"):
        m = load_mocap(cmu_dir / "asfamc" / f"{name}.amc", max_frames=480)  # 4 s at 120 fps
        clips.append(m)
    man = build_singleview_dataset(clips, tmp_path, seed=0, noise_px=0.0)
    d, e = load_singleview_dataset(tmp_path), load_singleview_eval(tmp_path)
    assert man["num_clips"] == 2 and len(d) >= 1
    assert e.positions.shape[1:] == (120, 14, 3)
    # the converted skeleton stands upright on the floor at a human height
    height = e.positions[..., 0, 1] - e.positions[..., [10, 13], 1].min(-1)
    assert np.all((height > 1.2) & (height < 2.0))
    valid = d.mask[..., None] & (d.conf > 0)
    proj = _project(e.positions, e.K, e.R, e.t)
    assert np.abs(d.keypoints_px[valid] - proj[valid]).max() < 1e-6
    assert math.isclose(d.fps, 30.0)


def test_several_cameras_per_window(tmp_path):
    """cameras_per_window=k: every window k times, each seen by its own random camera (a copy whose 2D
    leaves the canvas too early is dropped, as any window is)."""
    clips = _clips(2)
    one = build_singleview_dataset(clips, tmp_path / "one", seed=1, window=60, min_length=30)
    three = build_singleview_dataset(
        clips, tmp_path / "three", seed=1, window=60, min_length=30, cameras_per_window=3
    )
    assert 2 * one["num_windows"] < three["num_windows"] <= 3 * one["num_windows"]
    with np.load(tmp_path / "three" / "eval_3d.npz") as ev:
        pos, R = ev["positions"], ev["R"]
        key = list(zip(ev["clip_index"].tolist(), ev["window_start"].tolist(), strict=True))
    groups: dict[tuple[int, int], list[int]] = {}
    for i, k in enumerate(key):
        groups.setdefault(k, []).append(i)
    assert max(len(g) for g in groups.values()) == 3
    for g in groups.values():
        for a, b in zip(g, g[1:], strict=False):
            assert b == a + 1  # copies are adjacent
            np.testing.assert_array_equal(pos[a], pos[b])  # the same 3D window ...
            assert not np.allclose(R[a], R[b])  # ... from another camera
    with pytest.raises(ValueError, match="cameras_per_window"):
        build_singleview_dataset(clips, tmp_path / "bad", cameras_per_window=0)
