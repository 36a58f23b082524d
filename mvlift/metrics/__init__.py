"""Evaluation metrics for lifted 3D motion (MVLift's protocol).

Torch tensors or numpy arrays in (numpy in -> numpy out), one sequence (T, J, 3) or a batch (B, T, J, 3),
optional frame masks. Errors come in the input's units; :func:`evaluate_sequence` reports millimetres
from metres. See :mod:`mvlift.metrics.errors` for the root convention.
"""

from mvlift.metrics.alignment import (
    align_for_evaluation,
    facing_direction,
    hip_indices,
    procrustes_align,
    rotation_about_axis,
    similarity_procrustes,
)
from mvlift.metrics.errors import (
    bone_length_consistency,
    bone_lengths,
    global_mpjpe,
    j2d,
    mpjpe,
    pa_mpjpe,
    t_root,
)
from mvlift.metrics.evaluate import METRIC_UNITS, MetricTable, evaluate_sequence

__all__ = [
    "METRIC_UNITS",
    "MetricTable",
    "align_for_evaluation",
    "bone_length_consistency",
    "bone_lengths",
    "evaluate_sequence",
    "facing_direction",
    "global_mpjpe",
    "hip_indices",
    "j2d",
    "mpjpe",
    "pa_mpjpe",
    "procrustes_align",
    "rotation_about_axis",
    "similarity_procrustes",
    "t_root",
]
