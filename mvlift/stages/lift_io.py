"""``mvlift lift INPUT``: read one 2D sequence from a file, lift it with a trained stage-4 model, write the
3D result (npz) and pictures (PNG strips of the generated views and of the 3D motion, the 3D motion from
several viewpoints, and a GIF when Pillow is available)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvlift._runtime import check_output_dir, resolve_device
from mvlift.atomic import atomic_savez
from mvlift.data.motion import Sequence2D
from mvlift.data.normalize import normalize_2d
from mvlift.data.skeletons import COCO17, Skeleton, convert, convert_confidence, get_skeleton
from mvlift.stages.lift import LiftConfig, lift
from mvlift.training.checkpoint import load_model


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
    raise ValueError(f"input {path}: expected .npz (mvlift 2D sequence), .json (COCO) or .pkl (AIST++)")


def _to_skeleton(seq: Sequence2D, skeleton: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    kp = np.asarray(seq.keypoints, dtype=np.float64)
    conf = np.ones(kp.shape[:2]) if seq.confidence is None else np.asarray(seq.confidence, dtype=np.float64)
    src = seq.skeleton if seq.skeleton is not None else (COCO17 if kp.shape[1] == 17 else None)
    if src is None:
        if kp.shape[1] != skeleton.num_joints:
            raise ValueError(f"the input has {kp.shape[1]} unnamed joints; the model expects {skeleton.name}")
        return kp, conf
    if src.name == skeleton.name:
        return kp, conf
    return np.asarray(convert(kp, src, skeleton)), np.asarray(convert_confidence(conf, src, skeleton))


def _fit_body(result: Any, skel: Skeleton, body: tuple[Any, Any], *, steps: int, lr: float) -> dict[str, Any]:
    """SMPL under VPoser fitted to sequence 0 of a :class:`~mvlift.stages.lift.LiftResult`, in its world frame
    (``canonical=False``); the ``smpl_*`` entries of ``lifted.npz``."""
    from mvlift.body import fit_smpl

    layer, vposer = body
    X = torch.where(result.valid[..., None], result.joints3d, torch.nan)[:1].to(layer.v_template)
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
    model_path: str | Path,
    out_dir: str | Path,
    *,
    skeleton: str = "body14",
    steps: int = 50,
    device: str = "auto",
    seed: int = 0,
    smpl_model: str | Path | None = None,
    vposer_weights: str | Path | None = None,
    smpl_steps: int = 1000,
    smpl_lr: float = 1e-2,
) -> dict[str, Any]:
    """Lift the 2D sequence in ``input_path`` and write ``out_dir/lifted.npz`` (+ PNG/GIF pictures).

    ``lifted.npz`` holds ``joints3d`` (T, J, 3) metres in the inference ring's world frame (Y up; the first
    frame's root lies at (0, 1, 0) seen from camera 0 at 3 m), ``root`` (T, 3), ``views`` (K, T, J, 2)
    normalised, ``valid`` (T, J), ``joint_names``.

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
    kp, conf = _to_skeleton(seq, skel)
    canvas = tuple(seq.image_size) if seq.image_size is not None else (1920, 1080)
    x, params = normalize_2d(torch.as_tensor(kp), root=skel.root, canvas=canvas, conf=torch.as_tensor(conf))
    x = torch.nan_to_num(x, nan=0.0)  # missing joints (confidence 0)
    if x.shape[0] < 2:
        raise ValueError(f"{input_path}: fewer than 2 frames left after the in-canvas cut")
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
    T = min(x.shape[0], model.config.max_frames)
    if T < x.shape[0]:
        warnings.warn(
            f"{input_path}: {x.shape[0]} frames after the in-canvas cut, but the model covers at most "
            f"{model.config.max_frames}; lifting the first {T} frames",
            stacklevel=2,
        )
    x_in = x[:T].to(dev, torch.float32)[None]
    check_output_dir(out_dir, where="--out")  # once the inputs are known good, before the work
    result = lift(
        model, x_in, LiftConfig(steps=steps, seed=seed, num_views=model.config.num_views), root=skel.root
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {
        "joints3d": result.joints3d[0].cpu().numpy(),
        "root": result.root[0].cpu().numpy(),
        "views": result.views[0].cpu().numpy(),
        "valid": result.valid[0].cpu().numpy(),
        "joint_names": np.asarray(skel.joint_names),
    }
    if body is not None:
        arrays.update(_fit_body(result, skel, body, steps=smpl_steps, lr=smpl_lr))
    atomic_savez(out / "lifted.npz", arrays)
    from mvlift.viz import gif_available, save_gif, save_sequence_png, save_viewpoints_png

    written = {"lifted": str(out / "lifted.npz"), "frames": f"{T} of {x.shape[0]}"}
    for k in range(result.views.shape[1]):
        p = save_sequence_png(
            out / f"view{k}.png", arrays["views"][k], skel, normalized=True, title=f"view {k}"
        )
        written[f"view{k}"] = str(p)
    written["motion3d"] = str(save_sequence_png(out / "motion3d.png", arrays["joints3d"], skel, title="3D"))
    written["viewpoints"] = str(
        save_viewpoints_png(out / "motion3d_viewpoints.png", arrays["joints3d"], skel, title="3D motion")
    )
    if gif_available():
        written["gif"] = str(save_gif(out / "motion3d.gif", arrays["joints3d"], skel, stride=2))
    return written
