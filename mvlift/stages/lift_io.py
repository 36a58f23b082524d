"""``mvlift lift INPUT``: read one 2D sequence from a file, lift it with a trained stage-4 model, write the
3D result (npz) and pictures (PNG strips of the generated views and of the 3D motion, the 3D motion from
several viewpoints, and a GIF when Pillow is available).

The input is checked first (:mod:`mvlift.stages.lift_input`: unnamed joint sets, non-finite values,
joints outside the image or the canvas, gaps without detections), and what was masked, interpolated, cut
and flagged is printed and written to ``input_report.json`` and ``lifted.npz``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvlift._runtime import check_output_dir, resolve_device
from mvlift.atomic import atomic_savez, atomic_write_json
from mvlift.data.motion import Sequence2D
from mvlift.data.skeletons import get_skeleton
from mvlift.ops import TriangulationFlag
from mvlift.stages.lift import REPROJECTION_OUTLIER, LiftConfig, lift
from mvlift.stages.lift_input import DEFAULT_MAX_GAP, INPUT_STATUS, format_input_report, prepare_input
from mvlift.training.checkpoint import load_model

DEFAULT_STEPS = 20
"""``mvlift lift``'s default :attr:`LiftConfig.steps` (DDIM; 50 lifted worse than 20, :func:`lift_file`)."""
DEFAULT_SAMPLES = 8
"""``mvlift lift``'s default :attr:`LiftConfig.samples` (measured, :func:`lift_file`)."""
DEFAULT_INPUT_VIEW_WEIGHT = 100.0
"""``mvlift lift``'s default :attr:`LiftConfig.input_view_weight` (measured, :func:`lift_file`)."""
DEFAULT_SMOOTH_STEPS = 100
"""``mvlift lift``'s default :attr:`LiftConfig.smooth_steps` (measured, :func:`lift_file`)."""
DEFAULT_STAGE2_WEIGHT = 0.5
"""``mvlift lift``'s default :attr:`LiftConfig.stage2_weight`: the plain mean of the stage-4 and stage-2
estimates (chosen before measuring; measured, :func:`lift_file`)."""


def find_run_folder(model_path: str | Path) -> Path | None:
    """The pipeline run folder a stage-4 ``model_path`` (``RUN/stage4``, its ``checkpoints/`` or one
    checkpoint file) lies in: the nearest folder at or above it holding ``config.json`` and ``stage1/``;
    None when there is none."""
    path = Path(model_path).resolve()
    for folder in [path, *path.parents][:4]:
        if (folder / "config.json").is_file() and (folder / "stage1").is_dir():
            return folder
    return None


def stage2_fusion_for(model_path: str | Path | None, skeleton: Any, device: Any) -> tuple[Any, str]:
    """The :class:`~mvlift.stages.fusion.Stage2Fusion` that belongs to a stage-4 model, and a description
    of its stage-1 model: the shipped stage-1 model and its run's stage-2 settings for the shipped stage-4
    model (``model_path`` None), else ``RUN/stage1`` and ``RUN/config.json``'s ``stage2`` section of the run
    folder the model lies in (:func:`find_run_folder`).

    Raises:
        ValueError: ``model_path`` does not lie in a run folder (say how to fix it).
    """
    from mvlift.stages.fusion import Stage2Fusion

    if model_path is None:
        from mvlift.pretrained import PRETRAINED, load_pretrained, pretrained_path, pretrained_stage2_config

        model = load_pretrained("stage1", device=str(device))
        return Stage2Fusion(model, pretrained_stage2_config(), skeleton), (
            f"shipped {PRETRAINED} stage-1 model ({pretrained_path('stage1')})"
        )
    run = find_run_folder(model_path)
    if run is None:
        raise ValueError(
            f"--model {model_path}: the stage-2 fusion (--stage2-weight > 0) needs the stage-1 model and the "
            "stage-2 settings of the run that trained this model, but no run folder (with config.json and "
            "stage1/) holds it; give RUN/stage4 of a pipeline run, or pass --stage2-weight 0"
        )
    from mvlift.stages.stage2 import Stage2Config

    cfg = json.loads((run / "config.json").read_text())
    stage2 = Stage2Config(**{**cfg["stage2"], "progress": True})
    model = load_model(run / "stage1", device=device)
    if model.config.kind != "stage1" or model.config.num_joints != skeleton.num_joints:
        raise ValueError(
            f"{run / 'stage1'}: expected the run's stage-1 model on {skeleton.num_joints} joints "
            f"({skeleton.name}), got a {model.config.kind!r} model on {model.config.num_joints} joints; "
            "pass --stage2-weight 0 to lift without the stage-2 fusion"
        )
    return Stage2Fusion(model, stage2, skeleton), str(run / "stage1")


def read_sequence2d(path: str | Path, *, view: int = 0) -> Sequence2D:
    """Read a 2D sequence: our ``.npz``, a COCO keypoint ``.json`` or an AIST++ keypoints2d ``.pkl``
    (camera ``view``). Keypoints in pixels."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.suffix == ".npz":
        from mvlift.data.npz import load_sequence2d_npz

        return load_sequence2d_npz(path)
    if path.suffix == ".json":
        from mvlift.data.coco import load_coco_keypoints

        return load_coco_keypoints(path)
    if path.suffix in (".pkl", ".pickle"):
        from mvlift.data.aistpp import load_aist_keypoints2d

        return load_aist_keypoints2d(path).view(view)
    raise ValueError(
        f"input {path}: unknown suffix {path.suffix!r}: expected .npz (mvlift 2D sequence), .json (COCO "
        "keypoints) or .pkl / .pickle (AIST++ keypoints2d); convert the file or give it its format's suffix"
    )


_FLAG_NAMES = {
    "degenerate": int(TriangulationFlag.DEGENERATE),
    "behind_camera": int(TriangulationFlag.BEHIND_CAMERA),
    "not_converged": int(TriangulationFlag.NOT_CONVERGED),
    "reprojection_outlier": REPROJECTION_OUTLIER,
}


def _fit_body(
    result: Any, valid: torch.Tensor, skel: Any, body: tuple[Any, Any], *, steps: int, lr: float
) -> dict[str, Any]:
    """SMPL under VPoser fitted to the ``valid`` (1, T, J) joints of sequence 0 of a
    :class:`~mvlift.stages.lift.LiftResult`, in its world frame (``canonical=False``); the ``smpl_*``
    entries of ``lifted.npz``."""
    from mvlift.body import fit_smpl

    layer, vposer = body
    X = torch.where(valid[..., None], result.joints3d, torch.nan)[:1].to(layer.v_template)
    fit = fit_smpl(X, skel, layer, vposer, steps=steps, lr=lr, canonical=False, progress=True)
    return {
        "smpl_global_orient": fit.global_orient[0].detach().cpu().numpy(),
        "smpl_body_pose": fit.body_pose[0].detach().cpu().numpy(),
        "smpl_transl": fit.transl[0].detach().cpu().numpy(),
        "smpl_betas": fit.betas[0].detach().cpu().numpy(),
        "smpl_latent": fit.latent[0].detach().cpu().numpy(),
        "smpl_joints": fit.joints[0].detach().cpu().numpy(),
    }


def lift_file(
    input_path: str | Path,
    model_path: str | Path | None,
    out_dir: str | Path,
    *,
    skeleton: str = "body14",
    input_skeleton: str | None = None,
    max_gap: int = DEFAULT_MAX_GAP,
    steps: int = DEFAULT_STEPS,
    device: str = "auto",
    seed: int = 0,
    smpl_model: str | Path | None = None,
    vposer_weights: str | Path | None = None,
    smpl_steps: int = 1000,
    smpl_lr: float = 1e-2,
    samples: int = DEFAULT_SAMPLES,
    input_view_weight: float = DEFAULT_INPUT_VIEW_WEIGHT,
    smooth_steps: int = DEFAULT_SMOOTH_STEPS,
    stage2_weight: float = DEFAULT_STAGE2_WEIGHT,
) -> dict[str, Any]:
    """Lift the 2D sequence in ``input_path`` and write ``out_dir/lifted.npz`` (+ PNG/GIF pictures).

    ``skeleton`` is the model's joint set; ``input_skeleton`` names the input's joint set when the file does
    not (an unnamed joint set is an error, never guessed from the joint count). The input is checked,
    masked and interpolated over gaps of at most ``max_gap`` frames by
    :func:`mvlift.stages.lift_input.prepare_input`; its report, completed with the triangulation's point
    counts, is written to ``out_dir/input_report.json`` (and returned, formatted, as ``summary``).

    ``lifted.npz`` holds, for the T lifted frames (input frames ``frame_index`` (T,)):

    - ``joints3d`` (T, J, 3) metres in the inference ring's world frame (Y up; the first frame's root lies
      at (0, 1, 0) seen from camera 0 at 3 m): valid and repaired points; NaN elsewhere (masked frames,
      joints without input over a long gap, flagged points that could not be repaired);
    - ``valid`` (T, J) bool: detected in the input (not interpolated) and triangulated without a flag;
    - ``repaired`` (T, J) bool: invalid points given a value by interpolation in time;
    - ``frame_mask`` (T,) bool: frames lifted (False: too few joints in the input, 3D NaN);
    - ``input_status`` (T, J) int8: what happened to each input joint, codes of ``input_status_names``
      (:data:`mvlift.stages.lift_input.INPUT_STATUS`: detected, interpolated, or the reason it was masked);
    - ``tri_flags`` (T, J) int32 (:class:`mvlift.ops.TriangulationFlag` bits | 8 for a reprojection
      outlier, :data:`mvlift.stages.lift.REPROJECTION_OUTLIER`) and ``tri_rms`` (T, J) (normalised units);
    - ``stage2`` (T, J, 3) metres: the stage-2 estimate fused into ``joints3d`` (when ``stage2_weight > 0``);
    - ``root`` (T, 3), ``views`` (K, T, J, 2) normalised (view 0 = the model's input, with fillers at masked
      joints), ``joint_names``, and ``input_report`` (the JSON report as a string).

    ``samples``, ``input_view_weight``, ``smooth_steps``, ``stage2_weight``:
    :class:`mvlift.stages.lift.LiftConfig`. The defaults here are the settings measured best with the
    shipped model on held-out CMU windows (benchmarks/RESULTS.md, issue 11): 8 samples triangulated
    together, the 3D kept on the input's rays (weight 100), the mean with the stage-2 estimate of the same
    input (weight 0.5; the stage-1 model and stage-2 settings of the model's run,
    :func:`stage2_fusion_for`) and a 100-step joint fit, with 20 DDIM ``steps``; ``LiftConfig``'s own
    defaults are the paper's (1, 1.0, 0, 0.0; 50 steps).

    With ``smpl_model`` (an SMPL ``.pkl``; the skeleton must be one SMPL maps to,
    ``mvlift.body.SMPL_SKELETONS``) SMPL is then fitted under the VPoser prior to the triangulated joints
    (:func:`mvlift.body.fit_smpl`, ``smpl_steps`` Adam steps at ``smpl_lr``, the paper's final step) in the
    same world frame, and the npz also holds the smplx parameters ``smpl_global_orient`` (T, 3) and
    ``smpl_body_pose`` (T, 69) axis-angle, ``smpl_transl`` (T, 3) metres, ``smpl_betas`` (10,) (fixed at the
    mean shape), ``smpl_latent`` (T, 32) VPoser codes, and ``smpl_joints`` (T, J, 3), the fitted body's
    joints (``smpl_layer(...)`` with these parameters reproduces them). ``vposer_weights``: the
    ``vposer_v1_0`` folder or a ``.pt``; None uses a
    randomly initialised VPoser, which is no pose prior (a warning says so).
    """
    dev = resolve_device(device, where="--device")
    skel = get_skeleton(skeleton)
    body = None
    if smpl_model is None and vposer_weights is not None:
        raise ValueError(
            "vposer_weights is given without smpl_model: the SMPL fit needs both (or smpl_model alone)"
        )
    if smpl_model is not None:  # checked and loaded before the (long) lifting
        from mvlift.body import load_body_models

        if not isinstance(smpl_steps, int) or isinstance(smpl_steps, bool) or smpl_steps < 1:
            raise ValueError(f"smpl_steps must be an int >= 1, got {smpl_steps!r}")
        body = load_body_models(smpl_model, vposer_weights, skeleton=skel, seed=seed, device=dev)
        if vposer_weights is None:
            warnings.warn(
                "lift: no vposer_weights given, so the SMPL fit uses a randomly initialised VPoser, which is "
                "no pose prior; pass the official vposer_v1_0 folder for the paper's fit",
                stacklevel=2,
            )
    seq = read_sequence2d(input_path)
    shipped = model_path is None
    if shipped:  # the model shipped in the package (mvlift/pretrained/MODEL_CARD.md)
        from mvlift.pretrained import PRETRAINED, pretrained_path

        model_path = pretrained_path("stage4")
        model_name = f"shipped {PRETRAINED} stage-4 model ({model_path})"
    else:
        model_name = str(model_path)
    model = load_model(model_path, device=dev)
    if model.config.kind != "multiview":
        raise ValueError(
            f"--model {model_path}: this is a {model.config.kind!r} (single-view) model; lifting needs the "
            "stage-4 multi-view model, e.g. RUN/stage4 (the stage-1 model only drives stage 2)"
        )
    if model.config.num_joints != skel.num_joints:
        raise ValueError(
            f"the model was trained on {model.config.num_joints} joints, the input gives {skel.num_joints} "
            f"({skel.name})"
        )
    prep = prepare_input(
        seq,
        skel,
        input_skeleton=input_skeleton,
        max_gap=max_gap,
        max_frames=model.config.max_frames,
        where=str(input_path),
    )
    fusion, stage1_name = None, None
    if stage2_weight > 0:
        fusion, stage1_name = stage2_fusion_for(None if shipped else model_path, skel, dev)
    check_output_dir(out_dir, where="--out")  # once the inputs are known good, before the work
    config = LiftConfig(
        steps=steps,
        seed=seed,
        num_views=model.config.num_views,
        max_gap=max_gap,
        samples=samples,
        input_view_weight=input_view_weight,
        smooth_steps=smooth_steps,
        stage2_weight=stage2_weight,
    )
    result = lift(
        model,
        prep.x.to(dev, torch.float32)[None],
        config,
        mask=prep.mask.to(dev)[None],
        conf=prep.used.to(dev, torch.float32)[None],
        root=skel.root,
        parents=skel.parents,
        stage2=fusion,
    )
    valid = result.valid[0].cpu() & ~prep.interpolated
    joints3d = result.joints3d[0].cpu().numpy()
    flags = result.flags[0].cpu()
    counted = prep.used & prep.mask[:, None]  # the points lifting was asked for
    report = dict(prep.report)
    report["points_flagged"] = {
        k: int((((flags & bit) != 0) & counted).sum()) for k, bit in _FLAG_NAMES.items()
    }
    report["points_repaired"] = int(result.repaired[0].cpu().sum())
    report["points_invalid"] = int((~np.isfinite(joints3d).all(-1) & prep.mask.numpy()[:, None]).sum())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {
        "joints3d": joints3d,
        "root": result.root[0].cpu().numpy(),
        "views": result.views[0].cpu().numpy(),
        "valid": valid.numpy(),
        "repaired": result.repaired[0].cpu().numpy(),
        "frame_mask": prep.mask.numpy(),
        "frame_index": prep.frame_index,
        "input_status": prep.status,
        "input_status_names": np.asarray(INPUT_STATUS),
        "tri_flags": flags.numpy(),
        "tri_rms": result.rms[0].cpu().numpy(),
        "joint_names": np.asarray(skel.joint_names),
        "input_report": np.asarray(json.dumps(report)),
    }
    if result.stage2 is not None:
        arrays["stage2"] = result.stage2[0].cpu().numpy()
    if body is not None:
        arrays.update(_fit_body(result, valid[None], skel, body, steps=smpl_steps, lr=smpl_lr))
    atomic_savez(out / "lifted.npz", arrays)
    atomic_write_json(out / "input_report.json", report)
    from mvlift.viz import gif_available, save_gif, save_sequence_png, save_viewpoints_png

    written = {
        "lifted": str(out / "lifted.npz"),
        "report": str(out / "input_report.json"),
        "frames": f"{report['frames_lifted']} of {report['frames_read']}",
        "model": model_name,
        **({"stage1_model": stage1_name} if stage1_name is not None else {}),
        "summary": format_input_report(report),
    }
    for k in range(result.views.shape[1]):
        p = save_sequence_png(
            out / f"view{k}.png", arrays["views"][k], skel, normalized=True, title=f"view {k}"
        )
        written[f"view{k}"] = str(p)
    if not np.isfinite(joints3d).any():
        warnings.warn(f"{input_path}: no 3D point could be lifted; no 3D pictures", stacklevel=2)
        return written
    written["motion3d"] = str(save_sequence_png(out / "motion3d.png", joints3d, skel, title="3D"))
    written["viewpoints"] = str(
        save_viewpoints_png(out / "motion3d_viewpoints.png", joints3d, skel, title="3D motion")
    )
    if gif_available():
        written["gif"] = str(save_gif(out / "motion3d.gif", joints3d, skel, stride=2))
    return written
