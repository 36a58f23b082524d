"""The whole pipeline at micro scale on non-human-body skeletons: the procedural quadruped (QUADRUPED17) and
the procedural human + object (BODY14_OBJECT5). Every step runs and every method's metrics are finite."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mvlift.data.procedural import QUADRUPED17
from mvlift.data.procedural_object import BODY14_OBJECT5
from mvlift.data.singleview import load_singleview_dataset, load_singleview_eval
from mvlift.data.skeletons import BODY14
from mvlift.stages.pipeline import PipelineConfig, _skeleton, run_pipeline


@pytest.mark.parametrize("skeleton", [QUADRUPED17, BODY14_OBJECT5], ids=lambda s: s.name)
def test_pipeline_runs_on_skeleton(tmp_path, cpu_training, micro_config, skeleton):
    cfg = micro_config
    cfg["data"]["skeleton"] = skeleton.name
    config = PipelineConfig.from_dict({**cfg, "out_dir": str(tmp_path / "run")})
    out = run_pipeline(config)
    run = tmp_path / "run"
    # the data are on the requested skeleton, 2D and hidden 3D alike
    train = load_singleview_dataset(run / "data" / "train")
    assert train.joint_names == skeleton.joint_names
    assert train.keypoints.shape[2:] == (skeleton.num_joints, 2)
    source = "procedural-object" if skeleton is BODY14_OBJECT5 else "procedural"
    assert all(c.startswith(f"synthetic:{source}:") for c in train.clip_ids), train.clip_ids
    ev = load_singleview_eval(run / "data" / "eval")
    assert ev.positions.shape[-2:] == (skeleton.num_joints, 3)
    assert np.isfinite(ev.positions).all()
    for p in ("synthetic/manifest.json", "stage1/loss_log.csv", "stage4/loss_log.csv", "metrics.json"):
        assert (run / p).exists(), p
    metrics = out["metrics"]
    assert set(metrics) == {"mvlift", "stage1_only", "stage2_only", "single_view"}
    for name, m in metrics.items():
        assert m.get("failed", 0.0) == 0.0, (name, m)
        for key in ("mpjpe", "pa_mpjpe", "t_root", "j2d"):
            assert math.isfinite(m[key]) and m[key] > 0, (name, key, m[key])


def test_skeleton_names_resolve():
    assert _skeleton("body14_object5") is BODY14_OBJECT5
    assert _skeleton("Quadruped17") is QUADRUPED17
    assert _skeleton("body14") is BODY14
    with pytest.raises(ValueError, match="unknown skeleton"):
        _skeleton("body15")
