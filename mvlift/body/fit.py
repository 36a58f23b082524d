"""Fit SMPL under the VPoser prior to 3D joint sequences (MVLift stage 3, ``docs/conventions.md`` frames).

Model, per sequence b and frame t (METHOD.md, "SMPL fit"):

    pred[b, t] = s_b * (J(R_bt, z_bt) - root(J(R_bt, z_bt))) + c_bt

- ``R_bt`` global orientation (per frame), initialised by a Procrustes fit of the model's shoulders and
  hips (VPoser's mean pose, ``z = 0``) to the target's; optimised as ``R = exp([w]x) R_init``.
- ``z_bt`` 32-d VPoser latent (per frame, initialised at 0) decoded to the 21 body-joint rotations; the
  two hand joints stay at the identity.
- ``c_bt`` root position (per frame; the root is the skeleton's root, the hips midpoint for BODY14 /
  OpenPose-18), initialised at the target's root (nearest frame with both hips when missing).
- ``s_b`` one scale per sequence (initialised by the median Procrustes scale), so that targets whose
  proportions differ from the body model's still fit; the body's shape ``betas`` is fixed (default 0).
- ``J`` the smplx joints mapped to the target's joint set (:func:`mvlift.body.smpl_joints_to_skeleton`).

Loss (summed over sequences, so every sequence is optimised independently of the batch):
``mean over valid joints |pred - target|^2 + smooth_weight * mean_t |Rbody[t+1] - Rbody[t]|_F^2`` with
Rbody the 21 VPoser joint rotation matrices (the temporal smoothness of the body pose, as in the authors'
code). Valid joints: finite target, frame in ``mask``, not in ``ignore_joints`` (default: the neck for
OpenPose-18 — SMPL has no joint where OpenPose puts it — nothing otherwise). Adam, ``steps`` iterations.

Afterwards the scale is set to 1: the body keeps the model's own size, posed and placed at the fitted
root trajectory (``joints = J + transl``, root(joints) = c). With ``canonical=True`` (default) the motion
is then put on the floor (the lowest mesh vertex — or joint, ``floor="joints"`` — over the valid frames at
y = 0, Y up) and the first valid frame's root moved to x = z = 0.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from mvlift.body.loading import check_smpl_skeleton
from mvlift.body.smpl_io import import_optional
from mvlift.body.smpl_model import SMPLJointModel, smpl_joints_to_skeleton
from mvlift.body.vposer import body_rotations, decode_rotations, matrix_to_axis_angle
from mvlift.data.skeletons import OPENPOSE18, Skeleton
from mvlift.metrics.alignment import similarity_procrustes

__all__ = ["SMPLFit", "fit_smpl"]

_TORSO = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")


@dataclass
class SMPLFit:
    """Result of :func:`fit_smpl` (B sequences, T frames, J target joints, tensors on the layer's device).

    Attributes:
        global_orient: (B, T, 3) axis-angle global orientation (smplx ``global_orient``).
        transl: (B, T, 3) smplx ``transl``, metres: ``smpl_layer(betas, global_orient, body_pose, transl)``
            reproduces ``joints`` (scale 1, canonical frame when ``canonical=True``).
        latent: (B, T, D) VPoser latents (D = 32).
        body_pose: (B, T, 69) axis-angle smplx ``body_pose`` (VPoser's 21 joints + 2 identity hands).
        scale: (B,) the fitted scale (the outputs above are at scale 1).
        betas: (B, K) the (fixed) shape parameters used.
        joints: (B, T, J, 3) fitted joints in the target's joint set, metres, at scale 1.
        joint_error: (B,) mean L2 distance (metres) between the scaled fit and the valid target joints
            before the scale is reset (NaN for a sequence without valid joints).
        vertices: (B, T, V, 3) mesh vertices at scale 1 (only with ``return_vertices=True``).
    """

    global_orient: Tensor
    transl: Tensor
    latent: Tensor
    body_pose: Tensor
    scale: Tensor
    betas: Tensor
    joints: Tensor
    joint_error: Tensor
    vertices: Tensor | None = None


@contextlib.contextmanager
def _frozen(module: Any) -> Iterator[None]:
    """Eval mode and no parameter gradients inside the block; the module's state is restored after."""
    training = module.training
    flags = [p.requires_grad for p in module.parameters()]
    module.eval()
    module.requires_grad_(False)
    try:
        yield
    finally:
        module.train(training)
        for p, f in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(f)


def _fill_nearest(values: Tensor, ok: Tensor) -> tuple[Tensor, Tensor]:
    """Replace frames where ``ok`` is False by the nearest ok frame (earlier one on ties).

    Args:
        values: (B, T, ...). ok: (B, T) bool.
    Returns:
        (filled values, (B,) bool: the sequence has an ok frame; rows without one are left as they are).
    """
    b, t = ok.shape
    idx = torch.arange(t, device=ok.device).expand(b, t)
    prev = torch.where(ok, idx, torch.full_like(idx, -1)).cummax(dim=1).values
    nxt = torch.where(ok, idx, torch.full_like(idx, t)).flip(1).cummin(dim=1).values.flip(1)
    d_prev = torch.where(prev >= 0, idx - prev, torch.full_like(idx, 2 * t + 1))
    d_next = torch.where(nxt < t, nxt - idx, torch.full_like(idx, 2 * t + 1))
    pick = torch.where(d_prev <= d_next, prev, nxt)
    has = ok.any(dim=1)
    pick = torch.where(has[:, None], pick.clamp(0, t - 1), idx)
    gather = pick.reshape(b, t, *([1] * (values.dim() - 2))).expand_as(values)
    return values.gather(1, gather), has


def _check_inputs(
    joints3d: Any, skeleton: Any, mask: Any, steps: Any, lr: Any, smooth_weight: Any, floor: str
) -> None:
    check_smpl_skeleton(skeleton)
    if not isinstance(joints3d, Tensor) or not joints3d.is_floating_point():
        got = joints3d.dtype if isinstance(joints3d, Tensor) else type(joints3d).__name__
        raise TypeError(f"joints3d: expected a floating torch tensor, got {got}")
    j = skeleton.num_joints
    if joints3d.dim() != 4 or joints3d.shape[2:] != (j, 3) or joints3d.shape[0] < 1 or joints3d.shape[1] < 1:
        raise ValueError(
            f"joints3d: expected shape (B, T, {j}, 3) for {skeleton.name!r}, got {tuple(joints3d.shape)}"
        )
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != joints3d.shape[:2]:
            got = (mask.dtype, tuple(mask.shape)) if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"mask: expected a bool tensor of shape {tuple(joints3d.shape[:2])}, got {got}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps: expected an int >= 0, got {steps!r}")
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr: expected a finite number > 0, got {lr!r}")
    if not isinstance(smooth_weight, (int, float)) or not math.isfinite(smooth_weight) or smooth_weight < 0:
        raise ValueError(f"smooth_weight: expected a finite number >= 0, got {smooth_weight!r}")
    if floor not in ("vertices", "joints"):
        raise ValueError(f"floor: expected 'vertices' or 'joints', got {floor!r}")


def _smplx_vertices(
    smpl_layer: Any, betas: Tensor, rg: Tensor, body: Tensor, transl: Tensor, chunk: int
) -> Iterator[tuple[int, Tensor]]:
    """Yield (first flat frame index, (n, V, 3) vertices) from smplx's forward pass, ``chunk`` frames at a
    time (frames flattened over (B, T))."""
    b, t = rg.shape[:2]
    n = b * t
    betas_f = betas[:, None].expand(b, t, -1).reshape(n, -1)
    rg_f, body_f, tr_f = rg.reshape(n, 1, 3, 3), body.reshape(n, 23, 3, 3), transl.reshape(n, 3)
    for i in range(0, n, chunk):
        out = smpl_layer(
            betas=betas_f[i : i + chunk],
            global_orient=rg_f[i : i + chunk],
            body_pose=body_f[i : i + chunk],
            transl=tr_f[i : i + chunk],
            pose2rot=False,
        )
        yield i, out.vertices


def fit_smpl(
    joints3d: Tensor,
    skeleton: Skeleton,
    smpl_layer: Any,
    vposer: Any,
    *,
    betas: Tensor | None = None,
    mask: Tensor | None = None,
    steps: int = 1000,
    lr: float = 1e-2,
    smooth_weight: float = 1e-3,
    ignore_joints: Sequence[str] | None = None,
    canonical: bool = True,
    floor: str = "vertices",
    return_vertices: bool = False,
    progress: bool = True,
    chunk_size: int = 2048,
) -> SMPLFit:
    """Fit SMPL (per-frame orientation, root position and VPoser latent; one scale per sequence) to 3D
    joint sequences — the model, loss and post-processing are in the module docstring.

    Args:
        joints3d: (B, T, J, 3) target joints, metres, Y up, in ``skeleton``'s order; NaN = missing.
        skeleton: ``BODY14``, ``OPENPOSE18`` or ``SMPL24`` (:mod:`mvlift.data.skeletons`).
        smpl_layer: an ``smplx.SMPL`` layer (:func:`mvlift.body.smplx_layer`); the fit runs on its device
            and in its dtype.
        vposer: a VPoser v1 model on the same device (:func:`mvlift.body.load_vposer`); used in eval mode
            with frozen parameters during the fit, its mode and ``requires_grad`` flags restored after.
        betas: (K,) or (B, K) fixed shape parameters; default zeros (the mean shape).
        mask: (B, T) bool, True = valid frame; invalid frames enter no loss term (their parameters keep
            their initial values) and are ignored for the floor and the first frame.
        steps, lr: Adam iterations and learning rate (paper: 1000, 1e-2).
        smooth_weight: weight of the body-pose temporal smoothness (paper: 1e-3).
        ignore_joints: target joint names left out of the data term; default ``("neck",)`` for
            OpenPose-18, none otherwise.
        canonical: put the result on the floor and its first-frame root at x = z = 0.
        floor: what touches the floor: the mesh ``"vertices"`` (default) or the fitted ``"joints"``.
        return_vertices: also return the mesh vertices (B, T, V, 3).
        progress: show a tqdm progress bar over the steps.
        chunk_size: frames per smplx forward pass when computing vertices.

    Returns:
        :class:`SMPLFit`.

    Raises:
        TypeError / ValueError: bad arguments (the message names the argument, the expected and the given).
        ImportError: smplx is not installed.
    """
    import_optional("smplx")
    from smplx.lbs import batch_rodrigues

    _check_inputs(joints3d, skeleton, mask, steps, lr, smooth_weight, floor)
    layer_t = getattr(smpl_layer, "v_template", None)
    if not isinstance(layer_t, Tensor):
        raise TypeError(f"smpl_layer: expected an smplx.SMPL layer, got {type(smpl_layer).__name__}")
    dev, dtype = layer_t.device, layer_t.dtype
    vparams = list(vposer.parameters()) if hasattr(vposer, "parameters") else []
    if not vparams or not hasattr(vposer, "latentD"):
        raise TypeError(f"vposer: expected a VPoser v1 model, got {type(vposer).__name__}")
    if vparams[0].device != dev:
        raise ValueError(f"vposer: on {vparams[0].device}, expected the smpl_layer's device {dev}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")

    x = joints3d.to(device=dev, dtype=dtype)
    b, t, nj, _ = x.shape
    latent_dim = int(vposer.latentD)
    k_layer = smpl_layer.shapedirs.shape[-1]
    if betas is None:
        betas = torch.zeros(b, k_layer, dtype=dtype, device=dev)
    else:
        if not isinstance(betas, Tensor) or betas.dim() not in (1, 2) or betas.shape[-1] > k_layer:
            got = tuple(betas.shape) if isinstance(betas, Tensor) else type(betas).__name__
            raise ValueError(f"betas: expected shape (K,) or ({b}, K) with K <= {k_layer}, got {got}")
        betas = betas.to(device=dev, dtype=dtype)
        betas = betas.expand(b, -1) if betas.dim() == 1 else betas
        if betas.shape[0] != b:
            raise ValueError(f"betas: expected {b} rows (one per sequence), got {betas.shape[0]}")
        betas = torch.cat([betas, betas.new_zeros(b, k_layer - betas.shape[1])], dim=1)

    if ignore_joints is None:
        ignore_joints = ("neck",) if skeleton.name == OPENPOSE18.name else ()
    used = torch.ones(nj, dtype=torch.bool, device=dev)
    for name in ignore_joints:
        used[skeleton.index(name)] = False
    fmask = torch.ones(b, t, dtype=torch.bool, device=dev) if mask is None else mask.to(dev)
    valid = torch.isfinite(x).all(dim=-1) & fmask[..., None] & used
    w = valid.to(dtype)
    x0 = torch.where(valid[..., None], x, torch.zeros_like(x))
    wsum = w.sum(dim=(1, 2))

    face = skeleton.name == OPENPOSE18.name
    model = SMPLJointModel(smpl_layer, betas, face_joints=face)
    eye = torch.eye(3, dtype=dtype, device=dev)
    root_idx = list(skeleton.root)

    def skeleton_joints(rg: Tensor, body: Tensor) -> Tensor:
        rot = torch.cat([rg[:, :, None], body], dim=2)  # (B, T, 24, 3, 3)
        return smpl_joints_to_skeleton(model(rot), skeleton)

    with _frozen(vposer):
        # --- initialisation -------------------------------------------------------------------------
        with torch.no_grad():
            body0 = body_rotations(decode_rotations(vposer, x.new_zeros(b, 1, latent_dim)))
            rest = skeleton_joints(eye.expand(b, 1, 3, 3), body0)  # (B, 1, J, 3)
            torso = [skeleton.index(n) for n in _TORSO]
            src = rest[:, :, torso].expand(b, t, -1, -1).double()
            s_init, r_init, _ = similarity_procrustes(src, x0[:, :, torso].double(), w[:, :, torso].double())
            ok = w[:, :, torso].sum(dim=-1) >= 3
            r_init, has_r = _fill_nearest(r_init, ok)
            r_init = torch.where(
                has_r[:, None, None, None], r_init, torch.eye(3, dtype=r_init.dtype, device=dev)
            )
            s_ok = torch.where(ok, s_init, torch.full_like(s_init, float("nan")))
            scale0 = torch.nanmedian(s_ok, dim=1).values
            scale0 = torch.where(torch.isfinite(scale0) & (scale0 > 0), scale0, torch.ones_like(scale0))
            root_ok = valid[:, :, root_idx].all(dim=-1)
            c_init, has_c = _fill_nearest(x0[:, :, root_idx].mean(dim=2), root_ok)
            seq_mean = (x0 * w[..., None]).sum(dim=(1, 2)) / wsum.clamp_min(1.0)[:, None]
            c_init = torch.where(has_c[:, None, None], c_init, seq_mean[:, None, :].expand(b, t, 3))
        r_init = r_init.to(dtype)
        rotvec = torch.zeros(b, t, 3, dtype=dtype, device=dev, requires_grad=True)
        root_pos = c_init.clone().requires_grad_(True)
        latent = torch.zeros(b, t, latent_dim, dtype=dtype, device=dev, requires_grad=True)
        log_scale = scale0.log().to(dtype).clone().requires_grad_(True)

        def forward() -> tuple[Tensor, Tensor, Tensor, Tensor]:
            rg = batch_rodrigues(rotvec.reshape(-1, 3)).reshape(b, t, 3, 3) @ r_init
            body = body_rotations(decode_rotations(vposer, latent))  # (B, T, 23, 3, 3)
            j = skeleton_joints(rg, body)
            centred = j - j[:, :, root_idx].mean(dim=2, keepdim=True)
            pred = log_scale.exp()[:, None, None, None] * centred + root_pos[:, :, None]
            return pred, j, rg, body

        # --- optimisation ---------------------------------------------------------------------------
        pair = (fmask[:, 1:] & fmask[:, :-1]).to(dtype)  # (B, T-1)
        n_pairs = (pair.sum(dim=1) * 21).clamp_min(1.0)
        opt = torch.optim.Adam([rotvec, root_pos, latent, log_scale], lr=lr)
        bar = tqdm(range(steps), desc="SMPL fit", disable=not progress, leave=False)
        for it in bar:
            pred, _, _, body = forward()
            data = (w * ((pred - x0) ** 2).sum(dim=-1)).sum(dim=(1, 2)) / wsum.clamp_min(1.0)
            loss = data.sum()
            if smooth_weight > 0 and t > 1:
                vp = body[:, :, :21]
                diff = ((vp[:, 1:] - vp[:, :-1]) ** 2).sum(dim=(-3, -2, -1))  # (B, T-1)
                loss = loss + smooth_weight * ((diff * pair).sum(dim=1) / n_pairs).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if progress and (it % 50 == 0 or it == steps - 1):
                bar.set_postfix(loss=f"{loss.item():.3e}")

        # --- scale 1, floor, origin -----------------------------------------------------------------
        with torch.no_grad():
            pred, j, rg, body = forward()
            err = (w * (pred - x0).norm(dim=-1)).sum(dim=(1, 2)) / wsum
            err = torch.where(wsum > 0, err, torch.full_like(err, float("nan")))
            transl = root_pos - j[:, :, root_idx].mean(dim=2)  # smplx transl at scale 1
            joints = j + transl[:, :, None]
            vertices = None
            if return_vertices:
                vertices = torch.empty(b * t, smpl_layer.v_template.shape[0], 3, dtype=dtype, device=dev)
                for i, v in _smplx_vertices(smpl_layer, betas, rg, body, transl, chunk_size):
                    vertices[i : i + v.shape[0]] = v
                vertices = vertices.reshape(b, t, -1, 3)
            if canonical:
                big = torch.finfo(dtype).max
                if floor == "joints":
                    low = joints[..., 1].amin(dim=-1)  # (B, T)
                elif vertices is not None:
                    low = vertices[..., 1].amin(dim=-1)
                else:
                    low = torch.empty(b * t, dtype=dtype, device=dev)
                    for i, v in _smplx_vertices(smpl_layer, betas, rg, body, transl, chunk_size):
                        low[i : i + v.shape[0]] = v[..., 1].amin(dim=-1)
                    low = low.reshape(b, t)
                ymin = torch.where(fmask, low, torch.full_like(low, big)).amin(dim=1)
                ymin = torch.where(fmask.any(dim=1), ymin, torch.zeros_like(ymin))
                first = fmask.to(torch.int64).argmax(dim=1)  # first valid frame (0 if none)
                r0 = root_pos[torch.arange(b, device=dev), first]  # (B, 3)
                offset = torch.stack([-r0[:, 0], -ymin, -r0[:, 2]], dim=-1)  # (B, 3)
                transl = transl + offset[:, None]
                joints = joints + offset[:, None, None]
                if vertices is not None:
                    vertices = vertices + offset[:, None, None]
            global_orient = matrix_to_axis_angle(rg)
            body_pose = matrix_to_axis_angle(body).reshape(b, t, 69)
    return SMPLFit(
        global_orient=global_orient,
        transl=transl,
        latent=latent.detach(),
        body_pose=body_pose,
        scale=log_scale.detach().exp(),
        betas=betas,
        joints=joints,
        joint_error=err,
        vertices=vertices,
    )
