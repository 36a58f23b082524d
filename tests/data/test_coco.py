"""COCO-style keypoint JSON reader: both layouts, person selection, missing frames, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mvlift.data.coco import load_coco_keypoints
from mvlift.data.motion import MocapFormatError
from mvlift.data.skeletons import COCO17


def _flat(xy: np.ndarray, v: np.ndarray) -> list[float]:
    return np.concatenate([xy, v[:, None]], axis=1).reshape(-1).tolist()


@pytest.fixture
def people(seed: int):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1000, size=(6, 2, 17, 2)), rng.uniform(0.05, 1.0, size=(6, 2, 17))


def test_list_layout(tmp_path: Path, people):
    xy, conf = people
    anns = []
    for f in (3, 0, 1, 4, 5):  # frame 2 missing, frames out of order
        for p, score in ((0, 0.9), (1, 0.5)):
            anns.append(
                {
                    "frame": 10 + f,
                    "keypoints": _flat(xy[f, p], conf[f, p]),
                    "score": score,
                    "track_id": p,
                    "image_size": [1280, 720],
                }
            )
    anns[2]["score"] = 0.1  # anns[2] is frame 0, person 0: person 1 now has the higher score there
    path = tmp_path / "list.json"
    path.write_text(json.dumps(anns))
    seq = load_coco_keypoints(path, fps=25.0)
    assert seq.keypoints.shape == (6, 17, 2) and seq.confidence.shape == (6, 17)
    assert seq.skeleton is COCO17 and seq.image_size == (1280, 720) and seq.fps == 25.0
    assert np.isnan(seq.keypoints[2]).all() and (seq.confidence[2] == 0).all()
    for f in (1, 3, 4, 5):
        np.testing.assert_allclose(seq.keypoints[f], xy[f, 0])
        np.testing.assert_allclose(seq.confidence[f], conf[f, 0])
    np.testing.assert_allclose(seq.keypoints[0], xy[0, 1])  # highest score wins
    tracked = load_coco_keypoints(path, track_id=0)
    np.testing.assert_allclose(tracked.keypoints[0], xy[0, 0])
    np.testing.assert_allclose(tracked.keypoints[5], xy[5, 0])


def test_dict_layout_with_visibility_flags(tmp_path: Path, people):
    xy, _ = people
    images = [
        {"id": 100 + k, "frame_id": k, "width": 1920, "height": 1080, "file_name": f"{k:05d}.jpg"}
        for k in (2, 0, 1, 3)
    ]
    vis = np.full(17, 2.0)
    vis[[3, 4]] = 0.0  # ears not labelled (COCO writes 0, 0, 0)
    vis[5] = 1.0  # labelled but occluded
    anns = []
    for k in (0, 1, 3):
        pts = xy[k, 0].copy()
        pts[[3, 4]] = 0.0
        anns.append({"id": k, "image_id": 100 + k, "keypoints": _flat(pts, vis), "num_keypoints": 15})
    path = tmp_path / "coco.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": []}))
    seq = load_coco_keypoints(path)
    assert seq.keypoints.shape == (4, 17, 2) and seq.image_size == (1920, 1080)
    expected_conf = np.where(vis > 0, 1.0, 0.0)
    for k in (0, 1, 3):
        np.testing.assert_array_equal(seq.confidence[k], expected_conf)
        assert np.isnan(seq.keypoints[k, [3, 4]]).all()
        np.testing.assert_allclose(seq.keypoints[k, :3], xy[k, 0, :3])
    assert np.isnan(seq.keypoints[2]).all() and (seq.confidence[2] == 0).all()


def test_errors_name_file_and_annotation(tmp_path: Path, people):
    xy, conf = people
    anns = [{"frame": f, "keypoints": _flat(xy[f, 0], conf[f, 0])} for f in range(5)]
    anns[3]["keypoints"] = anns[3]["keypoints"][:-3]
    path = tmp_path / "short.json"
    path.write_text(json.dumps(anns))
    with pytest.raises(
        MocapFormatError, match=r"short\.json: annotation 3: 'keypoints' has 48 values, expected 51"
    ):
        load_coco_keypoints(path)
    anns = [{"frame": f, "keypoints": _flat(xy[f, 0], conf[f, 0])} for f in range(3)]
    del anns[1]["frame"]
    path = tmp_path / "noframe.json"
    path.write_text(json.dumps(anns))
    with pytest.raises(MocapFormatError, match=r"noframe\.json: annotation 1: no frame key"):
        load_coco_keypoints(path)
    path = tmp_path / "dangling.json"
    path.write_text(
        json.dumps(
            {
                "images": [{"id": 1}],
                "annotations": [
                    {"image_id": 1, "keypoints": _flat(xy[0, 0], conf[0, 0])},
                    {"image_id": 7, "keypoints": _flat(xy[1, 0], conf[1, 0])},
                ],
            }
        )
    )
    with pytest.raises(
        MocapFormatError, match=r"dangling\.json: annotation 1: image_id 7 is not in 'images'"
    ):
        load_coco_keypoints(path)
    path = tmp_path / "text.json"
    path.write_text('{"images": ')
    with pytest.raises(MocapFormatError, match=r"text\.json: cannot read JSON"):
        load_coco_keypoints(path)
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"foo": 1}))
    with pytest.raises(MocapFormatError, match=r"other\.json: expected a list of annotations"):
        load_coco_keypoints(path)
