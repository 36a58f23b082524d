"""VPoser v1 (human-body-prior 0.8.5.0): loading, decoding latents to SMPL body rotations, and rotation
matrices -> axis-angle.

VPoser v1 maps a 32-d latent to the local rotations of SMPL's 21 body joints (joints 1-21: everything but
the pelvis and the two hands). ``VPoser.decode(z, output_type='matrot')`` returns rotation matrices; its
``'aa'`` path goes through torchgeometry, which breaks on current torch, so mvlift always decodes to
matrices and converts with :func:`matrix_to_axis_angle` (or hands matrices to smplx with
``pose2rot=False``). human-body-prior is an optional dependency (AGPL-3.0): ``pip install
'mvlift[smpl]'`` then ``pip install --no-deps human-body-prior==0.8.5.0`` (its full dependency list pulls
opencv, pyrender and tensorboardX, which VPoser does not use).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mvlift.body.smpl_io import import_optional

__all__ = [
    "VPOSER_LATENT_DIM",
    "VPOSER_NUM_JOINTS",
    "load_vposer",
    "decode_rotations",
    "body_rotations",
    "matrix_to_axis_angle",
]

VPOSER_LATENT_DIM = 32
"""Latent size of VPoser v1."""

VPOSER_NUM_JOINTS = 21
"""Body joints VPoser v1 decodes (SMPL joints 1-21)."""

_V1_NUM_NEURONS = 512
_RANDOM_OUT_GAIN = 2.0
_V1_KEYS = ("bodyprior_dec_fc1.weight", "bodyprior_dec_out.weight")


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if path.is_dir():
        snaps = sorted((path / "snapshots").glob("*.pt")) or sorted(path.glob("*.pt"))
        if not snaps:
            raise FileNotFoundError(f"weights_path: no snapshots/*.pt or *.pt file in the folder {path}")
        path = snaps[-1]
    elif not path.is_file():
        raise FileNotFoundError(f"weights_path: no such file or folder: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"weights_path: {path} does not hold a state dict (got {type(state).__name__})")
    missing = [k for k in _V1_KEYS if k not in state]
    if missing:
        hint = ""
        if any(str(k).startswith("vp_model.") or "decoder_net" in str(k) for k in state):
            hint = " (this looks like VPoser v2; mvlift uses VPoser v1 from human-body-prior 0.8.5.0)"
        raise ValueError(f"weights_path: {path} is not a VPoser v1 state dict: missing {missing}{hint}")
    return state


def load_vposer(
    weights_path: str | os.PathLike[str] | None = None,
    *,
    seed: int | None = None,
    device: Any = None,
    dtype: torch.dtype = torch.float32,
) -> Any:
    """A VPoser v1 model in eval mode with frozen parameters.

    Args:
        weights_path: the official ``vposer_v1_0`` folder (its ``snapshots/*.pt``; the last in name order
            when there are several), or a ``.pt`` state dict. Layer sizes are read from the weights.
            ``None``: a **randomly initialised** VPoser v1 (512 hidden units, 32-d latent, 21 joints) —
            for tests and demos only, it is no learned pose prior. PyTorch's default initialisation,
            then the output layer is centred on the rest pose (bias = the identity rotation's 6-D code,
            weight x 2): ``z = 0`` decodes to joint rotations of about 3 degrees and ``z ~ N(0, I)`` to
            about 20 degrees on average.
        seed: seeds the random initialisation (``weights_path=None``) without touching the global RNG;
            ``None`` uses the global RNG.
        device, dtype: where and in which precision to put the model.

    Returns:
        ``human_body_prior.train.vposer_smpl.VPoser``.

    Raises:
        FileNotFoundError / ValueError: missing or non-VPoser-v1 weights. ImportError: human-body-prior
        (or torchgeometry / configer, which it imports) is missing.
    """
    import_optional("human_body_prior")
    from human_body_prior.train.vposer_smpl import VPoser

    if weights_path is None:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            model = VPoser(
                num_neurons=_V1_NUM_NEURONS,
                latentD=VPOSER_LATENT_DIM,
                data_shape=[1, VPOSER_NUM_JOINTS, 3],
            )
        # Centre the random decoder on the rest pose: the output layer's bias becomes the identity's 6-D
        # rotation code (two columns (1, 0, 0), (0, 1, 0), laid out as VPoser's (3, 2) view) and its
        # weight is doubled, so z = 0 decodes to about 3 degrees per joint and z ~ N(0, I) to about 20.
        out = model.bodyprior_dec_out
        with torch.no_grad():
            out.weight.mul_(_RANDOM_OUT_GAIN)
            out.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]).repeat(VPOSER_NUM_JOINTS))
    else:
        state = _read_state_dict(Path(weights_path))
        num_neurons, latent = state["bodyprior_dec_fc1.weight"].shape
        joints = state["bodyprior_dec_out.weight"].shape[0] // 6
        model = VPoser(num_neurons=int(num_neurons), latentD=int(latent), data_shape=[1, int(joints), 3])
        model.load_state_dict(state)
    model.eval()
    model.requires_grad_(False)
    return model.to(device=device, dtype=dtype)


def _latent_dim(vposer: Any) -> int:
    d = getattr(vposer, "latentD", None)
    if not isinstance(d, int) or not callable(getattr(vposer, "decode", None)):
        raise TypeError(f"vposer: expected a VPoser v1 model (latentD, decode), got {type(vposer).__name__}")
    return d


def decode_rotations(vposer: Any, latent: Tensor) -> Tensor:
    """Decode VPoser latents to body-joint rotation matrices.

    Uses the model as it is (call ``vposer.eval()`` first: VPoser v1 applies dropout while decoding in
    training mode; :func:`load_vposer` returns it in eval mode). Differentiable w.r.t. ``latent``.

    Args:
        latent: (..., D) with D = ``vposer.latentD`` (32 for v1).

    Returns:
        (..., 21, 3, 3) local rotations of SMPL joints 1-21, in ``latent``'s dtype.
    """
    d = _latent_dim(vposer)
    if not isinstance(latent, Tensor) or latent.dim() < 1 or latent.shape[-1] != d:
        got = tuple(latent.shape) if isinstance(latent, Tensor) else type(latent).__name__
        raise ValueError(f"latent: expected a tensor of shape (..., {d}), got {got}")
    lead = latent.shape[:-1]
    pdtype = next(vposer.parameters()).dtype
    mats = vposer.decode(latent.reshape(-1, d).to(pdtype), output_type="matrot")
    return mats.reshape(*lead, -1, 3, 3).to(latent.dtype)  # decode gives (N, 1, joints, 9)


def body_rotations(vposer_rotations: Tensor) -> Tensor:
    """SMPL's 23 body-joint rotations from VPoser's 21: the two hand joints (22, 23) get the identity.

    Args:
        vposer_rotations: (..., 21, 3, 3).

    Returns:
        (..., 23, 3, 3).
    """
    if vposer_rotations.shape[-3:] != (VPOSER_NUM_JOINTS, 3, 3):
        raise ValueError(
            f"vposer_rotations: expected shape (..., {VPOSER_NUM_JOINTS}, 3, 3), "
            f"got {tuple(vposer_rotations.shape)}"
        )
    eye = torch.eye(3, dtype=vposer_rotations.dtype, device=vposer_rotations.device)
    hands = eye.expand(*vposer_rotations.shape[:-3], 2, 3, 3)
    return torch.cat([vposer_rotations, hands], dim=-3)


def matrix_to_axis_angle(rot: Tensor) -> Tensor:
    """Rotation matrices -> axis-angle vectors (axis * angle, angle in [0, pi], radians).

    Goes through a unit quaternion chosen by Shepperd's rule (the largest of ``1 + trace`` and
    ``1 + 2 R_ii - trace``), which stays accurate near 0 and near pi.

    Args:
        rot: (..., 3, 3) rotation matrices (float32 or float64).

    Returns:
        (..., 3), same dtype and device.
    """
    if not isinstance(rot, Tensor) or rot.dim() < 2 or rot.shape[-2:] != (3, 3):
        got = tuple(rot.shape) if isinstance(rot, Tensor) else type(rot).__name__
        raise ValueError(f"rot: expected a tensor of shape (..., 3, 3), got {got}")
    if not rot.is_floating_point():
        raise TypeError(f"rot: expected a floating dtype, got {rot.dtype}")
    m00, m11, m22 = rot[..., 0, 0], rot[..., 1, 1], rot[..., 2, 2]
    # 4 q_w^2, 4 q_x^2, 4 q_y^2, 4 q_z^2 from the diagonal
    sq = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1
    )
    sq = sq.clamp_min(0.0)
    four = 2.0 * torch.sqrt(sq)  # 4 |q_i|
    d21, d02, d10 = (
        rot[..., 2, 1] - rot[..., 1, 2],
        rot[..., 0, 2] - rot[..., 2, 0],
        rot[..., 1, 0] - rot[..., 0, 1],
    )
    s01, s02, s12 = (
        rot[..., 0, 1] + rot[..., 1, 0],
        rot[..., 0, 2] + rot[..., 2, 0],
        rot[..., 1, 2] + rot[..., 2, 1],
    )
    # Each row: 4 q_i * (q_w, q_x, q_y, q_z) computed from the pivot i.
    cand = torch.stack(
        [
            torch.stack([sq[..., 0], d21, d02, d10], dim=-1),
            torch.stack([d21, sq[..., 1], s01, s02], dim=-1),
            torch.stack([d02, s01, sq[..., 2], s12], dim=-1),
            torch.stack([d10, s02, s12, sq[..., 3]], dim=-1),
        ],
        dim=-2,
    )  # (..., 4, 4)
    best = sq.argmax(dim=-1, keepdim=True)  # (..., 1)
    piv = four.gather(-1, best).clamp_min(torch.finfo(rot.dtype).tiny)  # 4 |q_pivot|
    q = cand.gather(-2, best[..., None].expand(*best.shape[:-1], 1, 4))[..., 0, :] / piv
    q = torch.where(q[..., :1] < 0, -q, q)  # q_w >= 0: angle in [0, pi]
    w, xyz = q[..., 0], q[..., 1:]
    s = torch.linalg.vector_norm(xyz, dim=-1)
    angle = 2.0 * torch.atan2(s, w)
    small = s < 1e-6
    # angle / sin(angle / 2); for tiny angles 2 / cos(angle / 2) ~ 2 / w
    factor = torch.where(small, 2.0 / w.clamp_min(0.5), angle / torch.where(small, torch.ones_like(s), s))
    return xyz * factor[..., None]
