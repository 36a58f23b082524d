"""mvlift's public operations: one place, one name per op.

Each op validates its inputs, is registered with ``torch.library.custom_op`` (fake + autograd
implementations, so it traces under ``torch.compile`` without graph breaks) and dispatches to a Triton
kernel, the native extension or the plain-PyTorch reference in :mod:`mvlift.reference`
(see :mod:`mvlift.ops._backend`).
"""

from mvlift.ops.cross_view_attention import cross_view_attention
from mvlift.ops.epipolar_loss import epipolar_loss
from mvlift.ops.line_loss import line_matching_loss, stage1_loss
from mvlift.ops.project import project_points
from mvlift.ops.triangulate import TriangulationFlag, TriangulationInfo, triangulate, triangulate_sequences

__all__ = [
    "TriangulationFlag",
    "TriangulationInfo",
    "cross_view_attention",
    "epipolar_loss",
    "line_matching_loss",
    "project_points",
    "stage1_loss",
    "triangulate",
    "triangulate_sequences",
]
