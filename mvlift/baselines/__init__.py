"""Baselines that ``mvlift eval`` compares MVLift against.

- :mod:`~mvlift.baselines.single_view`: a single-view SMPLify-style optimisation of 3D joints
  (reprojection + bone lengths + smoothness + knee / nose facing prior); the ``single_view`` row.
- :mod:`~mvlift.baselines.single_view_smpl`: the same with an SMPL body under the VPoser pose prior
  (reprojection + latent prior + smoothness, started from the joint fit); the ``single_view_vposer`` row,
  evaluated when SMPL model files are configured. Needs ``mvlift[smpl]`` and human-body-prior.
"""

from mvlift.baselines.single_view import (
    BODY14_BONE_PROPORTIONS,
    SingleViewFitConfig,
    body14_bone_lengths,
    default_camera,
    fit_single_view,
)
from mvlift.baselines.single_view_smpl import (
    SingleViewSMPLConfig,
    SingleViewSMPLFit,
    fit_single_view_smpl,
)

__all__ = [
    "BODY14_BONE_PROPORTIONS",
    "SingleViewFitConfig",
    "SingleViewSMPLConfig",
    "SingleViewSMPLFit",
    "body14_bone_lengths",
    "default_camera",
    "fit_single_view",
    "fit_single_view_smpl",
]
