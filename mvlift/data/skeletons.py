"""Skeleton definitions (joint names, kinematic trees, roots) and joint-set conversions.

A :class:`Skeleton` names the joints of a pose array ``(..., J, D)`` (D = 3 for world positions, 2 for
pixels), gives each joint's parent in a kinematic tree (``-1`` for the tree root) and the joints whose mean
is the skeleton's *root position* (e.g. the midpoint of the hips for OpenPose-18).

Constants:

- :data:`OPENPOSE18` — MVLift's joint set (METHOD.md order); root = hips midpoint.
- :data:`COCO17` — the standard COCO keypoint order; root = hips midpoint.
- :data:`SMPL24` — the 24 SMPL body joints; root = pelvis.
- :data:`H36M17` — the common 17-joint Human3.6M set (VideoPose3D order); root = pelvis.
- :data:`CMU31` — the CMU Acclaim skeleton: ``root`` + the 30 ASF bones (each bone's position is its
  distal end); root = ``root`` (the pelvis).
- :data:`BODY14` — OpenPose-18 without the face: ``head`` in place of the nose, then neck, shoulders,
  elbows, wrists, hips, knees, ankles in OpenPose order; root = hips midpoint. mvlift uses it for CMU mocap.

:func:`convert` maps arrays between joint sets through a registry of documented mappings; every target
joint is one source joint or a weighted mean of source joints. Definitions of the registered mappings:

``COCO17 -> OPENPOSE18``
    Same joints by name; ``neck`` = midpoint of ``left_shoulder`` and ``right_shoulder`` (METHOD.md).
``OPENPOSE18 -> BODY14``
    ``head`` = ``nose``; the other 13 joints by name.
``COCO17 -> BODY14``
    The composition of the two above: ``head`` = ``nose``, ``neck`` = shoulder midpoint.
``CMU31 -> BODY14`` (each CMU31 joint is the *distal end* of the ASF bone of that name)
    ``head`` = end of ``head`` (the top of the head; about 10-15 cm above where a 2D detector puts the
    nose). ``neck`` = midpoint of the ``lclavicle`` and ``rclavicle`` ends, i.e. the midpoint of the two
    BODY14 shoulders — the same definition as COCO-17's neck, so that CMU-derived and detector-derived
    necks agree. The bone ends the CMU skeleton offers near the neck are off from that point: on 05_01,
    60_01 and 61_01 the ``thorax`` end lies 3-7 cm below it and the ``lowerneck`` end 4-8 cm above it
    (the ``upperneck`` end 12-16 cm above it), so none of them is used.
    ``right_shoulder`` / ``left_shoulder`` = ``rclavicle`` / ``lclavicle`` end (= ``rhumerus`` /
    ``lhumerus`` start); elbows = ``rhumerus`` / ``lhumerus`` end; wrists = ``rradius`` / ``lradius`` end;
    hips = ``rhipjoint`` / ``lhipjoint`` end (= ``rfemur`` / ``lfemur`` start); knees = ``rfemur`` /
    ``lfemur`` end; ankles = ``rtibia`` / ``ltibia`` end.
``SMPL24 -> BODY14``
    ``head`` = ``head``; ``neck`` = midpoint of ``left_shoulder`` and ``right_shoulder`` (as for COCO;
    SMPL's own ``neck`` joint sits above the shoulder line); limbs by name
    (``*_shoulder``, ``*_elbow``, ``*_wrist``, ``*_hip``, ``*_knee``, ``*_ankle``).
``H36M17 -> BODY14``
    ``head`` = ``nose`` (H3.6M joint 9, the point nearest the OpenPose nose; joint 10 is the head top);
    ``neck`` = shoulder midpoint (as for COCO); limbs by name.

Arrays may be numpy arrays or torch tensors; conversions never multiply a joint by a zero weight, so a NaN
in a source joint only reaches the target joints defined from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Skeleton",
    "OPENPOSE18",
    "COCO17",
    "SMPL24",
    "H36M17",
    "CMU31",
    "BODY14",
    "SKELETONS",
    "get_skeleton",
    "convert",
    "convert_confidence",
    "available_mappings",
    "register_mapping",
]

# fmt: off
# Side-specific CMU ASF bone names are 'l' / 'r' + one of these.
_CMU_SIDED_PARTS = frozenset(
    {"hipjoint", "femur", "tibia", "foot", "toes", "clavicle", "humerus", "radius", "wrist", "hand",
     "fingers", "thumb"}
)
# fmt: on


def _mirror_name(name: str) -> str:
    """The joint name of the other body side (``left_x`` <-> ``right_x``, CMU ``lfemur`` <-> ``rfemur``)."""
    if "left" in name:
        return name.replace("left", "right")
    if "right" in name:
        return name.replace("right", "left")
    if len(name) > 1 and name[0] in "lr" and name[1:] in _CMU_SIDED_PARTS:
        return ("r" if name[0] == "l" else "l") + name[1:]
    return name


@dataclass(frozen=True)
class Skeleton:
    """A named joint set with a kinematic tree.

    Attributes:
        name: registry name, e.g. ``"openpose18"``.
        joint_names: the J joint names, in array order.
        parents: parent index of every joint; ``-1`` marks the tree root (exactly one joint).
        root: indices of the joints whose mean is the root position (e.g. the two hips).
    """

    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    root: tuple[int, ...]

    def __post_init__(self) -> None:
        j = len(self.joint_names)
        if len(set(self.joint_names)) != j:
            raise ValueError(f"Skeleton {self.name!r}: joint names are not unique: {self.joint_names}")
        if len(self.parents) != j:
            raise ValueError(f"Skeleton {self.name!r}: {len(self.parents)} parents for {j} joints")
        if sum(1 for p in self.parents if p == -1) != 1:
            raise ValueError(
                f"Skeleton {self.name!r}: exactly one joint must have parent -1, got {self.parents}"
            )
        for i, p in enumerate(self.parents):
            if not (-1 <= p < j) or p == i:
                raise ValueError(f"Skeleton {self.name!r}: joint {i} has invalid parent {p}")
        for i in range(j):  # every joint must reach the tree root without a cycle
            k, steps = i, 0
            while k != -1:
                k, steps = self.parents[k], steps + 1
                if steps > j:
                    raise ValueError(f"Skeleton {self.name!r}: parents contain a cycle through joint {i}")
        if not self.root or any(not 0 <= r < j for r in self.root):
            raise ValueError(
                f"Skeleton {self.name!r}: root indices {self.root} must be non-empty, in [0, {j})"
            )

    @property
    def num_joints(self) -> int:
        """Number of joints J."""
        return len(self.joint_names)

    def index(self, name: str) -> int:
        """Index of the joint ``name``; ValueError listing the joint names if absent."""
        try:
            return self.joint_names.index(name)
        except ValueError:
            raise ValueError(
                f"Skeleton {self.name!r} has no joint {name!r}; joints: {self.joint_names}"
            ) from None

    @property
    def bones(self) -> tuple[tuple[int, int], ...]:
        """The (child, parent) index pairs of the tree, in joint order (J - 1 pairs)."""
        return tuple((c, p) for c, p in enumerate(self.parents) if p >= 0)

    def root_position(self, positions: Any) -> Any:
        """Root position: mean of the ``root`` joints.

        Args:
            positions: (..., J, D) numpy array or torch tensor (D = 2 or 3).
        Returns:
            (..., D), same type and dtype.
        """
        shape = tuple(positions.shape)
        if len(shape) < 2 or shape[-2] != self.num_joints:
            raise ValueError(
                f"positions: expected shape (..., {self.num_joints}, D) for skeleton {self.name!r}, "
                f"got {shape}"
            )
        idx = list(self.root)
        return positions[..., idx, :].mean(-2)

    @property
    def left_right_swap(self) -> tuple[int, ...]:
        """Permutation for a left-right flip: ``flipped = positions[..., swap, :]`` (then negate the lateral
        axis). Joint i of the flipped array is the mirror-side joint of i (itself for centre joints)."""
        names = self.joint_names
        perm = []
        for n in names:
            m = _mirror_name(n)
            if m not in names:
                raise ValueError(f"Skeleton {self.name!r}: mirror joint {m!r} of {n!r} is missing")
            perm.append(names.index(m))
        return tuple(perm)


def _skeleton(
    name: str, joints: Sequence[str], parent_names: Mapping[str, str | None], root: Sequence[str]
) -> Skeleton:
    """Build a Skeleton from joint names, a child -> parent-name map and root joint names."""
    joints = tuple(joints)
    parents = tuple(-1 if parent_names[j] is None else joints.index(parent_names[j]) for j in joints)
    return Skeleton(name, joints, parents, tuple(joints.index(r) for r in root))


# fmt: off
OPENPOSE18 = _skeleton(
    "openpose18",
    ["nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
     "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
     "right_eye", "left_eye", "right_ear", "left_ear"],
    {"nose": "neck", "neck": None, "right_shoulder": "neck", "right_elbow": "right_shoulder",
     "right_wrist": "right_elbow", "left_shoulder": "neck", "left_elbow": "left_shoulder",
     "left_wrist": "left_elbow", "right_hip": "neck", "right_knee": "right_hip", "right_ankle": "right_knee",
     "left_hip": "neck", "left_knee": "left_hip", "left_ankle": "left_knee", "right_eye": "nose",
     "left_eye": "nose", "right_ear": "right_eye", "left_ear": "left_eye"},
    ["right_hip", "left_hip"],
)
"""MVLift's OpenPose-18 joint set; tree rooted at the neck (OpenPose limbs); root = hips midpoint."""

COCO17 = _skeleton(
    "coco17",
    ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
     "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
     "right_knee", "left_ankle", "right_ankle"],
    {"nose": None, "left_eye": "nose", "right_eye": "nose", "left_ear": "left_eye", "right_ear": "right_eye",
     "left_shoulder": "nose", "right_shoulder": "nose", "left_elbow": "left_shoulder",
     "right_elbow": "right_shoulder", "left_wrist": "left_elbow", "right_wrist": "right_elbow",
     "left_hip": "left_shoulder", "right_hip": "right_shoulder", "left_knee": "left_hip",
     "right_knee": "right_hip", "left_ankle": "left_knee", "right_ankle": "right_knee"},
    ["left_hip", "right_hip"],
)
"""COCO-17 keypoints (standard order); tree rooted at the nose; root = hips midpoint."""

SMPL24 = _skeleton(
    "smpl24",
    ["pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
     "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
     "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
     "left_hand", "right_hand"],
    {"pelvis": None, "left_hip": "pelvis", "right_hip": "pelvis", "spine1": "pelvis", "left_knee": "left_hip",
     "right_knee": "right_hip", "spine2": "spine1", "left_ankle": "left_knee", "right_ankle": "right_knee",
     "spine3": "spine2", "left_foot": "left_ankle", "right_foot": "right_ankle", "neck": "spine3",
     "left_collar": "spine3", "right_collar": "spine3", "head": "neck", "left_shoulder": "left_collar",
     "right_shoulder": "right_collar", "left_elbow": "left_shoulder", "right_elbow": "right_shoulder",
     "left_wrist": "left_elbow", "right_wrist": "right_elbow", "left_hand": "left_wrist",
     "right_hand": "right_wrist"},
    ["pelvis"],
)
"""The 24 SMPL body joints (SMPL kinematic tree); root = pelvis."""

H36M17 = _skeleton(
    "h36m17",
    ["pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "spine",
     "thorax", "nose", "head", "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow",
     "right_wrist"],
    {"pelvis": None, "right_hip": "pelvis", "right_knee": "right_hip", "right_ankle": "right_knee",
     "left_hip": "pelvis", "left_knee": "left_hip", "left_ankle": "left_knee", "spine": "pelvis",
     "thorax": "spine", "nose": "thorax", "head": "nose", "left_shoulder": "thorax",
     "left_elbow": "left_shoulder", "left_wrist": "left_elbow", "right_shoulder": "thorax",
     "right_elbow": "right_shoulder", "right_wrist": "right_elbow"},
    ["pelvis"],
)
"""Human3.6M 17 joints in the common (VideoPose3D) order; joint 9 'nose' (a.k.a. neck/nose), 10 head top."""

_CMU_BONES = (
    "lhipjoint", "lfemur", "ltibia", "lfoot", "ltoes", "rhipjoint", "rfemur", "rtibia", "rfoot", "rtoes",
    "lowerback", "upperback", "thorax", "lowerneck", "upperneck", "head", "lclavicle", "lhumerus", "lradius",
    "lwrist", "lhand", "lfingers", "lthumb", "rclavicle", "rhumerus", "rradius", "rwrist", "rhand",
    "rfingers", "rthumb",
)
_CMU_PARENTS = {
    "root": None, "lhipjoint": "root", "lfemur": "lhipjoint", "ltibia": "lfemur", "lfoot": "ltibia",
    "ltoes": "lfoot", "rhipjoint": "root", "rfemur": "rhipjoint", "rtibia": "rfemur", "rfoot": "rtibia",
    "rtoes": "rfoot", "lowerback": "root", "upperback": "lowerback", "thorax": "upperback",
    "lowerneck": "thorax", "upperneck": "lowerneck", "head": "upperneck", "lclavicle": "thorax",
    "lhumerus": "lclavicle", "lradius": "lhumerus", "lwrist": "lradius", "lhand": "lwrist",
    "lfingers": "lhand", "lthumb": "lwrist", "rclavicle": "thorax", "rhumerus": "rclavicle",
    "rradius": "rhumerus", "rwrist": "rradius", "rhand": "rwrist", "rfingers": "rhand", "rthumb": "rwrist",
}
CMU31 = _skeleton("cmu31", ("root", *_CMU_BONES), _CMU_PARENTS, ["root"])
"""CMU Acclaim skeleton: 'root' (pelvis) + the 30 ASF bones in ASF order; a bone's position is its distal
end."""

BODY14 = _skeleton(
    "body14",
    ["head", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
     "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle"],
    {"head": "neck", "neck": None, "right_shoulder": "neck", "right_elbow": "right_shoulder",
     "right_wrist": "right_elbow", "left_shoulder": "neck", "left_elbow": "left_shoulder",
     "left_wrist": "left_elbow", "right_hip": "neck", "right_knee": "right_hip", "right_ankle": "right_knee",
     "left_hip": "neck", "left_knee": "left_hip", "left_ankle": "left_knee"},
    ["right_hip", "left_hip"],
)
"""OpenPose-18 body without the face ('head' in place of the nose); root = hips midpoint."""
# fmt: on

SKELETONS: dict[str, Skeleton] = {s.name: s for s in (OPENPOSE18, COCO17, SMPL24, H36M17, CMU31, BODY14)}
"""All named skeletons, by :attr:`Skeleton.name`."""


def get_skeleton(name: str) -> Skeleton:
    """The registered skeleton called ``name``; ValueError listing the known names otherwise."""
    try:
        return SKELETONS[name]
    except KeyError:
        raise ValueError(f"unknown skeleton {name!r}; known: {sorted(SKELETONS)}") from None


# A mapping: for every target joint, the (source index, weight) terms of a weighted sum (weights sum to 1).
_Terms = tuple[tuple[int, float], ...]
_MAPPINGS: dict[tuple[str, str], tuple[_Terms, ...]] = {}


def register_mapping(src: Skeleton, dst: Skeleton, spec: Mapping[str, str | Sequence[str]]) -> None:
    """Register a mapping ``src -> dst``.

    Args:
        src, dst: the skeletons.
        spec: for every joint of ``dst``, either one ``src`` joint name or a sequence of ``src`` joint names
            whose mean defines it.
    """
    missing = [n for n in dst.joint_names if n not in spec]
    if missing:
        raise ValueError(f"mapping {src.name}->{dst.name}: no definition for target joints {missing}")
    terms = []
    for n in dst.joint_names:
        names = [spec[n]] if isinstance(spec[n], str) else list(spec[n])
        if not names:
            raise ValueError(f"mapping {src.name}->{dst.name}: empty definition for {n!r}")
        w = 1.0 / len(names)
        terms.append(tuple((src.index(s), w) for s in names))
    _MAPPINGS[(src.name, dst.name)] = tuple(terms)


def _compose(a: Skeleton, b: Skeleton, c: Skeleton) -> None:
    """Register ``a -> c`` as the composition of the registered ``a -> b`` and ``b -> c``."""
    ab, bc = _MAPPINGS[(a.name, b.name)], _MAPPINGS[(b.name, c.name)]
    out = []
    for terms_c in bc:
        acc: dict[int, float] = {}
        for jb, wb in terms_c:
            for ja, wa in ab[jb]:
                acc[ja] = acc.get(ja, 0.0) + wa * wb
        out.append(tuple(sorted(acc.items())))
    _MAPPINGS[(a.name, c.name)] = tuple(out)


def available_mappings() -> list[tuple[str, str]]:
    """The registered (source name, target name) pairs."""
    return sorted(_MAPPINGS)


def _terms(src: Skeleton, dst: Skeleton) -> tuple[_Terms, ...]:
    if src.name == dst.name:
        return tuple(((j, 1.0),) for j in range(src.num_joints))
    try:
        return _MAPPINGS[(src.name, dst.name)]
    except KeyError:
        pairs = ", ".join(f"{a}->{b}" for a, b in available_mappings())
        raise ValueError(f"no joint mapping from {src.name!r} to {dst.name!r}; available: {pairs}") from None


def _stack(parts: list[Any], like: Any) -> Any:
    if isinstance(like, np.ndarray):
        return np.stack(parts, axis=-2)
    import torch

    return torch.stack(parts, dim=-2)


def convert(positions: Any, src: Skeleton, dst: Skeleton) -> Any:
    """Convert joint positions between joint sets (see the module docstring for every definition).

    Args:
        positions: (..., J_src, D) numpy array or torch tensor (D = 2 pixels or 3 metres).
        src, dst: source and target skeletons; ``src == dst`` returns a copy.
    Returns:
        (..., J_dst, D), same type and dtype. Differentiable for torch tensors.
    Raises:
        ValueError: no registered mapping (lists the available ones), or a shape mismatch.
    """
    terms = _terms(src, dst)
    shape = tuple(positions.shape)
    if len(shape) < 2 or shape[-2] != src.num_joints:
        raise ValueError(
            f"positions: expected shape (..., {src.num_joints}, D) for {src.name!r}, got {shape}"
        )
    parts = []
    for t in terms:
        acc = positions[..., t[0][0], :] * t[0][1] if t[0][1] != 1.0 else positions[..., t[0][0], :]
        for j, w in t[1:]:
            acc = acc + positions[..., j, :] * w
        parts.append(acc)
    return _stack(parts, positions)


def convert_confidence(confidence: Any, src: Skeleton, dst: Skeleton) -> Any:
    """Convert per-joint confidences (..., J_src) -> (..., J_dst): a target joint gets the minimum confidence
    of the source joints that define it (numpy array or torch tensor)."""
    terms = _terms(src, dst)
    shape = tuple(confidence.shape)
    if len(shape) < 1 or shape[-1] != src.num_joints:
        raise ValueError(f"confidence: expected shape (..., {src.num_joints}) for {src.name!r}, got {shape}")
    parts = []
    for t in terms:
        acc = confidence[..., t[0][0]]
        for j, _ in t[1:]:
            other = confidence[..., j]
            acc = np.minimum(acc, other) if isinstance(acc, np.ndarray) else acc.minimum(other)
        parts.append(acc)
    if isinstance(confidence, np.ndarray):
        return np.stack(parts, axis=-1)
    import torch

    return torch.stack(parts, dim=-1)


# fmt: off
_SHOULDERS = ("left_shoulder", "right_shoulder")
_LIMBS = ("right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
          "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle")

register_mapping(COCO17, OPENPOSE18, {**{n: n for n in OPENPOSE18.joint_names if n != "neck"},
                                      "neck": _SHOULDERS})
register_mapping(OPENPOSE18, BODY14, {**{n: n for n in _LIMBS}, "head": "nose", "neck": "neck"})
_compose(COCO17, OPENPOSE18, BODY14)
register_mapping(
    CMU31,
    BODY14,
    {"head": "head", "neck": ("lclavicle", "rclavicle"),
     "right_shoulder": "rclavicle", "right_elbow": "rhumerus", "right_wrist": "rradius",
     "left_shoulder": "lclavicle", "left_elbow": "lhumerus", "left_wrist": "lradius",
     "right_hip": "rhipjoint", "right_knee": "rfemur", "right_ankle": "rtibia",
     "left_hip": "lhipjoint", "left_knee": "lfemur", "left_ankle": "ltibia"},
)
register_mapping(SMPL24, BODY14, {**{n: n for n in _LIMBS}, "head": "head", "neck": _SHOULDERS})
register_mapping(H36M17, BODY14, {**{n: n for n in _LIMBS}, "head": "nose", "neck": _SHOULDERS})
# fmt: on
