"""Baselines that ``mvlift eval`` compares MVLift against.

- :mod:`~mvlift.baselines.single_view`: a single-view SMPLify-style optimisation of 3D joints
  (reprojection + bone lengths + smoothness + a knee-hinge prior).
"""

from mvlift.baselines.single_view import (
    BODY14_BONE_PROPORTIONS,
    SingleViewFitConfig,
    body14_bone_lengths,
    default_camera,
    fit_single_view,
)

__all__ = [
    "BODY14_BONE_PROPORTIONS",
    "SingleViewFitConfig",
    "body14_bone_lengths",
    "default_camera",
    "fit_single_view",
]
