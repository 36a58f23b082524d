"""A synthetic SMPL-format model for tests and demos, SMPL joints for fixed shapes, and SMPL -> BODY14 /
OpenPose-18 joints.

- :func:`make_synthetic_smpl` builds a small, random but *valid* SMPL-format model (24 joints, the SMPL
  kinematic tree, normalised joint regressor and skinning weights, shape and pose blend shapes, faces).
  It is **synthetic**: a crude T-posed stick figure, not a body model. Use it where no licensed SMPL file
  is available (tests, ``mvlift demo``); real fits need the official model files.
- :func:`write_smpl_pickle` writes a model dict as a plain-numpy pickle that smplx can also read.
- :class:`SMPLJointModel` evaluates the posed joints of an ``smplx.SMPL`` layer for fixed shape
  parameters (24 joints + the 5 face vertex joints) without skinning the whole mesh, the same numbers as
  the layer's forward pass at a fraction of its cost and memory (used by the fit's inner loop).
- :func:`smpl_joints_to_skeleton` maps smplx's joints to mvlift's joint sets.

smplx's SMPL joint order: the 24 SMPL joints (:data:`mvlift.data.skeletons.SMPL24`), then the extra
vertex joints nose, right eye, left eye, right ear, left ear (then feet and finger tips, unused here).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mvlift.atomic import atomic_write_bytes
from mvlift.body.smpl_io import SMPL_NUM_JOINTS, VERTEX_ID_KEYS, validate_smpl_model
from mvlift.data.skeletons import BODY14, OPENPOSE18, SMPL24, Skeleton, convert

__all__ = [
    "SMPL_FACE_JOINTS",
    "SYNTHETIC_REST_JOINTS",
    "make_synthetic_smpl",
    "write_smpl_pickle",
    "SMPLJointModel",
    "smpl_joints_to_skeleton",
]

SMPL_FACE_JOINTS = ("nose", "right_eye", "left_eye", "right_ear", "left_ear")
"""smplx's first five extra (vertex) joints, in its order: they follow the 24 SMPL joints."""

SYNTHETIC_REST_JOINTS = np.array(
    [
        [0.0, -0.22, 0.02],  # pelvis
        [0.06, -0.31, 0.01],  # left_hip
        [-0.06, -0.31, 0.01],  # right_hip
        [0.0, -0.11, -0.01],  # spine1
        [0.10, -0.69, 0.01],  # left_knee
        [-0.10, -0.69, 0.01],  # right_knee
        [0.0, 0.03, 0.01],  # spine2
        [0.09, -1.09, -0.03],  # left_ankle
        [-0.09, -1.09, -0.03],  # right_ankle
        [0.0, 0.09, 0.03],  # spine3
        [0.12, -1.15, 0.09],  # left_foot
        [-0.12, -1.15, 0.09],  # right_foot
        [0.0, 0.29, 0.0],  # neck
        [0.07, 0.20, 0.01],  # left_collar
        [-0.07, 0.20, 0.01],  # right_collar
        [0.0, 0.36, 0.05],  # head
        [0.17, 0.23, -0.01],  # left_shoulder
        [-0.17, 0.23, -0.01],  # right_shoulder
        [0.43, 0.21, -0.03],  # left_elbow
        [-0.43, 0.21, -0.03],  # right_elbow
        [0.68, 0.22, -0.03],  # left_wrist
        [-0.68, 0.22, -0.03],  # right_wrist
        [0.77, 0.21, -0.04],  # left_hand
        [-0.77, 0.21, -0.04],  # right_hand
    ]
)
"""Rest (T-pose) joints of the synthetic model, metres, SMPL's frame: Y up, facing +Z, left = +X.
Rounded from the proportions of an adult body; not SMPL data."""

# Extra-joint vertices of the synthetic model: name -> (SMPL joint it hangs on, offset from that joint).
_SYNTHETIC_EXTRA_VERTICES = {
    "nose": (15, (0.0, 0.02, 0.10)),
    "reye": (15, (-0.035, 0.06, 0.08)),
    "leye": (15, (0.035, 0.06, 0.08)),
    "rear": (15, (-0.075, 0.03, 0.0)),
    "lear": (15, (0.075, 0.03, 0.0)),
    "LBigToe": (10, (0.02, -0.04, 0.08)),
    "LSmallToe": (10, (0.06, -0.04, 0.06)),
    "LHeel": (7, (0.0, -0.06, -0.06)),
    "RBigToe": (11, (-0.02, -0.04, 0.08)),
    "RSmallToe": (11, (-0.06, -0.04, 0.06)),
    "RHeel": (8, (0.0, -0.06, -0.06)),
    "lthumb": (22, (0.02, 0.0, 0.06)),
    "lindex": (22, (0.10, 0.0, 0.03)),
    "lmiddle": (22, (0.11, 0.0, 0.01)),
    "lring": (22, (0.10, 0.0, -0.01)),
    "lpinky": (22, (0.08, 0.0, -0.03)),
    "rthumb": (23, (-0.02, 0.0, 0.06)),
    "rindex": (23, (-0.10, 0.0, 0.03)),
    "rmiddle": (23, (-0.11, 0.0, 0.01)),
    "rring": (23, (-0.10, 0.0, -0.01)),
    "rpinky": (23, (-0.08, 0.0, -0.03)),
}
_MIN_VERTICES = len(VERTEX_ID_KEYS) + SMPL_NUM_JOINTS


def make_synthetic_smpl(num_vertices: int = 500, *, num_betas: int = 10, seed: int = 0) -> dict[str, Any]:
    """A small random SMPL-format model (**synthetic**, for tests and demos; not a human body model).

    Construction: the T-posed joints :data:`SYNTHETIC_REST_JOINTS` (plus 5 mm seeded noise); every joint
    owns a cluster of vertices scattered around it (3 cm) with their centroid exactly on the joint, and its
    ``J_regressor`` row averages that cluster, so the regressed rest joints are the designed ones. The last
    21 vertices are smplx's extra-joint vertices (nose, eyes, ears, toes, heels, finger tips) placed on
    the head, feet and hands; their indices are stored under ``vertex_ids``. Cluster vertices are skinned
    to their joint (weight 0.6-1) and its parent (the rest); shape component 0 scales the body about its
    centroid by 5 %, the others move every joint's vertices by about 1 cm; pose-corrective blend shapes are
    about 2 mm; faces are a triangle strip through the vertices (valid indices, no degenerate triangle).

    Args:
        num_vertices: V >= 45 (21 extra-joint vertices + at least one per joint).
        num_betas: shape components K.
        seed: the numpy seed; the same seed gives the same model.

    Returns:
        dict with the entries of :data:`mvlift.body.smpl_io.SMPL_KEYS` (float64 / int64 arrays),
        ``vertex_ids`` (dict name -> vertex index) and ``synthetic`` = True.
    """
    if not isinstance(num_vertices, int) or num_vertices < _MIN_VERTICES:
        raise ValueError(f"num_vertices: expected an int >= {_MIN_VERTICES}, got {num_vertices!r}")
    if not isinstance(num_betas, int) or num_betas < 1:
        raise ValueError(f"num_betas: expected a positive int, got {num_betas!r}")
    rng = np.random.default_rng(seed)
    nj = SMPL_NUM_JOINTS
    parents = np.array(SMPL24.parents, dtype=np.int64)
    joints = SYNTHETIC_REST_JOINTS + rng.normal(0.0, 0.005, SYNTHETIC_REST_JOINTS.shape)

    n_cluster = num_vertices - len(VERTEX_ID_KEYS)
    owner = np.arange(n_cluster) % nj  # joint owning each cluster vertex
    v = np.zeros((num_vertices, 3))
    weights = np.zeros((num_vertices, nj))
    j_regressor = np.zeros((nj, num_vertices))
    for j in range(nj):
        idx = np.nonzero(owner == j)[0]
        off = rng.normal(0.0, 0.03, (len(idx), 3))
        v[idx] = joints[j] + off - off.mean(axis=0)
        j_regressor[j, idx] = 1.0 / len(idx)
        if parents[j] < 0:
            weights[idx, j] = 1.0
        else:
            a = rng.uniform(0.6, 1.0, len(idx))
            weights[idx, j] = a
            weights[idx, parents[j]] = 1.0 - a
    vertex_ids: dict[str, int] = {}
    for k, name in enumerate(VERTEX_ID_KEYS):
        i = n_cluster + k
        j, offset = _SYNTHETIC_EXTRA_VERTICES[name]
        v[i] = joints[j] + np.asarray(offset)
        weights[i, j] = 1.0
        vertex_ids[name] = i
    owner_all = np.concatenate([owner, [_SYNTHETIC_EXTRA_VERTICES[n][0] for n in VERTEX_ID_KEYS]])

    shapedirs = np.einsum("vj,kjc->vck", weights, rng.normal(0.0, 0.01, (num_betas, nj, 3)))
    shapedirs[:, :, 0] = 0.05 * (v - v.mean(axis=0))
    posedirs = rng.normal(0.0, 0.002, (num_vertices, 3, (nj - 1) * 9))
    order = np.argsort(owner_all, kind="stable")
    faces = np.stack([order[:-2], order[1:-1], order[2:]], axis=1).astype(np.int64)
    kintree = np.stack([np.where(parents < 0, np.iinfo(np.uint32).max, parents), np.arange(nj)])

    model = {
        "v_template": v,
        "shapedirs": shapedirs,
        "posedirs": posedirs,
        "J_regressor": j_regressor,
        "weights": weights,
        "kintree_table": kintree.astype(np.int64),
        "f": faces,
        "vertex_ids": vertex_ids,
        "synthetic": True,
    }
    return validate_smpl_model(model)


def write_smpl_pickle(path: str | os.PathLike[str], model: Mapping[str, Any]) -> Path:
    """Write a model dict as a pickle of plain numpy arrays (readable by :func:`load_smpl_model` and by
    ``smplx.SMPL(model_path=...)``), atomically (temporary file + rename).

    Args:
        path: the ``.pkl`` file to write (parent folder must exist).
        model: entries of :data:`mvlift.body.smpl_io.SMPL_KEYS` (validated) plus any extra entries
            (e.g. ``vertex_ids``), written as they are.

    Returns:
        The path written.
    """
    data = validate_smpl_model(model)
    p = Path(path)
    if not p.parent.is_dir():
        raise ValueError(f"path: parent folder {p.parent} does not exist")
    atomic_write_bytes(p, pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
    return p


def _check_layer(smpl_layer: Any) -> None:
    needed = ("v_template", "shapedirs", "posedirs", "J_regressor", "parents", "lbs_weights")
    missing = [a for a in needed if not isinstance(getattr(smpl_layer, a, None), Tensor)]
    if missing:
        raise TypeError(
            f"smpl_layer: expected an smplx.SMPL layer (tensors {list(needed)}), "
            f"got {type(smpl_layer).__name__} without {missing}"
        )
    nj = smpl_layer.J_regressor.shape[0]
    if nj != SMPL_NUM_JOINTS:
        raise ValueError(f"smpl_layer: expected an SMPL body model with 24 joints, got {nj}")


class SMPLJointModel:
    """Posed joints of an ``smplx.SMPL`` layer for fixed shapes, without skinning the whole mesh.

    The shaped rest joints ``J_regressor @ (v_template + shapedirs . betas)`` are computed once. A call
    runs the kinematic chain one tree level at a time (8 batched steps for SMPL instead of one per joint)
    and, for the face joints, the pose-corrective blend shapes and linear blend skinning of the 5 face
    vertices only. The result equals the first 24 (+5) joints of ``smpl_layer(betas=...,
    global_orient=..., body_pose=..., pose2rot=False)`` with zero translation (smplx's ``lbs``).

    Args:
        smpl_layer: an ``smplx.SMPL`` layer (e.g. from :func:`mvlift.body.smplx_layer`).
        betas: (B, K) shape parameters, K <= the layer's ``num_betas`` (missing components are 0).
        face_joints: also return smplx's 5 face vertex joints (needed for OpenPose-18).
    """

    def __init__(self, smpl_layer: Any, betas: Tensor, *, face_joints: bool = True) -> None:
        from smplx.lbs import blend_shapes, vertices2joints

        _check_layer(smpl_layer)
        dtype, device = smpl_layer.v_template.dtype, smpl_layer.v_template.device
        k_layer = smpl_layer.shapedirs.shape[-1]
        if not isinstance(betas, Tensor) or betas.dim() != 2 or betas.shape[1] > k_layer:
            got = tuple(betas.shape) if isinstance(betas, Tensor) else type(betas).__name__
            raise ValueError(f"betas: expected a tensor of shape (B, K <= {k_layer}), got {got}")
        betas = betas.to(dtype=dtype, device=device)
        if betas.shape[1] < k_layer:
            betas = torch.cat([betas, betas.new_zeros(betas.shape[0], k_layer - betas.shape[1])], dim=1)
        self.batch_size = betas.shape[0]
        v_shaped = smpl_layer.v_template + blend_shapes(betas, smpl_layer.shapedirs)  # (B, V, 3)
        self.rest_joints = vertices2joints(smpl_layer.J_regressor, v_shaped)  # (B, 24, 3)
        parents = [int(p) for p in smpl_layer.parents.tolist()]
        parents[0] = -1
        rel = self.rest_joints.clone()
        rel[:, 1:] = self.rest_joints[:, 1:] - self.rest_joints[:, parents[1:]]
        self.rest_offsets = rel  # (B, 24, 3): joint minus parent (the root: its position)
        depth = [0] * SMPL_NUM_JOINTS
        for j in range(1, SMPL_NUM_JOINTS):
            if not 0 <= parents[j] < j:
                raise ValueError(f"smpl_layer: parents must precede their children, got {parents}")
            depth[j] = depth[parents[j]] + 1
        # Tree levels: the joints at each depth, and their parents' positions within the level above.
        by_level = [[j for j in range(SMPL_NUM_JOINTS) if depth[j] == d] for d in range(max(depth) + 1)]
        self.levels = [
            (
                torch.tensor(joints, device=device),
                torch.tensor([by_level[d - 1].index(parents[j]) if d else 0 for j in joints], device=device),
            )
            for d, joints in enumerate(by_level)
        ]
        order = [j for level in by_level for j in level]
        self.unorder = torch.tensor([order.index(j) for j in range(SMPL_NUM_JOINTS)], device=device)
        self.face_joints = face_joints
        if face_joints:
            selector = getattr(smpl_layer, "vertex_joint_selector", None)
            idx = getattr(selector, "extra_joints_idxs", None)
            if idx is None or idx.numel() < len(SMPL_FACE_JOINTS):
                raise ValueError("smpl_layer: has no face vertex joints (vertex_joint_selector)")
            idx = idx[: len(SMPL_FACE_JOINTS)].to(device)
            nv = smpl_layer.v_template.shape[0]
            npose = smpl_layer.posedirs.shape[0]
            self.face_rest = v_shaped[:, idx]  # (B, 5, 3)
            self.face_posedirs = smpl_layer.posedirs.view(npose, nv, 3)[:, idx].reshape(npose, -1)
            self.face_weights = smpl_layer.lbs_weights[idx]  # (5, 24)

    @property
    def num_joints(self) -> int:
        """24, or 29 with the face joints."""
        return SMPL_NUM_JOINTS + (len(SMPL_FACE_JOINTS) if self.face_joints else 0)

    def __call__(self, rot_mats: Tensor) -> Tensor:
        """Posed joints for local joint rotations.

        Args:
            rot_mats: (B, T, 24, 3, 3) rotation matrices: global orientation, then the 23 body joints
                (SMPL order), B = the number of shape vectors.

        Returns:
            (B, T, 24 or 29, 3) joint positions, metres, zero translation; differentiable.
        """
        if rot_mats.dim() != 5 or rot_mats.shape[0] != self.batch_size or rot_mats.shape[2:] != (24, 3, 3):
            raise ValueError(
                f"rot_mats: expected shape ({self.batch_size}, T, 24, 3, 3), got {tuple(rot_mats.shape)}"
            )
        b, t = rot_mats.shape[:2]
        offsets = self.rest_offsets[:, None].expand(b, t, -1, -1)
        # world rotations / positions, one tree level at a time (a level's parents are all in the level above)
        root, _ = self.levels[0]
        rs, ts = [rot_mats[:, :, root]], [offsets[:, :, root]]
        for idx, par in self.levels[1:]:
            pr, pt = rs[-1][:, :, par], ts[-1][:, :, par]
            ts.append((pr @ offsets[:, :, idx, :, None])[..., 0] + pt)
            rs.append(pr @ rot_mats[:, :, idx])
        world_r = torch.cat(rs, dim=2)[:, :, self.unorder]  # (B, T, 24, 3, 3), joint order
        world_t = torch.cat(ts, dim=2)[:, :, self.unorder]  # (B, T, 24, 3)
        if not self.face_joints:
            return world_t
        eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
        nf = len(SMPL_FACE_JOINTS)
        pose_feature = (rot_mats[:, :, 1:] - eye).reshape(b, t, -1)  # (B, T, 207)
        v = self.face_rest[:, None] + (pose_feature @ self.face_posedirs).view(b, t, nf, 3)
        # skinning: sum_j w_vj (R_j (v - J_j) + G_j) with R_j, G_j the world rotation / position of joint j
        rest = self.rest_joints[:, None, :, :, None]  # (B, 1, 24, 3, 1)
        shift = world_t - (world_r @ rest)[..., 0]  # (B, T, 24, 3)
        blend_r = torch.einsum("vj,btjkl->btvkl", self.face_weights, world_r)
        blend_t = torch.einsum("vj,btjk->btvk", self.face_weights, shift)
        face = (blend_r @ v[..., None])[..., 0] + blend_t
        return torch.cat([world_t, face], dim=2)


def smpl_joints_to_skeleton(joints: Any, skeleton: Skeleton) -> Any:
    """Map smplx SMPL joints to an mvlift joint set.

    Args:
        joints: (..., N, 3) smplx joint order (24 SMPL joints, then nose, right eye, left eye, right ear,
            left ear, ...); N >= 24, N >= 29 for OpenPose-18. numpy array or torch tensor.
        skeleton: :data:`SMPL24` (the first 24 joints), :data:`BODY14` (``skeletons.convert`` from
            SMPL24: the neck is the shoulder midpoint, the head SMPL's head joint) or :data:`OPENPOSE18`
            (the BODY14 body joints, nose / eyes / ears from smplx's face vertex joints).

    Returns:
        (..., J, 3) in ``skeleton``'s order, same type.
    """
    if not isinstance(skeleton, Skeleton):
        raise TypeError(f"skeleton: expected a mvlift Skeleton, got {type(skeleton).__name__}")
    shape = tuple(joints.shape)
    if len(shape) < 2 or shape[-1] != 3 or shape[-2] < SMPL_NUM_JOINTS:
        raise ValueError(f"joints: expected shape (..., N >= 24, 3) in smplx order, got {shape}")
    smpl = joints[..., :SMPL_NUM_JOINTS, :]
    if skeleton.name == SMPL24.name:
        return smpl
    if skeleton.name == BODY14.name:
        return convert(smpl, SMPL24, BODY14)
    if skeleton.name == OPENPOSE18.name:
        nf = len(SMPL_FACE_JOINTS)
        if shape[-2] < SMPL_NUM_JOINTS + nf:
            raise ValueError(
                f"joints: OpenPose-18 needs smplx's face joints (N >= {SMPL_NUM_JOINTS + nf}), got {shape}"
            )
        body = convert(smpl, SMPL24, BODY14)
        face = joints[..., SMPL_NUM_JOINTS : SMPL_NUM_JOINTS + nf, :]
        parts = [face[..., :1, :], body[..., 1:, :], face[..., 1:, :]]
        return np.concatenate(parts, axis=-2) if isinstance(joints, np.ndarray) else torch.cat(parts, dim=-2)
    raise ValueError(
        f"skeleton: SMPL joints map to {SMPL24.name!r}, {BODY14.name!r} or {OPENPOSE18.name!r}, "
        f"got {skeleton.name!r}"
    )
