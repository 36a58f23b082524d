"""Procedural human-object motion: a BODY14 human carrying, lifting or swinging a rigid object.

The human-object analogue of :mod:`mvlift.data.procedural` (the paper's OMOMO setting adds object keypoints
to the body joints, METHOD.md). Everything is in the world frame of docs/conventions.md (Y up, metres, floor
y = 0), fully determined by ``seed``, and labelled as synthetic: ``Motion.source =
'synthetic:procedural-object:<kind>:seed=<n>'``.

The joint set :data:`BODY14_OBJECT5`
------------------------------------
The 14 BODY14 joints, then 5 keypoints of a rigid box with half-extents ``(a, b, c)`` (metres) along the
axes ``(x, y, z)`` of its own frame: ``object_center`` = the box centre ``(0, 0, 0)``, and the four corners
of its *top face* (``+y``): ``object_front_left`` ``(+a, +b, +c)``, ``object_front_right`` ``(-a, +b, +c)``,
``object_back_left`` ``(+a, +b, -c)``, ``object_back_right`` ``(-a, +b, -c)``. For 'carry' and 'lift' the
box frame is upright and faces like the person: ``x`` = the person's left, ``y`` = up, ``z`` = forward
(away from the chest), so the names read as the carrier sees the box. ``object_center`` hangs from the right
wrist in the kinematic tree and the corners from the centre; root = hips midpoint, like BODY14. The
corner-to-centre distances are constant in every clip; the centre-to-wrist link is constant while the
object is held in the hand ('carry', 'swing') but not in 'lift', where the object rests on the floor
between lifts.

Grip points: where a holding hand's *wrist joint* sits, fixed in the box frame. For the two-handed kinds
the wrists hold the two side faces near their top edge: ``(+-(a + g), b - e, 0)`` with ``g`` = 3.5 cm and
``e`` = 4 cm (both scaled by body height / 1.75 m); index 0 = the left hand, 1 = the right hand.

Kinds
-----
- ``'carry'``: the procedural walk (straight or curved, :func:`mvlift.data.procedural.generate`) at a
  carrying speed (0.6-1.2 m/s), with the box held in front of the belly in both hands. The box's pose
  follows the chest (centre at a fixed offset in the chest frame; yaw = the chest's horizontal facing;
  always upright); the arms are re-posed with analytic two-bone inverse kinematics from the unchanged
  shoulders to the grip points.
- ``'lift'``: the person stands with feet planted in front of a box on the floor and repeats a cycle:
  stand, squat and lean down while the hands reach the grips, grasp, rise with the box, hold it in front
  (turning the torso a little), squat and put it down on the same spot, release, rise with the arms
  returning to a relaxed hang. The box moves between its floor pose and the held pose (the carry pose)
  with the squat; between lifts it rests on the floor (bottom face at y = 0) and does not move. The squat
  depth and lean are chosen so both wrists reach the floor grips.
- ``'swing'``: the procedural dance (large arm swings, steps on a beat) with a light hand-held object
  (baton/bottle-like box, long axis = ``y``) in the right fist. The object frame rides on the right
  forearm: ``x`` = elbow-to-wrist direction, ``z`` = the elbow's hinge axis (upper arm x forearm),
  ``y = z x x``; its centre is ``h`` = 5% of body height beyond the wrist along ``x`` (the fist), so the
  right grip point is ``(-h, 0, 0)``; the left hand holds nothing.

Every body bone keeps an exactly constant length: the body comes from the procedural human generator (or
its assembly helper for 'lift') and re-posed arms come from two-bone IK with the segment lengths.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mvlift.data import procedural as _proc
from mvlift.data.motion import Motion
from mvlift.data.procedural import HumanBody
from mvlift.data.skeletons import BODY14, Skeleton, register_mapping

__all__ = [
    "BODY14_OBJECT5",
    "OBJECT_JOINTS",
    "OBJECT_KINDS",
    "ProceduralObjectMotion",
    "generate_object",
    "random_object_motion",
]

OBJECT_KINDS = ("carry", "lift", "swing")
OBJECT_JOINTS = (
    "object_center",
    "object_front_left",
    "object_front_right",
    "object_back_left",
    "object_back_right",
)

_NECK, _RSHO, _RELB, _RWRI, _LSHO, _LELB, _LWRI = (
    BODY14.index(n)
    for n in (
        "neck",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
    )
)
_RHIP, _LHIP, _RANK, _LANK = (BODY14.index(n) for n in ("right_hip", "left_hip", "right_ankle", "left_ankle"))
_OBJ = BODY14.num_joints  # index of object_center

BODY14_OBJECT5 = Skeleton(
    "body14_object5",
    BODY14.joint_names + OBJECT_JOINTS,
    BODY14.parents + (_RWRI, _OBJ, _OBJ, _OBJ, _OBJ),
    BODY14.root,
)
"""BODY14 + 5 object keypoints (box centre, then the top face's front-left, front-right, back-left and
back-right corners; see the module docstring). ``object_center`` is parented to ``right_wrist``, the
corners to ``object_center``; root = hips midpoint."""

register_mapping(BODY14_OBJECT5, BODY14, {n: n for n in BODY14.joint_names})

# Box corners of the 5 keypoints in units of the half-extents (a, b, c).
_CORNERS = np.array([[0, 0, 0], [1, 1, 1], [-1, 1, 1], [1, 1, -1], [-1, 1, -1]], dtype=np.float64)


@dataclass
class ProceduralObjectMotion:
    """A generated human-object clip with its ground-truth annotations.

    Attributes:
        motion: the :class:`Motion` (T, 19, 3) on :data:`BODY14_OBJECT5`, Y up, metres.
        contacts: (T, 2) bool, True while the left / right ankle is planted.
        foot_joints: the ankle joint indices (left, right).
        foot_height: height of a planted ankle above the floor, metres.
        held: (T, 2) bool, True while the left / right wrist is on its grip point (the hand holds the
            object).
        grips: (T, 2, 3) world positions of the left / right grip points on the object (NaN for a hand that
            has no grip on this object, e.g. the left hand in 'swing').
        on_floor: (T,) bool, True while the object rests on the floor (bottom face at y = 0, not moving).
        half_extents: (3,) the box's half-extents (a, b, c) in metres.
        grip_local: (2, 3) the grip points in the box frame (NaN row for a hand without a grip).
        params: the parameters used (kind, body height, object size, timings, ...), for reproducibility.
    """

    motion: Motion
    contacts: np.ndarray
    foot_joints: tuple[int, ...]
    foot_height: float
    held: np.ndarray
    grips: np.ndarray
    on_floor: np.ndarray
    half_extents: np.ndarray
    grip_local: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- geometry
def _chest_frame(pos: np.ndarray) -> np.ndarray:
    """(T, 3, 3) chest rotation from BODY14 positions (T, J, 3): columns = left, up, forward.

    left = right-to-left shoulder, up = hips midpoint to neck (orthogonalised), forward = left x up."""
    left = _proc._unit(pos[:, _LSHO] - pos[:, _RSHO])
    up_raw = pos[:, _NECK] - 0.5 * (pos[:, _LHIP] + pos[:, _RHIP])
    fwd = _proc._unit(np.cross(left, up_raw))
    up = np.cross(fwd, left)
    return np.stack([left, up, fwd], -1)


def _yaw_of(R: np.ndarray) -> np.ndarray:
    """Heading (radians, 0 = +Z, counter-clockwise from above) of the forward column of R (T, 3, 3)."""
    fwd = R[:, :, 2]
    return np.arctan2(fwd[:, 0], fwd[:, 2])


def _object_points(centre: np.ndarray, R: np.ndarray, half: np.ndarray) -> np.ndarray:
    """The 5 object keypoints (T, 5, 3) of a box with centre (T, 3), rotation (T, 3, 3), half-extents (3,)."""
    return centre[:, None, :] + np.einsum("tij,kj->tki", R, _CORNERS * half)


def _grip_world(centre: np.ndarray, R: np.ndarray, grip_local: np.ndarray) -> np.ndarray:
    """(T, 2, 3) world grip points from the box pose and the (2, 3) local grips."""
    return centre[:, None, :] + np.einsum("tij,kj->tki", R, grip_local)


def _box(rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A carried box: half-extents (3,) and the two side grips (2, 3), scaled by ``scale`` = height / 1.75."""
    half = np.array([rng.uniform(0.14, 0.20), rng.uniform(0.12, 0.18), rng.uniform(0.10, 0.16)]) * scale
    g, e = 0.035 * scale, 0.04 * scale
    grip = np.array([[half[0] + g, half[1] - e, 0.0], [-(half[0] + g), half[1] - e, 0.0]])
    return half, grip


@dataclass(frozen=True)
class _Arms:
    """What holding needs of a body (metres): its height, shoulder width and arm segment lengths."""

    height: float
    shoulder_width: float
    upper_arm: float
    forearm: float

    @classmethod
    def measure(cls, height: float, pos: np.ndarray) -> _Arms:
        """Measured on the first frame of BODY14 positions (T, J, 3) of a body of ``height`` metres."""
        d = np.linalg.norm
        return cls(
            height=float(height),
            shoulder_width=float(d(pos[0, _LSHO] - pos[0, _RSHO])),
            upper_arm=float(d(pos[0, _RELB] - pos[0, _RSHO])),
            forearm=float(d(pos[0, _RWRI] - pos[0, _RELB])),
        )


def _held_offset(body: _Arms, half: np.ndarray, grip: np.ndarray, ratio: float) -> np.ndarray:
    """Box centre in the chest frame (left, up, forward; from the neck) for holding it in front of the belly.

    The box's back face sits a chest depth (6.5% of height) plus 2 cm in front of the shoulder line; its
    height puts each grip at ``ratio`` x arm length from its shoulder (for an upright chest)."""
    scale = body.height / 1.75
    arm = body.upper_arm + body.forearm
    fwd = 0.065 * body.height + 0.02 * scale + half[2]
    lateral = abs(grip[0, 0]) - body.shoulder_width / 2
    rest = (ratio * arm) ** 2 - lateral**2 - fwd**2
    if rest <= 0:
        raise RuntimeError("procedural object: the held box is out of the arms' reach")
    down = grip[0, 1] + math.sqrt(rest)  # grip at (lateral, -down + grip_y, fwd) from the shoulder
    return np.array([0.0, -down, fwd])


def _arm_ik(
    pos: np.ndarray, targets: np.ndarray, body: _Arms, R_chest: np.ndarray, which: Sequence[int]
) -> None:
    """Re-pose the arms ``which`` (0 = left, 1 = right) so the wrists reach ``targets`` (T, 2, 3); in place.

    Elbows bend outward, down and back (hint in the chest frame); bone lengths stay exact."""
    arms = ((_LSHO, _LELB, _LWRI, 1.0), (_RSHO, _RELB, _RWRI, -1.0))
    for k in which:
        sho, elb, wri, side = arms[k]
        hint = _proc._apply(R_chest, np.array([0.5 * side, -1.0, -0.4]))
        pos[:, elb], pos[:, wri] = _proc._two_bone_ik(
            pos[:, sho], targets[:, k], body.upper_arm, body.forearm, hint
        )


def _ease(u: np.ndarray) -> np.ndarray:
    """Cosine ease 0 -> 1 on [0, 1] with zero slope at both ends."""
    return (1.0 - np.cos(np.pi * np.clip(u, 0.0, 1.0))) / 2.0


# ------------------------------------------------------------------------------------------------ kinds
def _carry(
    num_frames: int,
    fps: float,
    seed: int,
    rng: np.random.Generator,
    height: float | None,
    heading: float | None,
    speed: float | None,
    start: np.ndarray,
    vary: bool,
    params: dict[str, Any],
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    base = str(rng.choice(["walk", "turn"]))
    d_speed = rng.uniform(0.6, 1.2)
    ratio = rng.uniform(0.68, 0.82)
    box_rng = np.random.default_rng([seed, 13])
    v = float(speed) if speed is not None else float(d_speed)
    gen = _proc._generate(
        base, num_frames, fps, seed, BODY14, v, height, heading, None, None, None, None, start, vary, base
    )
    pos = gen.motion.positions.copy()
    body = _Arms.measure(gen.params["height"], pos)
    half, grip = _box(box_rng, body.height / 1.75)
    R_chest = _chest_frame(pos)
    centre = pos[:, _NECK] + _proc._apply(R_chest, _held_offset(body, half, grip, ratio))
    R_obj = _proc._rot_y(_yaw_of(R_chest))
    grips = _grip_world(centre, R_obj, grip)
    _arm_ik(pos, grips, body, R_chest, (0, 1))
    t = num_frames
    params.update(
        base_kind=base, speed=v, height=body.height, hold_ratio=ratio, heading=gen.params["heading"]
    )
    return pos, {
        "object": _object_points(centre, R_obj, half),
        "contacts": gen.contacts,
        "foot_height": np.float64(gen.foot_height),
        "held": np.ones((t, 2), dtype=bool),
        "grips": grips,
        "on_floor": np.zeros(t, dtype=bool),
        "half": half,
        "grip": grip,
    }


def _swing(
    num_frames: int,
    fps: float,
    seed: int,
    rng: np.random.Generator,
    height: float | None,
    heading: float | None,
    speed: float | None,
    start: np.ndarray,
    vary: bool,
    params: dict[str, Any],
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    gen = _proc._generate(
        "dance",
        num_frames,
        fps,
        seed,
        BODY14,
        speed,
        height,
        heading,
        None,
        None,
        None,
        None,
        start,
        vary,
        "dance",
    )
    pos = gen.motion.positions.copy()
    h = float(gen.params["height"])
    scale = h / 1.75
    half = np.array([rng.uniform(0.025, 0.045), rng.uniform(0.08, 0.16), rng.uniform(0.025, 0.045)]) * scale
    hand = 0.05 * h
    upper = pos[:, _RELB] - pos[:, _RSHO]
    x = _proc._unit(pos[:, _RWRI] - pos[:, _RELB])
    hinge = np.cross(upper, x)
    if np.min(np.linalg.norm(hinge, axis=-1)) < 1e-3 * np.linalg.norm(upper, axis=-1).max():
        raise RuntimeError("procedural object: the right elbow is straight, the hand frame is undefined")
    z = _proc._unit(hinge)
    y = np.cross(z, x)
    R_obj = np.stack([x, y, z], -1)
    centre = pos[:, _RWRI] + hand * x
    grip = np.array([[np.nan] * 3, [-hand, 0.0, 0.0]])
    t = num_frames
    params.update(base_kind="dance", height=h, hand_length=hand, heading=gen.params["heading"])
    if "speed" in gen.params:
        params["speed"] = gen.params["speed"]
    return pos, {
        "object": _object_points(centre, R_obj, half),
        "contacts": gen.contacts,
        "foot_height": np.float64(gen.foot_height),
        "held": np.stack([np.zeros(t, dtype=bool), np.ones(t, dtype=bool)], -1),
        "grips": _grip_world(centre, R_obj, grip),
        "on_floor": np.zeros(t, dtype=bool),
        "half": half,
        "grip": grip,
    }


# Lift cycle phases: stand, squat down to the box, grasp, rise with the box, hold it, lower it, release it,
# rise without it.
_LIFT_PHASES = ("stand", "down", "grasp", "rise", "hold", "lower", "release", "up")


def _lift(
    num_frames: int,
    fps: float,
    seed: int,
    rng: np.random.Generator,
    height: float | None,
    heading: float | None,
    speed: float | None,
    start: np.ndarray,
    vary: bool,
    params: dict[str, Any],
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    del speed, vary  # the person stands in place
    d_height, d_heading = rng.uniform(1.5, 1.9), rng.uniform(-math.pi, math.pi)
    durations = np.array(
        [
            rng.uniform(0.3, 0.8),
            rng.uniform(0.7, 1.1),
            rng.uniform(0.15, 0.35),
            rng.uniform(0.7, 1.1),
            rng.uniform(0.6, 1.6),
            rng.uniform(0.7, 1.1),
            rng.uniform(0.15, 0.35),
            rng.uniform(0.7, 1.1),
        ]
    )
    depth_f, back_f = rng.uniform(0.52, 0.62), rng.uniform(0.12, 0.18)
    lean0 = math.radians(rng.uniform(35, 45))
    turn = math.radians(rng.uniform(-25, 25))
    ratio = rng.uniform(0.68, 0.82)
    offset = rng.uniform(0, 1)
    size = float(height) if height is not None else float(d_height)
    theta = float(heading) if heading is not None else float(d_heading)
    body = HumanBody.from_height(size, np.random.default_rng([seed, 1]))
    scale = size / 1.75
    half, grip = _box(np.random.default_rng([seed, 13]), scale)

    # timeline
    t = np.arange(num_frames) / fps
    cycle = float(durations.sum())
    begin = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
    tau = np.mod(t + offset * cycle, cycle)
    phase = np.clip(np.searchsorted(begin, tau, side="right") - 1, 0, len(durations) - 1)
    u = (tau - begin[phase]) / durations[phase]
    e = _ease(u)
    s = np.select(
        [phase == 1, phase == 3, phase == 5, phase == 7],
        [e, 1 - e, e, 1 - e],
        default=np.where(np.isin(phase, (2, 6)), 1.0, 0.0),
    )  # squat amount
    lam = np.select([phase == 3, phase == 4, phase == 5], [1 - s, np.ones_like(s), 1 - s], 0.0)  # lifted
    w = np.select([phase == 1, phase == 7, phase == 0], [s, s, np.zeros_like(s)], 1.0)  # hands to grips
    yaw_off = np.where(phase == 4, turn * np.sin(np.pi * u), 0.0)

    fwd = np.array([math.sin(theta), 0.0, math.cos(theta)])
    left = np.array([math.cos(theta), 0.0, -math.sin(theta)])
    p0 = np.array([start[0], 0.0, start[1]])
    lat = body.hip_width / 2 + 0.04 * scale
    feet = np.stack([np.broadcast_to(p0 + sx * lat * left, (num_frames, 3)) for sx in (1.0, -1.0)]).copy()
    feet[..., 1] = body.ankle_height
    stand = body.ankle_height + 0.985 * body.leg
    depth, back = depth_f * body.leg, back_f * body.leg
    zeros = np.zeros(num_frames)
    relaxed = {
        "lflex": np.full(num_frames, math.radians(4)),
        "rflex": np.full(num_frames, math.radians(4)),
        "labd": np.full(num_frames, math.radians(7)),
        "rabd": np.full(num_frames, math.radians(7)),
        "lelbow": np.full(num_frames, math.radians(20)),
        "relbow": np.full(num_frames, math.radians(20)),
    }

    def pose(sq: np.ndarray, lean_max: float, yaw: np.ndarray) -> np.ndarray:
        n = sq.shape[0]
        root = p0 - (back * sq)[:, None] * fwd
        root[:, 1] = stand - depth * sq
        lean = lean_max * sq
        angles = {k: v[:n] for k, v in relaxed.items()}
        z = zeros[:n]
        return _proc._assemble_human(body, root, yaw, lean, z, z, 0.5 * lean, feet[:, :n], angles)

    # Floor pose of the box: in front of the feet, within ``reach`` x arm length of both shoulders at the
    # deepest squat; the lean grows from lean0 until it is reachable.
    arm = body.upper_arm + body.forearm
    reach = 0.93 * arm
    toe_clear = 0.15 * scale + half[2]  # box's back face at least 15 cm in front of the ankles
    lean_max = lean0
    while True:
        low = pose(np.ones(1), lean_max, np.full(1, theta))[0]
        sho = low[_LSHO] - p0  # the pose is left-right symmetric here: one shoulder decides
        grip_y = half[1] + grip[0, 1]  # the floor box's centre is at y = b
        dl = (sho @ left) - grip[0, 0]
        dv = sho[1] - grip_y
        q2 = reach**2 - dl**2 - dv**2
        sf = sho @ fwd
        if q2 > 0 and sf + math.sqrt(q2) >= toe_clear:
            f = min(max(toe_clear, sf), sf + math.sqrt(q2))
            break
        lean_max += math.radians(2.5)
        if lean_max > math.radians(80):
            raise RuntimeError("procedural object: no squat reaches the box on the floor")
    floor_centre = p0 + f * fwd + np.array([0.0, half[1], 0.0])

    # While lifted, the box centre moves in the chest frame from its floor offset at the deepest squat to
    # the held offset (both within reach), so the hands can follow it.
    R_low = _chest_frame(low[None])[0]
    o_floor = R_low.T @ (floor_centre - low[_NECK])
    arms = _Arms(size, body.shoulder_width, body.upper_arm, body.forearm)
    o_held = _held_offset(arms, half, grip, ratio)
    yaw = theta + yaw_off
    pos = pose(s, lean_max, yaw)
    R_chest = _chest_frame(pos)
    lifted = pos[:, _NECK] + _proc._apply(R_chest, o_floor + lam[:, None] * (o_held - o_floor))
    centre = np.where(lam[:, None] > 0, lifted, floor_centre)
    held_yaw = theta + np.angle(np.exp(1j * (_yaw_of(R_chest) - theta)))
    R_obj = _proc._rot_y(theta + lam * (held_yaw - theta))
    grips = _grip_world(centre, R_obj, grip)
    free = pos[:, [_LWRI, _RWRI]]
    targets = free + w[:, None, None] * (grips - free)
    _arm_ik(pos, targets, arms, R_chest, (0, 1))
    held = np.isin(phase, (2, 3, 4, 5, 6))
    params.update(
        height=size,
        heading=theta,
        phase_durations=dict(zip(_LIFT_PHASES, durations.tolist(), strict=True)),
        cycle=cycle,
        squat_depth=depth,
        lean=lean_max,
        hold_turn=turn,
        hold_ratio=ratio,
        floor_distance=f,
    )
    return pos, {
        "object": _object_points(centre, R_obj, half),
        "contacts": np.ones((num_frames, 2), dtype=bool),
        "foot_height": np.float64(body.ankle_height),
        "held": np.stack([held, held], -1),
        "grips": grips,
        "on_floor": lam == 0,
        "half": half,
        "grip": grip,
    }


_MAKERS = {"carry": _carry, "lift": _lift, "swing": _swing}


# ------------------------------------------------------------------------------------------ public API
def _generate_object(
    kind: str,
    num_frames: int,
    fps: float,
    seed: int,
    height: float | None,
    heading: float | None,
    speed: float | None,
    start: Sequence[float],
    vary: bool,
    label: str,
) -> ProceduralObjectMotion:
    _proc._check_common(num_frames, fps, seed)
    if kind not in OBJECT_KINDS:
        raise ValueError(f"kind must be one of {OBJECT_KINDS}, got {kind!r}")
    start_xz = np.asarray(start, dtype=np.float64)
    if start_xz.shape != (2,) or not np.all(np.isfinite(start_xz)):
        raise ValueError(f"start must be the (x, z) floor position of the root, got {start!r}")
    if height is not None and not 1.2 <= float(height) <= 2.2:
        raise ValueError(f"height must be a body height in metres (1.2-2.2), got {height!r}")
    if speed is not None and not (math.isfinite(float(speed)) and 0 <= float(speed) <= 2.0):
        raise ValueError(f"speed must be a walking speed in m/s (0-2), got {speed!r}")
    params: dict[str, Any] = {"kind": kind, "seed": int(seed), "skeleton": BODY14_OBJECT5.name}
    rng = np.random.default_rng([seed, 11])
    body, extra = _MAKERS[kind](num_frames, fps, seed, rng, height, heading, speed, start_xz, vary, params)
    positions = np.concatenate([body, extra["object"]], axis=1)
    params.update(
        fps=float(fps),
        num_frames=int(num_frames),
        half_extents=extra["half"].tolist(),
        grip_local=extra["grip"].tolist(),
    )
    motion = Motion(
        positions,
        float(fps),
        BODY14_OBJECT5.joint_names,
        BODY14_OBJECT5.parents,
        BODY14_OBJECT5,
        f"synthetic:procedural-object:{label}:seed={seed}",
    )
    return ProceduralObjectMotion(
        motion=motion,
        contacts=np.asarray(extra["contacts"], dtype=bool),
        foot_joints=(_LANK, _RANK),
        foot_height=float(extra["foot_height"]),
        held=extra["held"],
        grips=extra["grips"],
        on_floor=extra["on_floor"],
        half_extents=extra["half"],
        grip_local=extra["grip"],
        params=params,
    )


def generate_object(
    kind: str,
    num_frames: int,
    fps: float = 30.0,
    *,
    seed: int = 0,
    height: float | None = None,
    heading: float | None = None,
    speed: float | None = None,
    start: Sequence[float] = (0.0, 0.0),
) -> ProceduralObjectMotion:
    """Generate one human-object clip on :data:`BODY14_OBJECT5` (see the module docstring).

    Args:
        kind: 'carry', 'lift' or 'swing'.
        num_frames: T >= 1.
        fps: frame rate (frames are at t = k / fps).
        seed: everything not given below (body proportions, object size, timings, ...) is drawn with it.
        height: body height in metres (drawn from 1.5-1.9).
        heading: initial facing in radians (0 = toward +Z, counter-clockwise seen from above).
        speed: root path speed in m/s ('carry': drawn from 0.6-1.2; 'swing': the dance's 0.1-0.45;
            ignored for 'lift', where the person stands in place).
        start: (x, z) floor position of the root at the start.

    Returns:
        :class:`ProceduralObjectMotion`; ``motion.source`` is
        ``'synthetic:procedural-object:<kind>:seed=<seed>'``.
    """
    return _generate_object(kind, num_frames, fps, seed, height, heading, speed, start, False, kind)


def random_object_motion(
    seed: int,
    num_frames: int,
    fps: float = 30.0,
    *,
    kinds: Sequence[str] | None = None,
    return_info: bool = False,
) -> Motion | ProceduralObjectMotion:
    """A human-object clip of a random kind with random parameters (the analogue of
    :func:`mvlift.data.procedural.random_motion`).

    The kind is drawn uniformly from ``kinds`` (default: all of :data:`OBJECT_KINDS`); for 'carry' and
    'swing' the walking speed and turn rate also vary smoothly within the clip. ``Motion.source`` is
    ``'synthetic:procedural-object:random-<kind>:seed=<seed>'``. Deterministic under ``seed``.

    Returns:
        the :class:`Motion` (T, 19, 3) on :data:`BODY14_OBJECT5`, or the :class:`ProceduralObjectMotion`
        when ``return_info``.
    """
    _proc._check_common(num_frames, fps, seed)
    choices = tuple(kinds) if kinds is not None else OBJECT_KINDS
    bad = [k for k in choices if k not in OBJECT_KINDS]
    if not choices or bad:
        raise ValueError(f"kinds must be a non-empty subset of {OBJECT_KINDS}, got {kinds!r}")
    kind = str(np.random.default_rng([seed, 17]).choice(list(choices)))
    out = _generate_object(kind, num_frames, fps, seed, None, None, None, (0.0, 0.0), True, f"random-{kind}")
    return out if return_info else out.motion
