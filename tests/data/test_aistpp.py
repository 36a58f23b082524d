"""AIST++ readers on fixtures written in the AIST++ layout (pickled numpy arrays, camera JSON)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from mvlift.data.aistpp import (
    AIST_FPS,
    load_aist_cameras,
    load_aist_keypoints2d,
    load_aist_keypoints3d,
    load_aist_motion,
    stack_cameras,
)
from mvlift.data.motion import MocapFormatError
from mvlift.data.skeletons import COCO17


def _dump(path: Path, obj) -> Path:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def _rodrigues(rvec: np.ndarray) -> np.ndarray:
    """Independent Rodrigues formula R = I + sin(a) K + (1 - cos(a)) K^2."""
    a = np.linalg.norm(rvec)
    k = rvec / a
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(a) * kx + (1 - np.cos(a)) * kx @ kx


def test_keypoints2d_round_trip(tmp_path: Path, seed: int):
    rng = np.random.default_rng(seed)
    kp = np.concatenate(
        [rng.uniform(0, 1920, size=(9, 11, 17, 2)), rng.uniform(0, 1, size=(9, 11, 17, 1))], -1
    )
    scores = rng.uniform(size=(9, 11))
    stamps = np.arange(11) * 16_666.0
    path = _dump(
        tmp_path / "gBR_sBM_cAll_d04_mBR0_ch01.pkl",
        {"keypoints2d": kp.astype(np.float32), "det_scores": scores, "timestamps": stamps},
    )
    out = load_aist_keypoints2d(path)
    assert out.fps == AIST_FPS == 60.0
    assert out.keypoints.shape == (9, 11, 17, 2) and out.confidence.shape == (9, 11, 17)
    np.testing.assert_allclose(out.keypoints, kp[..., :2].astype(np.float32))
    np.testing.assert_allclose(out.confidence, kp[..., 2].astype(np.float32))
    np.testing.assert_array_equal(out.det_scores, scores)
    np.testing.assert_array_equal(out.timestamps, stamps)
    view = out.view(3, image_size=(1920, 1080))
    assert view.skeleton is COCO17 and view.image_size == (1920, 1080) and view.fps == 60.0
    np.testing.assert_array_equal(view.keypoints, out.keypoints[3])
    with pytest.raises(ValueError, match="view index"):
        out.view(9)


def test_keypoints3d_cm_to_m(tmp_path: Path, seed: int):
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(20, 17, 3)) * 50
    optim = raw + rng.normal(size=raw.shape)
    path = _dump(tmp_path / "k3d.pkl", {"keypoints3d": raw, "keypoints3d_optim": optim})
    m = load_aist_keypoints3d(path)
    assert m.skeleton is COCO17 and m.fps == 60.0
    np.testing.assert_allclose(m.positions, optim / 100.0)
    np.testing.assert_allclose(load_aist_keypoints3d(path, optimized=False).positions, raw / 100.0)
    only_raw = _dump(tmp_path / "raw.pkl", {"keypoints3d": raw})
    with pytest.raises(MocapFormatError, match=r"raw\.pkl: missing key 'keypoints3d_optim'"):
        load_aist_keypoints3d(only_raw)
    wrong = _dump(tmp_path / "wrong.pkl", {"keypoints3d_optim": raw[:, :16]})
    with pytest.raises(
        MocapFormatError, match=r"wrong\.pkl: key 'keypoints3d_optim' has shape \(20, 16, 3\)"
    ):
        load_aist_keypoints3d(wrong)


def test_motion_units(tmp_path: Path, seed: int):
    rng = np.random.default_rng(seed)
    poses = rng.normal(size=(8, 72)) * 0.3
    trans = rng.normal(size=(8, 3)) * 80
    scaling = np.array([93.5])
    path = _dump(
        tmp_path / "motion.pkl",
        {"smpl_poses": poses, "smpl_trans": trans, "smpl_scaling": scaling, "smpl_loss": 0.1},
    )
    m = load_aist_motion(path)
    assert m.poses.shape == (8, 24, 3) and m.fps == 60.0
    np.testing.assert_array_equal(m.poses.reshape(8, 72), poses)
    np.testing.assert_allclose(m.trans, trans / 100.0)
    assert m.scale == pytest.approx(0.935)
    np.testing.assert_allclose(m.trans_unscaled, trans / scaling[0])
    scalar = _dump(tmp_path / "scalar.pkl", {"smpl_poses": poses, "smpl_trans": trans, "smpl_scaling": 93.5})
    assert load_aist_motion(scalar).scale == pytest.approx(0.935)
    missing = _dump(tmp_path / "missing.pkl", {"smpl_poses": poses, "smpl_trans": trans})
    with pytest.raises(MocapFormatError, match=r"missing\.pkl: missing key 'smpl_scaling'"):
        load_aist_motion(missing)
    short = _dump(
        tmp_path / "short.pkl", {"smpl_poses": poses, "smpl_trans": trans[:5], "smpl_scaling": scaling}
    )
    with pytest.raises(MocapFormatError, match=r"short\.pkl: key 'smpl_trans' has shape \(5, 3\)"):
        load_aist_motion(short)


def test_cameras(tmp_path: Path, seed: int):
    rng = np.random.default_rng(seed)
    setting = []
    truth = []
    for v in range(9):
        rvec = rng.normal(size=3)
        t_cm = rng.normal(size=3) * 300
        k = np.array([[1800.0 + v, 0, 960.0], [0, 1800.0 + v, 540.0], [0, 0, 1]])
        dist = rng.normal(size=5) * 0.01
        setting.append(
            {
                "name": f"c{v + 1:02d}",
                "size": [1920, 1080],
                "matrix": k.tolist(),
                "distortions": dist.tolist(),
                "rotation": rvec.tolist(),
                "translation": t_cm.tolist(),
            }
        )
        truth.append((k, dist, _rodrigues(rvec), t_cm / 100.0))
    path = tmp_path / "setting1.json"
    path.write_text(json.dumps(setting))
    cams = load_aist_cameras(path)
    assert [c.name for c in cams] == [f"c{v:02d}" for v in range(1, 10)]
    for cam, (k, dist, r, t) in zip(cams, truth, strict=True):
        assert cam.image_size == (1920, 1080)
        np.testing.assert_allclose(cam.K, k)
        np.testing.assert_allclose(cam.dist, dist)
        np.testing.assert_allclose(cam.R, r, atol=1e-12)
        np.testing.assert_allclose(cam.R @ cam.R.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(cam.t, t)
    big_k, big_r, big_t = stack_cameras(cams)
    assert big_k.shape == (9, 3, 3) and big_r.shape == (9, 3, 3) and big_t.shape == (9, 3)
    # a world point 1 m in front of camera 0 projects to the principal point
    x_world = big_r[0].T @ (np.array([0.0, 0.0, 1.0]) - big_t[0])
    xc = big_r[0] @ x_world + big_t[0]
    uv = (big_k[0] @ xc)[:2] / xc[2]
    np.testing.assert_allclose(uv, [960.0, 540.0], atol=1e-9)

    del setting[4]["rotation"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(setting))
    with pytest.raises(MocapFormatError, match=r"bad\.json: camera 4: missing key 'rotation'"):
        load_aist_cameras(bad)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("[{")
    with pytest.raises(MocapFormatError, match=r"garbage\.json: cannot read camera JSON"):
        load_aist_cameras(garbage)


def test_not_a_dict_pickle(tmp_path: Path):
    path = _dump(tmp_path / "list.pkl", [1, 2, 3])
    with pytest.raises(MocapFormatError, match=r"list\.pkl: expected a pickled dict"):
        load_aist_keypoints2d(path)
