"""In-memory motion containers shared by the readers: 3D :class:`Motion`, 2D :class:`Sequence2D`, and the
:class:`MocapFormatError` raised for corrupt files."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mvlift.data.skeletons import Skeleton, convert, convert_confidence

__all__ = ["MocapFormatError", "Motion", "Sequence2D"]


class MocapFormatError(ValueError):
    """A motion / keypoint file is corrupt, truncated or not in the expected layout. The message names the
    file and the line, frame or key where the problem was found."""


def _check_names_parents(
    joint_names: tuple[str, ...], parents: tuple[int, ...], num_joints: int, what: str
) -> None:
    if len(joint_names) != num_joints:
        raise ValueError(f"{what}: {len(joint_names)} joint names for {num_joints} joints")
    if len(parents) != num_joints:
        raise ValueError(f"{what}: {len(parents)} parents for {num_joints} joints")
    if any(not -1 <= p < num_joints for p in parents):
        raise ValueError(f"{what}: parents must lie in [-1, {num_joints}), got {parents}")


@dataclass
class Motion:
    """A 3D joint-position sequence.

    Attributes:
        positions: (T, J, 3) float64, metres, in the source file's world frame (for CMU: Y up, floor near
            y = 0; see docs/conventions.md).
        fps: frames per second.
        joint_names: the J joint names.
        parents: parent index of every joint (-1 for the tree root).
        skeleton: the registered :class:`Skeleton` these joints follow, or None when the joint set is not a
            registered one (e.g. a BVH file's own joints).
        source: the file path, or ``'synthetic:...'`` for generated motion.
    """

    positions: np.ndarray
    fps: float
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    skeleton: Skeleton | None = None
    source: str = ""

    def __post_init__(self) -> None:
        pos = np.asarray(self.positions, dtype=np.float64)
        if pos.ndim != 3 or pos.shape[2] != 3:
            raise ValueError(f"Motion.positions: expected shape (T, J, 3), got {pos.shape}")
        self.positions = pos
        self.joint_names = tuple(self.joint_names)
        self.parents = tuple(int(p) for p in self.parents)
        _check_names_parents(self.joint_names, self.parents, pos.shape[1], "Motion")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"Motion.fps: expected a positive frame rate, got {self.fps}")
        self.fps = float(self.fps)
        if self.skeleton is not None and self.skeleton.joint_names != self.joint_names:
            raise ValueError(
                f"Motion: joint names do not match skeleton {self.skeleton.name!r}: "
                f"{self.joint_names} vs {self.skeleton.joint_names}"
            )

    @property
    def num_frames(self) -> int:
        """T."""
        return self.positions.shape[0]

    @property
    def num_joints(self) -> int:
        """J."""
        return self.positions.shape[1]

    @property
    def duration(self) -> float:
        """Seconds between the first and the last frame, (T - 1) / fps."""
        return max(self.num_frames - 1, 0) / self.fps

    def to_skeleton(self, dst: Skeleton) -> Motion:
        """This motion on another joint set via :func:`mvlift.data.skeletons.convert`.

        Raises:
            ValueError: this motion has no registered skeleton, or no mapping to ``dst`` exists.
        """
        if self.skeleton is None:
            raise ValueError(
                f"Motion from {self.source!r} has no registered skeleton; cannot convert to {dst.name!r}"
            )
        pos = convert(self.positions, self.skeleton, dst)
        return Motion(pos, self.fps, dst.joint_names, dst.parents, dst, self.source)


@dataclass
class Sequence2D:
    """A single-view 2D keypoint sequence.

    Attributes:
        keypoints: (T, J, 2) float64 pixels (origin top-left, u right, v down); NaN where missing.
        confidence: (T, J) float64 in [0, 1]; 0 = missing / ignore.
        fps: frames per second.
        joint_names: the J joint names.
        image_size: (W, H) in pixels, or None when unknown.
        skeleton: the registered skeleton, or None.
        source: file path or description.
        parents: kinematic tree (-1 for the root); defaults to the skeleton's, else every joint parented
            to joint 0.
    """

    keypoints: np.ndarray
    confidence: np.ndarray
    fps: float
    joint_names: tuple[str, ...]
    image_size: tuple[int, int] | None = None
    skeleton: Skeleton | None = None
    source: str = ""
    parents: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        kp = np.asarray(self.keypoints, dtype=np.float64)
        if kp.ndim != 3 or kp.shape[2] != 2:
            raise ValueError(f"Sequence2D.keypoints: expected shape (T, J, 2), got {kp.shape}")
        conf = np.asarray(self.confidence, dtype=np.float64)
        if conf.shape != kp.shape[:2]:
            raise ValueError(f"Sequence2D.confidence: expected shape {kp.shape[:2]}, got {conf.shape}")
        self.keypoints, self.confidence = kp, conf
        self.joint_names = tuple(self.joint_names)
        if not self.parents:
            self.parents = (
                self.skeleton.parents if self.skeleton is not None else (-1,) + (0,) * (kp.shape[1] - 1)
            )
        self.parents = tuple(int(p) for p in self.parents)
        _check_names_parents(self.joint_names, self.parents, kp.shape[1], "Sequence2D")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"Sequence2D.fps: expected a positive frame rate, got {self.fps}")
        self.fps = float(self.fps)
        if self.image_size is not None:
            w, h = (int(v) for v in self.image_size)
            if w <= 0 or h <= 0:
                raise ValueError(f"Sequence2D.image_size: expected positive (W, H), got {self.image_size}")
            self.image_size = (w, h)
        if self.skeleton is not None and self.skeleton.joint_names != self.joint_names:
            raise ValueError(f"Sequence2D: joint names do not match skeleton {self.skeleton.name!r}")

    @property
    def num_frames(self) -> int:
        """T."""
        return self.keypoints.shape[0]

    def to_skeleton(self, dst: Skeleton) -> Sequence2D:
        """Keypoints and confidences on another joint set (a derived joint takes the minimum confidence of the
        joints defining it). ValueError without a registered skeleton or mapping."""
        if self.skeleton is None:
            raise ValueError(
                f"Sequence2D from {self.source!r} has no registered skeleton; cannot convert to {dst.name!r}"
            )
        kp = convert(self.keypoints, self.skeleton, dst)
        conf = convert_confidence(self.confidence, self.skeleton, dst)
        return Sequence2D(kp, conf, self.fps, dst.joint_names, self.image_size, dst, self.source, dst.parents)
