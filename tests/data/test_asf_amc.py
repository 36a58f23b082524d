"""ASF/AMC reader: forward kinematics against an independent per-frame implementation, and the physical facts
of the CMU clips (data README): constant bone lengths, height, floor contact, walking distance, the two
dancers' shared world frame; CRLF files; corrupt files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mvlift.data import load_mocap
from mvlift.data.asf_amc import euler_matrix, load_amc, load_asf
from mvlift.data.loading import find_asf, find_mocap_files
from mvlift.data.motion import MocapFormatError
from mvlift.data.skeletons import BODY14, CMU31

M_PER_UNIT = 0.0254 / 0.45


# ---------------------------------------------------------------- independent reference (per frame, scipy)
def _ref_parse_asf(path: Path) -> tuple[dict, dict]:
    bones, parents, section, cur = {}, {}, None, None
    for line in path.read_text().splitlines():
        t = line.split()
        if not t or t[0].startswith("#"):
            continue
        if t[0].startswith(":"):
            section = t[0]
            continue
        if section == ":bonedata":
            if t[0] == "begin":
                cur = {"dof": []}
            elif t[0] == "end":
                bones[cur["name"]] = cur
            elif t[0] == "name":
                cur["name"] = t[1]
            elif t[0] == "direction":
                cur["dir"] = np.array([float(v) for v in t[1:4]])
            elif t[0] == "length":
                cur["len"] = float(t[1])
            elif t[0] == "axis":
                cur["axis"] = [float(v) for v in t[1:4]]
            elif t[0] == "dof":
                cur["dof"] = t[1:]
        elif section == ":hierarchy" and t[0] not in ("begin", "end"):
            for child in t[1:]:
                parents[child] = t[0]
    return bones, parents


def _ref_parse_amc(path: Path, n: int) -> list[dict]:
    frames: list[dict] = []
    for line in path.read_text().splitlines():
        t = line.split()
        if not t or t[0].startswith((":", "#")):
            continue
        if len(t) == 1 and t[0].isdigit():
            if len(frames) == n:
                break
            frames.append({})
            continue
        frames[-1][t[0]] = [float(v) for v in t[1:]]
    return frames


def _ref_fk(bones: dict, parents: dict, frame: dict) -> dict[str, np.ndarray]:
    """One frame, the Acclaim convention written with scipy: lowercase 'xyz' = extrinsic = Rz Ry Rx."""
    root = frame["root"]
    pos = {"root": np.array(root[:3]) * M_PER_UNIT}
    glob = {"root": Rotation.from_euler("xyz", root[3:], degrees=True)}
    pending = list(bones)
    while pending:
        for name in list(pending):
            par = parents[name]
            if par not in glob:
                continue
            b = bones[name]
            c = Rotation.from_euler("xyz", b["axis"], degrees=True)
            m = Rotation.identity()
            if b["dof"]:
                axes = "".join(d[1] for d in b["dof"])
                m = Rotation.from_euler(axes, frame[name], degrees=True)
            glob[name] = glob[par] * c * m * c.inv()
            d = b["dir"] / np.linalg.norm(b["dir"])
            pos[name] = pos[par] + glob[name].apply(d * b["len"] * M_PER_UNIT)
            pending.remove(name)
    return pos


@pytest.fixture(scope="module")
def asf_dir(cmu_dir: Path) -> Path:
    return cmu_dir / "asfamc"


@pytest.fixture(scope="module")
def walk(asf_dir: Path):
    return load_amc(asf_dir / "05_01.amc", asf_dir / "05.asf")


@pytest.mark.parametrize("clip", ["05_01", "60_03", "64_01"])
def test_fk_matches_independent_per_frame_implementation(asf_dir: Path, clip: str):
    subject = clip.split("_")[0]
    n = 7
    motion = load_amc(asf_dir / f"{clip}.amc", asf_dir / f"{subject}.asf", max_frames=n)
    bones, parents = _ref_parse_asf(asf_dir / f"{subject}.asf")
    frames = _ref_parse_amc(asf_dir / f"{clip}.amc", n)
    assert motion.positions.shape == (n, 31, 3)
    for t, frame in enumerate(frames):
        ref = _ref_fk(bones, parents, frame)
        expected = np.stack([ref[name] for name in motion.joint_names])
        np.testing.assert_allclose(motion.positions[t], expected, rtol=0, atol=1e-9)


def test_euler_matrix_order_convention(seed: int):
    rng = np.random.default_rng(seed)
    angles = rng.uniform(-np.pi, np.pi, size=(5, 3))
    for order in ("xyz", "zxy", "yzx"):
        ours = euler_matrix(order, angles)
        ref = Rotation.from_euler(order, angles).as_matrix()  # lowercase = extrinsic = first axis first
        np.testing.assert_allclose(ours, ref, atol=1e-12)
    with pytest.raises(ValueError, match="angles"):
        euler_matrix("xyz", angles[:, :2])


def test_asf_contents(asf_dir: Path):
    asf = load_asf(asf_dir / "05.asf")
    assert asf.joint_names == CMU31.joint_names
    assert asf.joint_parents == CMU31.parents
    assert asf.skeleton is CMU31
    assert asf.metres_per_unit == pytest.approx(0.056444, abs=1e-6)
    assert asf.angle_unit == "deg"
    assert asf.root_order == ("TX", "TY", "TZ", "RX", "RY", "RZ")
    femur = asf.bone("lfemur")
    assert femur.dofs == ("rx", "ry", "rz")
    assert femur.limits == ((-160.0, 20.0), (-70.0, 70.0), (-60.0, 70.0))
    np.testing.assert_allclose(femur.axis, np.deg2rad([0.0, 0.0, 20.0]))
    assert femur.length == pytest.approx(6.57749)
    assert asf.bone("ltibia").dofs == ("rx",)
    assert asf.bone("lhipjoint").dofs == ()


@pytest.mark.parametrize("subject", ["05", "16", "60", "61", "64"])
def test_rest_pose_height(asf_dir: Path, subject: str):
    """README: head-top to lowest toe 1.45-1.62 m."""
    asf = load_asf(asf_dir / f"{subject}.asf")
    p = asf.rest_positions()
    n = asf.joint_names
    height = p[n.index("head"), 1] - min(p[n.index("ltoes"), 1], p[n.index("rtoes"), 1])
    assert 1.45 <= height <= 1.62


@pytest.mark.parametrize("clip", ["05_01", "16_02", "61_02"])
def test_bone_lengths_constant(asf_dir: Path, clip: str):
    subject = clip.split("_")[0]
    asf = load_asf(asf_dir / f"{subject}.asf")
    motion = load_amc(asf_dir / f"{clip}.amc", asf, max_frames=400)
    par = np.array(motion.parents[1:])
    lengths = np.linalg.norm(motion.positions[:, 1:] - motion.positions[:, par], axis=-1)  # (T, 30)
    expected = np.array([b.length for b in asf.bones]) * M_PER_UNIT
    assert np.abs(lengths - expected).max() < 1e-7
    assert lengths.std(axis=0).max() < 1e-7


def test_walk_floor_height_distance_speed(walk):
    p = walk.positions
    assert p.shape == (598, 31, 3) and walk.fps == 120.0
    lowest = p[:, :, 1].min(axis=1)
    assert np.mean((lowest > -0.03) & (lowest < 0.06)) > 0.95
    n = walk.joint_names
    height = p[:, n.index("head"), 1] - np.minimum(p[:, n.index("ltoes"), 1], p[:, n.index("rtoes"), 1])
    assert 1.45 <= np.median(height) <= 1.62
    root = p[:, 0]
    distance = np.linalg.norm(root[-1, [0, 2]] - root[0, [0, 2]])
    assert 4.2 <= distance <= 4.6  # README: 4.4 m in 598 frames
    speed = distance / walk.duration
    assert 0.8 <= speed <= 0.95  # README: 0.88 m/s at 120 fps


def test_walk_arms_hang_and_elbows_bend_forward(walk):
    """Distinguishes the Euler convention: with R = Rx Ry Rz instead, the elbows bend backward."""
    p = {name: walk.positions[:, i] for i, name in enumerate(walk.joint_names)}

    def unit(v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    left = unit(p["lhipjoint"] - p["rhipjoint"])
    up = unit(p["thorax"] - p["root"])
    forward = unit(np.cross(left, up))
    for side in "lr":
        upper = unit(p[side + "humerus"] - p[side + "clavicle"])
        fore = unit(p[side + "radius"] - p[side + "humerus"])
        bend = fore - (fore * upper).sum(-1, keepdims=True) * upper
        assert (upper * up).sum(-1).mean() < -0.9
        assert (bend * forward).sum(-1).mean() > 0.2
    toes_forward = (unit(p["ltoes"] - p["lfoot"]) * forward).sum(-1).mean()
    assert toes_forward > 0.8


def test_floor_contact_dance_and_cartwheel(asf_dir: Path):
    salsa = load_amc(asf_dir / "60_02.amc", asf_dir / "60.asf")
    lowest = salsa.positions[:, :, 1].min(axis=1)
    assert np.mean((lowest > -0.03) & (lowest < 0.06)) > 0.9
    cartwheel = load_amc(asf_dir / "05_06.amc", asf_dir / "05.asf")
    assert -0.15 < cartwheel.positions[:, :, 1].min() < -0.11  # README: cartwheel reaches -0.13 m


def test_salsa_pair_shares_world_frame(asf_dir: Path):
    lead = load_amc(asf_dir / "60_04.amc", asf_dir / "60.asf")
    follow = load_amc(asf_dir / "61_04.amc", asf_dir / "61.asf")
    assert lead.num_frames == follow.num_frames
    d = np.linalg.norm(lead.positions[:, 0, [0, 2]] - follow.positions[:, 0, [0, 2]], axis=1)
    assert np.mean(d < 3.0) > 0.95
    assert np.mean(d > 0.2) > 0.95  # two bodies, not one copied


@pytest.mark.parametrize(("clip", "subject"), [("16_02", "16"), ("64_01", "64")])
def test_crlf_files_load(asf_dir: Path, clip: str, subject: str):
    assert b"\r\n" in (asf_dir / f"{clip}.amc").read_bytes()[:2000]
    assert b"\r\n" in (asf_dir / f"{subject}.asf").read_bytes()[:2000]
    motion = load_mocap(asf_dir / f"{clip}.amc")
    assert motion.skeleton is CMU31
    assert motion.num_frames > 400
    assert np.isfinite(motion.positions).all()
    lowest = motion.positions[:, :, 1].min(axis=1)
    assert np.median(lowest) == pytest.approx(0.0, abs=0.06)


def test_max_frames_is_prefix(asf_dir: Path, walk):
    head = load_amc(asf_dir / "05_01.amc", asf_dir / "05.asf", max_frames=25)
    assert head.num_frames == 25
    np.testing.assert_array_equal(head.positions, walk.positions[:25])
    with pytest.raises(ValueError, match="max_frames"):
        load_amc(asf_dir / "05_01.amc", asf_dir / "05.asf", max_frames=0)


def test_load_mocap_amc_and_to_body14(asf_dir: Path, walk):
    motion = load_mocap(asf_dir / "05_01.amc", max_frames=30)
    np.testing.assert_array_equal(motion.positions, walk.positions[:30])
    assert motion.fps == 120.0 and motion.source.endswith("05_01.amc")
    explicit = load_mocap(asf_dir / "05_01.amc", asf_dir / "05.asf", max_frames=5)
    np.testing.assert_array_equal(explicit.positions, walk.positions[:5])
    body = motion.to_skeleton(BODY14)
    assert body.positions.shape == (30, 14, 3) and body.skeleton is BODY14
    n = BODY14.joint_names
    h = body.positions[:, :, 1]
    assert np.all(h[:, n.index("head")] > h[:, n.index("neck")])
    assert np.all(h[:, n.index("neck")] > h[:, n.index("right_hip")])
    assert np.all(h[:, n.index("right_hip")] > h[:, n.index("right_knee")])
    assert np.all(h[:, n.index("right_knee")] > h[:, n.index("right_ankle")])


def test_find_asf_and_files(asf_dir: Path, cmu_dir: Path, tmp_path: Path):
    assert find_asf(asf_dir / "60_03.amc") == asf_dir / "60.asf"
    files = find_mocap_files(cmu_dir)
    assert files == sorted(files)
    names = {f.name for f in files}
    assert {"05_01.amc", "64_01.amc", "131_02.bvh"} <= names
    assert not any(f.suffix == ".asf" for f in files)
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "take.amc").write_bytes((asf_dir / "05_01.amc").read_bytes())
    with pytest.raises(FileNotFoundError, match="no ASF"):
        load_mocap(lone / "take.amc")
    (lone / "someone.asf").write_bytes((asf_dir / "05.asf").read_bytes())
    assert load_mocap(lone / "take.amc", max_frames=2).num_frames == 2  # the single .asf in the folder
    with pytest.raises(ValueError, match="suffix"):
        load_mocap(lone / "someone.asf")


# ---------------------------------------------------------------- corrupt files
@pytest.fixture
def amc_lines(asf_dir: Path) -> list[str]:
    lines = (asf_dir / "05_01.amc").read_text().splitlines()
    return lines[: lines.index("13")]  # header + frames 1..12, complete


def _frame_line(lines: list[str], frame: int) -> int:
    """0-based index of the line holding frame number ``frame``."""
    return lines.index(str(frame))


def _write(tmp_path: Path, lines: list[str], name: str = "bad.amc") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_truncated_amc_line(tmp_path: Path, asf_dir: Path, amc_lines: list[str]):
    lines = amc_lines[:120]
    lines[-1] = " ".join(lines[-1].split()[:2])  # cut the last line short
    path = _write(tmp_path, lines)
    with pytest.raises(MocapFormatError, match=r"bad\.amc:120: frame \d+: bone '\w+' has 1 values"):
        load_amc(path, asf_dir / "05.asf")


def test_truncated_amc_frame(tmp_path: Path, asf_dir: Path, amc_lines: list[str]):
    stop = _frame_line(amc_lines, 5) + 10  # frame 5 keeps only 9 of its 29 bone lines
    path = _write(tmp_path, amc_lines[:stop])
    line = _frame_line(amc_lines, 5) + 1
    with pytest.raises(MocapFormatError, match=rf"bad\.amc:{line}: frame 5 is missing bones .*truncated"):
        load_amc(path, asf_dir / "05.asf")


def test_missing_bone_in_frame(tmp_path: Path, asf_dir: Path, amc_lines: list[str]):
    start = _frame_line(amc_lines, 3)
    lines = [
        ln for k, ln in enumerate(amc_lines) if not (k > start and k < start + 30 and ln.startswith("lfemur"))
    ]
    path = _write(tmp_path, lines)
    with pytest.raises(
        MocapFormatError, match=rf"bad\.amc:{start + 1}: frame 3 is missing bones \['lfemur'\]"
    ):
        load_amc(path, asf_dir / "05.asf")


def test_non_numeric_value(tmp_path: Path, asf_dir: Path, amc_lines: list[str]):
    k = _frame_line(amc_lines, 4) + 2
    toks = amc_lines[k].split()
    amc_lines[k] = " ".join([toks[0], "1.0x"] + toks[2:])
    path = _write(tmp_path, amc_lines)
    with pytest.raises(MocapFormatError, match=rf"bad\.amc:{k + 1}: frame 4: non-numeric"):
        load_amc(path, asf_dir / "05.asf")


def test_unknown_bone(tmp_path: Path, asf_dir: Path, amc_lines: list[str]):
    k = _frame_line(amc_lines, 2) + 3
    amc_lines[k] = "tail 1 2 3"
    path = _write(tmp_path, amc_lines)
    with pytest.raises(MocapFormatError, match=rf"bad\.amc:{k + 1}: frame 2: bone 'tail' is not in the ASF"):
        load_amc(path, asf_dir / "05.asf")


def test_broken_frame_numbering(tmp_path: Path, asf_dir: Path, amc_lines: list[str]):
    k = _frame_line(amc_lines, 6)
    amc_lines[k] = "9"
    path = _write(tmp_path, amc_lines)
    with pytest.raises(MocapFormatError, match=rf"bad\.amc:{k + 1}: frame number 9 follows 5"):
        load_amc(path, asf_dir / "05.asf")


def test_corrupt_asf(tmp_path: Path, asf_dir: Path):
    lines = (asf_dir / "05.asf").read_text().splitlines()
    truncated = _write(tmp_path, lines[:60], "cut.asf")
    with pytest.raises(MocapFormatError, match=r"cut\.asf: end of file inside a bone block"):
        load_asf(truncated)
    k = next(i for i, ln in enumerate(lines) if ln.strip().startswith("length 6.57749"))
    bad = list(lines)
    bad[k] = "     length six"
    path = _write(tmp_path, bad, "word.asf")
    with pytest.raises(MocapFormatError, match=rf"word\.asf:{k + 1}: length: non-numeric"):
        load_asf(path)
    no_hier = _write(
        tmp_path, lines[: next(i for i, ln in enumerate(lines) if ln.startswith(":hierarchy"))], "nohier.asf"
    )
    with pytest.raises(
        MocapFormatError, match=r"nohier\.asf: bone 'lhipjoint' does not appear in :hierarchy"
    ):
        load_asf(no_hier)
