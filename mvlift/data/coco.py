"""COCO-style 2D keypoint JSON -> one person's :class:`Sequence2D` (T, 17, 2).

Two layouts are read:

- **list**: a JSON list of per-frame annotations, each with ``keypoints`` = [x1, y1, v1, ..., x17, y17, v17]
  and a frame key, ``frame`` or ``image_id`` (integers); optional ``score``, ``track_id``, and an
  ``image_size`` [W, H] entry on any annotation. Frames run from the smallest to the largest frame key.
- **dict** (standard COCO): ``{"images": [...], "annotations": [...]}``; each image has ``id`` and optional
  ``frame_id``, ``width``, ``height``; each annotation has ``image_id`` and ``keypoints``. Frames are the
  images ordered by ``frame_id`` when every image has one, else by ``id``.

One person per frame: the annotation with the given ``track_id``, else the one with the highest ``score``
(ties and missing scores: the first in file order). Frames without an annotation get NaN keypoints and
confidence 0.

Confidence = the third keypoint value clipped to [0, 1]: COCO visibility flags map 0 (not labelled) -> 0 and
1 / 2 (labelled) -> 1; detector scores in [0, 1] pass through. Keypoints with confidence 0 are set to NaN
(COCO writes unlabelled points as 0, 0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mvlift.data.motion import MocapFormatError, Sequence2D
from mvlift.data.skeletons import COCO17

__all__ = ["load_coco_keypoints"]


def _keypoints(ann: Any, idx: int, path: Path, num_joints: int) -> np.ndarray:
    if not isinstance(ann, dict) or "keypoints" not in ann:
        raise MocapFormatError(f"{path}: annotation {idx}: expected an object with 'keypoints'")
    try:
        kp = np.asarray(ann["keypoints"], dtype=np.float64)
    except (TypeError, ValueError):
        raise MocapFormatError(f"{path}: annotation {idx}: 'keypoints' is not a list of numbers") from None
    if kp.shape != (3 * num_joints,):
        raise MocapFormatError(
            f"{path}: annotation {idx}: 'keypoints' has {kp.size} values, expected "
            f"{3 * num_joints} (x, y, v per joint)"
        )
    return kp.reshape(num_joints, 3)


def _size(value: Any, idx: int, path: Path, what: str = "annotation") -> tuple[int, int]:
    try:
        w, h = (int(v) for v in value)
    except (TypeError, ValueError, OverflowError):
        w = h = 0
    if w <= 0 or h <= 0:
        field = "'image_size'" if what == "annotation" else "'width', 'height'"
        raise MocapFormatError(f"{path}: {what} {idx}: {field} must be positive [W, H], got {value!r}")
    return w, h


def _int_key(ann: dict, keys: tuple[str, ...], idx: int, path: Path) -> int:
    for k in keys:
        if k in ann:
            v = ann[k]
            if isinstance(v, bool) or not isinstance(v, int | float) or int(v) != v:
                raise MocapFormatError(f"{path}: annotation {idx}: {k!r} must be an integer, got {v!r}")
            return int(v)
    raise MocapFormatError(f"{path}: annotation {idx}: no frame key (one of {keys})")


def load_coco_keypoints(path: str | Path, *, track_id: int | None = None, fps: float = 30.0) -> Sequence2D:
    """Read a COCO-style keypoint JSON (either layout, see the module docstring) as one person's sequence.

    Args:
        path: the JSON file.
        track_id: follow the annotations with this ``track_id`` (None: highest score per frame).
        fps: frame rate to record (COCO files store none).
    Returns:
        :class:`Sequence2D` on :data:`COCO17`: keypoints (T, 17, 2) pixels (NaN where missing), confidence
        (T, 17), image_size (W, H) when the file gives one.
    Raises:
        MocapFormatError: unreadable JSON or a malformed annotation (names the file and the annotation index).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MocapFormatError(f"{path}: cannot read JSON: {e}") from e
    nj = COCO17.num_joints
    image_size: tuple[int, int] | None = None

    if isinstance(data, list):
        frames: dict[int, int] = {}
        for i, ann in enumerate(data):
            if not isinstance(ann, dict):
                raise MocapFormatError(
                    f"{path}: annotation {i}: expected an object, got {type(ann).__name__}"
                )
            frames[i] = _int_key(ann, ("frame", "image_id"), i, path)
            if image_size is None and "image_size" in ann:
                image_size = _size(ann["image_size"], i, path)
        if not frames:
            raise MocapFormatError(
                f"{path}: no annotations (an empty list); expected one object per frame with 'keypoints' "
                "(17 x [x, y, v]) and 'frame' or 'image_id'"
            )
        first = min(frames.values())
        num_frames = max(frames.values()) - first + 1
        frame_of = {i: f - first for i, f in frames.items()}
        anns = data
    elif isinstance(data, dict) and "annotations" in data and "images" in data:
        images = data["images"]
        if not isinstance(images, list) or not images:
            raise MocapFormatError(f"{path}: 'images' must be a non-empty list")
        for k, im in enumerate(images):
            if not isinstance(im, dict) or "id" not in im:
                raise MocapFormatError(f"{path}: image {k}: expected an object with 'id'")
        key = "frame_id" if all("frame_id" in im for im in images) else "id"
        try:
            order = sorted(range(len(images)), key=lambda k: images[k][key])
            index_of_id = {images[k]["id"]: n for n, k in enumerate(order)}
        except TypeError:
            raise MocapFormatError(
                f"{path}: image {key!r} values must be numbers (or strings) of one kind, got "
                f"{sorted({type(im[key]).__name__ for im in images})}"
            ) from None
        sizes = {
            _size((im["width"], im["height"]), k, path, what="image")
            for k, im in enumerate(images)
            if "width" in im and "height" in im
        }
        if len(sizes) == 1:
            image_size = sizes.pop()
        anns = data["annotations"]
        if not isinstance(anns, list):
            raise MocapFormatError(f"{path}: 'annotations' must be a list")
        frame_of = {}
        for i, ann in enumerate(anns):
            if not isinstance(ann, dict) or "image_id" not in ann:
                raise MocapFormatError(f"{path}: annotation {i}: expected an object with 'image_id'")
            if not isinstance(ann["image_id"], int | float | str) or ann["image_id"] not in index_of_id:
                raise MocapFormatError(
                    f"{path}: annotation {i}: image_id {ann['image_id']!r} is not in 'images'"
                )
            frame_of[i] = index_of_id[ann["image_id"]]
        num_frames = len(images)
    else:
        raise MocapFormatError(
            f"{path}: expected a list of annotations or a dict with 'images' and 'annotations'"
        )

    chosen: dict[int, tuple[np.ndarray, float, int]] = {}  # frame -> (keypoints (17, 3), score, annotation)
    for i, ann in enumerate(anns):
        kp = _keypoints(ann, i, path, nj)  # validates every annotation, chosen or not
        if not np.all(np.isfinite(kp)):
            joints = sorted({int(k) // 3 for k in np.flatnonzero(~np.isfinite(kp))})
            names = [COCO17.joint_names[j] for j in joints]
            raise MocapFormatError(
                f"{path}: annotation {i}: non-finite keypoint values at joints {joints} {names}: "
                "expected finite numbers; write an undetected joint as x = y = 0 with v = 0"
            )
        try:
            score = float(ann.get("score", -np.inf))
        except (TypeError, ValueError):
            raise MocapFormatError(f"{path}: annotation {i}: 'score' is not a number") from None
        if track_id is not None and ann.get("track_id") != track_id:
            continue
        f = frame_of[i]
        if f not in chosen or score > chosen[f][1]:
            chosen[f] = (kp, score, i)

    keypoints = np.full((num_frames, nj, 2), np.nan)
    confidence = np.zeros((num_frames, nj))
    for f, (kp, _, _) in chosen.items():
        conf = np.clip(kp[:, 2], 0.0, 1.0)
        keypoints[f] = np.where(conf[:, None] > 0, kp[:, :2], np.nan)
        confidence[f] = conf
    return Sequence2D(keypoints, confidence, fps, COCO17.joint_names, image_size, COCO17, str(path))
