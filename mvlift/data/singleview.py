"""Single-view 2D datasets built from 3D clips (MVLift trains on single-view 2D only).

:func:`build_singleview_dataset` takes 3D :class:`~mvlift.data.motion.Motion` clips, converts them to one
joint set and frame rate, cuts fixed-length windows and projects every window into ONE random camera
(random azimuth, elevation, distance and focal length, looking at the window's first-frame root). Optional
detector-like corruption: Gaussian pixel noise and randomly dropped joints (confidence 0). The 2D is then
normalised with the paper's rule (:mod:`mvlift.data.normalize`) and cut at the first frame where a joint
leaves the canvas (or comes within 10 cm of the camera plane); frames after the cut are masked.

Output folder:

- ``train_2d.npz`` - the 2D only, what a model may see:
  ``keypoints`` (N, T, J, 2) float32 normalized [-1, 1] (0 where dropped or masked),
  ``keypoints_px`` (N, T, J, 2) float64 camera pixels (NaN where dropped or masked),
  ``conf`` (N, T, J) float32 (1 seen, 0 dropped or masked), ``mask`` (N, T) bool (True = valid frame; a
  prefix), ``lengths`` (N,), ``clip_index`` (N,) and ``window_start`` (N,) (frame of the resampled clip),
  ``clip_ids`` (C,), the normalisation parameters ``norm_*`` (derived from the 2D alone), ``joint_names``,
  ``parents``, ``skeleton``, ``fps``, ``image_size``.
- ``eval_3d.npz`` - hidden ground truth, for evaluation only: ``positions`` (N, T, J, 3) world metres
  (Y up), ``window_mask`` (N, T) (real frames before the cut), ``K`` (N, 3, 3), ``R`` (N, 3, 3), ``t``
  (N, 3) (``X_c = R X + t``), ``keypoints_px_clean`` (N, T, J, 2) noise-free projections, the ``norm_*``
  parameters, ``clip_index``, ``window_start``, ``image_size``.
- ``manifest.json`` - settings, counts and the clip list (written last; its presence marks a complete
  dataset). All files are written atomically (temporary file + ``os.replace``).

Deterministic under ``seed``: the same clips in the same order give byte-identical arrays.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvlift.atomic import atomic_savez, atomic_write_text
from mvlift.data.motion import Motion
from mvlift.data.normalize import Normalization2D, normalize_2d_batch
from mvlift.data.procedural import QUADRUPED17
from mvlift.data.resample import make_windows, resample
from mvlift.data.skeletons import BODY14, SKELETONS, Skeleton
from mvlift.geometry import Cameras, random_cameras

__all__ = [
    "CameraRanges",
    "SingleViewData",
    "SingleViewEval",
    "SingleView2DDataset",
    "build_singleview_dataset",
    "load_singleview_dataset",
    "load_singleview_eval",
    "FORMAT",
]

FORMAT = "mvlift-singleview-v1"
TRAIN_FILE = "train_2d.npz"
EVAL_FILE = "eval_3d.npz"
MANIFEST_FILE = "manifest.json"
_NEAR = 0.1  # metres: frames with a joint closer to the camera plane are cut


@dataclass(frozen=True)
class CameraRanges:
    """Uniform ranges of the random single-view camera (see :func:`mvlift.geometry.random_cameras`).

    Attributes:
        azimuth: radians (0 = camera on the +Z side of the target, counter-clockwise from above).
        elevation: radians (> 0 = above the target, looking down).
        distance: metres from the target (the window's first-frame root).
        focal: focal length in pixels (principal point at the image centre).
    """

    azimuth: tuple[float, float] = (0.0, 2.0 * math.pi)
    elevation: tuple[float, float] = (math.radians(-5.0), math.radians(25.0))
    distance: tuple[float, float] = (3.0, 6.0)
    focal: tuple[float, float] = (800.0, 1500.0)


def _prepare(motion: Motion, skeleton: Skeleton, fps: float) -> np.ndarray:
    """Positions (T', J, 3) of ``motion`` on ``skeleton`` at ``fps``."""
    if not isinstance(motion, Motion):
        raise TypeError(f"motions must yield mvlift.data.motion.Motion objects, got {type(motion).__name__}")
    if motion.skeleton is not None and motion.skeleton.name != skeleton.name:
        motion = motion.to_skeleton(skeleton)
    elif motion.skeleton is None and tuple(motion.joint_names) != skeleton.joint_names:
        raise ValueError(
            f"motion {motion.source!r} has no registered skeleton and its joints differ from "
            f"{skeleton.name!r}: {motion.joint_names}"
        )
    return resample(motion.positions, motion.fps, fps)


def _prefix(valid: np.ndarray) -> np.ndarray:
    """Keep each row's leading run of True: (N, T) -> (N, T)."""
    return np.cumprod(valid, axis=1).astype(bool)


def build_singleview_dataset(
    motions: Iterable[Motion],
    out_dir: str | os.PathLike[str],
    *,
    skeleton: Skeleton = BODY14,
    fps: float = 30.0,
    window: int = 120,
    min_length: int = 60,
    stride: int | None = None,
    min_valid: int | None = None,
    cameras: CameraRanges = CameraRanges(),
    cameras_per_window: int = 1,
    noise_px: float = 0.0,
    drop_prob: float = 0.0,
    seed: int = 0,
    image_size: tuple[int, int] = (1920, 1080),
) -> dict[str, Any]:
    """Build a single-view 2D dataset (module docstring) and return its manifest.

    Args:
        motions: 3D clips; converted to ``skeleton`` (via :meth:`Motion.to_skeleton`) when they use
            another registered joint set, and resampled to ``fps``.
        out_dir: output folder (created if needed).
        skeleton: the joint set of the dataset (BODY14 for humans; the procedural QUADRUPED17 works too).
        fps: frame rate of the dataset (30 in the paper).
        window, min_length, stride: windowing of each clip (:func:`mvlift.data.resample.make_windows`:
            120-frame windows, clips / tails shorter than 60 frames dropped, padding masked).
        min_valid: windows with fewer valid frames after the out-of-canvas cut are dropped
            (default: ``min_length``).
        cameras: ranges of the random camera.
        cameras_per_window: project every window into this many independent random cameras (each copy is
            one more single-view 2D sequence; the copies of a window are adjacent in the output).
        noise_px: standard deviation of Gaussian noise added to every pixel coordinate (camera pixels).
        drop_prob: probability that a joint is dropped in a frame (confidence 0).
        seed: the seed of every random draw.
        image_size: (W, H) of the camera image, also the normalisation canvas.

    Returns:
        The manifest dict (also written to ``manifest.json``).
    """
    if not isinstance(skeleton, Skeleton):
        raise TypeError(f"skeleton must be a Skeleton, got {type(skeleton).__name__}")
    if not (isinstance(window, int) and window >= 1):
        raise ValueError(f"window must be a positive int, got {window!r}")
    if not (math.isfinite(noise_px) and noise_px >= 0):
        raise ValueError(f"noise_px must be a non-negative number of pixels, got {noise_px!r}")
    if not 0 <= drop_prob < 1:
        raise ValueError(f"drop_prob must lie in [0, 1), got {drop_prob!r}")
    if not (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not (isinstance(cameras_per_window, int) and cameras_per_window >= 1):
        raise ValueError(f"cameras_per_window must be an int >= 1, got {cameras_per_window!r}")
    min_valid = min_length if min_valid is None else min_valid
    if not 1 <= min_valid <= window:
        raise ValueError(f"min_valid must lie in [1, window={window}], got {min_valid}")
    w_img, h_img = (int(v) for v in image_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j = skeleton.num_joints
    root = list(skeleton.root)

    parts: dict[str, list[np.ndarray]] = {
        k: []
        for k in (
            "kp",
            "px",
            "clean",
            "conf",
            "mask",
            "wmask",
            "pos",
            "K",
            "R",
            "t",
            "scale",
            "offset",
            "nlen",
            "clip",
            "start",
        )
    }
    clips: list[dict[str, Any]] = []
    dropped = {"no_windows": 0, "unusable_first_frame": 0, "too_short_after_cut": 0}
    for ci, motion in enumerate(motions):
        pos = _prepare(motion, skeleton, fps)
        win, wmask = make_windows(pos, window, stride, min_length)
        step = window if stride is None else stride
        starts = np.arange(len(win)) * step
        if cameras_per_window > 1:
            win = np.repeat(win, cameras_per_window, axis=0)
            wmask = np.repeat(wmask, cameras_per_window, axis=0)
            starts = np.repeat(starts, cameras_per_window)
        entry = {"index": ci, "source": motion.source, "frames": int(pos.shape[0]), "windows": 0}
        clips.append(entry)
        if len(win) == 0:
            dropped["no_windows"] += 1
            continue
        n = len(win)
        rng = np.random.default_rng([seed, ci])
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        x = torch.from_numpy(np.ascontiguousarray(win))  # (n, T, J, 3) float64
        target = x[:, 0, root].mean(1)  # (n, 3) first-frame root
        cams = random_cameras(
            n,
            azimuth_range=cameras.azimuth,
            elevation_range=cameras.elevation,
            distance_range=cameras.distance,
            focal_range=cameras.focal,
            target=target,
            image_size=(w_img, h_img),
            generator=gen,
            dtype=torch.float64,
        )
        clean = cams.project(x)[:, 0].numpy()  # (n, T, J, 2)
        depth = cams.depth(x)[:, 0].numpy()  # (n, T, J)
        noisy = clean + (rng.normal(0.0, noise_px, size=clean.shape) if noise_px > 0 else 0.0)
        conf = (rng.random(size=clean.shape[:-1]) >= drop_prob).astype(np.float64)
        mask0 = _prefix(wmask & (depth > _NEAR).all(-1))
        first_ok = ((conf[:, 0] > 0).sum(-1) >= 2) & mask0[:, 0]
        dropped["unusable_first_frame"] += int((~first_ok).sum())
        keep0 = np.flatnonzero(first_ok)
        if len(keep0) == 0:
            continue
        kp, mask, params = normalize_2d_batch(
            noisy[keep0], mask=mask0[keep0], conf=conf[keep0], root=tuple(root), canvas=(w_img, h_img)
        )
        lengths = mask.sum(1)
        ok = lengths >= min_valid
        dropped["too_short_after_cut"] += int((~ok).sum())
        sel = keep0[ok]
        if len(sel) == 0:
            continue
        m = mask[ok]
        c = conf[sel] * m[..., None]
        kp_n = np.where(c[..., None] > 0, kp[ok], 0.0)
        px = np.where(c[..., None] > 0, noisy[sel], np.nan)
        parts["kp"].append(kp_n.astype(np.float32))
        parts["px"].append(px)
        parts["clean"].append(clean[sel])
        parts["conf"].append(c.astype(np.float32))
        parts["mask"].append(m)
        parts["wmask"].append(wmask[sel])
        parts["pos"].append(win[sel])
        parts["K"].append(cams.K[sel, 0].numpy())
        parts["R"].append(cams.R[sel, 0].numpy())
        parts["t"].append(cams.t[sel, 0].numpy())
        parts["scale"].append(params.scale[ok])
        parts["offset"].append(params.offset[ok])
        parts["nlen"].append(params.length[ok])
        parts["clip"].append(np.full(len(sel), ci, dtype=np.int64))
        parts["start"].append(starts[sel].astype(np.int64))
        entry["windows"] = int(len(sel))
    if not clips:
        raise ValueError(
            "motions is empty: expected at least one Motion clip (e.g. from mvlift.data.load_mocap or "
            "random_motion), got none"
        )

    def cat(key: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.concatenate(parts[key]) if parts[key] else np.zeros((0, *shape), dtype=dtype)

    T = window
    norm = Normalization2D(
        cat("scale", (), np.float64),
        cat("offset", (2,), np.float64),
        cat("nlen", (), np.int64),
        (w_img, h_img),
    )
    mask_all = cat("mask", (T,), bool)
    common = {
        "clip_index": cat("clip", (), np.int64),
        "window_start": cat("start", (), np.int64),
        "image_size": np.array([w_img, h_img], dtype=np.int64),
        **norm.to_dict(),
    }
    train = {
        "keypoints": cat("kp", (T, j, 2), np.float32),
        "keypoints_px": cat("px", (T, j, 2), np.float64),
        "conf": cat("conf", (T, j), np.float32),
        "mask": mask_all,
        "lengths": mask_all.sum(1).astype(np.int64),
        "clip_ids": np.array([str(c["source"]) for c in clips]),
        "joint_names": np.array(skeleton.joint_names),
        "parents": np.array(skeleton.parents, dtype=np.int64),
        "skeleton": np.array(skeleton.name),
        "fps": np.array(float(fps)),
        **common,
    }
    evaluation = {
        "positions": cat("pos", (T, j, 3), np.float64),
        "window_mask": cat("wmask", (T,), bool),
        "K": cat("K", (3, 3), np.float64),
        "R": cat("R", (3, 3), np.float64),
        "t": cat("t", (3,), np.float64),
        "keypoints_px_clean": cat("clean", (T, j, 2), np.float64),
        **common,
    }
    atomic_savez(out / TRAIN_FILE, train)
    atomic_savez(out / EVAL_FILE, evaluation)
    manifest = {
        "format": FORMAT,
        "files": {"train_2d": TRAIN_FILE, "eval_3d": EVAL_FILE},
        "num_windows": int(len(mask_all)),
        "num_clips": len(clips),
        "skeleton": skeleton.name,
        "joint_names": list(skeleton.joint_names),
        "fps": float(fps),
        "window": window,
        "min_length": min_length,
        "stride": stride,
        "min_valid": min_valid,
        "image_size": [w_img, h_img],
        "camera_ranges": {k: list(v) for k, v in asdict(cameras).items()},
        "noise_px": float(noise_px),
        "drop_prob": float(drop_prob),
        "seed": int(seed),
        "dropped_windows": dropped,
        "clips": clips,
    }
    atomic_write_text(out / MANIFEST_FILE, json.dumps(manifest, indent=2))
    return manifest


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a (complete) single-view dataset folder")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: expected format {FORMAT!r}, got {manifest.get('format')!r}")
    return manifest


@dataclass
class SingleViewData:
    """The 2D part of a single-view dataset (``train_2d.npz``); shapes as in the module docstring."""

    keypoints: np.ndarray
    keypoints_px: np.ndarray
    conf: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    clip_index: np.ndarray
    window_start: np.ndarray
    clip_ids: tuple[str, ...]
    normalization: Normalization2D
    skeleton: Skeleton | None
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    fps: float
    image_size: tuple[int, int]
    manifest: dict[str, Any]

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])


@dataclass
class SingleViewEval:
    """The hidden ground truth of a single-view dataset (``eval_3d.npz``), window-aligned with the 2D."""

    positions: np.ndarray
    window_mask: np.ndarray
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    keypoints_px_clean: np.ndarray
    normalization: Normalization2D
    clip_index: np.ndarray
    window_start: np.ndarray
    image_size: tuple[int, int]

    def cameras(self, dtype: torch.dtype = torch.float64) -> Cameras:
        """The input cameras as :class:`mvlift.geometry.Cameras` of batch shape (N,) with one view each."""
        K, R, t = (torch.as_tensor(a, dtype=dtype) for a in (self.K, self.R, self.t))
        return Cameras(K[:, None], R[:, None], t[:, None], self.image_size)


def load_singleview_dataset(folder: str | os.PathLike[str]) -> SingleViewData:
    """Load ``train_2d.npz`` (2D only) of a dataset built by :func:`build_singleview_dataset`."""
    path = Path(folder)
    manifest = _read_manifest(path)
    with np.load(path / manifest["files"]["train_2d"], allow_pickle=False) as z:
        name = str(z["skeleton"])
        return SingleViewData(
            keypoints=z["keypoints"],
            keypoints_px=z["keypoints_px"],
            conf=z["conf"],
            mask=z["mask"],
            lengths=z["lengths"],
            clip_index=z["clip_index"],
            window_start=z["window_start"],
            clip_ids=tuple(str(s) for s in z["clip_ids"]),
            normalization=Normalization2D.from_dict(z),
            skeleton=SKELETONS.get(name) or (QUADRUPED17 if name == QUADRUPED17.name else None),
            joint_names=tuple(str(s) for s in z["joint_names"]),
            parents=tuple(int(p) for p in z["parents"]),
            fps=float(z["fps"]),
            image_size=(int(z["image_size"][0]), int(z["image_size"][1])),
            manifest=manifest,
        )


def load_singleview_eval(folder: str | os.PathLike[str]) -> SingleViewEval:
    """Load ``eval_3d.npz`` (3D ground truth and cameras; for evaluation only)."""
    path = Path(folder)
    manifest = _read_manifest(path)
    with np.load(path / manifest["files"]["eval_3d"], allow_pickle=False) as z:
        return SingleViewEval(
            positions=z["positions"],
            window_mask=z["window_mask"],
            K=z["K"],
            R=z["R"],
            t=z["t"],
            keypoints_px_clean=z["keypoints_px_clean"],
            normalization=Normalization2D.from_dict(z),
            clip_index=z["clip_index"],
            window_start=z["window_start"],
            image_size=(int(z["image_size"][0]), int(z["image_size"][1])),
        )


class SingleView2DDataset(torch.utils.data.Dataset):
    """A torch Dataset over the 2D windows of a single-view dataset.

    Items are dicts of tensors: ``x`` (T, J, 2) float32 normalized keypoints, ``mask`` (T,) bool,
    ``conf`` (T, J) float32, ``length`` () int64 and ``index`` () int64 (the window's row).
    """

    def __init__(self, data: SingleViewData | str | os.PathLike[str]):
        self.data = data if isinstance(data, SingleViewData) else load_singleview_dataset(data)
        self._x = torch.from_numpy(np.ascontiguousarray(self.data.keypoints, dtype=np.float32))
        self._mask = torch.from_numpy(np.ascontiguousarray(self.data.mask))
        self._conf = torch.from_numpy(np.ascontiguousarray(self.data.conf, dtype=np.float32))
        self._len = torch.from_numpy(np.ascontiguousarray(self.data.lengths, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} windows")
        return {
            "x": self._x[i],
            "mask": self._mask[i],
            "conf": self._conf[i],
            "length": self._len[i],
            "index": torch.tensor(i % len(self), dtype=torch.int64),
        }
