"""Procedural motion: determinism, rigid bones, planted feet, speed, heights, kinds, the quadruped."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mvlift.data.motion import Motion
from mvlift.data.procedural import (
    HUMAN_KINDS,
    QUADRUPED17,
    QUADRUPED_KINDS,
    generate,
    generate_motion,
    random_motion,
)
from mvlift.data.skeletons import BODY14


def _bone_lengths(m: Motion) -> np.ndarray:
    p = m.positions
    return np.stack([np.linalg.norm(p[:, c] - p[:, par], axis=-1) for c, par in m.skeleton.bones], axis=1)


CASES = [(k, "body14") for k in HUMAN_KINDS] + [(k, "quadruped") for k in QUADRUPED_KINDS]


@pytest.mark.parametrize(("kind", "skeleton"), CASES)
def test_deterministic_and_labelled(kind, skeleton, seed):
    s = seed % 10_000
    a = generate_motion(kind, 90, 30, seed=s, skeleton=skeleton)
    b = generate_motion(kind, 90, 30, seed=s, skeleton=skeleton)
    c = generate_motion(kind, 90, 30, seed=s + 1, skeleton=skeleton)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert not np.allclose(a.positions, c.positions)
    assert a.source == f"synthetic:procedural:{kind}:seed={s}"
    assert a.positions.shape == (90, a.skeleton.num_joints, 3)
    assert a.fps == 30.0 and np.all(np.isfinite(a.positions))


@pytest.mark.parametrize(("kind", "skeleton"), CASES)
def test_bone_lengths_are_constant(kind, skeleton, seed):
    m = generate_motion(kind, 150, 30, seed=seed % 10_000, skeleton=skeleton)
    lengths = _bone_lengths(m)
    assert np.abs(lengths - lengths[0]).max() < 1e-9
    assert lengths.min() > 0.01


@pytest.mark.parametrize(("kind", "skeleton"), CASES)
def test_feet_are_planted_in_stance(kind, skeleton, seed):
    g = generate(kind, 150, 30, seed=seed % 10_000, skeleton=skeleton)
    p = g.motion.positions
    assert g.contacts.shape == (150, len(g.foot_joints)) and g.contacts.any() and not g.contacts.all()
    heel_lift = 0.08  # humans raise the heel at the end of stance (ankle rises by <= 7 cm x height / 1.75)
    for f, j in enumerate(g.foot_joints):
        y = p[:, j, 1]
        st = g.contacts[:, f]
        assert np.all(y[st] >= g.foot_height - 1e-9)
        assert np.all(y[st] <= g.foot_height + heel_lift)
        # in every stance segment the foot touches down at exactly the foot height and slides at most the
        # short toe roll (humans) - never with the body
        edges = np.flatnonzero(np.diff(np.concatenate([[0], st.astype(int), [0]])))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            assert y[a:b].min() == pytest.approx(g.foot_height, abs=1e-9) or a == 0
            travel = np.linalg.norm(p[b - 1, j, [0, 2]] - p[a, j, [0, 2]])
            assert travel <= 0.12
        # no joint goes through the floor
    assert p[..., 1].min() > 0.0


@pytest.mark.parametrize(("kind", "speed"), [("walk", 1.3), ("run", 3.2), ("walk", 0.9)])
def test_root_moves_at_the_requested_speed(kind, speed):
    g = generate(kind, 301, 30, seed=4, speed=speed, heading=0.3)
    root = BODY14.root_position(g.motion.positions)
    disp = root[-1, [0, 2]] - root[0, [0, 2]]
    assert np.linalg.norm(disp) / 10.0 == pytest.approx(speed, rel=0.03)
    # along the heading (0 = +Z, counter-clockwise from above: direction (sin h, cos h))
    np.testing.assert_allclose(disp / np.linalg.norm(disp), [math.sin(0.3), math.cos(0.3)], atol=0.02)


def test_quadruped_speed_and_heading():
    g = generate("trot", 301, 30, seed=2, skeleton="quadruped", speed=1.5, heading=-1.0)
    root = QUADRUPED17.root_position(g.motion.positions)
    disp = root[-1, [0, 2]] - root[0, [0, 2]]
    assert np.linalg.norm(disp) / 10.0 == pytest.approx(1.5, rel=0.02)
    np.testing.assert_allclose(disp / np.linalg.norm(disp), [math.sin(-1.0), math.cos(-1.0)], atol=0.01)


@pytest.mark.parametrize("height", [1.5, 1.75, 1.9])
def test_plausible_human_height(height):
    m = generate_motion("walk", 60, 30, seed=1, height=height)
    p = m.positions
    top = p[:, 0, 1].max()  # head joint = top of the head
    assert 0.93 * height <= top <= 1.03 * height
    hips = BODY14.root_position(p)[:, 1]
    assert 0.42 * height < hips.min() and hips.max() < 0.56 * height
    # default draws stay within 1.5-1.9 m
    for s in range(5):
        h = generate("walk", 10, 30, seed=s).params["height"]
        assert 1.5 <= h <= 1.9


def test_kinds_differ_in_the_expected_ways():
    walk = generate("walk", 240, 30, seed=3, heading=0.0)
    run = generate("run", 240, 30, seed=3, heading=0.0)
    jump = generate("jump", 240, 30, seed=3, jump_height=0.3, jump_distance=0.0)
    turn = generate("turn", 240, 30, seed=3, turn_rate=0.6, heading=0.0)
    dance = generate("dance", 240, 30, seed=3, amplitude=1.2)

    def root(g):
        return BODY14.root_position(g.motion.positions)

    def mean_speed(g):
        r = root(g)
        return np.linalg.norm(r[-1, [0, 2]] - r[0, [0, 2]]) / 8.0

    assert mean_speed(run) > 2 * mean_speed(walk)
    # running has a flight phase: frames with no foot on the ground; walking always has one
    assert (~run.contacts.any(1)).any() and walk.contacts.any(1).all()
    # the jump leaves the ground by about the requested height and stays in place
    rj = root(jump)[:, 1]
    assert rj.max() - np.median(rj) == pytest.approx(0.3, abs=0.05)
    assert (~jump.contacts.any(1)).any() and mean_speed(jump) < 0.05
    # the turn changes direction: 0.6 rad/s for 8 s
    r = root(turn)
    v0 = r[10, [0, 2]] - r[0, [0, 2]]
    v1 = r[-1, [0, 2]] - r[-11, [0, 2]]
    ang = math.atan2(v0[0] * v1[1] - v0[1] * v1[0], v0 @ v1)
    assert abs(ang) > 1.5
    # dancing raises the wrists above the shoulders at times; walking never does
    p, q = dance.motion.positions, walk.motion.positions
    assert (p[:, [4, 7], 1] > p[:, [2, 5], 1]).any()
    assert not (q[:, [4, 7], 1] > q[:, [2, 5], 1]).any()


def test_walk_arms_swing_opposite_to_legs():
    g = generate("walk", 120, 30, seed=8, heading=0.0)  # walking toward +Z
    p = g.motion.positions
    l_wrist_fwd = p[:, 7, 2] - p[:, 1, 2]
    l_ankle_fwd = p[:, 13, 2] - BODY14.root_position(p)[:, 2]
    assert np.corrcoef(l_wrist_fwd, l_ankle_fwd)[0, 1] < -0.5
    # knees bend forward (toward the walking direction) relative to the hip-ankle line
    hip, knee, ank = p[:, 11], p[:, 12], p[:, 13]
    mid = (hip + ank) / 2
    assert np.all((knee - mid)[:, 2] > -1e-9)


def test_quadruped_skeleton_and_gaits():
    assert QUADRUPED17.num_joints == 17 and QUADRUPED17.root == (2,)
    assert QUADRUPED17.left_right_swap  # every left joint has a right twin
    trot = generate("trot", 200, 30, seed=1, skeleton="quadruped")
    walk = generate("walk", 200, 30, seed=1, skeleton="quadruped")
    c = trot.contacts  # LF, RF, LH, RH
    # trot: diagonal pairs move together; walk: four-beat, at least two feet always down
    assert np.mean(c[:, 0] == c[:, 3]) > 0.95 and np.mean(c[:, 1] == c[:, 2]) > 0.95
    assert np.mean(c[:, 0] == c[:, 1]) < 0.3
    assert walk.contacts.sum(1).min() >= 2
    p = walk.motion.positions
    sh = walk.params["shoulder_height"]
    assert p[:, 1, 1].mean() == pytest.approx(sh, rel=0.05)  # neck (withers) at the shoulder height
    nose_fwd = (p[:, 0] - p[:, 2])[:, [0, 2]]
    tail_fwd = (p[:, 4] - p[:, 2])[:, [0, 2]]
    assert np.all((nose_fwd * tail_fwd).sum(1) < 0)  # head and tail on opposite ends


def test_random_motion_mixes_kinds_deterministically():
    kinds = {random_motion(s, 60).source.split(":")[2] for s in range(12)}
    assert len(kinds) >= 3 and all(k.startswith("random-") for k in kinds)
    a, b = random_motion(5, 60), random_motion(5, 60)
    np.testing.assert_array_equal(a.positions, b.positions)
    q = random_motion(3, 60, skeleton="quadruped", return_info=True)
    assert q.motion.skeleton is QUADRUPED17
    lengths = _bone_lengths(random_motion(9, 200, kinds=["walk"]))
    assert np.abs(lengths - lengths[0]).max() < 1e-9


@pytest.mark.parametrize(
    ("call", "exc", "words"),
    [
        (lambda: generate_motion("fly", 10), ValueError, "kind must be one of"),
        (lambda: generate_motion("jump", 10, skeleton="quadruped"), ValueError, "kind must be one of"),
        (lambda: generate_motion("walk", 0), ValueError, "num_frames"),
        (lambda: generate_motion("walk", 10, fps=-1), ValueError, "fps"),
        (lambda: generate_motion("walk", 10, skeleton="smpl24"), ValueError, "skeleton"),
        (lambda: generate_motion("walk", 10, speed=-1.0), ValueError, "speed"),
        (lambda: generate_motion("walk", 10, height=3.0), ValueError, "height"),
        (lambda: random_motion(0, 10, kinds=["trot"]), ValueError, "kinds"),
    ],
)
def test_bad_arguments(call, exc, words):
    with pytest.raises(exc, match=words):
        call()
