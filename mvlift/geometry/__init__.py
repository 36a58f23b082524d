"""Cameras and epipolar geometry (batched, float32/float64, differentiable, device-agnostic).

Frames, units and the fundamental-matrix convention are fixed in ``docs/conventions.md``.

- :mod:`~mvlift.geometry.cameras`: :class:`Cameras`, intrinsics, look-at, rings, projection.
- :mod:`~mvlift.geometry.epipolar`: fundamental matrices, epipoles, epipolar lines and distances.
- :mod:`~mvlift.geometry.lines`: stage-1 line conditions and virtual epipoles.
"""

from mvlift.geometry.cameras import (
    Cameras,
    backproject,
    intrinsics,
    look_at,
    normalization_matrix,
    normalized_to_pixels,
    pixels_to_normalized,
    project,
    project_with_depth,
    random_cameras,
    ring_cameras,
)
from mvlift.geometry.epipolar import (
    all_pairs,
    camera_centers_homogeneous,
    camera_epipoles,
    epipolar_lines,
    epipoles,
    fundamental_from_cameras,
    fundamental_matrices,
    normalize_lines,
    point_line_distance,
    ring_pairs,
    sampson_distance,
    symmetric_epipolar_distance,
)
from mvlift.geometry.lines import (
    epipolar_line_conditions,
    line_conditions,
    ring_epipoles,
    sample_virtual_epipoles,
)

__all__ = [
    "Cameras",
    "all_pairs",
    "backproject",
    "camera_centers_homogeneous",
    "camera_epipoles",
    "epipolar_line_conditions",
    "epipolar_lines",
    "epipoles",
    "fundamental_from_cameras",
    "fundamental_matrices",
    "intrinsics",
    "line_conditions",
    "look_at",
    "normalization_matrix",
    "normalize_lines",
    "normalized_to_pixels",
    "pixels_to_normalized",
    "point_line_distance",
    "project",
    "project_with_depth",
    "random_cameras",
    "ring_cameras",
    "ring_epipoles",
    "ring_pairs",
    "sample_virtual_epipoles",
    "sampson_distance",
    "symmetric_epipolar_distance",
]
