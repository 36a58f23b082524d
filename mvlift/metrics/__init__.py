"""Evaluation metrics for lifted 3D motion (MVLift's protocol).

Torch tensors or numpy arrays in (numpy in -> numpy out), one sequence (T, J, 3) or a batch (B, T, J, 3),
optional frame masks. Errors come in the input's units; :func:`evaluate_sequence` reports millimetres
from metres. See :mod:`mvlift.metrics.errors` for the root convention, and docs/conventions.md for our
definitions beside the official evaluation code's (the ``*_paper`` columns and ``bone_ratio``).
"""

from mvlift.metrics.alignment import (
    DEFAULT_FACING_FRAMES,
    FACING_METHODS,
    align_for_evaluation,
    facing_direction,
    facing_yaw,
    hip_indices,
    procrustes_align,
    replace_neck,
    rotation_about_axis,
    similarity_procrustes,
)
from mvlift.metrics.errors import (
    PAPER_LIMBS_OPENPOSE,
    bone_length_consistency,
    bone_length_ratio,
    bone_lengths,
    global_mpjpe,
    j2d,
    j2d_paper,
    mpjpe,
    pa_mpjpe,
    paper_limbs,
    t_root,
    t_root_paper,
)
from mvlift.metrics.evaluate import METRIC_DIGITS, METRIC_UNITS, MetricTable, evaluate_sequence

__all__ = [
    "DEFAULT_FACING_FRAMES",
    "FACING_METHODS",
    "METRIC_DIGITS",
    "METRIC_UNITS",
    "MetricTable",
    "PAPER_LIMBS_OPENPOSE",
    "align_for_evaluation",
    "bone_length_consistency",
    "bone_length_ratio",
    "bone_lengths",
    "evaluate_sequence",
    "facing_direction",
    "facing_yaw",
    "global_mpjpe",
    "hip_indices",
    "j2d",
    "j2d_paper",
    "mpjpe",
    "pa_mpjpe",
    "paper_limbs",
    "procrustes_align",
    "replace_neck",
    "rotation_about_axis",
    "similarity_procrustes",
    "t_root",
    "t_root_paper",
]
