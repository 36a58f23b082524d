"""Procedural human-object motion: the joint set, determinism, rigid body and object, hands on the grips,
the object on the floor when nobody holds it, the three kinds, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from mvlift.data.procedural import generate
from mvlift.data.procedural_object import (
    BODY14_OBJECT5,
    OBJECT_JOINTS,
    OBJECT_KINDS,
    generate_object,
    random_object_motion,
)
from mvlift.data.skeletons import BODY14, convert

J_BODY = BODY14.num_joints
WRISTS = (BODY14.index("left_wrist"), BODY14.index("right_wrist"))
ARM_JOINTS = [BODY14.index(n) for n in ("left_elbow", "left_wrist", "right_elbow", "right_wrist")]


def _pairwise(x: np.ndarray) -> np.ndarray:
    """(T, K, 3) -> (T, K, K) distances."""
    return np.linalg.norm(x[:, :, None] - x[:, None], axis=-1)


def test_skeleton_layout():
    s = BODY14_OBJECT5
    assert s.num_joints == 19
    assert s.joint_names[:J_BODY] == BODY14.joint_names and s.joint_names[J_BODY:] == OBJECT_JOINTS
    assert s.parents[:J_BODY] == BODY14.parents and s.root == BODY14.root
    centre = s.index("object_center")
    assert s.parents[centre] == BODY14.index("right_wrist")
    assert all(s.parents[j] == centre for j in range(centre + 1, 19))
    swap = s.left_right_swap  # the corner names mirror each other
    assert swap[s.index("object_front_left")] == s.index("object_front_right")
    assert swap[centre] == centre


@pytest.mark.parametrize("kind", OBJECT_KINDS)
def test_deterministic_labelled_and_shaped(kind, seed):
    s = seed % 10_000
    a = generate_object(kind, 60, 30, seed=s)
    b = generate_object(kind, 60, 30, seed=s)
    c = generate_object(kind, 60, 30, seed=s + 1)
    np.testing.assert_array_equal(a.motion.positions, b.motion.positions)
    np.testing.assert_array_equal(a.grips, b.grips)
    assert not np.allclose(a.motion.positions, c.motion.positions)
    m = a.motion
    assert m.source == f"synthetic:procedural-object:{kind}:seed={s}"
    assert m.skeleton is BODY14_OBJECT5 and m.joint_names == BODY14_OBJECT5.joint_names
    assert m.positions.shape == (60, 19, 3) and m.fps == 30.0 and np.isfinite(m.positions).all()
    assert a.held.shape == (60, 2) and a.grips.shape == (60, 2, 3) and a.on_floor.shape == (60,)
    assert a.contacts.shape == (60, 2) and a.half_extents.shape == (3,) and a.grip_local.shape == (2, 3)
    # the BODY14 part converts to BODY14 unchanged
    np.testing.assert_array_equal(convert(m.positions, BODY14_OBJECT5, BODY14), m.positions[:, :J_BODY])


@pytest.mark.parametrize("kind", OBJECT_KINDS)
def test_rigid_body_and_object_and_hands_on_grips(kind, seed):
    g = generate_object(kind, 150, 30, seed=seed % 10_000)
    p = g.motion.positions
    body_bones = [(c, par) for c, par in BODY14_OBJECT5.bones if c < J_BODY]
    lengths = np.stack([np.linalg.norm(p[:, c] - p[:, par], axis=-1) for c, par in body_bones], axis=1)
    assert np.abs(lengths - lengths[0]).max() < 1e-9 and lengths.min() > 0.05
    obj = p[:, J_BODY:]
    d = _pairwise(obj)
    assert np.abs(d - d[0]).max() < 1e-9  # rigid
    a, b, c = g.half_extents
    assert d[0, 0, 1] == pytest.approx(np.sqrt(a * a + b * b + c * c), abs=1e-12)  # centre to a corner
    assert d[0, 1, 2] == pytest.approx(2 * a, abs=1e-12)  # front-left to front-right
    assert d[0, 1, 3] == pytest.approx(2 * c, abs=1e-12)  # front-left to back-left
    for hand, wrist in enumerate(WRISTS):
        held = g.held[:, hand]
        if not held.any():
            assert np.isnan(g.grip_local[hand]).all() and np.isnan(g.grips[:, hand]).all()
            continue
        # the grip point is fixed on the object: constant distances to the 5 keypoints
        to_obj = np.linalg.norm(obj - g.grips[:, hand, None], axis=-1)
        assert np.abs(to_obj - to_obj[0]).max() < 1e-9
        err = np.linalg.norm(p[held, wrist] - g.grips[held, hand], axis=-1)
        assert err.max() < 1e-6, err.max()
    # nothing below the floor: ankles at their height, the box's bottom face at y >= 0
    assert p[:, :J_BODY, 1].min() > 0.0
    if kind != "swing":
        assert (obj[:, 0, 1] - b).min() >= -1e-9


def test_carry_holds_the_box_in_front_while_walking(seed):
    s = seed % 10_000
    g = generate_object("carry", 90, 30, seed=s)
    p = g.motion.positions
    assert g.held.all() and not g.on_floor.any()
    # the legs, trunk and head are the procedural walk's, only the arms are re-posed (same bone lengths)
    ref = generate(g.params["base_kind"], 90, 30, seed=s, speed=g.params["speed"]).motion.positions
    others = [j for j in range(J_BODY) if j not in ARM_JOINTS]
    np.testing.assert_array_equal(p[:, others], ref[:, others])
    for child, parent in ((3, 2), (4, 3), (6, 5), (7, 6)):
        assert np.linalg.norm(p[0, child] - p[0, parent]) == pytest.approx(
            np.linalg.norm(ref[0, child] - ref[0, parent]), abs=1e-12
        )
    # in front of the chest (left x up = forward), below the neck, above the hips; the person walks
    left = p[:, 5] - p[:, 2]
    up = p[:, 1] - p[:, [8, 11]].mean(1)
    fwd = np.cross(left, up)
    ahead = ((p[:, J_BODY] - p[:, 1]) * fwd).sum(-1) / np.linalg.norm(fwd, axis=-1)
    assert ahead.min() > 0.1
    assert np.all(p[:, J_BODY, 1] < p[:, 1, 1]) and np.all(p[:, J_BODY, 1] > p[:, [8, 11], 1].mean(1) - 0.2)
    root = p[:, [8, 11]].mean(1)
    assert np.linalg.norm(root[-1, [0, 2]] - root[0, [0, 2]]) > 1.0


def test_lift_object_rests_on_the_floor_unless_held(seed):
    g = generate_object("lift", 300, 30, seed=seed % 10_000)  # 10 s: at least one full cycle (<= 7.5 s)
    p = g.motion.positions
    obj = p[:, J_BODY:]
    b = g.half_extents[1]
    held = g.held.any(1)
    assert np.array_equal(g.held[:, 0], g.held[:, 1])  # both hands together
    assert not np.any(~held & ~g.on_floor)  # nobody holds it -> it is on the floor
    assert g.on_floor.any() and (held & ~g.on_floor).any()
    floor = obj[g.on_floor]
    np.testing.assert_allclose(floor[:, 0, 1], b, atol=1e-12)  # centre half a box above y = 0
    np.testing.assert_allclose(floor[:, 1:, 1], 2 * b, atol=1e-12)  # top face
    np.testing.assert_allclose(floor, np.broadcast_to(floor[0], floor.shape), atol=1e-12)  # does not move
    assert obj[:, 0, 1].max() > b + 0.4  # it is really lifted
    # the hands are off the box some of the time, and reach it from a squat
    assert (~held).any() and g.contacts.all()
    ankles = p[:, list(g.foot_joints)]
    np.testing.assert_allclose(ankles, np.broadcast_to(ankles[0], ankles.shape), atol=1e-12)
    hips = p[:, [8, 11], 1].mean(1)
    assert hips[held & g.on_floor].max() < hips.max() - 0.2


def test_swing_object_in_the_right_fist(seed):
    g = generate_object("swing", 90, 30, seed=seed % 10_000)
    p = g.motion.positions
    assert g.held[:, 1].all() and not g.held[:, 0].any() and not g.on_floor.any()
    hand = g.params["hand_length"]
    np.testing.assert_allclose(np.linalg.norm(p[:, J_BODY] - p[:, WRISTS[1]], axis=-1), hand, atol=1e-12)
    # the body is the procedural dance, untouched
    ref = generate("dance", 90, 30, seed=seed % 10_000).motion.positions
    np.testing.assert_array_equal(p[:, :J_BODY], ref)


def test_random_object_motion(seed):
    s = seed % 10_000
    a = random_object_motion(s, 45)
    b = random_object_motion(s, 45)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert a.source.startswith("synthetic:procedural-object:random-") and a.source.endswith(f":seed={s}")
    assert a.skeleton is BODY14_OBJECT5 and a.positions.shape == (45, 19, 3)
    kinds = {random_object_motion(i, 8, return_info=True).params["kind"] for i in range(s, s + 24)}
    assert kinds == set(OBJECT_KINDS)
    only = random_object_motion(s, 30, kinds=["lift"], return_info=True)
    assert only.params["kind"] == "lift" and only.motion.source.startswith(
        "synthetic:procedural-object:random-lift"
    )


def test_bad_input():
    with pytest.raises(ValueError, match="kind must be one of"):
        generate_object("juggle", 10)
    with pytest.raises(ValueError, match="num_frames"):
        generate_object("carry", 0)
    with pytest.raises(ValueError, match="fps"):
        generate_object("carry", 10, fps=-1.0)
    with pytest.raises(TypeError, match="seed"):
        generate_object("carry", 10, seed=1.5)
    with pytest.raises(ValueError, match="height"):
        generate_object("lift", 10, height=3.0)
    with pytest.raises(ValueError, match="speed"):
        generate_object("carry", 10, speed=-0.5)
    with pytest.raises(ValueError, match="start"):
        generate_object("carry", 10, start=(0.0, 1.0, 2.0))
    with pytest.raises(ValueError, match="kinds must be"):
        random_object_motion(0, 10, kinds=["walk"])
