"""SMPL body model support: chumpy-free model loading, a synthetic SMPL-format model, VPoser v1 and the
stage-3 SMPL fit to 3D joints.

smplx and human-body-prior are optional (``pip install 'mvlift[smpl]'`` and ``pip install --no-deps
human-body-prior==0.8.5.0``); they are imported only when a function needs them.
"""

from mvlift.body.fit import SMPLFit, fit_smpl
from mvlift.body.loading import SMPL_SKELETONS, check_smpl_skeleton, load_body_models
from mvlift.body.smpl_io import (
    SMPL_KEYS,
    VERTEX_ID_KEYS,
    ChumpyFreeUnpickler,
    load_smpl_model,
    smplx_layer,
    validate_smpl_model,
)
from mvlift.body.smpl_model import (
    SMPL_FACE_JOINTS,
    SMPLJointModel,
    make_synthetic_smpl,
    smpl_joints_to_skeleton,
    write_smpl_pickle,
)
from mvlift.body.vposer import (
    VPOSER_LATENT_DIM,
    body_rotations,
    decode_rotations,
    load_vposer,
    matrix_to_axis_angle,
)

__all__ = [
    "SMPL_KEYS",
    "VERTEX_ID_KEYS",
    "SMPL_FACE_JOINTS",
    "VPOSER_LATENT_DIM",
    "ChumpyFreeUnpickler",
    "load_smpl_model",
    "validate_smpl_model",
    "smplx_layer",
    "make_synthetic_smpl",
    "write_smpl_pickle",
    "SMPLJointModel",
    "smpl_joints_to_skeleton",
    "load_vposer",
    "decode_rotations",
    "body_rotations",
    "matrix_to_axis_angle",
    "SMPLFit",
    "fit_smpl",
    "SMPL_SKELETONS",
    "check_smpl_skeleton",
    "load_body_models",
]
