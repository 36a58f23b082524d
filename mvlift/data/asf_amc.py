"""Acclaim ASF (skeleton) / AMC (motion) reader with forward kinematics — the CMU mocap format.

ASF
    ``:units`` gives ``length`` L (one file length unit is 1/L inch: metres = units x 0.0254 / L; CMU's
    L = 0.45 gives 0.056444 m per unit) and ``angle`` (deg or rad). ``:root`` gives ``order`` (the AMC root
    channels, e.g. ``TX TY TZ RX RY RZ``), ``axis`` (the rotation order of ``orientation``), ``position`` and
    ``orientation``. ``:bonedata`` has one ``begin ... end`` block per bone: ``id``, ``name``,
    ``direction`` (unit vector in the world frame of the rest pose), ``length``, ``axis a b c ORDER`` (the
    bone's local frame), ``dof`` (subset of ``rx ry rz``) and ``limits``. ``:hierarchy`` lists
    ``parent child child ...`` lines.
AMC
    A header (``:FULLY-SPECIFIED``, ``:DEGREES`` or ``:RADIANS``), then frames: a line with the frame number,
    then one line per bone, ``name v1 v2 ...`` with the values in the bone's ``dof`` order (the root's in
    ``:root order``).

Forward kinematics (the Acclaim / CMU-viewer convention). An Euler triple with order ``"XYZ"`` (or a dof list
``rx ry rz``) means: rotate about the fixed x axis first, then y, then z — for column vectors
``R = Rz @ Ry @ Rx``; generally the first-listed axis is applied first. For every bone, ``C`` = the rotation
of its ``axis`` (its local frame), ``M`` = the rotation of its AMC dof values; its global rotation is
``L = L_parent @ C @ M @ C^T`` and its distal end is ``end_parent + L @ (direction * length)``. The root:
``L_root = C_root @ M_root`` with ``C_root`` from ``:root orientation`` (in ``:root axis`` order) and
``M_root`` from the AMC root rotation channels in ``:root order``; its position is ``:root position`` plus
the AMC root translation (all zero in CMU's ASF files).

This convention was checked on the CMU clips (see tests/data/test_asf_amc.py): with it the upper arms hang
and the elbows bend forward while walking (05_01), the rest-pose height (head end to lowest toe end) is
1.46-1.59 m, and the cartwheel of 05_06 reaches 0.13 m below the floor as the data README states; the
other Euler composition (``R = Rx @ Ry @ Rz``) bends the elbows backward.

Positions are the root position and every bone's distal end: joints ``('root', *bones in ASF order)`` —
for CMU exactly :data:`mvlift.data.skeletons.CMU31` — in metres, in the capture's world frame (Y up).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mvlift.data.motion import MocapFormatError, Motion
from mvlift.data.skeletons import CMU31, Skeleton

__all__ = ["AsfBone", "AsfSkeleton", "load_asf", "load_amc", "forward_kinematics", "euler_matrix", "CMU_FPS"]

CMU_FPS = 120.0
"""Nominal CMU capture rate (AMC files store no frame rate)."""

_METRES_PER_INCH = 0.0254
_LIMIT_RE = re.compile(r"\(\s*([^\s()]+)\s+([^\s()]+)\s*\)")


def _axis_rotation(axis: str, angles: np.ndarray) -> np.ndarray:
    """Rotation matrices about a coordinate axis. angles (...,) radians -> (..., 3, 3)."""
    c, s = np.cos(angles), np.sin(angles)
    out = np.zeros(angles.shape + (3, 3))
    i = "xyz".index(axis)
    j, k = (i + 1) % 3, (i + 2) % 3
    out[..., i, i] = 1.0
    out[..., j, j] = c
    out[..., j, k] = -s
    out[..., k, j] = s
    out[..., k, k] = c
    return out


def euler_matrix(order: str, angles: np.ndarray) -> np.ndarray:
    """Acclaim Euler rotation: the first-listed axis is applied first (fixed axes).

    Args:
        order: axis letters, e.g. ``"xyz"`` (case-insensitive); ``"xyz"`` gives ``Rz @ Ry @ Rx``.
        angles: (..., len(order)) radians.
    Returns:
        (..., 3, 3) float64.
    """
    order = order.lower()
    angles = np.asarray(angles, dtype=np.float64)
    if angles.shape[-1:] != (len(order),):
        raise ValueError(
            f"angles: expected shape (..., {len(order)}) for order {order!r}, got {angles.shape}"
        )
    out = np.broadcast_to(np.eye(3), angles.shape[:-1] + (3, 3))
    for n, a in enumerate(order):
        out = _axis_rotation(a, angles[..., n]) @ out
    return out


@dataclass(frozen=True)
class AsfBone:
    """One ASF bone.

    Attributes:
        name: bone name. id: ASF id.
        direction: (3,) unit vector of the bone in the rest pose (world frame).
        length: bone length in ASF length units.
        axis: (3,) local-frame Euler angles, radians; axis_order: e.g. ``"XYZ"``.
        dofs: the AMC channels of this bone, subset of ``("rx", "ry", "rz")`` in file order.
        limits: one (low, high) pair per dof in the file's angle unit (may be empty).
    """

    name: str
    id: int
    direction: np.ndarray
    length: float
    axis: np.ndarray
    axis_order: str
    dofs: tuple[str, ...]
    limits: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class AsfSkeleton:
    """A parsed ASF file.

    Attributes:
        name: the ``:name`` value.
        bones: the bones in file order.
        bone_parents: bone name -> parent name (``'root'`` for the root's children).
        metres_per_unit: metres per ASF length unit (0.0254 / ``:units length``).
        angle_unit: ``'deg'`` or ``'rad'`` (ASF axis angles and limits; default AMC unit).
        root_order: AMC root channels, e.g. ``('TX', 'TY', 'TZ', 'RX', 'RY', 'RZ')``.
        root_axis_order: Euler order of ``root_orientation``.
        root_position: (3,) ASF length units. root_orientation: (3,) radians.
        source: file path.
    """

    name: str
    bones: tuple[AsfBone, ...]
    bone_parents: dict[str, str]
    metres_per_unit: float
    angle_unit: str
    root_order: tuple[str, ...]
    root_axis_order: str
    root_position: np.ndarray
    root_orientation: np.ndarray
    source: str

    @property
    def joint_names(self) -> tuple[str, ...]:
        """``('root', *bone names in file order)``."""
        return ("root",) + tuple(b.name for b in self.bones)

    @property
    def joint_parents(self) -> tuple[int, ...]:
        """Parent index of every joint of :attr:`joint_names` (-1 for the root)."""
        names = self.joint_names
        return (-1,) + tuple(names.index(self.bone_parents[b.name]) for b in self.bones)

    @property
    def skeleton(self) -> Skeleton | None:
        """:data:`CMU31` when the joints are exactly the CMU skeleton's, else None."""
        if self.joint_names == CMU31.joint_names and self.joint_parents == CMU31.parents:
            return CMU31
        return None

    def bone(self, name: str) -> AsfBone:
        """The bone called ``name``."""
        for b in self.bones:
            if b.name == name:
                return b
        raise KeyError(f"{self.source}: no bone {name!r}")

    def rest_positions(self) -> np.ndarray:
        """(J, 3) metres: the pose with every AMC value zero."""
        zeros = {b.name: np.zeros((1, len(b.dofs))) for b in self.bones}
        return forward_kinematics(self, np.zeros((1, len(self.root_order))), zeros)[0]


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as e:
        raise MocapFormatError(f"{path}: cannot read: {e}") from e
    return text.splitlines()  # handles LF and CRLF


def _floats(tokens: list[str], n: int, path: Path, lineno: int, what: str) -> np.ndarray:
    if len(tokens) < n:
        raise MocapFormatError(f"{path}:{lineno}: {what}: expected {n} numbers, got {tokens}")
    try:
        return np.array([float(t) for t in tokens[:n]])
    except ValueError:
        raise MocapFormatError(f"{path}:{lineno}: {what}: non-numeric value in {tokens[:n]}") from None


def load_asf(path: str | Path) -> AsfSkeleton:
    """Parse an ASF skeleton file.

    Raises:
        MocapFormatError: malformed content (message names the file and line).
    """
    path = Path(path)
    lines = _read_lines(path)
    name = ""
    length_div, angle_unit = 1.0, "deg"
    root_order: tuple[str, ...] = ("TX", "TY", "TZ", "RX", "RY", "RZ")
    root_axis, root_pos, root_ori = "XYZ", np.zeros(3), np.zeros(3)
    raw_bones: list[tuple[dict, int]] = []
    parents: dict[str, str] = {}
    section = ""
    cur: dict | None = None
    last_key = ""
    for lineno, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        toks = line.split()
        if toks[0].startswith(":"):
            section = toks[0].lower()
            if section == ":name" and len(toks) > 1:
                name = toks[1]
            if section == ":bonedata" and cur is not None:
                raise MocapFormatError(f"{path}:{lineno}: new section inside an unfinished bone block")
            continue
        key = toks[0].lower()
        if section == ":units":
            if key == "length":
                length_div = float(_floats(toks[1:], 1, path, lineno, "units length")[0])
                if length_div <= 0:
                    raise MocapFormatError(
                        f"{path}:{lineno}: units length must be positive, got {length_div}"
                    )
            elif key == "angle":
                if len(toks) < 2 or toks[1].lower() not in ("deg", "rad"):
                    raise MocapFormatError(
                        f"{path}:{lineno}: units angle must be 'deg' or 'rad', got {toks[1:]}"
                    )
                angle_unit = toks[1].lower()
        elif section == ":root":
            if key == "order":
                root_order = tuple(t.upper() for t in toks[1:])
                bad = [t for t in root_order if t not in ("TX", "TY", "TZ", "RX", "RY", "RZ")]
                if bad or len(set(root_order)) != len(root_order):
                    raise MocapFormatError(
                        f"{path}:{lineno}: invalid root order {toks[1:]}: expected distinct channels from "
                        "TX TY TZ RX RY RZ"
                    )
            elif key == "axis":
                if len(toks) < 2 or sorted(toks[1].upper()) != ["X", "Y", "Z"]:
                    raise MocapFormatError(
                        f"{path}:{lineno}: invalid root axis order {toks[1:]}: expected a permutation "
                        "of XYZ, e.g. 'axis XYZ'"
                    )
                root_axis = toks[1].upper()
            elif key == "position":
                root_pos = _floats(toks[1:], 3, path, lineno, "root position")
            elif key == "orientation":
                root_ori = _floats(toks[1:], 3, path, lineno, "root orientation")
        elif section == ":bonedata":
            if key == "begin":
                if cur is not None:
                    raise MocapFormatError(f"{path}:{lineno}: 'begin' inside an unfinished bone block")
                cur, start = {"limits": []}, lineno
            elif key == "end":
                if cur is None:
                    raise MocapFormatError(f"{path}:{lineno}: 'end' without 'begin'")
                raw_bones.append((cur, start))
                cur = None
            elif cur is None:
                raise MocapFormatError(f"{path}:{lineno}: bone data outside a begin/end block: {line!r}")
            elif key == "id":
                cur["id"] = int(_floats(toks[1:], 1, path, lineno, "id")[0])
            elif key == "name":
                if len(toks) < 2:
                    raise MocapFormatError(f"{path}:{lineno}: bone name missing")
                cur["name"] = toks[1]
            elif key == "direction":
                cur["direction"] = _floats(toks[1:], 3, path, lineno, "direction")
            elif key == "length":
                cur["length"] = float(_floats(toks[1:], 1, path, lineno, "length")[0])
            elif key == "axis":
                cur["axis"] = _floats(toks[1:], 3, path, lineno, "axis")
                order = toks[4].upper() if len(toks) > 4 else ""
                if sorted(order) != ["X", "Y", "Z"]:
                    raise MocapFormatError(
                        f"{path}:{lineno}: axis order must be a permutation of XYZ, got {order!r}"
                    )
                cur["axis_order"] = order
            elif key == "dof":
                dofs = tuple(t.lower() for t in toks[1:])
                bad = [d for d in dofs if d not in ("rx", "ry", "rz")]
                if bad:
                    raise MocapFormatError(
                        f"{path}:{lineno}: unsupported dof {bad} (this reader supports rx, ry, rz)"
                    )
                cur["dofs"] = dofs
            elif key == "limits" or (key.startswith("(") and last_key == "limits"):
                pairs = _LIMIT_RE.findall(line)
                if not pairs:
                    raise MocapFormatError(f"{path}:{lineno}: malformed limits {line!r}")
                try:
                    cur["limits"].extend((float(a), float(b)) for a, b in pairs)
                except ValueError:
                    raise MocapFormatError(f"{path}:{lineno}: non-numeric limits {line!r}") from None
                key = "limits"
            # other keys (bodymass, cofmass) carry nothing the FK needs
            last_key = key
        elif section == ":hierarchy":
            if key in ("begin", "end"):
                continue
            for child in toks[1:]:
                if child in parents:
                    raise MocapFormatError(f"{path}:{lineno}: bone {child!r} has two parents")
                parents[child] = toks[0]
    if cur is not None:
        raise MocapFormatError(f"{path}: end of file inside a bone block (truncated?)")
    if not raw_bones:
        raise MocapFormatError(f"{path}: no :bonedata bones found")

    scale = {"deg": np.pi / 180.0, "rad": 1.0}[angle_unit]
    bones = []
    for b, start in raw_bones:
        for req in ("name", "direction", "length"):
            if req not in b:
                raise MocapFormatError(f"{path}:{start}: bone block has no {req!r}")
        d = b["direction"]
        norm = float(np.linalg.norm(d))
        if norm == 0.0 and b["length"] != 0.0:
            raise MocapFormatError(f"{path}:{start}: bone {b['name']!r} has a zero direction")
        dofs = b.get("dofs", ())
        if b["limits"] and len(b["limits"]) != len(dofs):
            raise MocapFormatError(
                f"{path}:{start}: bone {b['name']!r}: {len(b['limits'])} limits for dofs {dofs}"
            )
        bones.append(
            AsfBone(
                name=b["name"],
                id=b.get("id", len(bones) + 1),
                direction=d / norm if norm else d,
                length=b["length"],
                axis=b.get("axis", np.zeros(3)) * scale,
                axis_order=b.get("axis_order", "XYZ"),
                dofs=dofs,
                limits=tuple(b["limits"]),
            )
        )
    names = [b.name for b in bones]
    if len(set(names)) != len(names) or "root" in names:
        raise MocapFormatError(f"{path}: duplicate bone names or a bone called 'root': {names}")
    for n in names:
        if n not in parents:
            raise MocapFormatError(f"{path}: bone {n!r} does not appear in :hierarchy")
    for child, par in parents.items():
        if child not in names:
            raise MocapFormatError(f"{path}: :hierarchy names unknown bone {child!r}")
        if par != "root" and par not in names:
            raise MocapFormatError(f"{path}: :hierarchy names unknown parent {par!r}")
    for n in names:  # reachability from the root (no cycles)
        k, steps = n, 0
        while k != "root":
            k, steps = parents[k], steps + 1
            if steps > len(names):
                raise MocapFormatError(f"{path}: :hierarchy has a cycle through {n!r}")
    return AsfSkeleton(
        name=name,
        bones=tuple(bones),
        bone_parents=parents,
        metres_per_unit=_METRES_PER_INCH / length_div,
        angle_unit=angle_unit,
        root_order=root_order,
        root_axis_order=root_axis,
        root_position=root_pos,
        root_orientation=root_ori * scale,
        source=str(path),
    )


def _topological(asf: AsfSkeleton) -> list[int]:
    """Bone indices ordered so that every parent precedes its children."""
    done = {"root"}
    order: list[int] = []
    while len(order) < len(asf.bones):
        for i, b in enumerate(asf.bones):
            if b.name not in done and asf.bone_parents[b.name] in done:
                done.add(b.name)
                order.append(i)
    return order


def forward_kinematics(
    asf: AsfSkeleton, root_values: np.ndarray, dof_values: Mapping[str, np.ndarray]
) -> np.ndarray:
    """Acclaim forward kinematics, vectorised over frames (convention in the module docstring).

    Args:
        asf: the skeleton.
        root_values: (T, len(asf.root_order)) root channels in ``root_order``; translations in ASF length
            units, rotations in radians.
        dof_values: bone name -> (T, len(bone.dofs)) radians, for every bone with dofs.
    Returns:
        (T, 1 + num_bones, 3) float64 metres: the root position, then each bone's distal end (ASF order).
    """
    root_values = np.asarray(root_values, dtype=np.float64)
    if root_values.ndim != 2 or root_values.shape[1] != len(asf.root_order):
        raise ValueError(f"root_values: expected shape (T, {len(asf.root_order)}), got {root_values.shape}")
    t = root_values.shape[0]
    s = asf.metres_per_unit
    trans = np.zeros((t, 3))
    rot_axes, rot_cols = "", []
    for c, ch in enumerate(asf.root_order):
        if ch[0] == "T":
            trans[:, "XYZ".index(ch[1])] = root_values[:, c]
        else:
            rot_axes += ch[1].lower()
            rot_cols.append(c)
    c_root = euler_matrix(asf.root_axis_order, asf.root_orientation)
    m_root = euler_matrix(rot_axes, root_values[:, rot_cols]) if rot_axes else np.eye(3)
    rot = {"root": np.broadcast_to(c_root @ m_root, (t, 3, 3))}
    pos = {"root": (asf.root_position + trans) * s}
    for i in _topological(asf):
        b = asf.bones[i]
        par = asf.bone_parents[b.name]
        if b.dofs:
            vals = np.asarray(dof_values[b.name], dtype=np.float64)
            if vals.shape != (t, len(b.dofs)):
                raise ValueError(
                    f"dof_values[{b.name!r}]: expected shape ({t}, {len(b.dofs)}), got {vals.shape}"
                )
            c = euler_matrix(b.axis_order, b.axis)
            local = c @ euler_matrix("".join(d[1] for d in b.dofs), vals) @ c.T
            rot[b.name] = rot[par] @ local
        else:
            rot[b.name] = rot[par]
        pos[b.name] = pos[par] + rot[b.name] @ (b.direction * (b.length * s))
    return np.stack([pos[n] for n in asf.joint_names], axis=1)


def _bad_rows(values: np.ndarray) -> np.ndarray:
    """Indices of the rows (frames) of ``values`` (T, n) holding a non-finite value."""
    return np.flatnonzero(~np.isfinite(values).all(axis=1))


def load_amc(
    path: str | Path, asf: AsfSkeleton | str | Path, *, fps: float = CMU_FPS, max_frames: int | None = None
) -> Motion:
    """Read an AMC motion and compute joint positions.

    Args:
        path: the .amc file.
        asf: the parsed skeleton or the path of its .asf file.
        fps: frame rate to record (AMC stores none; CMU's nominal rate is 120).
        max_frames: read only the first ``max_frames`` frames (None = all).
    Returns:
        :class:`Motion` with positions (T, 1 + num_bones, 3) metres (root, then each bone's distal end in ASF
        order), skeleton :data:`CMU31` for CMU files.
    Raises:
        MocapFormatError: malformed or truncated data (names the file and line / frame): a bone missing from
            a frame, a wrong number of values, a non-numeric value, a bone not in the ASF, broken frame
            numbering.
    """
    path = Path(path)
    if not isinstance(asf, AsfSkeleton):
        asf = load_asf(asf)
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames: expected a positive integer or None, got {max_frames}")
    lines = _read_lines(path)
    degrees = asf.angle_unit == "deg"
    start = len(lines)
    for i, raw in enumerate(lines):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith(":"):
            if s.upper().startswith(":DEGREES"):
                degrees = True
            elif s.upper().startswith(":RADIANS"):
                degrees = False
            continue
        start = i
        break

    bone_dofs = {b.name: len(b.dofs) for b in asf.bones}
    bone_dofs["root"] = len(asf.root_order)
    frames: list[tuple[int, int, dict[str, tuple[list[str], int]]]] = []
    cur: dict[str, tuple[list[str], int]] | None = None
    for k in range(start, len(lines)):
        toks = lines[k].split()
        if not toks or toks[0].startswith("#"):
            continue
        if len(toks) == 1 and toks[0].isdigit():
            if max_frames is not None and len(frames) == max_frames:
                break
            cur = {}
            frames.append((int(toks[0]), k + 1, cur))
            continue
        if cur is None:
            raise MocapFormatError(f"{path}:{k + 1}: expected a frame number, got {lines[k].strip()!r}")
        name = toks[0]
        if name not in bone_dofs:
            raise MocapFormatError(
                f"{path}:{k + 1}: frame {frames[-1][0]}: bone {name!r} is not in the ASF {asf.source}"
            )
        if name in cur:
            raise MocapFormatError(f"{path}:{k + 1}: frame {frames[-1][0]}: bone {name!r} appears twice")
        if len(toks) - 1 != bone_dofs[name]:
            raise MocapFormatError(
                f"{path}:{k + 1}: frame {frames[-1][0]}: bone {name!r} has {len(toks) - 1} "
                f"values, expected {bone_dofs[name]}"
            )
        cur[name] = (toks, k + 1)
    if not frames:
        raise MocapFormatError(f"{path}: no frames")

    first_no, first_line, first = frames[0]
    if "root" not in first:
        raise MocapFormatError(f"{path}:{first_line}: frame {first_no} has no 'root' line")
    expected = set(first)
    for n, (no, line, fr) in enumerate(frames):
        if no != first_no + n:
            raise MocapFormatError(
                f"{path}:{line}: frame number {no} follows {frames[n - 1][0]} (expected {first_no + n})"
            )
        if len(fr) != len(expected) or fr.keys() != expected:
            missing = sorted(expected - fr.keys())
            extra = sorted(fr.keys() - expected)
            raise MocapFormatError(
                f"{path}:{line}: frame {no} is missing bones {missing}"
                + (f" and has extra bones {extra}" if extra else "")
                + " (truncated?)"
            )

    to_rad = np.pi / 180.0 if degrees else 1.0

    def column(name: str) -> np.ndarray:
        try:
            return np.array([fr[name][0][1:] for _, _, fr in frames], dtype=np.float64)
        except ValueError:
            for no, _, fr in frames:
                toks, line = fr[name]
                try:
                    [float(v) for v in toks[1:]]
                except ValueError:
                    raise MocapFormatError(
                        f"{path}:{line}: frame {no}: non-numeric value in {toks}"
                    ) from None
            raise

    root = column("root")
    rot_cols = [c for c, ch in enumerate(asf.root_order) if ch[0] == "R"]
    root[:, rot_cols] *= to_rad
    dofs: dict[str, np.ndarray] = {}
    for b in asf.bones:
        if not b.dofs:
            continue
        dofs[b.name] = column(b.name) * to_rad if b.name in expected else np.zeros((len(frames), len(b.dofs)))
    hits = [(int(rows[0]), n) for n, v in {"root": root, **dofs}.items() if len(rows := _bad_rows(v))]
    if hits:
        k, name = min(hits)
        no, _, fr = frames[k]
        toks, line = fr[name]
        raise MocapFormatError(
            f"{path}:{line}: frame {no}: bone {name!r} has a non-finite value in {toks}: every AMC value "
            "must be a finite number"
        )
    positions = forward_kinematics(asf, root, dofs)
    if not np.all(np.isfinite(positions)):
        no, line, _ = frames[int(np.argwhere(~np.isfinite(positions))[0, 0])]
        raise MocapFormatError(
            f"{path}:{line}: frame {no}: the values make a joint position non-finite (overflow); check the "
            "frame's values and the ASF's units"
        )
    return Motion(positions, fps, asf.joint_names, asf.joint_parents, asf.skeleton, str(path))
