"""Errors on bad user input name the argument (or file and line), what was expected and what was given, and
say how to fix it (issue 12): the data readers and the 2D normalisation."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mvlift.data import build_singleview_dataset
from mvlift.data.asf_amc import load_amc, load_asf
from mvlift.data.bvh import load_bvh
from mvlift.data.coco import load_coco_keypoints
from mvlift.data.motion import MocapFormatError
from mvlift.data.normalize import normalize_2d, normalize_2d_batch
from mvlift.data.skeletons import BODY14, COCO17

BVH_HEAD = """HIERARCHY
ROOT Base
{{
  OFFSET 0.0 0.0 0.0
  CHANNELS 6 Xposition Yposition Zposition {root_rot}
  JOINT Arm
  {{
    OFFSET 0.0 {arm} 0.0
    CHANNELS 3 Zrotation Yrotation Xrotation
    End Site
    {{
      OFFSET 0.0 {arm} 0.0
    }}
  }}
}}
MOTION
Frames: {frames}
Frame Time: 0.04
"""

ASF = """:version 1.10
:name test
:units
  mass 1.0
  length 1.0
  angle deg
:root
   order {order}
   axis {axis}
   position 0 0 0
   orientation 0 0 0
:bonedata
  begin
     id 1
     name lfemur
     direction 0 -1 0
     length 7
     axis 0 0 20 XYZ
     dof rx ry rz
  end
  begin
     id 2
     name ltibia
     direction 0 -1 0
     length 7
     axis 0 0 0 XYZ
     dof rx
  end
:hierarchy
  begin
    root lfemur
    lfemur ltibia
  end
"""


def _bvh(
    tmp_path: Path, rng: np.random.Generator, *, arm: float = 10.0, root_rot: str = ""
) -> tuple[Path, np.ndarray]:
    frames = int(rng.integers(3, 8))
    values = rng.uniform(-60, 60, size=(frames, 9))
    rot = root_rot or "Zrotation Xrotation Yrotation"
    text = BVH_HEAD.format(root_rot=rot, arm=arm, frames=frames)
    path = tmp_path / "clip.bvh"
    path.write_text(text + "\n".join(" ".join(f"{v:.5f}" for v in row) for row in values) + "\n")
    return path, values


def test_bvh_errors_name_line_channel_and_what_is_expected(tmp_path: Path, seed: int):
    rng = np.random.default_rng(seed)
    path, values = _bvh(tmp_path, rng)
    assert load_bvh(path, units="cm").positions.shape == (len(values), 2, 3)  # the file itself reads
    lines = path.read_text().splitlines()
    first = lines.index("Frame Time: 0.04") + 1  # 0-based index of the first frame line
    f, c = int(rng.integers(len(values))), int(rng.integers(9))

    for bad, pattern in (
        ("1.5x", r"non-numeric value '1\.5x' in channel {c} of 9: expected a number"),
        ("inf", r"non-finite value inf in channel {c} of frame {f}: every channel must be"),
    ):
        row = [f"{v:.5f}" for v in values[f]]
        row[c] = bad
        edited = list(lines)
        edited[first + f] = " ".join(row)
        path.write_text("\n".join(edited) + "\n")
        with pytest.raises(
            MocapFormatError, match=rf"clip\.bvh:{first + f + 1}: " + pattern.format(c=c, f=f)
        ):
            load_bvh(path, units="cm")

    wrong = str(rng.choice(["Wrotation", "Xscale", "rotationX"]))
    path, _ = _bvh(tmp_path, rng, root_rot=f"Zrotation {wrong} Yrotation")
    with pytest.raises(
        MocapFormatError, match=rf"invalid CHANNELS .*unknown \['{wrong}'\].*expected distinct"
    ):
        load_bvh(path)
    path, _ = _bvh(tmp_path, rng, root_rot="Zrotation Zrotation Yrotation")
    with pytest.raises(
        MocapFormatError, match=r"\(a repeated name\): expected distinct names from \('Xposition'"
    ):
        load_bvh(path)
    path, _ = _bvh(tmp_path, rng, arm=0.0)  # a rest pose of one point: no unit to guess
    with pytest.raises(
        ValueError, match=r"units='auto'.*pass units= one of \['asf', 'cm', .*or a metres-per-unit"
    ):
        load_bvh(path, units="auto")


def test_asf_amc_errors_name_line_and_what_is_expected(tmp_path: Path, seed: int):
    rng = np.random.default_rng(seed)
    asf = tmp_path / "t.asf"
    asf.write_text(ASF.format(order="TX TY TZ RX RY RZ", axis="XYZ"))
    frames = int(rng.integers(2, 6))
    vals = rng.uniform(-40, 40, size=(frames, 10))
    amc_lines = [":FULLY-SPECIFIED", ":DEGREES"]
    for k in range(frames):
        amc_lines += [str(k + 1), "root " + " ".join(f"{v:.4f}" for v in vals[k, :6])]
        amc_lines += ["lfemur " + " ".join(f"{v:.4f}" for v in vals[k, 6:9]), f"ltibia {vals[k, 9]:.4f}"]
    amc = tmp_path / "t.amc"
    amc.write_text("\n".join(amc_lines) + "\n")
    assert np.isfinite(load_amc(amc, asf).positions).all()  # the files themselves read

    k = int(rng.integers(frames))
    bone, line = [("root", 4), ("lfemur", 5), ("ltibia", 6)][int(rng.integers(3))]
    edited = list(amc_lines)
    toks = edited[4 * k + line - 1].split()
    toks[1] = str(rng.choice(["inf", "-inf", "nan"]))
    edited[4 * k + line - 1] = " ".join(toks)
    amc.write_text("\n".join(edited) + "\n")
    with pytest.raises(
        MocapFormatError,
        match=rf"t\.amc:{4 * k + line}: frame {k + 1}: bone '{bone}' has a non-finite value .* must be",
    ):
        load_amc(amc, asf)

    asf.write_text(ASF.format(order="TX TY TZ RX RY QZ", axis="XYZ"))
    with pytest.raises(
        MocapFormatError, match=r"t\.asf:8: invalid root order .*expected distinct channels from TX"
    ):
        load_asf(asf)
    asf.write_text(ASF.format(order="TX TY TZ RX RY RZ", axis="XYY"))
    with pytest.raises(
        MocapFormatError, match=r"t\.asf:9: invalid root axis order \['XYY'\]: expected a perm"
    ):
        load_asf(asf)


def test_coco_errors_name_the_joint_and_the_fix(tmp_path: Path, seed: int):
    rng = np.random.default_rng(seed)
    path = tmp_path / "kp.json"
    path.write_text("[]")
    with pytest.raises(
        MocapFormatError, match=r"kp\.json: no annotations \(an empty list\); expected one object"
    ):
        load_coco_keypoints(path)
    frames = int(rng.integers(2, 6))
    anns = []
    for f in range(frames):
        kp = np.concatenate([rng.uniform(100, 500, size=(17, 2)), np.full((17, 1), 2.0)], axis=1)
        anns.append({"frame": f, "keypoints": kp.flatten().tolist()})
    path.write_text(json.dumps(anns))
    assert load_coco_keypoints(path).num_frames == frames
    i, j = int(rng.integers(frames)), int(rng.integers(17))
    anns[i]["keypoints"][3 * j + int(rng.integers(2))] = math.nan
    path.write_text(json.dumps(anns))  # Python's json writes NaN
    name = re.escape(COCO17.joint_names[j])
    with pytest.raises(
        MocapFormatError,
        match=rf"annotation {i}: non-finite keypoint values at joints \[{j}\] \['{name}'\]: .*with v = 0",
    ):
        load_coco_keypoints(path)


def test_normalisation_errors_name_the_sequences_and_the_fix(seed: int):
    gen = torch.Generator().manual_seed(seed)
    b, t, j = 3, 6, 14
    kp = torch.rand(b, t, j, 2, generator=gen, dtype=torch.float64) * 500 + 100
    empty = int(torch.randint(b, (1,), generator=gen))
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[empty] = False
    with pytest.raises(
        ValueError, match=rf"mask leaves sequences \[{empty}\] without any valid frame \(True"
    ):
        normalize_2d_batch(kp, mask=mask)
    conf = torch.ones(b, t, j, dtype=torch.float64)
    conf[empty, 0, 1:] = 0.0  # one confident joint in the first frame: no extent
    with pytest.raises(
        ValueError, match=rf"sequences \[{empty}\]: the first valid frame has no extent .*mask it out"
    ):
        normalize_2d_batch(kp, conf=conf)
    _, single = normalize_2d(kp[0])
    with pytest.raises(IndexError, match=r"Normalization2D\[0\]: .*single sequence.*normalize_2d_batch"):
        single[0]


def test_empty_motion_list_says_what_is_expected(tmp_path: Path):
    with pytest.raises(ValueError, match=r"motions is empty: expected at least one Motion clip .*got none"):
        build_singleview_dataset([], tmp_path / "data", skeleton=BODY14)


def test_lift_input_of_unknown_format_names_the_suffix(tmp_path: Path, seed: int):
    from mvlift.stages.lift_io import read_sequence2d

    suffix = [".txt", ".csv", ".npy", ""][seed % 4]
    path = tmp_path / f"keypoints{suffix}"
    path.write_text(f"{seed}")
    with pytest.raises(
        ValueError, match=rf"unknown suffix '{re.escape(suffix)}': expected \.npz .*convert the"
    ):
        read_sequence2d(path)
