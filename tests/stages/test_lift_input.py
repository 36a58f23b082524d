"""`mvlift lift`'s 2D input: checked, masked joint by joint, interpolated over short gaps, and every frame
read accounted for in the printed summary, ``input_report.json`` and ``lifted.npz`` (issue #12, part B)."""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mvlift.cli import main
from mvlift.data import BODY14, generate_motion
from mvlift.data.motion import Sequence2D
from mvlift.data.normalize import denormalize_2d
from mvlift.data.npz import save_sequence2d_npz
from mvlift.data.skeletons import COCO17, convert, convert_confidence
from mvlift.geometry import ring_cameras
from mvlift.stages.lift_input import DEFAULT_MAX_GAP, INPUT_STATUS, prepare_input
from mvlift.stages.lift_io import lift_file, read_sequence2d

CODE = {name: i for i, name in enumerate(INPUT_STATUS)}
IMAGE = (1920, 1080)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, train_tiny_stage4_fn):
    """A barely trained 4-view body14 model covering 128 frames (enough for the 90-frame inputs here)."""
    return train_tiny_stage4_fn(tmp_path_factory.mktemp("stage4_long"), max_frames=128)


def body14_pixels(frames: int = 90, kind: str = "dance") -> np.ndarray:
    """A person about 350 px tall on a 1920 x 1080 image, (T, 14, 2). Normalised (half the canvas tall), a
    "dance" stays on the canvas, a "walk" leaves it after about 60 frames."""
    X = torch.as_tensor(generate_motion(kind, frames, seed=3).positions)
    root = X[0, list(BODY14.root)].mean(0)
    kp = ring_cameras(1, radius=4.0, look_at=root).project(X)[0].numpy()
    return kp


def coco_from_body14(kp14: np.ndarray) -> np.ndarray:
    """COCO-17 keypoints from BODY14 ones: limbs by name, the face points around the head."""
    idx = {n: i for i, n in enumerate(BODY14.joint_names)}
    head = kp14[:, idx["head"]]
    face = {
        "nose": (0, 0),
        "left_eye": (8, -8),
        "right_eye": (-8, -8),
        "left_ear": (16, 0),
        "right_ear": (-16, 0),
    }
    out = np.empty((kp14.shape[0], 17, 2))
    for j, name in enumerate(COCO17.joint_names):
        out[:, j] = head + np.asarray(face[name]) if name in face else kp14[:, idx[name]]
    return out


def write_npz(path, kp, conf=None, *, names=BODY14.joint_names, skeleton=BODY14, image_size=IMAGE):
    conf = np.ones(kp.shape[:2]) if conf is None else conf
    save_sequence2d_npz(path, Sequence2D(kp, conf, 30.0, names, image_size, skeleton, "test"))
    return path


def write_coco(path, kp17, conf17=None, *, frames=None, image_size=IMAGE):
    """The list layout, one annotation per frame in ``frames`` (default all)."""
    conf17 = np.ones(kp17.shape[:2]) if conf17 is None else conf17
    frames = range(kp17.shape[0]) if frames is None else frames
    anns = []
    for f in frames:
        flat = np.concatenate([kp17[f], conf17[f][:, None]], axis=1).reshape(-1).tolist()
        ann = {"frame": int(f), "keypoints": flat, "score": 0.9}
        if image_size is not None:
            ann["image_size"] = list(image_size)
        anns.append(ann)
    path.write_text(json.dumps(anns))
    return path


def lifted(written) -> dict:
    with np.load(written["lifted"]) as z:
        return {k: z[k] for k in z.files}


def check_accounting(report: dict) -> None:
    total = (
        report["frames_lifted"] + sum(report["frames_cut"].values()) + sum(report["frames_masked"].values())
    )
    assert total == report["frames_read"], report


@pytest.fixture
def no_pictures(monkeypatch):
    """Skip the PNG/GIF pictures of ``lift`` (matplotlib: ~20 s a lift on a busy CPU); they are drawn, NaN
    frames included, in ``test_coco_frames_without_annotation_are_never_valid`` and ``test_lift_io.py``."""
    import mvlift.viz as viz

    def empty(path, *args, **kwargs):
        Path(path).write_bytes(b"")
        return Path(path)

    for name in ("save_sequence_png", "save_viewpoints_png", "save_gif"):
        monkeypatch.setattr(viz, name, empty)
    monkeypatch.setattr(viz, "gif_available", lambda: False)


@contextlib.contextmanager
def quiet():
    """Fuzzed inputs warn about what they mask; the checks here are on the results."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# -------------------------------------------------------------------------------- the rows of the issue
def test_coco_one_far_joint_masks_that_joint_not_the_frames_after(
    tmp_path, model_dir, cpu_training, no_pictures
):
    """Row: COCO JSON, one joint at x = -3000 px in frame 5 -> 'frames: 5 of 5' (85 of 90 cut)."""
    kp = coco_from_body14(body14_pixels(90))
    kp[5, COCO17.joint_names.index("left_wrist"), 0] = -3000.0
    written = lift_file(write_coco(tmp_path / "far.json", kp), model_dir, tmp_path / "out", steps=2)
    assert written["frames"] == "90 of 90"
    report = json.loads((tmp_path / "out" / "input_report.json").read_text())
    assert report["frames_lifted"] == 90 and sum(report["joints_masked"].values()) == 1
    assert report["joints_masked"]["outside_image"] == 1 and report["joints_interpolated"] == 1
    z = lifted(written)
    wrist = BODY14.joint_names.index("left_wrist")
    assert z["input_status"][5, wrist] == CODE["interpolated"] and not z["valid"][5, wrist]
    assert z["frame_mask"].all() and z["joints3d"].shape[0] == 90
    # the model saw the wrist between its neighbours, not at -3000 px
    v0 = z["views"][0]
    np.testing.assert_allclose(v0[5, wrist], (v0[4, wrist] + v0[6, wrist]) / 2, atol=1e-5)


@pytest.mark.parametrize("max_gap", [DEFAULT_MAX_GAP, 10])
def test_coco_frames_without_annotation_are_never_valid(tmp_path, model_dir, cpu_training, max_gap, request):
    """Row: COCO JSON, 10 frames with no annotation -> exit 0, those frames marked valid."""
    if max_gap != DEFAULT_MAX_GAP:
        request.getfixturevalue("no_pictures")
    T = 40  # (few frames: this test draws the pictures, NaN frames included)
    kp = coco_from_body14(body14_pixels(T))
    gap = np.arange(15, 25)
    path = write_coco(tmp_path / "gap.json", kp, frames=[f for f in range(T) if f not in gap])
    written = lift_file(path, model_dir, tmp_path / "out", steps=2, max_gap=max_gap)
    z, report = lifted(written), json.loads((tmp_path / "out" / "input_report.json").read_text())
    check_accounting(report)
    assert not z["valid"][gap].any()
    if max_gap < 10:  # too long to interpolate: masked, 3D NaN, reported
        assert not z["frame_mask"][gap].any() and np.isnan(z["joints3d"][gap]).all()
        assert report["frames_masked"]["no_detection"] == 10 and report["frames_lifted"] == T - 10
        assert (tmp_path / "out" / "motion3d.png").stat().st_size > 1000  # NaN frames drawn (empty)
    else:  # interpolated, reported, never valid
        assert z["frame_mask"].all() and (z["input_status"][gap] == CODE["interpolated"]).all()
        assert report["joints_interpolated"] == 10 * 14 and report["frames_lifted"] == T
        v0 = z["views"][0]
        w = (gap - 14) / 11.0
        expect = v0[14] + w[:, None, None] * (v0[25] - v0[14])
        np.testing.assert_allclose(v0[gap], expect, atol=1e-5)
    assert z["valid"][~np.isin(np.arange(T), gap)].mean() > 0.5  # the observed frames lift


def test_input_partly_outside_the_canvas_accounts_for_every_frame(
    tmp_path, model_dir, cpu_training, no_pictures
):
    """Row: any input partly outside the canvas -> the in-canvas cut drops frames; '61 of 61' for 90 in."""
    kp = body14_pixels(90, kind="walk")  # walks off the normalised canvas (not off the image)
    path = write_npz(tmp_path / "walk.npz", kp)
    written = lift_file(path, model_dir, tmp_path / "out", steps=2)
    report = json.loads((tmp_path / "out" / "input_report.json").read_text())
    assert report["frames_read"] == 90 and written["frames"].endswith(" of 90")
    check_accounting(report)
    z = lifted(written)
    # every frame up to the last one with half of the joints inside is lifted ...
    status = z["input_status"]
    assert report["frames_lifted"] >= 75 and report["joints_masked"]["off_canvas"] > 0
    assert report["frames_cut"]["off_canvas"] == 90 - report["frames_lifted"]
    # ... and a frame with a few joints out keeps its other joints: only those are masked
    partial = [t for t in range(len(status)) if 0 < (status[t] == CODE["off_canvas"]).sum() < 7]
    assert partial, "no frame with some joints off the canvas"
    for t in partial:
        out = status[t] == CODE["off_canvas"]
        assert not z["valid"][t][out].any() and z["frame_mask"][t]


def test_npz_inf_masks_one_joint_with_a_warning(tmp_path, model_dir, cpu_training, no_pictures):
    """Row: npz with inf at frame 10 -> 'frames: 10 of 10', the rest dropped without a word."""
    kp = body14_pixels(20)
    kp[10, 4] = [np.inf, 300.0]
    with pytest.warns(UserWarning, match=r"1 keypoint\(s\) with confidence > 0 are NaN or inf .*frame 10"):
        written = lift_file(write_npz(tmp_path / "inf.npz", kp), model_dir, tmp_path / "out", steps=2)
    assert written["frames"] == "20 of 20"
    z = lifted(written)
    assert z["input_status"][10, 4] == CODE["interpolated"] and not z["valid"][10, 4]
    report = json.loads(str(z["input_report"]))
    assert report["joints_masked"]["non_finite"] == 1 and report["frames_lifted"] == 20


def test_npz_nan_with_confidence_is_masked_not_used_as_zero(tmp_path, model_dir, cpu_training, no_pictures):
    """Row: npz with NaN and confidence 1 -> the NaN set to 0 and used (upper arm 0.26 -> 0.38 m)."""
    kp = body14_pixels(30)
    elbow = BODY14.joint_names.index("right_elbow")
    kp[12, elbow] = np.nan
    with pytest.warns(UserWarning, match="NaN or inf"):
        written = lift_file(write_npz(tmp_path / "nan.npz", kp), model_dir, tmp_path / "out", steps=2)
    z = lifted(written)
    assert not z["valid"][12, elbow] and z["input_status"][12, elbow] == CODE["interpolated"]
    v0 = z["views"][0]
    np.testing.assert_allclose(v0[12, elbow], (v0[11, elbow] + v0[13, elbow]) / 2, atol=1e-5)
    assert np.abs(v0[12, elbow]).max() > 0.01  # not the canvas centre (NaN -> 0)


def test_unnamed_joint_sets_need_skeleton(tmp_path, model_dir, cpu_training, no_pictures, capsys):
    """Row: npz with 17 unnamed joints, not in COCO order -> assumed COCO-17; a 0.41 m tall person."""
    kp = coco_from_body14(body14_pixels(20))
    names = tuple(f"j{i}" for i in range(17))
    path = write_npz(tmp_path / "unnamed.npz", kp, names=names, skeleton=None)
    argv = ["lift", str(path), "--model", str(model_dir), "--out", str(tmp_path / "o"), "--steps", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unnamed.npz" in err and "not a registered joint set" in err and "--skeleton" in err
    assert not (tmp_path / "o").exists()
    assert main([*argv, "--skeleton", "coco17"]) == 0
    out = capsys.readouterr().out
    assert "(coco17 -> body14)" in out and "20 frames read, 20 lifted" in out
    named = lift_file(write_coco(tmp_path / "named.json", kp), model_dir, tmp_path / "n", steps=2)
    np.testing.assert_allclose(np.load(tmp_path / "o" / "lifted.npz")["views"][0], lifted(named)["views"][0])
    with pytest.raises(ValueError, match="--skeleton 'body14' has 14 joints, the input has 17"):
        lift_file(path, model_dir, tmp_path / "b", steps=2, input_skeleton="body14")


def test_no_usable_frame_is_a_clear_error_naming_the_file(
    tmp_path, model_dir, cpu_training, no_pictures, capsys
):
    """Row: all confidences 0; inf in frame 0 -> 'sequences [0]: the first frame has no extent'."""
    kp = body14_pixels(10)
    kp[0, 3] = np.inf
    path = write_npz(tmp_path / "zeros.npz", kp, np.zeros((10, 14)))
    argv = ["lift", str(path), "--model", str(model_dir), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "zeros.npz" in err and "every confidence is 0" in err and "nothing to lift" in err
    assert "sequences [0]" not in err and "Traceback" not in err


def test_summary_printed_and_report_written(tmp_path, model_dir, cpu_training, no_pictures, capsys):
    kp = body14_pixels(40)
    conf = np.ones((40, 14))
    conf[20:23, 7] = 0.0  # a 3-frame gap: interpolated
    path = write_npz(tmp_path / "s.npz", kp, conf)
    assert (
        main(["lift", str(path), "--model", str(model_dir), "--out", str(tmp_path / "o"), "--steps", "2"])
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "40 frames read, 40 lifted, 0 cut" in out and "3 interpolated" in out and "3D points flagged" in out
    )
    report = json.loads((tmp_path / "o" / "input_report.json").read_text())
    assert report["joints_masked"]["no_detection"] == 3 and report["joints_interpolated"] == 3
    z = np.load(tmp_path / "o" / "lifted.npz")
    assert json.loads(str(z["input_report"])) == report
    assert tuple(z["input_status_names"]) == INPUT_STATUS
    assert z["frame_index"].tolist() == list(range(40)) and z["tri_flags"].shape == (40, 14)
    # valid points are finite; NaN only where a point is neither valid nor repaired
    J3 = z["joints3d"]
    assert np.isfinite(J3[z["valid"]]).all() and np.isfinite(J3[z["repaired"]]).all()
    assert report["points_invalid"] == int((~np.isfinite(J3).all(-1)).sum())


def test_cli_max_gap_default_matches_the_library():
    from mvlift.cli import build_parser

    args = build_parser().parse_args(["lift", "x.npz", "--model", "m", "--out", "o"])
    assert args.max_gap == DEFAULT_MAX_GAP and args.skeleton is None


# ------------------------------------------------------------------------------------------------ fuzz
def _corrupt_npz(rng: np.random.Generator, tmp_path, kp: np.ndarray, case: int):
    """A random corruption of a valid body14 npz: (path, kp, conf) of what was written, or the path alone
    for corruptions of the file format itself."""
    kp, conf = kp.copy(), np.ones(kp.shape[:2])
    T, J = conf.shape
    path = tmp_path / f"fuzz{case}.npz"
    kind = rng.integers(0, 10)
    n = int(rng.integers(1, 8))
    f, j = rng.integers(0, T, n), rng.integers(0, J, n)
    if kind == 0:
        kp[f, j, rng.integers(0, 2, n)] = rng.choice([np.nan, np.inf, -np.inf], n)
    elif kind == 1:
        kp[f, j] = rng.choice([-3000.0, 1e12, -1e300, 5000.0], (n, 1))
    elif kind == 2:
        conf[f, j] = rng.choice([np.nan, -1.0, 0.0, np.inf, 2.0], n)
    elif kind == 3:
        conf[rng.integers(0, T, int(rng.integers(1, T + 1)))] = 0.0  # frames without detection
    elif kind == 4:
        start = int(rng.integers(0, T))
        conf[start : start + int(rng.integers(1, 20))] = 0.0  # a gap, maybe at an end
    elif kind == 5:
        kp += rng.normal(0, float(rng.choice([1.0, 50.0, 400.0])), kp.shape)  # noise, maybe off the image
    elif kind == 6:
        keep = int(rng.integers(0, 3))
        kp, conf = kp[:keep], conf[:keep]  # (nearly) empty
    elif kind == 7:
        kp[:, j] = np.nan  # joints never seen, with confidence 1
    elif kind == 8:
        np.savez(path, keypoints=kp, confidence=np.ones((T + 1, J)))  # not our format / inconsistent
        return path, None, None
    else:  # our format with one entry broken
        write_npz(path, kp, conf)
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        key = str(rng.choice(["fps", "parents", "joint_names", "image_size", "format_version", "keypoints"]))
        garbage = [np.array("abc"), np.arange(3), np.zeros((2, 2, 2)), np.array(-1)]
        arrays[key] = garbage[int(rng.integers(0, len(garbage)))]
        np.savez(path, **arrays)
        return path, None, None
    write_npz(path, kp, conf)
    return path, kp, conf


def _corrupt_coco(rng: np.random.Generator, tmp_path, kp17: np.ndarray, case: int):
    T = kp17.shape[0]
    conf = np.ones((T, 17))
    frames = list(range(T))
    kind = rng.integers(0, 7)
    path = tmp_path / f"fuzz{case}.json"
    kp17 = kp17.copy()
    if kind == 0:
        drop = set(rng.integers(0, T, int(rng.integers(1, T))).tolist())
        frames = [f for f in frames if f not in drop]
    elif kind == 1:
        n = int(rng.integers(1, 6))
        kp17[rng.integers(0, T, n), rng.integers(0, 17, n)] = rng.choice([-3000.0, 9000.0, 1e9], (n, 1))
    elif kind == 2:
        conf[rng.integers(0, T, 5), rng.integers(0, 17, 5)] = rng.choice([0.0, -2.0, 0.3], 5)
    elif kind == 3:
        anns = [{"frame": f, "keypoints": [0.0] * int(rng.integers(0, 60))} for f in frames]
        path.write_text(json.dumps(anns))  # wrong keypoint counts
        return path
    elif kind == 4:
        path.write_text('[{"frame": 0, "keypoints": [' + ", ".join(["NaN"] * 51) + "]}]")
        return path
    elif kind == 5:
        layouts = [
            {"images": [{"id": 1}], "annotations": [{"image_id": 2, "keypoints": []}]},
            {"images": [{"id": [1]}, {"id": 2}], "annotations": []},
            {"images": [{"id": 1, "width": "wide", "height": 3}], "annotations": []},
            {"images": [{"id": 1}], "annotations": [{"image_id": [1], "keypoints": [1.0] * 51}]},
            [{"frame": 0, "keypoints": [1.0] * 51, "image_size": [0, -4]}],
            [{"frame": 1.5, "keypoints": [1.0] * 51}],
        ]
        path.write_text(json.dumps(layouts[int(rng.integers(0, len(layouts)))]))
        return path
    else:
        path.write_bytes(bytes(rng.integers(0, 256, 64, dtype=np.uint8)))
        return path
    return write_coco(path, kp17, conf, frames=frames)


def _check_prepared(path, where: str) -> None:
    """A clean error naming the input, or an input whose every frame is accounted for and whose detected
    joints are exactly the file's."""
    try:
        seq = read_sequence2d(path)
        prep = prepare_input(seq, BODY14, max_frames=128, where=where)
    except ValueError as exc:  # MocapFormatError is a ValueError
        assert path.name in str(exc), str(exc)
        return
    check_accounting(prep.report)
    x = prep.x
    assert torch.isfinite(x).all() and x.shape[1:] == (14, 2)
    assert (x[prep.used].abs() < 1).all()
    assert int(prep.mask.sum()) >= 2 and not (prep.used & ~prep.mask[:, None]).any()
    detected = torch.as_tensor(prep.status == 0) & prep.used
    kp = np.asarray(seq.keypoints)
    conf = np.asarray(seq.confidence)
    if seq.skeleton is not None and seq.skeleton.name == "coco17":
        kp, conf = (
            np.asarray(convert(kp, COCO17, BODY14)),
            np.asarray(convert_confidence(conf, COCO17, BODY14)),
        )
    src = torch.as_tensor(kp[prep.frame_index])
    px = denormalize_2d(x, prep.params)
    torch.testing.assert_close(px[detected], src[detected], rtol=1e-9, atol=1e-6)
    assert (torch.as_tensor(conf[prep.frame_index])[detected] > 0).all()


def test_fuzz_npz_and_coco_inputs(tmp_path, seed):
    rng = np.random.default_rng(seed)
    kp = body14_pixels(60, kind="dance")
    kp17 = coco_from_body14(kp)
    for case in range(40):
        path, *_ = _corrupt_npz(rng, tmp_path, kp, case)
        with quiet():
            _check_prepared(path, str(path))
        path = _corrupt_coco(rng, tmp_path, kp17, 100 + case)
        with quiet():
            _check_prepared(path, str(path))


def test_fuzz_through_the_cli(tmp_path, model_dir, cpu_training, no_pictures, seed, capsys):
    """A few random corruptions end to end: exit 0 with finite valid points, or exit 2 with a one-line
    error naming the input (never a traceback)."""
    rng = np.random.default_rng(seed)
    kp = body14_pixels(40)
    for case in range(4):
        path, *_ = _corrupt_npz(rng, tmp_path, kp, case)
        out = tmp_path / f"out{case}"
        with quiet():
            rc = main(["lift", str(path), "--model", str(model_dir), "--out", str(out), "--steps", "1"])
        cap = capsys.readouterr()
        assert rc in (0, 2), rc
        if rc == 2:
            assert path.name in cap.err and "Traceback" not in cap.err
        else:
            z = np.load(out / "lifted.npz")
            assert np.isfinite(z["joints3d"][z["valid"]]).all()
            check_accounting(json.loads(str(z["input_report"])))
