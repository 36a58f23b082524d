"""The shipped model (mvlift/pretrained): it loads, it is what `mvlift lift` uses by default, and it still
lifts a real held-out CMU window as well as its model card says (a regression guard)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mvlift.pretrained import PRETRAINED, load_pretrained, pretrained_path

CARD = Path(__file__).resolve().parents[1] / "mvlift" / "pretrained" / PRETRAINED / "card.json"


def reference_window_errors(cmu_dir: Path) -> dict[str, float]:
    """MPJPE / PA-MPJPE (mm) of the shipped stage-4 model on the card's reference window: the first 120-frame
    window of the held-out take named in ``card.json``, made exactly as ``cmu_cpu.yaml`` makes its
    evaluation windows (BODY14, 30 fps, 2 px noise, one random camera, seed 1), lifted with ``mvlift lift``'s
    measured defaults (20 DDIM steps, 8 samples, input-view weight 100, the mean with the stage-2 estimate of
    the shipped stage-1 model, 100-step joint fit)."""
    from mvlift.data.loading import load_mocap
    from mvlift.data.singleview import build_singleview_dataset, load_singleview_dataset, load_singleview_eval
    from mvlift.data.skeletons import BODY14
    from mvlift.metrics import evaluate_sequence
    from mvlift.stages.lift import LiftConfig, lift
    from mvlift.stages.lift_io import (
        DEFAULT_INPUT_VIEW_WEIGHT,
        DEFAULT_SAMPLES,
        DEFAULT_SMOOTH_STEPS,
        DEFAULT_STAGE2_WEIGHT,
        DEFAULT_STEPS,
        stage2_fusion_for,
    )

    card = json.loads(CARD.read_text())
    ref = card["reference_window"]
    motion = load_mocap(cmu_dir / "asfamc" / f"{ref['take']}.amc")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        build_singleview_dataset(
            [motion], tmp, skeleton=BODY14, fps=30.0, window=120, min_length=60, noise_px=2.0, seed=1
        )
        data, gt = load_singleview_dataset(tmp), load_singleview_eval(tmp)
    x = torch.as_tensor(data.keypoints[:1], dtype=torch.float32)
    mask = torch.as_tensor(data.mask[:1])
    with torch.no_grad():
        config = LiftConfig(
            steps=DEFAULT_STEPS,
            progress=False,
            samples=DEFAULT_SAMPLES,
            input_view_weight=DEFAULT_INPUT_VIEW_WEIGHT,
            smooth_steps=DEFAULT_SMOOTH_STEPS,
            stage2_weight=DEFAULT_STAGE2_WEIGHT,
        )
        fusion = stage2_fusion_for(None, BODY14, "cpu")[0]  # the shipped stage-1 model, its run's stage 2
        res = lift(
            load_pretrained("stage4"),
            x,
            config,
            mask=mask,
            root=BODY14.root,
            parents=BODY14.parents,
            stage2=fusion,
        )
    valid = gt.window_mask[0] & data.mask[0]
    m = evaluate_sequence(res.joints3d[0].double().numpy(), gt.positions[0], skeleton=BODY14, mask=valid)
    return {"mpjpe": m["mpjpe"], "pa_mpjpe": m["pa_mpjpe"]}


def test_the_shipped_models_load_and_are_small():
    sizes = 0
    for stage, kind in (("stage1", "Stage1Denoiser"), ("stage4", "MultiViewDenoiser")):
        folder = pretrained_path(stage)
        sizes += sum(f.stat().st_size for f in folder.iterdir())
        assert type(load_pretrained(stage)).__name__ == kind
    assert sizes < 20 * 2**20  # at most 20 MB together
    with pytest.raises(ValueError, match="stage"):
        pretrained_path("stage2")


def test_the_shipped_model_lifts_the_reference_window_as_its_card_says(cmu_dir):
    card = json.loads(CARD.read_text())["reference_window"]
    got = reference_window_errors(cmu_dir)
    assert np.isfinite(got["pa_mpjpe"])
    # margin: thread counts and BLAS builds change the float reductions of sampling a little
    assert got["pa_mpjpe"] <= card["pa_mpjpe"] * 1.15 + 5.0, (got, card)
    assert got["mpjpe"] <= card["mpjpe"] * 1.15 + 10.0, (got, card)


def test_lift_uses_the_shipped_model_by_default_on_a_coco_file(tmp_path, cmu_dir, capsys):
    """`mvlift lift FILE.json --out DIR` with no --model: a COCO-17 keypoint file made from a real CMU take
    (eyes and ears left unseen, confidence 0) is lifted with the shipped model, which the command names."""
    from mvlift.cli import main
    from mvlift.data.loading import load_mocap
    from mvlift.data.singleview import build_singleview_dataset, load_singleview_dataset
    from mvlift.data.skeletons import BODY14, COCO17

    motion = load_mocap(cmu_dir / "asfamc" / "60_03.amc", max_frames=400)
    build_singleview_dataset([motion], tmp_path / "d", skeleton=BODY14, window=60, min_length=30, seed=1)
    data = load_singleview_dataset(tmp_path / "d")
    px = data.keypoints_px[0][data.mask[0]]  # (T, 14, 2) camera pixels
    kp = np.zeros((px.shape[0], 17, 3))
    for j, name in enumerate(COCO17.joint_names):
        src = "head" if name == "nose" else name
        if src in BODY14.joint_names:
            kp[:, j, :2] = px[:, BODY14.joint_names.index(src)]
            kp[:, j, 2] = 0.9
    anns = [
        {"frame": f, "keypoints": kp[f].reshape(-1).tolist(), "image_size": [1920, 1080]}
        for f in range(len(kp))
    ]
    path = tmp_path / "take.json"
    path.write_text(json.dumps(anns))
    assert main(["lift", str(path), "--out", str(tmp_path / "out"), "--steps", "4"]) == 0
    printed = capsys.readouterr().out
    assert f"shipped {PRETRAINED} stage-4 model" in printed
    assert f"stage1_model: shipped {PRETRAINED} stage-1 model" in printed
    with np.load(tmp_path / "out" / "lifted.npz") as out:
        joints = out["joints3d"]
    assert joints.shape[1:] == (14, 3) and np.isfinite(joints).any()
