"""Procedural 3D motion that needs no download: articulated humans (BODY14) and a quadruped (QUADRUPED17).

Every clip is built as an articulated skeleton in the world frame of docs/conventions.md (Y up, metres,
floor y = 0) and is fully determined by ``seed`` (``numpy.random.default_rng``). The output is labelled as
synthetic: ``Motion.source = 'synthetic:procedural:<kind>:seed=<n>'``.

How a clip is made
------------------
- **Body.** Segment lengths are fractions of the body height (1.5-1.9 m for humans; shoulder height
  0.25-0.75 m for the quadruped), each jittered by a few percent. Trunk, head and tail are rigid bodies;
  arms are driven by joint angles; legs are two-bone chains. All bone lengths of the output skeleton are
  exactly constant.
- **Root path.** A heading ``theta(t)`` (0 = walking toward +Z, counter-clockwise seen from above) and a
  speed ``v(t)`` are integrated into a floor path ``p(t) = p0 + int v (sin theta, 0, cos theta) dt``.
- **Gait.** A gait phase ``phi(t) = int f(t) dt`` (f = stride frequency) drives every periodic quantity
  (arm swing, pelvis bob and rotation, head nod). Each foot ``i`` has a phase offset and is in stance while
  ``frac(phi + offset_i) < duty``. A stance foot stays planted on its footprint (ankle/paw at a fixed
  height above the floor); footprints are laid at the path position of the stance's middle, offset to the
  foot's side; a swinging foot moves between consecutive footprints on a smooth arc.
- **Legs.** The root height follows a nominal height plus a gait-phase bob, smoothly limited (log-sum-exp
  soft minimum) so that every hip can reach its foot; knees come from analytic two-bone inverse
  kinematics, bending forward (human knees, quadruped hind stifles) or backward (quadruped elbows).
- **Jumps.** Stand, crouch, ballistic flight (``h = v0^2 / 2g``) and landing, repeated; feet stay on the
  ground except in flight.

Kinds: humans ``'walk'``, ``'turn'`` (walk on a curve), ``'run'``, ``'jump'``, ``'dance'`` (in-place and
drifting steps on a beat with large arm and torso motion); quadruped ``'walk'`` (four-beat), ``'trot'``
(diagonal pairs) and ``'turn'``. :func:`random_motion` draws a kind and its parameters, and lets speed and
turning vary within the clip.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mvlift.data.motion import Motion
from mvlift.data.skeletons import BODY14, Skeleton

__all__ = [
    "QUADRUPED17",
    "HUMAN_KINDS",
    "QUADRUPED_KINDS",
    "HumanBody",
    "QuadrupedBody",
    "ProceduralMotion",
    "generate",
    "generate_motion",
    "random_motion",
]

_G = 9.81

_Q_NAMES = (
    "nose",
    "neck",
    "spine_mid",
    "tail_base",
    "tail_tip",
    "left_front_shoulder",
    "left_front_elbow",
    "left_front_paw",
    "right_front_shoulder",
    "right_front_elbow",
    "right_front_paw",
    "left_hind_hip",
    "left_hind_knee",
    "left_hind_paw",
    "right_hind_hip",
    "right_hind_knee",
    "right_hind_paw",
)
_Q_PARENTS = (1, 2, -1, 2, 3, 1, 5, 6, 1, 8, 9, 3, 11, 12, 3, 14, 15)

QUADRUPED17 = Skeleton("quadruped17", _Q_NAMES, _Q_PARENTS, (2,))
"""A 17-joint quadruped: nose, neck (withers), spine_mid (root), tail base and tip, and for each of the four
legs its top joint (front shoulder / hind hip), middle joint (front elbow / hind stifle) and paw. Tree rooted
at spine_mid; front legs hang from the neck, hind legs from the tail base."""

HUMAN_KINDS = ("walk", "turn", "run", "jump", "dance")
QUADRUPED_KINDS = ("walk", "trot", "turn")

# BODY14 joint indices
_HEAD, _NECK, _RSHO, _RELB, _RWRI, _LSHO, _LELB, _LWRI, _RHIP, _RKNE, _RANK, _LHIP, _LKNE, _LANK = range(14)


# ----------------------------------------------------------------------------------------------- bodies
@dataclass(frozen=True)
class HumanBody:
    """Human segment lengths in metres (joint-centre to joint-centre).

    ``trunk`` runs from the hips midpoint (root) to the neck (the shoulder midpoint, as in BODY14);
    ``head`` from the neck to the head joint (the top of the head, as CMU's head bone end).
    """

    height: float
    thigh: float
    shank: float
    ankle_height: float
    hip_width: float
    trunk: float
    shoulder_width: float
    upper_arm: float
    forearm: float
    head: float

    @classmethod
    def from_height(
        cls, height: float, rng: np.random.Generator | None = None, jitter: float = 0.04
    ) -> HumanBody:
        """Standard anthropometric fractions of ``height``, each scaled by ``1 + U(-jitter, jitter)``."""
        if not 0.5 < height < 2.5:
            raise ValueError(f"height must be a human height in metres (0.5-2.5), got {height}")
        fr = {
            "thigh": 0.245,
            "shank": 0.246,
            "ankle_height": 0.039,
            "hip_width": 0.110,
            "trunk": 0.288,
            "shoulder_width": 0.210,
            "upper_arm": 0.186,
            "forearm": 0.146,
            "head": 0.170,
        }
        vals = {}
        for k, f in fr.items():
            j = 1.0 + (rng.uniform(-jitter, jitter) if rng is not None else 0.0)
            vals[k] = f * height * j
        return cls(height=height, **vals)

    @property
    def leg(self) -> float:
        """Thigh + shank."""
        return self.thigh + self.shank


@dataclass(frozen=True)
class QuadrupedBody:
    """Quadruped segment lengths in metres, derived from the shoulder (withers) height ``shoulder_height``."""

    shoulder_height: float
    body_length: float
    width: float
    rise: float
    front_drop: float
    hind_drop: float
    front_upper: float
    front_lower: float
    hind_upper: float
    hind_lower: float
    paw_height: float
    head: tuple[float, float]
    tail: float

    @classmethod
    def from_shoulder_height(
        cls, sh: float, rng: np.random.Generator | None = None, jitter: float = 0.04
    ) -> QuadrupedBody:
        """Proportions of a medium dog/cat-like body scaled to withers height ``sh``."""
        if not 0.05 < sh < 2.0:
            raise ValueError(f"shoulder height must be in metres (0.05-2), got {sh}")

        def j() -> float:
            return 1.0 + (rng.uniform(-jitter, jitter) if rng is not None else 0.0)

        rise, front_drop, hind_drop, paw = 0.05 * sh, 0.20 * sh, 0.10 * sh, 0.03 * sh
        root_h = sh - rise
        lf = (root_h + rise - front_drop - paw) / 0.93  # legs 93% extended when standing
        lh = (root_h - hind_drop - paw) / 0.93
        uf, uh = 0.5 * j(), 0.5 * j()
        return cls(
            shoulder_height=sh,
            body_length=1.2 * sh * j(),
            width=0.3 * sh * j(),
            rise=rise,
            front_drop=front_drop,
            hind_drop=hind_drop,
            front_upper=lf * uf,
            front_lower=lf * (1 - uf),
            hind_upper=lh * uh,
            hind_lower=lh * (1 - uh),
            paw_height=paw,
            head=(0.22 * sh * j(), 0.30 * sh * j()),
            tail=0.7 * sh * j(),
        )


@dataclass
class ProceduralMotion:
    """A generated clip with its ground-truth annotations.

    Attributes:
        motion: the :class:`Motion` (T, J, 3), Y up, metres.
        contacts: (T, F) bool, True while foot ``foot_joints[f]`` is planted (stance / on the ground).
        foot_joints: joint index of every foot (BODY14 ankles: left, right; QUADRUPED17 paws: LF, RF, LH, RH).
        foot_height: height of a planted foot joint above the floor (ankle / paw centre), metres.
        params: the parameters used (kind, speeds, body, ...), for reproducibility.
    """

    motion: Motion
    contacts: np.ndarray
    foot_joints: tuple[int, ...]
    foot_height: float
    params: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- maths
def _rot_y(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _rot_x(a: np.ndarray) -> np.ndarray:
    """Positive angles tilt +Y toward +Z (a forward lean of the body frame)."""
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _rot_z(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _apply(R: np.ndarray, v: np.ndarray) -> np.ndarray:
    """R (T, 3, 3) @ v (3,) or (T, 3) -> (T, 3)."""
    return np.einsum("tij,tj->ti", R, np.broadcast_to(v, R.shape[:-1]))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _smoothstep(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, 0.0, 1.0)
    return s * s * (3 - 2 * s)


def _soft_min(values: np.ndarray, softness: float) -> np.ndarray:
    """Log-sum-exp soft minimum over axis 0; always <= the true minimum (by at most softness * log n)."""
    m = values.min(axis=0)
    return m - softness * np.log(np.exp(-(values - m) / softness).sum(axis=0))


def _two_bone_ik(
    top: np.ndarray, target: np.ndarray, a: float, b: float, hint: np.ndarray, reach: float = 0.995
) -> tuple[np.ndarray, np.ndarray]:
    """Middle joint of a two-bone chain (lengths a, b) from ``top`` toward ``target``, bent toward ``hint``.

    Targets beyond ``reach * (a + b)`` (or closer than the chain can fold) are moved along the chain's
    line to the nearest reachable distance, so bone lengths are always exact. Returns (middle, end).
    """
    d = target - top
    dist = np.linalg.norm(d, axis=-1, keepdims=True)
    lo = abs(a - b) + 0.05 * (a + b)
    clamped = np.clip(dist, lo, reach * (a + b))
    dh = d / np.maximum(dist, 1e-12)
    end = top + dh * clamped
    x = (a * a - b * b + clamped**2) / (2 * clamped)
    r = np.sqrt(np.maximum(a * a - x * x, 0.0))
    n = _unit(hint - (hint * dh).sum(-1, keepdims=True) * dh)
    return top + x * dh + r * n, end


# ------------------------------------------------------------------------------------------- gait engine
@dataclass
class _Gait:
    """Everything the stepping engine needs; times in seconds, angles in radians, lengths in metres."""

    speed: Callable[[np.ndarray], np.ndarray]  # path speed v(t) >= 0
    turn_rate: Callable[[np.ndarray], np.ndarray]  # d theta / dt
    frequency: Callable[[np.ndarray], np.ndarray]  # stride (gait-cycle) frequency f(t) > 0
    heading0: float
    phase0: float
    duty: float
    clearance: float
    foot_offsets: np.ndarray  # (F, 3) body-frame footprint offsets from the path point (y ignored)
    phase_offsets: np.ndarray  # (F,)
    foot_height: float
    facing_offset: Callable[[np.ndarray], np.ndarray] = lambda t: np.zeros_like(t)
    heel_lift: float = 0.0  # ankle rise at the end of stance (heel-off), metres
    roll: float = 0.0  # forward ankle travel during heel-off (rolling over the toes), metres
    heel_start: float = 0.65  # fraction of stance at which the heel leaves the ground


@dataclass
class _GaitState:
    t: np.ndarray  # (T,) frame times
    phi: np.ndarray  # (T,) gait phase (cycles)
    path: np.ndarray  # (T, 3) floor path
    facing: np.ndarray  # (T,) body facing (heading + offset)
    feet: np.ndarray  # (F, T, 3) foot positions
    stance: np.ndarray  # (F, T) bool


def _run_gait(g: _Gait, num_frames: int, fps: float, start: np.ndarray) -> _GaitState:
    t = np.arange(num_frames) / fps
    t_end = t[-1] if num_frames else 0.0
    f_min = float(np.min(g.frequency(np.linspace(0.0, max(t_end, 1e-3), 64))))
    pad = 3.0 / max(f_min, 0.2) + 1.0
    dt = min(1.0 / fps, 1.0 / 120.0) / 2
    grid = np.arange(-pad, t_end + pad + dt, dt)
    i0 = int(np.argmin(np.abs(grid)))
    grid = grid - grid[i0]  # exact 0 on the grid

    def integrate(rate: np.ndarray) -> np.ndarray:
        c = np.concatenate([[0.0], np.cumsum((rate[1:] + rate[:-1]) * 0.5 * np.diff(grid))])
        return c - c[i0]

    theta = g.heading0 + integrate(g.turn_rate(grid))
    v = g.speed(grid)
    px = start[0] + integrate(v * np.sin(theta))
    pz = start[1] + integrate(v * np.cos(theta))
    phi = g.phase0 + integrate(g.frequency(grid))
    facing_grid = theta + g.facing_offset(grid)

    def at(times: np.ndarray, values: np.ndarray) -> np.ndarray:
        return np.interp(times, grid, values)

    feet, stance = [], []
    phi_t = at(t, phi)
    for off, fo in zip(g.phase_offsets, g.foot_offsets, strict=True):
        ph = phi_t + off
        k = np.floor(ph)
        u = ph - k

        def footprint(kk: np.ndarray, fo: np.ndarray = fo, off: float = off) -> tuple[np.ndarray, np.ndarray]:
            """Ankle at touch-down and the unit forward direction, for stance ``kk`` of this foot."""
            tm = np.interp(kk + g.duty / 2 - off, phi, grid)  # time of the stance's middle
            yaw = np.interp(tm, grid, facing_grid)
            left = np.stack([np.cos(yaw), np.zeros_like(yaw), -np.sin(yaw)], -1)
            fwd = np.stack([np.sin(yaw), np.zeros_like(yaw), np.cos(yaw)], -1)
            base = np.stack([np.interp(tm, grid, px), np.zeros_like(tm), np.interp(tm, grid, pz)], -1)
            out = base + fo[0] * left + (fo[2] - g.roll / 2) * fwd
            out[:, 1] = g.foot_height
            return out, fwd

        (here, fwd_here), (nxt, _) = footprint(k), footprint(k + 1)
        st = u < g.duty
        # stance: planted, then heel-off (the ankle rises and rolls forward over the toes)
        q = _smoothstep((u / g.duty - g.heel_start) / (1 - g.heel_start)) if g.roll or g.heel_lift else 0 * u
        lift_off = here + g.roll * fwd_here
        lift_off[:, 1] += g.heel_lift
        s = np.where(st, 0.0, (u - g.duty) / (1 - g.duty))
        swing_pos = lift_off + _smoothstep(s)[:, None] * (nxt - lift_off)
        swing_pos[:, 1] = g.foot_height + g.heel_lift * (1 - _smoothstep(s)) + g.clearance * np.sin(np.pi * s)
        stance_pos = here + (g.roll * q)[:, None] * fwd_here
        stance_pos[:, 1] = g.foot_height + g.heel_lift * q
        pos = np.where(st[:, None], stance_pos, swing_pos)
        feet.append(pos)
        stance.append(st)
    path = np.stack([at(t, px), np.zeros_like(t), at(t, pz)], -1)
    return _GaitState(
        t=t,
        phi=phi_t,
        path=path,
        facing=at(t, facing_grid),
        feet=np.stack(feet),
        stance=np.stack(stance),
    )


def _root_height(
    nominal: np.ndarray,
    root_xz: np.ndarray,
    R: np.ndarray,
    attach: np.ndarray,
    feet: np.ndarray,
    leg_lengths: np.ndarray,
    softness: float,
) -> np.ndarray:
    """Root height: ``nominal`` softly limited so every hip (root + R attach_i) reaches its foot (99%)."""
    bounds = [nominal]
    for a, foot, length in zip(attach, feet, leg_lengths, strict=True):
        off = _apply(R, a)  # (T, 3)
        hip_xz = root_xz + off[:, [0, 2]]
        dh = np.linalg.norm(hip_xz - foot[:, [0, 2]], axis=-1)
        reach = 0.99 * length
        if np.any(dh >= reach):
            raise RuntimeError("procedural gait: a footprint lies beyond the leg's reach (stride too long)")
        bounds.append(foot[:, 1] + np.sqrt(reach**2 - dh**2) - off[:, 1])
    return _soft_min(np.stack(bounds), softness)


# -------------------------------------------------------------------------------------------- humans
def _human_arm(
    shoulder: np.ndarray,
    R_chest: np.ndarray,
    side: float,
    flex: np.ndarray,
    abd: np.ndarray,
    elbow: np.ndarray,
    body: HumanBody,
) -> tuple[np.ndarray, np.ndarray]:
    """Elbow and wrist from shoulder flexion (forward), abduction (sideways) and elbow flexion (radians)."""
    u_local = np.stack([side * np.sin(abd), -np.cos(abd) * np.cos(flex), np.cos(abd) * np.sin(flex)], -1)
    u = np.einsum("tij,tj->ti", R_chest, u_local)
    hint = _apply(R_chest, np.array([0.0, 0.0, 1.0]))
    n = _unit(hint - (hint * u).sum(-1, keepdims=True) * u)
    fore = np.cos(elbow)[:, None] * u + np.sin(elbow)[:, None] * n
    el = shoulder + body.upper_arm * u
    return el, el + body.forearm * fore


def _assemble_human(
    body: HumanBody,
    root: np.ndarray,
    yaw: np.ndarray,
    lean: np.ndarray,
    roll: np.ndarray,
    twist: np.ndarray,
    nod: np.ndarray,
    feet: np.ndarray,
    arms: dict[str, np.ndarray],
) -> np.ndarray:
    """BODY14 positions (T, 14, 3) from root, trunk angles, ankle targets (left, right) and arm angles."""
    t_len = root.shape[0]
    R_p = _rot_y(yaw) @ _rot_x(lean) @ _rot_z(roll)
    R_c = R_p @ _rot_y(twist)
    out = np.zeros((t_len, 14, 3))
    neck = root + _apply(R_p, np.array([0.0, body.trunk, 0.0]))
    out[:, _NECK] = neck
    out[:, _HEAD] = neck + body.head * np.einsum(
        "tij,tj->ti", R_c, np.stack([0 * nod, np.cos(nod), np.sin(nod)], -1)
    )
    half_s = body.shoulder_width / 2
    out[:, _LSHO] = neck + _apply(R_c, np.array([half_s, 0.0, 0.0]))
    out[:, _RSHO] = neck + _apply(R_c, np.array([-half_s, 0.0, 0.0]))
    out[:, _LELB], out[:, _LWRI] = _human_arm(
        out[:, _LSHO], R_c, 1.0, arms["lflex"], arms["labd"], arms["lelbow"], body
    )
    out[:, _RELB], out[:, _RWRI] = _human_arm(
        out[:, _RSHO], R_c, -1.0, arms["rflex"], arms["rabd"], arms["relbow"], body
    )
    half_h = body.hip_width / 2
    knee_hint = _apply(R_p, np.array([0.0, 0.0, 1.0]))
    for hip_j, knee_j, ank_j, sx, foot in (
        (_LHIP, _LKNE, _LANK, 1.0, feet[0]),
        (_RHIP, _RKNE, _RANK, -1.0, feet[1]),
    ):
        hip = root + _apply(R_p, np.array([sx * half_h, 0.0, 0.0]))
        out[:, hip_j] = hip
        out[:, knee_j], out[:, ank_j] = _two_bone_ik(hip, foot, body.thigh, body.shank, knee_hint)
    return out


def _cadence_stride(kind: str, body: HumanBody, duty: float) -> Callable[[np.ndarray], np.ndarray]:
    """Stride frequency f(v) (gait cycles per second) for humans; strides are capped to the leg's reach."""
    scale = math.sqrt(1.75 / body.height)
    stride_max = 2 * 0.55 * body.leg / duty

    def freq(v: np.ndarray) -> np.ndarray:
        if kind == "run":
            steps = 2.7 * np.power(np.maximum(v, 0.1) / 3.2, 0.3) * scale
        else:
            steps = 1.85 * np.power(np.maximum(v, 0.1) / 1.3, 0.45) * scale
        stride = 2 * v / steps
        return np.where(stride > stride_max, v / stride_max, steps / 2)

    return freq


def _human_gait(
    kind: str,
    num_frames: int,
    fps: float,
    rng: np.random.Generator,
    body: HumanBody,
    speed_fn: Callable[[np.ndarray], np.ndarray],
    turn_fn: Callable[[np.ndarray], np.ndarray],
    heading: float,
    start: np.ndarray,
    amplitude: float,
    params: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """Walk / turn / run / dance: returns BODY14 positions (T, 14, 3) and contacts (T, 2)."""
    dance = kind == "dance"
    run = kind == "run"
    duty = {"run": 0.36, "dance": 0.62}.get(kind, 0.58)
    phase0 = rng.uniform(0, 1)
    if dance:
        beat = rng.uniform(1.6, 2.4)  # steps per second
        clearance = rng.uniform(0.08, 0.22) * amplitude
        face_amp, face_per = rng.uniform(0.3, 1.2), rng.uniform(2.0, 5.0)
        face_ph = rng.uniform(0, 2 * math.pi)

        def freq(t: np.ndarray) -> np.ndarray:
            return np.full_like(t, beat / 2)

        def facing(t: np.ndarray) -> np.ndarray:
            return face_amp * np.sin(2 * math.pi * t / face_per + face_ph)

        params.update(beat=beat, clearance=clearance, facing_amplitude=face_amp)
    else:
        fv = _cadence_stride(kind, body, duty)

        def freq(t: np.ndarray) -> np.ndarray:
            return fv(speed_fn(t))

        def facing(t: np.ndarray) -> np.ndarray:
            return np.zeros_like(t)

        clearance = (0.22 if run else 0.09) * body.height / 1.75 * rng.uniform(0.85, 1.15)
        params.update(clearance=clearance)
    lateral = 0.8 * body.hip_width / 2
    gait = _Gait(
        speed=speed_fn,
        turn_rate=turn_fn,
        frequency=freq,
        heading0=heading,
        phase0=phase0,
        duty=duty,
        clearance=clearance,
        foot_offsets=np.array([[lateral, 0.0, 0.0], [-lateral, 0.0, 0.0]]),
        phase_offsets=np.array([0.0, 0.5]),
        foot_height=body.ankle_height,
        facing_offset=facing,
        heel_lift=(0.06 if run else 0.05 if dance else 0.07) * body.height / 1.75,
        roll=(0.08 if run else 0.03 if dance else 0.10) * body.height / 1.75,
        heel_start=0.4 if run else 0.65,
    )
    st = _run_gait(gait, num_frames, fps, start)
    two_pi = 2 * math.pi
    ph_l = two_pi * st.phi  # left foot phase (radians); right = ph_l + pi
    # trunk
    if dance:
        bob = -rng.uniform(0.03, 0.07) * amplitude * (1 + np.cos(2 * ph_l)) / 2
        lean = math.radians(rng.uniform(2, 8)) * (1 + 0.5 * np.sin(ph_l))
        twist = math.radians(rng.uniform(10, 30)) * amplitude * np.sin(ph_l + rng.uniform(0, two_pi))
        yaw_p = math.radians(5) * np.sin(ph_l)
    else:
        bob_amp = (0.035 if run else 0.02) * rng.uniform(0.8, 1.2)
        # highest at mid-stance (walk) or mid-flight (run), twice per gait cycle
        bob = bob_amp * np.cos(2 * (ph_l - two_pi * ((duty + 0.5) / 2 if run else duty / 2)))
        lean = np.full_like(st.t, math.radians(9 if run else 3.5) * rng.uniform(0.7, 1.3))
        yaw_p = -math.radians(6 if run else 5) * np.cos(ph_l)  # the swinging leg's hip goes forward
        twist = -0.9 * yaw_p  # shoulders counter-rotate
    roll = math.radians(2.5) * np.sin(ph_l - two_pi * duty / 2)
    nod = math.radians(4) * np.sin(2 * ph_l)
    sway_dir = np.stack([np.cos(st.facing), np.zeros_like(st.t), -np.sin(st.facing)], -1)
    sway = (0.03 if dance else 0.015) * np.cos(ph_l - two_pi * duty / 2)
    root_xz = st.path[:, [0, 2]] + sway[:, None] * sway_dir[:, [0, 2]]
    yaw = st.facing + yaw_p
    R_p = _rot_y(yaw) @ _rot_x(lean) @ _rot_z(roll)
    stand = body.ankle_height + 0.985 * body.leg
    nominal = stand - (0.025 if run else 0.02) * body.height / 1.75 + bob
    attach = np.array([[body.hip_width / 2, 0.0, 0.0], [-body.hip_width / 2, 0.0, 0.0]])
    y = _root_height(nominal, root_xz, R_p, attach, st.feet, np.full(2, body.leg), 0.012 * body.leg)
    root = np.stack([root_xz[:, 0], y, root_xz[:, 1]], -1)
    # arms
    if dance:
        arms = {}
        for side, ph in (("l", ph_l), ("r", ph_l + math.pi)):
            k = rng.choice([0.5, 1.0, 2.0])
            a_hi = math.radians(rng.uniform(60, 160)) * amplitude
            ps = rng.uniform(0, two_pi)
            arms[side + "abd"] = math.radians(10) + a_hi * (1 - np.cos(k * ph + ps)) / 2
            arms[side + "flex"] = (
                math.radians(rng.uniform(10, 60)) * amplitude * np.sin(k * ph + rng.uniform(0, two_pi))
            )
            arms[side + "elbow"] = (
                math.radians(15)
                + math.radians(rng.uniform(20, 90)) * (1 - np.cos(ph + rng.uniform(0, two_pi))) / 2
            )
    else:
        swing_amp = math.radians(35 if run else 20) * rng.uniform(0.7, 1.3) * amplitude
        e0, e1 = (math.radians(75), math.radians(20)) if run else (math.radians(12), math.radians(18))
        arms = {}
        for side, ph in (("l", ph_l), ("r", ph_l + math.pi)):
            c = np.cos(ph - two_pi * duty)
            arms[side + "flex"] = math.radians(4) + swing_amp * c
            arms[side + "abd"] = np.full_like(st.t, math.radians(7))
            arms[side + "elbow"] = e0 + e1 * (1 + c) / 2
    params.update(duty=duty, phase0=phase0)
    pos = _assemble_human(body, root, yaw, lean, roll, twist, nod, st.feet, arms)
    return pos, st.stance.T.copy()


def _human_jump(
    num_frames: int,
    fps: float,
    rng: np.random.Generator,
    body: HumanBody,
    heading: float,
    start: np.ndarray,
    jump_height: float,
    distance: float,
    params: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """Repeated jumps: stand, crouch, flight, landing. Returns (T, 14, 3) and contacts (T, 2)."""
    t = np.arange(num_frames) / fps
    v0 = math.sqrt(2 * _G * jump_height)
    t_s, t_c, t_l = rng.uniform(0.2, 0.5), rng.uniform(0.35, 0.5), rng.uniform(0.3, 0.45)
    t_f = 2 * v0 / _G
    crouch = rng.uniform(0.12, 0.22) * body.leg
    cycle = t_s + t_c + t_f + t_l
    t0 = rng.uniform(0, t_s)
    tau = t + t0
    n = np.floor(tau / cycle)
    w = tau - n * cycle  # time within the cycle
    stand = body.ankle_height + 0.985 * body.leg
    y = np.full_like(t, stand)
    fwd = np.array([math.sin(heading), 0.0, math.cos(heading)])
    prog = n.copy()  # completed jumps (forward progress in units of distance)
    in_c = (w >= t_s) & (w < t_s + t_c)
    in_f = (w >= t_s + t_c) & (w < t_s + t_c + t_f)
    in_l = w >= t_s + t_c + t_f
    # crouch: ease down (60%), then a Hermite push reaching the take-off speed v0 at standing height
    u = (w - t_s) / t_c
    down = in_c & (u < 0.6)
    y[down] = stand - crouch * (1 - np.cos(np.pi * u[down] / 0.6)) / 2
    push = in_c & (u >= 0.6)
    s = (u[push] - 0.6) / 0.4
    dur = 0.4 * t_c
    y[push] = (
        (stand - crouch) * (2 * s**3 - 3 * s**2 + 1)
        + stand * (-2 * s**3 + 3 * s**2)
        + v0 * dur * (s**3 - s**2)
    )
    # flight: ballistic
    tf = w[in_f] - t_s - t_c
    y[in_f] = stand + v0 * tf - 0.5 * _G * tf**2
    flight_u = np.zeros_like(t)
    flight_u[in_f] = tf / t_f
    prog[in_f] += tf / t_f
    prog[in_l] += 1
    # landing: Hermite absorb with the landing speed, then ease back up
    ul = (w - t_s - t_c - t_f) / t_l
    absorb = in_l & (ul < 0.5)
    s = ul[absorb] / 0.5
    dur = 0.5 * t_l
    depth = 0.8 * crouch
    y[absorb] = (
        stand * (2 * s**3 - 3 * s**2 + 1)
        + (stand - depth) * (-2 * s**3 + 3 * s**2)
        - v0 * dur * (s**3 - 2 * s**2 + s)
    )
    rise = in_l & (ul >= 0.5)
    y[rise] = stand - depth * (1 + np.cos(np.pi * (ul[rise] - 0.5) / 0.5)) / 2
    start3 = np.array([start[0], 0.0, start[1]])
    root = start3 + distance * prog[:, None] * fwd
    root[:, 1] = y
    # feet: planted except in flight (they follow the body and tuck a little)
    half_h = body.hip_width / 2
    left = np.array([math.cos(heading), 0.0, -math.sin(heading)])
    feet = []
    for sx in (1.0, -1.0):
        base = start3 + sx * half_h * left
        grounded = base + distance * np.floor(prog)[:, None] * fwd
        f = grounded + distance * _smoothstep(flight_u)[:, None] * fwd * in_f[:, None]
        f[:, 1] = body.ankle_height
        hip = root + sx * half_h * left
        dh = np.linalg.norm((hip - f)[:, [0, 2]], axis=-1)
        dmax = (0.985 - 0.12 * np.sin(np.pi * flight_u)) * body.leg
        f[:, 1] = np.maximum(body.ankle_height, hip[:, 1] - np.sqrt(np.maximum(dmax**2 - dh**2, 1e-6)))
        feet.append(f)
    feet = np.stack(feet)
    # trunk and arms keyed on the cycle: back-swing in the crouch, up-swing in push and flight
    lean = np.zeros_like(t)
    flex = np.zeros_like(t)
    lean[in_c] = math.radians(25) * np.sin(np.pi * np.clip(u[in_c], 0, 1))
    flex[in_c] = np.where(
        u[in_c] < 0.6,
        -math.radians(50) * (1 - np.cos(np.pi * u[in_c] / 0.6)) / 2,
        -math.radians(50) + math.radians(190) * _smoothstep((u[in_c] - 0.6) / 0.4),
    )
    flex[in_f] = math.radians(140) - math.radians(60) * flight_u[in_f]
    flex[in_l] = math.radians(80) * (1 + np.cos(np.pi * np.clip(ul[in_l], 0, 1))) / 2
    lean[in_l] = math.radians(20) * np.sin(np.pi * np.clip(ul[in_l], 0, 1))
    yaw = np.full_like(t, heading)
    zeros = np.zeros_like(t)
    arms = {
        "lflex": flex,
        "rflex": flex,
        "labd": np.full_like(t, math.radians(8)),
        "rabd": np.full_like(t, math.radians(8)),
        "lelbow": math.radians(15) + 0.2 * np.abs(flex),
        "relbow": math.radians(15) + 0.2 * np.abs(flex),
    }
    pos = _assemble_human(body, root, yaw, lean, zeros, zeros, zeros, feet, arms)
    contacts = np.repeat((~in_f)[:, None], 2, axis=1)
    params.update(cycle=cycle, flight_time=t_f, crouch=crouch)
    return pos, contacts


# ------------------------------------------------------------------------------------------ quadruped
def _quadruped_gait(
    num_frames: int,
    fps: float,
    rng: np.random.Generator,
    body: QuadrupedBody,
    gait_name: str,
    speed_fn: Callable[[np.ndarray], np.ndarray],
    turn_fn: Callable[[np.ndarray], np.ndarray],
    heading: float,
    start: np.ndarray,
    amplitude: float,
    params: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """Quadruped walk (four-beat: LH, LF, RH, RF) or trot (diagonal pairs). Returns (T, 17, 3), (T, 4)."""
    trot = gait_name == "trot"
    duty = 0.45 if trot else 0.65
    # feet order: LF, RF, LH, RH
    phase_offsets = np.array([0.0, 0.5, 0.5, 0.0]) if trot else np.array([0.25, 0.75, 0.0, 0.5])
    sh = body.shoulder_height
    half_b, half_w = body.body_length / 2, body.width / 2
    attach = np.array(
        [
            [half_w, body.rise - body.front_drop, half_b],
            [-half_w, body.rise - body.front_drop, half_b],
            [half_w, -body.hind_drop, -half_b],
            [-half_w, -body.hind_drop, -half_b],
        ]
    )
    legs = np.array([body.front_upper + body.front_lower] * 2 + [body.hind_upper + body.hind_lower] * 2)
    stride_max = 2 * 0.5 * legs.min() / duty
    stride_nom = (2.0 if trot else 1.3) * legs.min()

    def freq(t: np.ndarray) -> np.ndarray:
        v = speed_fn(t)
        return v / min(stride_nom, stride_max)

    gait = _Gait(
        speed=speed_fn,
        turn_rate=turn_fn,
        frequency=freq,
        heading0=heading,
        phase0=rng.uniform(0, 1),
        duty=duty,
        clearance=(0.12 if trot else 0.08) * sh * rng.uniform(0.8, 1.2),
        foot_offsets=attach * np.array([1.0, 0.0, 1.0]),
        phase_offsets=phase_offsets,
        foot_height=body.paw_height,
    )
    st = _run_gait(gait, num_frames, fps, start)
    ph = 2 * math.pi * st.phi
    pitch = math.radians(2.0) * np.sin(ph) * amplitude
    roll = math.radians(2.0 if trot else 3.0) * np.sin(ph + 0.5) * amplitude
    yaw = st.facing
    R = _rot_y(yaw) @ _rot_x(pitch) @ _rot_z(roll)
    root_h = sh - body.rise
    nominal = 0.99 * root_h + 0.012 * sh * np.cos(2 * ph) * amplitude
    y = _root_height(nominal, st.path[:, [0, 2]], R, attach, st.feet, legs, 0.015 * legs.min())
    root = st.path.copy()
    root[:, 1] = y
    out = np.zeros((num_frames, 17, 3))
    out[:, 2] = root
    neck = root + _apply(R, np.array([0.0, body.rise, half_b]))
    tail_base = root + _apply(R, np.array([0.0, 0.0, -half_b]))
    out[:, 1], out[:, 3] = neck, tail_base
    head_pitch = math.radians(6) * np.sin(2 * ph) * amplitude
    out[:, 0] = neck + np.einsum(
        "tij,tj->ti", R @ _rot_x(head_pitch), np.broadcast_to(np.array([0.0, *body.head]), (num_frames, 3))
    )
    wag = math.radians(rng.uniform(10, 35)) * np.sin(2 * ph + rng.uniform(0, 2 * math.pi))
    tail_dir = _unit(np.array([0.0, 0.35, -1.0]))
    out[:, 4] = tail_base + body.tail * np.einsum(
        "tij,tj->ti", R @ _rot_y(wag), np.broadcast_to(tail_dir, (num_frames, 3))
    )
    back = _apply(R, np.array([0.0, 0.0, -1.0]))
    fwd = -back
    chains = (
        (5, 6, 7, 0, body.front_upper, body.front_lower, back),
        (8, 9, 10, 1, body.front_upper, body.front_lower, back),
        (11, 12, 13, 2, body.hind_upper, body.hind_lower, fwd),
        (14, 15, 16, 3, body.hind_upper, body.hind_lower, fwd),
    )
    for top_j, mid_j, end_j, f, a, b, hint in chains:
        top = root + _apply(R, attach[f])
        out[:, top_j] = top
        out[:, mid_j], out[:, end_j] = _two_bone_ik(top, st.feet[f], a, b, hint)
    params.update(duty=duty, gait=gait_name)
    return out, st.stance.T.copy()


# ------------------------------------------------------------------------------------------ public API
def _skeleton_of(skeleton: str | Skeleton) -> Skeleton:
    if isinstance(skeleton, Skeleton):
        if skeleton.name in ("body14", "quadruped17"):
            return skeleton
    elif isinstance(skeleton, str):
        key = skeleton.lower()
        if key == "body14":
            return BODY14
        if key in ("quadruped", "quadruped17"):
            return QUADRUPED17
    raise ValueError(f"skeleton must be 'body14' or 'quadruped' (or BODY14 / QUADRUPED17), got {skeleton!r}")


def _check_common(num_frames: int, fps: float, seed: int) -> None:
    if not isinstance(num_frames, (int, np.integer)) or isinstance(num_frames, bool) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")


def _const(value: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda t: np.full_like(t, value, dtype=np.float64)


def _varying(
    base: float, rel: float, offset: float, period: float, phase: float
) -> Callable[[np.ndarray], np.ndarray]:
    """``base * (1 + rel * sin(...)) + offset * sin(...)``: a smooth in-clip variation."""
    return lambda t: (
        base * (1 + rel * np.sin(2 * math.pi * t / period + phase))
        + offset * np.sin(2 * math.pi * t / (1.7 * period) + 2 * phase)
    )


def _generate(
    kind: str,
    num_frames: int,
    fps: float,
    seed: int,
    skeleton: str | Skeleton,
    speed: float | None,
    height: float | None,
    heading: float | None,
    turn_rate: float | None,
    amplitude: float | None,
    jump_height: float | None,
    jump_distance: float | None,
    start: Sequence[float],
    vary: bool,
    label: str,
) -> ProceduralMotion:
    _check_common(num_frames, fps, seed)
    skel = _skeleton_of(skeleton)
    quad = skel is QUADRUPED17
    kinds = QUADRUPED_KINDS if quad else HUMAN_KINDS
    if kind not in kinds:
        raise ValueError(f"kind must be one of {kinds} for skeleton {skel.name!r}, got {kind!r}")
    start_xz = np.asarray(start, dtype=np.float64)
    if start_xz.shape != (2,) or not np.all(np.isfinite(start_xz)):
        raise ValueError(f"start must be the (x, z) floor position of the root, got {start!r}")
    rng = np.random.default_rng(seed)
    # Every draw happens in a fixed order, so giving one parameter never changes the others.
    d_height = rng.uniform(1.5, 1.9) if not quad else rng.uniform(0.25, 0.75)
    d_heading = rng.uniform(-math.pi, math.pi)
    d_turn = rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.8)
    d_amp = rng.uniform(0.8, 1.2)
    d_jump_h, d_jump_d = rng.uniform(0.15, 0.45), rng.choice([0.0, rng.uniform(0.2, 0.8)])
    ranges = {
        "walk": (0.9, 1.6),
        "turn": (0.8, 1.4),
        "run": (2.4, 4.0),
        "dance": (0.1, 0.45),
        "jump": (0.0, 0.0),
    }
    if quad:
        lo, hi = (1.0, 2.0) if kind == "trot" else (0.35, 0.8)
        d_speed = rng.uniform(lo, hi) * math.sqrt(d_height / 0.5)
    else:
        d_speed = rng.uniform(*ranges[kind])
    vary_params = rng.uniform(0, 1, size=6)
    body_rng = np.random.default_rng([seed, 1])
    motion_rng = np.random.default_rng([seed, 2])

    size = float(height) if height is not None else float(d_height)
    v = float(speed) if speed is not None else float(d_speed)
    theta = float(heading) if heading is not None else float(d_heading)
    amp = float(amplitude) if amplitude is not None else float(d_amp)
    if v < 0 or not math.isfinite(v):
        raise ValueError(f"speed must be a non-negative number of m/s, got {speed!r}")
    if not 0 <= amp <= 2:
        raise ValueError(f"amplitude must be in [0, 2] (1 = nominal), got {amplitude!r}")
    if kind == "turn":
        w = float(turn_rate) if turn_rate is not None else float(d_turn)
    else:
        w = float(turn_rate) if turn_rate is not None else 0.0
    params: dict[str, Any] = {"kind": kind, "seed": int(seed), "skeleton": skel.name, "heading": theta}
    if vary:
        speed_fn = _varying(
            v, 0.25 * vary_params[0], 0.0, 3.0 + 4.0 * vary_params[1], 2 * math.pi * vary_params[2]
        )
        turn_fn = _varying(
            w, 0.0, 0.5 * vary_params[3], 2.5 + 4.0 * vary_params[4], 2 * math.pi * vary_params[5]
        )
    else:
        speed_fn, turn_fn = _const(v), _const(w)
    if kind == "dance":
        wander = 0.8 * vary_params[3] + 0.4
        turn_fn = _varying(w, 0.0, wander, 2.0 + 3.0 * vary_params[4], 2 * math.pi * vary_params[5])

    if quad:
        qbody = QuadrupedBody.from_shoulder_height(size, body_rng)
        gait_name = "trot" if kind == "trot" else "walk"
        pos, contacts = _quadruped_gait(
            num_frames,
            fps,
            motion_rng,
            qbody,
            gait_name,
            speed_fn,
            turn_fn,
            theta,
            start_xz,
            amp,
            params,
        )
        feet = (7, 10, 13, 16)
        foot_h = qbody.paw_height
        params.update(shoulder_height=size, speed=v, turn_rate=w)
    else:
        hbody = HumanBody.from_height(size, body_rng)
        if kind == "jump":
            jh = float(jump_height) if jump_height is not None else float(d_jump_h)
            jd = float(jump_distance) if jump_distance is not None else float(d_jump_d)
            if not 0.02 <= jh <= 1.0:
                raise ValueError(f"jump_height must be in [0.02, 1.0] m, got {jump_height!r}")
            if not 0 <= jd <= 1.5:
                raise ValueError(f"jump_distance must be in [0, 1.5] m, got {jump_distance!r}")
            pos, contacts = _human_jump(num_frames, fps, motion_rng, hbody, theta, start_xz, jh, jd, params)
            params.update(jump_height=jh, jump_distance=jd)
        else:
            pos, contacts = _human_gait(
                kind, num_frames, fps, motion_rng, hbody, speed_fn, turn_fn, theta, start_xz, amp, params
            )
            params.update(speed=v, turn_rate=w)
        feet = (_LANK, _RANK)
        foot_h = hbody.ankle_height
        params.update(height=size)
    params.update(amplitude=amp, fps=float(fps), num_frames=int(num_frames))
    motion = Motion(
        pos, float(fps), skel.joint_names, skel.parents, skel, f"synthetic:procedural:{label}:seed={seed}"
    )
    return ProceduralMotion(motion, contacts.astype(bool), feet, float(foot_h), params)


def generate(
    kind: str,
    num_frames: int,
    fps: float = 30.0,
    *,
    seed: int = 0,
    skeleton: str | Skeleton = "body14",
    speed: float | None = None,
    height: float | None = None,
    heading: float | None = None,
    turn_rate: float | None = None,
    amplitude: float | None = None,
    jump_height: float | None = None,
    jump_distance: float | None = None,
    start: Sequence[float] = (0.0, 0.0),
) -> ProceduralMotion:
    """Generate one procedural clip with its contact labels (see the module docstring).

    Args:
        kind: humans: 'walk', 'turn', 'run', 'jump', 'dance'; quadruped: 'walk', 'trot', 'turn'.
        num_frames: T >= 1.
        fps: frame rate (frames are at t = k / fps).
        seed: everything not given below is drawn from the kind's plausible range with this seed.
        skeleton: 'body14' (humans) or 'quadruped' (QUADRUPED17).
        speed: root path speed in m/s (walk 0.9-1.6, turn 0.8-1.4, run 2.4-4.0, dance 0.1-0.45; quadruped
            walk 0.35-0.8 and trot 1.0-2.0, times sqrt(shoulder height / 0.5 m)). Ignored for 'jump'.
        height: body height in metres (humans 1.5-1.9) or the quadruped's shoulder height (0.25-0.75).
        heading: initial walking direction in radians (0 = toward +Z, counter-clockwise from above).
        turn_rate: heading change in rad/s ('turn': +-0.3..0.8; other kinds: 0).
        amplitude: scale of arm swing / dance moves / body oscillations (0.8-1.2; 1 = nominal).
        jump_height: pelvis rise in flight in metres (0.15-0.45) for 'jump'.
        jump_distance: forward distance per jump in metres (0, or 0.2-0.8) for 'jump'.
        start: (x, z) of the path start on the floor.

    Returns:
        :class:`ProceduralMotion` (the :class:`Motion` plus contacts and the parameters used).
    """
    return _generate(
        kind,
        num_frames,
        fps,
        seed,
        skeleton,
        speed,
        height,
        heading,
        turn_rate,
        amplitude,
        jump_height,
        jump_distance,
        start,
        False,
        kind,
    )


def generate_motion(
    kind: str,
    num_frames: int,
    fps: float = 30.0,
    *,
    seed: int = 0,
    skeleton: str | Skeleton = "body14",
    **kwargs: Any,
) -> Motion:
    """Like :func:`generate` but returns only the :class:`Motion` (T, J, 3), Y up, metres.

    ``Motion.source`` is ``'synthetic:procedural:<kind>:seed=<seed>'``; keyword arguments are those of
    :func:`generate`.
    """
    return generate(kind, num_frames, fps, seed=seed, skeleton=skeleton, **kwargs).motion


def random_motion(
    seed: int,
    num_frames: int,
    fps: float = 30.0,
    *,
    skeleton: str | Skeleton = "body14",
    kinds: Sequence[str] | None = None,
    return_info: bool = False,
) -> Motion | ProceduralMotion:
    """A clip of a random kind with random parameters (speed, heading, turning, amplitude, body proportions).

    The kind is drawn uniformly from ``kinds`` (default: all kinds of the skeleton); for the stepping kinds
    the speed and the turn rate also vary smoothly within the clip. ``Motion.source`` is
    ``'synthetic:procedural:random-<kind>:seed=<seed>'``. Deterministic under ``seed``.
    """
    _check_common(num_frames, fps, seed)
    skel = _skeleton_of(skeleton)
    allowed = QUADRUPED_KINDS if skel is QUADRUPED17 else HUMAN_KINDS
    choices = tuple(kinds) if kinds is not None else allowed
    bad = [k for k in choices if k not in allowed]
    if not choices or bad:
        raise ValueError(f"kinds must be a non-empty subset of {allowed} for {skel.name!r}, got {kinds!r}")
    rng = np.random.default_rng([seed, 7])
    kind = str(rng.choice(list(choices)))
    out = _generate(
        kind,
        num_frames,
        fps,
        seed,
        skel,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        (0.0, 0.0),
        True,
        f"random-{kind}",
    )
    return out if return_info else out.motion
