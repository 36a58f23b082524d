"""Readers for the AIST++ annotation layout (google/aistplusplus_api).

Files (one sequence each, pickled dicts of numpy arrays; 60 fps):

- ``keypoints2d/<seq>.pkl``: ``keypoints2d`` (9 views, T, 17, 3) COCO-17 pixels + detection confidence,
  ``det_scores`` (9, T), ``timestamps`` (T,).
- ``keypoints3d/<seq>.pkl``: ``keypoints3d`` (T, 17, 3) and ``keypoints3d_optim`` (T, 17, 3), COCO-17,
  centimetres, AIST++ world frame.
- ``motions/<seq>.pkl``: ``smpl_poses`` (T, 72) axis-angle radians (24 joints), ``smpl_trans`` (T, 3)
  centimetres, ``smpl_scaling`` (1,). AIST++'s world joints are ``smpl_scaling * J(poses) + smpl_trans``
  (cm) with ``J`` the SMPL joints (metres) at zero translation.
- ``cameras/<setting>.json``: a list of 9 cameras, each with ``name``, ``size`` [W, H], ``matrix`` (3x3 K),
  ``distortions`` (5 OpenCV coefficients), ``rotation`` (Rodrigues 3-vector) and ``translation`` (cm); a
  camera maps ``X_c = R @ X + t`` (OpenCV, as in docs/conventions.md).

All lengths are returned in metres.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from mvlift.data.motion import MocapFormatError, Motion, Sequence2D
from mvlift.data.skeletons import COCO17

__all__ = [
    "AIST_FPS",
    "AistKeypoints2D",
    "AistSmplMotion",
    "AistCamera",
    "load_aist_keypoints2d",
    "load_aist_keypoints3d",
    "load_aist_motion",
    "load_aist_cameras",
    "stack_cameras",
]

AIST_FPS = 60.0
"""AIST++ frame rate."""
_CM = 0.01


def _load_pickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError) as e:
        raise MocapFormatError(f"{path}: cannot read pickle: {e}") from e
    if not isinstance(data, dict):
        raise MocapFormatError(f"{path}: expected a pickled dict, got {type(data).__name__}")
    return data


def _array(data: dict[str, Any], key: str, path: Path, shape: tuple[int | None, ...]) -> np.ndarray:
    """``data[key]`` as float64 with the given shape (None = any size); errors name the file and key."""
    if key not in data:
        raise MocapFormatError(f"{path}: missing key {key!r} (keys: {sorted(data)})")
    try:
        arr = np.asarray(data[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise MocapFormatError(f"{path}: key {key!r} is not a numeric array") from None
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape, strict=True)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise MocapFormatError(f"{path}: key {key!r} has shape {arr.shape}, expected {want}")
    return arr


@dataclass
class AistKeypoints2D:
    """Multi-view COCO-17 detections of one AIST++ sequence.

    Attributes:
        keypoints: (V, T, 17, 2) pixels. confidence: (V, T, 17) detector confidence.
        det_scores: (V, T) person detection scores. timestamps: (T,) as stored.
        fps: 60. source: file path.
    """

    keypoints: np.ndarray
    confidence: np.ndarray
    det_scores: np.ndarray
    timestamps: np.ndarray
    fps: float
    source: str

    def view(self, v: int, image_size: tuple[int, int] | None = None) -> Sequence2D:
        """The single-view :class:`Sequence2D` of view ``v`` (COCO17 skeleton)."""
        if not 0 <= v < self.keypoints.shape[0]:
            raise ValueError(f"v: expected a view index in [0, {self.keypoints.shape[0]}), got {v}")
        return Sequence2D(
            self.keypoints[v],
            np.clip(self.confidence[v], 0.0, 1.0),
            self.fps,
            COCO17.joint_names,
            image_size,
            COCO17,
            f"{self.source}#view{v}",
        )


@dataclass
class AistSmplMotion:
    """SMPL parameters of one AIST++ sequence, in metres.

    World joints in metres: ``scale * J(poses) + trans``, where ``J`` are the SMPL joints (metres) of the
    pose at zero translation.

    Attributes:
        poses: (T, 24, 3) axis-angle radians (joint 0 = global orientation).
        trans: (T, 3) metres (``smpl_trans / 100``).
        scale: ``smpl_scaling / 100`` (dimensionless body scale relative to SMPL's metres).
        fps: 60. source: file path.
    """

    poses: np.ndarray
    trans: np.ndarray
    scale: float
    fps: float
    source: str

    @property
    def trans_unscaled(self) -> np.ndarray:
        """(T, 3) ``smpl_trans / smpl_scaling``: the translation for an unscaled SMPL body (the form most
        SMPL codebases use for AIST++)."""
        return self.trans / self.scale


@dataclass
class AistCamera:
    """One AIST++ camera (OpenCV model, X_c = R @ X + t).

    Attributes:
        name: e.g. ``'c01'``. image_size: (W, H) pixels. K: (3, 3). dist: (5,) OpenCV distortion.
        R: (3, 3) world -> camera rotation. t: (3,) metres.
    """

    name: str
    image_size: tuple[int, int]
    K: np.ndarray
    dist: np.ndarray
    R: np.ndarray
    t: np.ndarray


def load_aist_keypoints2d(path: str | Path) -> AistKeypoints2D:
    """Read a ``keypoints2d`` pickle (views, frames, COCO-17 joints, [x, y, confidence])."""
    path = Path(path)
    data = _load_pickle(path)
    kp = _array(data, "keypoints2d", path, (None, None, 17, 3))
    v, t = kp.shape[:2]
    scores = _array(data, "det_scores", path, (v, t))
    stamps = _array(data, "timestamps", path, (t,))
    return AistKeypoints2D(kp[..., :2].copy(), kp[..., 2].copy(), scores, stamps, AIST_FPS, str(path))


def load_aist_keypoints3d(path: str | Path, *, optimized: bool = True) -> Motion:
    """Read a ``keypoints3d`` pickle as a COCO-17 :class:`Motion` in metres at 60 fps.

    Args:
        optimized: read ``keypoints3d_optim`` (the temporally optimised keypoints AIST++ fits SMPL to);
            False reads the raw triangulation ``keypoints3d``.
    """
    path = Path(path)
    data = _load_pickle(path)
    pos = _array(data, "keypoints3d_optim" if optimized else "keypoints3d", path, (None, 17, 3)) * _CM
    return Motion(pos, AIST_FPS, COCO17.joint_names, COCO17.parents, COCO17, str(path))


def load_aist_motion(path: str | Path) -> AistSmplMotion:
    """Read a ``motions`` pickle (SMPL poses, translation, scaling) into metres."""
    path = Path(path)
    data = _load_pickle(path)
    poses = _array(data, "smpl_poses", path, (None, 72))
    t = poses.shape[0]
    trans = _array(data, "smpl_trans", path, (t, 3))
    if "smpl_scaling" not in data:
        raise MocapFormatError(f"{path}: missing key 'smpl_scaling' (keys: {sorted(data)})")
    try:
        scaling = np.asarray(data["smpl_scaling"], dtype=np.float64).reshape(-1)  # (1,) or a plain float
    except (TypeError, ValueError):
        raise MocapFormatError(f"{path}: key 'smpl_scaling' is not numeric") from None
    if scaling.shape != (1,) or not scaling[0] > 0:
        raise MocapFormatError(f"{path}: key 'smpl_scaling' must hold one positive number, got {scaling}")
    return AistSmplMotion(poses.reshape(t, 24, 3), trans * _CM, float(scaling[0]) * _CM, AIST_FPS, str(path))


def load_aist_cameras(path: str | Path) -> list[AistCamera]:
    """Read an AIST++ camera setting JSON: one :class:`AistCamera` per entry, in file order."""
    path = Path(path)
    try:
        params = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise MocapFormatError(f"{path}: cannot read camera JSON: {e}") from e
    if not isinstance(params, list) or not params:
        raise MocapFormatError(f"{path}: expected a non-empty list of cameras")
    cams = []
    for i, p in enumerate(params):
        where = f"{path}: camera {i}"
        if not isinstance(p, dict):
            raise MocapFormatError(f"{where}: expected an object, got {type(p).__name__}")
        for key in ("name", "size", "matrix", "distortions", "rotation", "translation"):
            if key not in p:
                raise MocapFormatError(f"{where}: missing key {key!r}")
        try:
            k = np.asarray(p["matrix"], dtype=np.float64)
            rvec = np.asarray(p["rotation"], dtype=np.float64).reshape(-1)
            t = np.asarray(p["translation"], dtype=np.float64).reshape(-1)
            dist = np.asarray(p["distortions"], dtype=np.float64).reshape(-1)
            w, h = (int(v) for v in p["size"])
        except (TypeError, ValueError):
            raise MocapFormatError(f"{where}: non-numeric or malformed camera values") from None
        if k.shape != (3, 3) or rvec.shape != (3,) or t.shape != (3,):
            raise MocapFormatError(
                f"{where}: expected matrix 3x3, rotation (3,), translation (3,); got "
                f"{k.shape}, {rvec.shape}, {t.shape}"
            )
        rot = Rotation.from_rotvec(rvec).as_matrix()
        cams.append(AistCamera(str(p["name"]), (w, h), k, dist, rot, t * _CM))
    return cams


def stack_cameras(cameras: list[AistCamera]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack cameras into arrays ``K (V, 3, 3), R (V, 3, 3), t (V, 3)`` (metres)."""
    return (
        np.stack([c.K for c in cameras]),
        np.stack([c.R for c in cameras]),
        np.stack([c.t for c in cameras]),
    )
