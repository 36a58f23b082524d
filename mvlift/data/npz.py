"""mvlift's own ``.npz`` files for a 3D :class:`Motion` or a 2D :class:`Sequence2D`.

Keys (all plain arrays, readable with ``np.load(..., allow_pickle=False)``):

- common: ``format_version`` (int, currently 1), ``kind`` (``'motion'`` or ``'sequence2d'``), ``fps``,
  ``joint_names`` (J strings), ``parents`` (J ints), ``skeleton`` (registered skeleton name or ``''``),
  ``source``.
- motion: ``positions`` (T, J, 3) float64 metres.
- sequence2d: ``keypoints`` (T, J, 2) float64 pixels, ``confidence`` (T, J), ``image_size`` (2,) ints
  ((0, 0) = unknown).

Writes are atomic: the data goes to a temporary file in the target folder, then ``os.replace``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mvlift.atomic import atomic_savez
from mvlift.data.motion import MocapFormatError, Motion, Sequence2D
from mvlift.data.skeletons import SKELETONS, Skeleton

__all__ = [
    "NPZ_FORMAT_VERSION",
    "save_motion_npz",
    "load_motion_npz",
    "save_sequence2d_npz",
    "load_sequence2d_npz",
]

NPZ_FORMAT_VERSION = 1


def _common(
    kind: str,
    fps: float,
    joint_names: tuple[str, ...],
    parents: tuple[int, ...],
    skeleton: Skeleton | None,
    source: str,
) -> dict[str, Any]:
    return {
        "format_version": np.array(NPZ_FORMAT_VERSION),
        "kind": np.array(kind),
        "fps": np.array(float(fps)),
        "joint_names": np.array(joint_names, dtype=str),
        "parents": np.array(parents, dtype=np.int64),
        "skeleton": np.array(skeleton.name if skeleton is not None else ""),
        "source": np.array(source),
    }


def save_motion_npz(path: str | Path, motion: Motion) -> None:
    """Write ``motion`` to ``path`` (atomically)."""
    arrays = _common("motion", motion.fps, motion.joint_names, motion.parents, motion.skeleton, motion.source)
    arrays["positions"] = np.asarray(motion.positions, dtype=np.float64)
    atomic_savez(Path(path), arrays)


def save_sequence2d_npz(path: str | Path, seq: Sequence2D) -> None:
    """Write ``seq`` to ``path`` (atomically)."""
    arrays = _common("sequence2d", seq.fps, seq.joint_names, seq.parents, seq.skeleton, seq.source)
    arrays["keypoints"] = np.asarray(seq.keypoints, dtype=np.float64)
    arrays["confidence"] = np.asarray(seq.confidence, dtype=np.float64)
    arrays["image_size"] = np.array(seq.image_size if seq.image_size is not None else (0, 0), dtype=np.int64)
    atomic_savez(Path(path), arrays)


class _Reader:
    """Key access with errors that name the file and the key."""

    def __init__(self, path: Path, kind: str):
        self.path = path
        try:
            with np.load(path, allow_pickle=False) as z:
                self.data = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise MocapFormatError(f"{path}: cannot read npz: {e}") from e
        version = self.parse("format_version", int, "an integer")
        if version > NPZ_FORMAT_VERSION:
            raise MocapFormatError(
                f"{path}: format_version {version} is newer than this reader ({NPZ_FORMAT_VERSION})"
            )
        found = str(self.get("kind"))
        if found != kind:
            raise MocapFormatError(f"{path}: holds a {found!r}, not a {kind!r}")

    def get(self, key: str) -> np.ndarray:
        if key not in self.data:
            raise MocapFormatError(f"{self.path}: missing key {key!r} (keys: {sorted(self.data)})")
        return self.data[key]

    def parse(self, key: str, convert: Any, expected: str) -> Any:
        """``convert(self.get(key))``; a value it cannot take is a MocapFormatError naming the key."""
        value = self.get(key)
        try:
            return convert(value)
        except (TypeError, ValueError, OverflowError):
            shown = np.array2string(np.asarray(value), threshold=6)
            raise MocapFormatError(
                f"{self.path}: {key!r} must be {expected}, got {shown} (dtype {value.dtype}, shape "
                f"{value.shape})"
            ) from None

    def skeleton(self) -> Skeleton | None:
        name = str(self.get("skeleton"))
        return SKELETONS.get(name) if name else None

    def fields(self) -> tuple[float, tuple[str, ...], tuple[int, ...], Skeleton | None, str]:
        names = self.parse("joint_names", lambda v: tuple(str(n) for n in v), "a list of J joint names")
        parents = self.parse("parents", lambda v: tuple(int(p) for p in v), "a list of J integers")
        skel = self.skeleton()
        if skel is not None and skel.joint_names != names:
            skel = None
        fps = self.parse("fps", float, "a number (frames per second)")
        return fps, names, parents, skel, str(self.get("source"))


def load_motion_npz(path: str | Path) -> Motion:
    """Read a :class:`Motion` written by :func:`save_motion_npz`. The skeleton is looked up by name among the
    registered skeletons (None if unknown). MocapFormatError names the file and a missing key."""
    r = _Reader(Path(path), "motion")
    fps, names, parents, skel, source = r.fields()
    positions = r.get("positions")
    try:
        return Motion(positions, fps, names, parents, skel, source)
    except (ValueError, TypeError) as e:
        raise MocapFormatError(f"{path}: inconsistent contents: {e}") from e


def load_sequence2d_npz(path: str | Path) -> Sequence2D:
    """Read a :class:`Sequence2D` written by :func:`save_sequence2d_npz`."""
    r = _Reader(Path(path), "sequence2d")
    fps, names, parents, skel, source = r.fields()
    size = r.parse("image_size", lambda v: tuple(int(x) for x in v), "(W, H) integers, (0, 0) = unknown")
    if len(size) != 2:
        raise MocapFormatError(f"{path}: 'image_size' must be (W, H) integers, got {size}")
    keypoints, confidence = r.get("keypoints"), r.get("confidence")
    try:
        return Sequence2D(
            keypoints, confidence, fps, names, None if size == (0, 0) else size, skel, source, parents
        )
    except (ValueError, TypeError) as e:
        raise MocapFormatError(f"{path}: inconsistent contents: {e}") from e
