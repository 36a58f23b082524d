"""BVH reader: FK against an independent per-frame implementation, the CMU-131 BVH facts (data README), units,
and corrupt / truncated files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mvlift.data import load_mocap
from mvlift.data.bvh import UNITS, load_bvh
from mvlift.data.motion import MocapFormatError

ASF_UNIT = 0.0254 / 0.45


def _ref_bvh(text: str, n_frames: int) -> tuple[list[str], np.ndarray]:
    """Independent reference: recursive parse, per-frame FK with scipy intrinsic (uppercase) Euler angles.
    Returns joint names (no end sites) and positions (n_frames, J, 3) in file units."""
    toks = text.split()
    k = toks.index("ROOT")
    joints = []  # (name, parent, offset, channels)

    def parse(parent: int) -> None:
        nonlocal k
        name = toks[k + 1]
        k += 3  # ROOT/JOINT name {
        assert toks[k] == "OFFSET"
        offset = np.array([float(v) for v in toks[k + 1 : k + 4]])
        n = int(toks[k + 5])
        channels = toks[k + 6 : k + 6 + n]
        k += 6 + n
        me = len(joints)
        joints.append((name, parent, offset, channels))
        while toks[k] != "}":
            if toks[k] == "JOINT":
                parse(me)
            else:  # End Site { OFFSET x y z }
                k += 8
        k += 1

    parse(-1)
    m = toks.index("MOTION")
    values = np.array([float(v) for v in toks[m + 6 :]]).reshape(-1, sum(len(j[3]) for j in joints))
    out = np.zeros((n_frames, len(joints), 3))
    for t in range(n_frames):
        col, glob = 0, []
        for i, (_, parent, offset, channels) in enumerate(joints):
            trans = offset.copy()
            axes, angles = "", []
            for ch in channels:
                v = values[t, col]
                col += 1
                if ch.endswith("position"):
                    trans["XYZ".index(ch[0])] += v
                else:
                    axes += ch[0]
                    angles.append(v)
            local = Rotation.from_euler(axes, angles, degrees=True) if axes else Rotation.identity()
            if parent < 0:
                out[t, i], g = trans, local
            else:
                out[t, i] = out[t, parent] + glob[parent].apply(trans)
                g = glob[parent] * local
            glob.append(g)
    return [j[0] for j in joints], out


SMALL = """HIERARCHY
ROOT Base
{
  OFFSET 1.0 2.0 3.0
  CHANNELS 6 Zposition Xposition Yposition Xrotation Zrotation Yrotation
  JOINT Arm
  {
    OFFSET 0.0 10.0 0.0
    CHANNELS 4 Yrotation Xposition Xrotation Zrotation
    JOINT Hand
    {
      OFFSET 5.0 0.0 -2.0
      CHANNELS 3 Zrotation Yrotation Xrotation
      End Site
      {
        OFFSET 0.0 3.0 0.0
      }
    }
  }
  JOINT Leg
  {
    OFFSET 0.0 -10.0 1.0
    CHANNELS 3 Yrotation Zrotation Xrotation
    End Site
    {
      OFFSET 0.0 -8.0 0.0
    }
  }
}
MOTION
Frames: 4
Frame Time: 0.04
"""


@pytest.fixture(scope="module")
def bvh_dir(cmu_dir: Path) -> Path:
    return cmu_dir / "bvh"


def test_fk_matches_reference_on_synthetic_file(tmp_path: Path, seed: int):
    rng = np.random.default_rng(seed)
    values = rng.uniform(-90, 90, size=(4, 16))
    path = tmp_path / "small.bvh"
    text = SMALL + "\n".join(" ".join(f"{v:.6f}" for v in row) for row in values) + "\n"
    path.write_text(text)
    motion = load_bvh(path, units="cm")
    names, ref = _ref_bvh(text, 4)
    assert motion.joint_names == tuple(names) == ("Base", "Arm", "Hand", "Leg")
    assert motion.parents == (-1, 0, 1, 0)
    assert motion.fps == 25.0
    np.testing.assert_allclose(motion.positions, ref * 0.01, rtol=0, atol=1e-12)
    with_ends = load_bvh(path, units=1.0, end_sites=True)
    assert with_ends.joint_names == ("Base", "Arm", "Hand", "Hand_end", "Leg", "Leg_end")
    assert with_ends.parents == (-1, 0, 1, 2, 0, 4)


@pytest.mark.parametrize("clip", ["131_01", "131_03"])
def test_fk_matches_reference_on_cmu_file(bvh_dir: Path, clip: str):
    n = 6
    motion = load_bvh(bvh_dir / f"{clip}.bvh", units="asf", max_frames=n)
    names, ref = _ref_bvh((bvh_dir / f"{clip}.bvh").read_text(), n)
    assert motion.joint_names == tuple(names)
    np.testing.assert_allclose(motion.positions, ref * ASF_UNIT, rtol=0, atol=1e-9)


@pytest.mark.parametrize("clip", ["131_01", "131_02", "131_03"])
def test_cmu_bvh_facts(bvh_dir: Path, clip: str):
    motion = load_bvh(bvh_dir / f"{clip}.bvh", end_sites=True)  # units='auto' -> ASF units
    assert motion.fps == 120.0
    joints = [n for n in motion.joint_names if not n.endswith("_end")]
    assert len(joints) == 31
    p = motion.positions
    n = motion.joint_names
    par = np.array(motion.parents[1:])
    lengths = np.linalg.norm(p[:, 1:] - p[:, par], axis=-1)
    assert lengths.std(axis=0).max() < 1e-7
    # README: the thorax bone is dropped (lowerneck sits on Chest2) and the performer measures ~1.33 m
    np.testing.assert_allclose(p[:, n.index("lowerneck")], p[:, n.index("Chest2")], atol=1e-12)
    height = p[:, n.index("Head_end"), 1] - p[:, :, 1].min(axis=1)
    assert 1.28 <= np.median(height) <= 1.42
    lowest = p[:, :, 1].min(axis=1)
    assert np.mean((lowest > -0.03) & (lowest < 0.1)) > 0.9


def test_units(bvh_dir: Path):
    path = bvh_dir / "131_02.bvh"
    auto = load_bvh(path, max_frames=10)
    asf = load_bvh(path, units="asf", max_frames=10)
    np.testing.assert_array_equal(auto.positions, asf.positions)
    inches = load_bvh(path, units="inches", max_frames=10)
    np.testing.assert_allclose(inches.positions, asf.positions * 0.45, rtol=1e-12)
    raw = load_bvh(path, units=1.0, max_frames=10)
    np.testing.assert_allclose(raw.positions * UNITS["asf"], asf.positions, rtol=1e-12)
    via_loader = load_mocap(path, max_frames=10)
    np.testing.assert_array_equal(via_loader.positions, asf.positions)
    with pytest.raises(ValueError, match="units"):
        load_bvh(path, units="furlongs")
    with pytest.raises(ValueError, match="units"):
        load_bvh(path, units=-2.0)


def test_auto_units_on_centimetre_file(tmp_path: Path):
    """A 170-unit tall figure is read as centimetres."""
    text = """HIERARCHY
ROOT Hips
{
  OFFSET 0 90 0
  CHANNELS 3 Xposition Yposition Zposition
  JOINT Spine
  {
    OFFSET 0 70 0
    CHANNELS 1 Xrotation
    End Site
    {
      OFFSET 0 10 0
    }
  }
  JOINT Leg
  {
    OFFSET 0 -90 0
    CHANNELS 1 Xrotation
    End Site
    {
      OFFSET 0 0 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.0333333
0 90 0 0 0
0 90 5 10 0
"""
    path = tmp_path / "cm.bvh"
    path.write_text(text)
    motion = load_bvh(path)
    assert motion.fps == 30.0
    np.testing.assert_allclose(motion.positions[1, 0], [0.0, 1.8, 0.05])  # offset 90 + channel 90 cm


def _cut(tmp_path: Path, lines: list[str], name: str) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_truncated_motion(tmp_path: Path, bvh_dir: Path):
    lines = (bvh_dir / "131_01.bvh").read_text().splitlines()
    m = lines.index("MOTION")
    short = _cut(tmp_path, lines[: m + 50], "short.bvh")  # 47 of 994 frames
    with pytest.raises(MocapFormatError, match=rf"short\.bvh:{m + 50}: file declares 994 frames but has 47"):
        load_bvh(short)
    cut_line = lines[: m + 50]
    cut_line[-1] = " ".join(cut_line[-1].split()[:20])
    cut_line += lines[m + 50 :]
    partial = _cut(tmp_path, cut_line, "partial.bvh")
    with pytest.raises(MocapFormatError, match=rf"partial\.bvh:{m + 50}: 20 values, expected 96"):
        load_bvh(partial)


def test_corrupt_hierarchy_and_values(tmp_path: Path, bvh_dir: Path):
    lines = (bvh_dir / "131_01.bvh").read_text().splitlines()
    head = _cut(tmp_path, lines[:40], "head.bvh")
    with pytest.raises(MocapFormatError, match=r"head\.bvh: no MOTION section"):
        load_bvh(head)
    bad = list(lines)
    k = next(i for i, ln in enumerate(bad) if "JOINT LeftKnee" in ln)
    bad[k + 2] = "OFFSET 2.49329 x 0.0"
    path = _cut(tmp_path, bad, "offset.bvh")
    with pytest.raises(MocapFormatError, match=rf"offset\.bvh:{k + 3}: expected 3 numbers"):
        load_bvh(path)
    bad = list(lines)
    m = bad.index("MOTION")
    bad[m + 10] = bad[m + 10].replace("0.0000", "nan?", 1)
    path = _cut(tmp_path, bad, "value.bvh")
    with pytest.raises(MocapFormatError, match=rf"value\.bvh:{m + 11}: non-numeric"):
        load_bvh(path)
    bad = list(lines)
    bad[m + 1] = "Frames: many"
    path = _cut(tmp_path, bad, "frames.bvh")
    with pytest.raises(MocapFormatError, match=r"frames\.bvh:\d+: bad Frames"):
        load_bvh(path)
