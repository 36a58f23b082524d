"""BVH (Biovision hierarchy) reader with forward kinematics.

Format: ``HIERARCHY`` then a ``ROOT`` / ``JOINT`` tree of ``{ ... }`` blocks, each with ``OFFSET x y z``
(relative to the parent joint, in the parent's frame) and ``CHANNELS n c1 .. cn`` (any of ``Xposition
Yposition Zposition Xrotation Yrotation Zrotation``, in any order); a leaf may hold an ``End Site`` block with
an ``OFFSET`` only. Then ``MOTION``, ``Frames: N``, ``Frame Time: dt`` and N lines of channel values in
hierarchy (depth-first) order. Angles are degrees.

Forward kinematics (the BVH convention): a joint's local rotation is the product of its rotation channels in
the order listed, ``R = R_c1 @ R_c2 @ R_c3`` (intrinsic rotations; e.g. ``Zrotation Xrotation Yrotation`` is
``Rz @ Rx @ Ry`` for column vectors). Position channels add to the joint's OFFSET. Global rotation
``G = G_parent @ R``; joint position ``p = p_parent + G_parent @ (offset + translation)``.

Units: positions are file units times a metres-per-unit factor chosen by ``units``:
``'m'`` (1), ``'cm'`` (0.01), ``'mm'`` (0.001), ``'inches'`` (0.0254), ``'asf'`` (0.0254 / 0.45 = 0.056444,
the Acclaim length unit of CMU-derived BVH files such as /work/shared/data/cmu_mocap/bvh), a float (metres per
unit), or ``'auto'``: the unit among those five that makes the rest pose's largest extent (the height of a
standing figure, incl. end sites) closest to 1.7 m on a log scale. ``'auto'`` is a heuristic: it is right for
adult-size figures in these units (it picks ``'asf'`` for the CMU BVH files); pass the unit when known.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mvlift.data.asf_amc import _axis_rotation
from mvlift.data.motion import MocapFormatError, Motion

__all__ = ["BvhJoint", "BvhHierarchy", "load_bvh", "UNITS"]

UNITS: dict[str, float] = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inches": 0.0254, "asf": 0.0254 / 0.45}
"""Metres per file unit for the named ``units`` choices of :func:`load_bvh`."""

_CHANNELS = ("Xposition", "Yposition", "Zposition", "Xrotation", "Yrotation", "Zrotation")
_TYPICAL_HEIGHT_M = 1.7


@dataclass(frozen=True)
class BvhJoint:
    """One BVH joint (or end site).

    Attributes:
        name: joint name; end sites are named ``<parent>_end``.
        parent: index of the parent in :attr:`BvhHierarchy.joints` (-1 for the root).
        offset: (3,) file units.
        channels: channel names in file order (empty for end sites).
        first_channel: column of the first channel in a MOTION line.
        end_site: True for an ``End Site``.
    """

    name: str
    parent: int
    offset: np.ndarray
    channels: tuple[str, ...]
    first_channel: int
    end_site: bool


@dataclass(frozen=True)
class BvhHierarchy:
    """The parsed HIERARCHY: joints and end sites in depth-first file order."""

    joints: tuple[BvhJoint, ...]
    num_channels: int

    def rest_positions(self) -> np.ndarray:
        """(N, 3) file units: every joint and end site with all channels zero."""
        return _fk(self, np.zeros((1, self.num_channels)))[0]


def _fk(h: BvhHierarchy, values: np.ndarray) -> np.ndarray:
    """Positions (T, N, 3) in file units of every joint and end site for channel values (T, C)."""
    t = values.shape[0]
    n = len(h.joints)
    pos = np.zeros((t, n, 3))
    rot = np.zeros((t, n, 3, 3))
    for i, j in enumerate(h.joints):
        local_t = np.broadcast_to(j.offset, (t, 3)).copy()
        local_r = None
        for k, ch in enumerate(j.channels):
            v = values[:, j.first_channel + k]
            axis = ch[0].lower()
            if ch.endswith("position"):
                local_t[:, "xyz".index(axis)] += v
            else:
                r = _axis_rotation(axis, np.deg2rad(v))
                local_r = r if local_r is None else local_r @ r
        if j.parent < 0:
            pos[:, i] = local_t
            rot[:, i] = np.eye(3) if local_r is None else local_r
        else:
            pr = rot[:, j.parent]
            pos[:, i] = pos[:, j.parent] + np.einsum("tij,tj->ti", pr, local_t)
            rot[:, i] = pr if local_r is None else pr @ local_r
    return pos


def _parse_hierarchy(lines: list[str], path: Path) -> tuple[BvhHierarchy, int]:
    """Parse HIERARCHY; returns the hierarchy and the index of the MOTION line."""
    tokens: list[tuple[str, int]] = []
    motion_at = None
    for i, raw in enumerate(lines):
        toks = raw.split()
        if toks and toks[0] == "MOTION":
            motion_at = i
            break
        tokens.extend((t, i + 1) for t in toks)
    if motion_at is None:
        raise MocapFormatError(f"{path}: no MOTION section (truncated?)")
    if not tokens or tokens[0][0] != "HIERARCHY":
        raise MocapFormatError(f"{path}:1: file does not start with HIERARCHY")

    joints: list[BvhJoint] = []
    pos = 1
    ncols = 0

    def take(expect: str | None = None) -> tuple[str, int]:
        nonlocal pos
        if pos >= len(tokens):
            raise MocapFormatError(f"{path}:{motion_at + 1}: hierarchy ends early (unbalanced braces?)")
        tok = tokens[pos]
        pos += 1
        if expect is not None and tok[0] != expect:
            raise MocapFormatError(f"{path}:{tok[1]}: expected {expect!r}, got {tok[0]!r}")
        return tok

    def numbers(k: int) -> np.ndarray:
        vals = [take() for _ in range(k)]
        try:
            return np.array([float(v) for v, _ in vals])
        except ValueError:
            raise MocapFormatError(
                f"{path}:{vals[0][1]}: expected {k} numbers, got {[v for v, _ in vals]}"
            ) from None

    def joint(name: str, parent: int, end_site: bool) -> None:
        nonlocal ncols
        take("{")
        tok, line = take("OFFSET")
        offset = numbers(3)
        channels: tuple[str, ...] = ()
        if not end_site:
            tok, line = take("CHANNELS")
            cnt, cline = take()
            if not cnt.isdigit():
                raise MocapFormatError(f"{path}:{cline}: CHANNELS count must be an integer, got {cnt!r}")
            channels = tuple(take()[0] for _ in range(int(cnt)))
            bad = [c for c in channels if c not in _CHANNELS]
            if bad or len(set(channels)) != len(channels):
                what = f"unknown {bad}" if bad else "a repeated name"
                raise MocapFormatError(
                    f"{path}:{cline}: invalid CHANNELS {channels} ({what}): expected distinct names from "
                    f"{_CHANNELS}"
                )
        idx = len(joints)
        joints.append(BvhJoint(name, parent, offset, channels, ncols, end_site))
        ncols += len(channels)
        while True:
            tok, line = take()
            if tok == "}":
                return
            if tok == "JOINT" and not end_site:
                child, _ = take()
                joint(child, idx, False)
            elif tok == "End" and not end_site:
                take("Site")
                joint(f"{name}_end", idx, True)
            else:
                raise MocapFormatError(f"{path}:{line}: unexpected {tok!r} in joint {name!r}")

    take("ROOT")
    root_name, _ = take()
    joint(root_name, -1, False)
    if pos != len(tokens):
        raise MocapFormatError(f"{path}:{tokens[pos][1]}: unexpected {tokens[pos][0]!r} after the hierarchy")
    names = [j.name for j in joints]
    if len(set(names)) != len(names):
        raise MocapFormatError(f"{path}: duplicate joint names in the hierarchy")
    return BvhHierarchy(tuple(joints), ncols), motion_at


def _unit_scale(units: str | float, rest: np.ndarray) -> float:
    if not isinstance(units, str):
        scale = float(units)
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"units: expected a positive metres-per-unit factor, got {units}")
        return scale
    if units == "auto":
        extent = float((rest.max(0) - rest.min(0)).max())
        if extent <= 0:
            raise ValueError(
                "units='auto': the rest pose (the OFFSETs) has zero extent, so the unit cannot be guessed; "
                f"pass units= one of {sorted(UNITS)} or a metres-per-unit float"
            )
        return min(UNITS.values(), key=lambda s: abs(np.log(extent * s / _TYPICAL_HEIGHT_M)))
    try:
        return UNITS[units]
    except KeyError:
        raise ValueError(
            f"units: expected one of {sorted(UNITS)}, 'auto' or a float, got {units!r}"
        ) from None


def load_bvh(
    path: str | Path, *, units: str | float = "auto", end_sites: bool = False, max_frames: int | None = None
) -> Motion:
    """Read a BVH file and compute joint positions.

    Args:
        path: the .bvh file.
        units: file units (see the module docstring); ``'auto'`` guesses from the rest pose.
        end_sites: also return the end sites (named ``<parent>_end``), after the joints they follow in
            depth-first order.
        max_frames: read only the first ``max_frames`` frames (None = all).
    Returns:
        :class:`Motion`: positions (T, J, 3) metres in the file's world frame, fps = 1 / Frame Time (rounded
        to the nearest integer when within 0.01 %, e.g. 0.0083333 -> 120), the file's joint names and
        parents; ``skeleton`` None.
    Raises:
        MocapFormatError: malformed or truncated file (names the file and line).
    """
    path = Path(path)
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames: expected a positive integer or None, got {max_frames}")
    try:
        lines = path.read_text(encoding="latin-1").splitlines()
    except OSError as e:
        raise MocapFormatError(f"{path}: cannot read: {e}") from e
    hier, m = _parse_hierarchy(lines, path)

    def header(i: int, key: str) -> tuple[str, int]:
        while i < len(lines) and not lines[i].strip():
            i += 1
        if i >= len(lines) or not lines[i].strip().startswith(key):
            raise MocapFormatError(f"{path}:{i + 1}: expected {key!r} (truncated?)")
        return lines[i].strip()[len(key) :].strip(), i

    frames_s, i = header(m + 1, "Frames:")
    ft_s, i = header(i + 1, "Frame Time:")
    try:
        n_frames, frame_time = int(frames_s), float(ft_s)
    except ValueError:
        raise MocapFormatError(
            f"{path}:{i + 1}: bad Frames / Frame Time values {frames_s!r}, {ft_s!r}"
        ) from None
    if n_frames < 1 or not frame_time > 0:
        raise MocapFormatError(
            f"{path}:{i + 1}: need Frames >= 1 and Frame Time > 0, got {n_frames}, {frame_time}"
        )
    data = [(k + 1, ln) for k, ln in enumerate(lines[i + 1 :], start=i + 1) if ln.strip()]
    if len(data) < n_frames:
        last = data[-1][0] if data else i + 1
        raise MocapFormatError(
            f"{path}:{last}: file declares {n_frames} frames but has {len(data)} (truncated)"
        )
    if len(data) > n_frames:
        raise MocapFormatError(f"{path}:{data[n_frames][0]}: more frame lines than the declared {n_frames}")
    if max_frames is not None:
        data = data[:max_frames]
    rows = [ln.split() for _, ln in data]
    for (lineno, _), r in zip(data, rows, strict=True):
        if len(r) != hier.num_channels:
            raise MocapFormatError(
                f"{path}:{lineno}: {len(r)} values, expected {hier.num_channels} (truncated?)"
            )
    try:
        values = np.array(rows, dtype=np.float64)
    except ValueError:
        for (lineno, _), r in zip(data, rows, strict=True):
            for c, v in enumerate(r):
                try:
                    float(v)
                except ValueError:
                    raise MocapFormatError(
                        f"{path}:{lineno}: non-numeric value {v!r} in channel {c} of {len(r)}: "
                        "expected a number"
                    ) from None
        raise
    if not np.all(np.isfinite(values)):
        f, c = (int(i) for i in np.argwhere(~np.isfinite(values))[0])
        raise MocapFormatError(
            f"{path}:{data[f][0]}: non-finite value {values[f, c]} in channel {c} of frame {f}: every "
            "channel must be a finite number"
        )

    scale = _unit_scale(units, hier.rest_positions())
    pos = _fk(hier, values) * scale
    keep = [k for k, j in enumerate(hier.joints) if end_sites or not j.end_site]
    remap = {old: new for new, old in enumerate(keep)}
    names = tuple(hier.joints[k].name for k in keep)
    parents = tuple(remap[hier.joints[k].parent] if hier.joints[k].parent >= 0 else -1 for k in keep)
    fps = 1.0 / frame_time
    if abs(fps - round(fps)) < 1e-4 * fps:  # Frame Time written with few digits, e.g. .0083333 -> 120
        fps = float(round(fps))
    return Motion(pos[:, keep], fps, names, parents, None, str(path))
