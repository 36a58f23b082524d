"""mvlift .npz format: round trips, atomic writes, version / key errors, load_mocap dispatch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mvlift.data import load_mocap
from mvlift.data.motion import MocapFormatError, Motion, Sequence2D
from mvlift.data.npz import (
    NPZ_FORMAT_VERSION,
    load_motion_npz,
    load_sequence2d_npz,
    save_motion_npz,
    save_sequence2d_npz,
)
from mvlift.data.skeletons import BODY14, CMU31


@pytest.fixture
def motion(seed: int) -> Motion:
    rng = np.random.default_rng(seed)
    return Motion(
        rng.normal(size=(13, 31, 3)), 120.0, CMU31.joint_names, CMU31.parents, CMU31, "synthetic:npz"
    )


def test_motion_round_trip(tmp_path: Path, motion: Motion):
    path = tmp_path / "sub" / "m.npz"
    save_motion_npz(path, motion)
    back = load_motion_npz(path)
    np.testing.assert_array_equal(back.positions, motion.positions)
    assert back.positions.dtype == np.float64
    assert (back.fps, back.joint_names, back.parents, back.source) == (
        motion.fps,
        motion.joint_names,
        motion.parents,
        motion.source,
    )
    assert back.skeleton is CMU31
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.npz"]  # no temporary left behind
    via = load_mocap(path)
    np.testing.assert_array_equal(via.positions, motion.positions)
    assert load_mocap(path, max_frames=4).num_frames == 4
    with np.load(path, allow_pickle=False) as z:
        assert int(z["format_version"]) == NPZ_FORMAT_VERSION and str(z["kind"]) == "motion"


def test_motion_without_skeleton(tmp_path: Path, seed: int):
    rng = np.random.default_rng(seed)
    m = Motion(rng.normal(size=(3, 4, 3)), 30.0, ("a", "b", "c", "d"), (-1, 0, 1, 1), None, "x.bvh")
    save_motion_npz(tmp_path / "m.npz", m)
    back = load_motion_npz(tmp_path / "m.npz")
    assert (
        back.skeleton is None and back.joint_names == ("a", "b", "c", "d") and back.parents == (-1, 0, 1, 1)
    )


def test_overwrite_is_atomic_replacement(tmp_path: Path, motion: Motion):
    path = tmp_path / "m.npz"
    save_motion_npz(path, motion)
    motion.positions = motion.positions[:5] + 1.0
    save_motion_npz(path, motion)
    np.testing.assert_array_equal(load_motion_npz(path).positions, motion.positions)
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_sequence2d_round_trip(tmp_path: Path, seed: int):
    rng = np.random.default_rng(seed)
    kp = rng.uniform(0, 1920, size=(9, 14, 2))
    kp[2, 3] = np.nan
    conf = rng.uniform(size=(9, 14))
    conf[2, 3] = 0.0
    seq = Sequence2D(kp, conf, 30.0, BODY14.joint_names, (1920, 1080), BODY14, "synthetic:2d")
    save_sequence2d_npz(tmp_path / "s.npz", seq)
    back = load_sequence2d_npz(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.keypoints, kp)  # NaN compare equal here
    np.testing.assert_array_equal(back.confidence, conf)
    assert back.image_size == (1920, 1080) and back.skeleton is BODY14 and back.fps == 30.0
    assert back.parents == BODY14.parents
    seq.image_size = None
    save_sequence2d_npz(tmp_path / "s.npz", seq)
    assert load_sequence2d_npz(tmp_path / "s.npz").image_size is None
    with pytest.raises(MocapFormatError, match=r"s\.npz: holds a 'sequence2d', not a 'motion'"):
        load_motion_npz(tmp_path / "s.npz")


def test_errors(tmp_path: Path, motion: Motion):
    save_motion_npz(tmp_path / "m.npz", motion)
    with np.load(tmp_path / "m.npz") as z:
        arrays = {k: z[k] for k in z.files}
    partial = {k: v for k, v in arrays.items() if k != "positions"}
    np.savez(tmp_path / "nopos.npz", **partial)
    with pytest.raises(MocapFormatError, match=r"nopos\.npz: missing key 'positions'"):
        load_motion_npz(tmp_path / "nopos.npz")
    np.savez(tmp_path / "future.npz", **{**arrays, "format_version": np.array(NPZ_FORMAT_VERSION + 1)})
    with pytest.raises(MocapFormatError, match=r"future\.npz: format_version 2 is newer"):
        load_motion_npz(tmp_path / "future.npz")
    np.savez(tmp_path / "noversion.npz", **{k: v for k, v in arrays.items() if k != "format_version"})
    with pytest.raises(MocapFormatError, match=r"noversion\.npz: missing key 'format_version'"):
        load_motion_npz(tmp_path / "noversion.npz")
    np.savez(tmp_path / "names.npz", **{**arrays, "joint_names": arrays["joint_names"][:5]})
    with pytest.raises(MocapFormatError, match=r"names\.npz: inconsistent contents"):
        load_motion_npz(tmp_path / "names.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(MocapFormatError, match=r"junk\.npz: cannot read npz"):
        load_motion_npz(tmp_path / "junk.npz")
