"""Which skeletons an SMPL body maps to, and loading the SMPL layer + VPoser from user-given paths with
errors that name the setting to fix (used by stage 3, ``mvlift lift`` and the evaluation's VPoser baseline).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mvlift.data.skeletons import BODY14, OPENPOSE18, SMPL24, Skeleton

__all__ = ["SMPL_SKELETONS", "check_smpl_skeleton", "load_body_models"]

SMPL_SKELETONS: tuple[str, ...] = (BODY14.name, OPENPOSE18.name, SMPL24.name)
"""Names of the skeletons whose joints SMPL's joints map to (:func:`mvlift.body.smpl_joints_to_skeleton`)."""


def check_smpl_skeleton(skeleton: Any, name: str = "skeleton") -> None:
    """Raise ValueError (naming ``name``) unless ``skeleton`` is a :class:`Skeleton` in
    :data:`SMPL_SKELETONS`."""
    if not isinstance(skeleton, Skeleton) or skeleton.name not in SMPL_SKELETONS:
        got = skeleton.name if isinstance(skeleton, Skeleton) else type(skeleton).__name__
        raise ValueError(f"{name}: an SMPL fit needs one of {list(SMPL_SKELETONS)}, got {got!r}")


def load_body_models(
    smpl_model: str | os.PathLike[str],
    vposer_weights: str | os.PathLike[str] | None,
    *,
    skeleton: Skeleton | None = None,
    where: str = "",
    seed: int | None = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Any, Any]:
    """Check, then load, the ``smplx.SMPL`` layer and the VPoser v1 model of an SMPL fit.

    Args:
        smpl_model: an SMPL model ``.pkl`` (official, chumpy-pickled, or
            :func:`mvlift.body.write_smpl_pickle`).
        vposer_weights: the ``vposer_v1_0`` folder or a ``.pt`` state dict; None gives a randomly initialised
            VPoser (:func:`mvlift.body.load_vposer`: for tests and demos, it is no learned pose prior).
        skeleton: when given, checked against :data:`SMPL_SKELETONS` first.
        where: how the caller names the two settings, e.g. ``"stage3."`` or ``"--"``; error messages say
            ``{where}smpl_model`` / ``{where}vposer_weights``.
        seed: seed of the random VPoser (``vposer_weights=None``).
        device, dtype: where and in which precision to put both models.

    Returns:
        (layer, vposer). Raises FileNotFoundError for a missing path and ValueError for an unsupported
        skeleton, before anything is loaded.
    """
    if skeleton is not None:
        check_smpl_skeleton(skeleton, f"{where}smpl_model is set, so the skeleton")
    if not Path(smpl_model).is_file():
        raise FileNotFoundError(f"{where}smpl_model: SMPL model file not found: {smpl_model}")
    if vposer_weights is not None and not Path(vposer_weights).exists():
        raise FileNotFoundError(f"{where}vposer_weights: VPoser weights not found: {vposer_weights}")
    from mvlift.body.smpl_io import smplx_layer
    from mvlift.body.vposer import load_vposer

    layer = smplx_layer(smpl_model, dtype=dtype, device=device)
    vposer = load_vposer(vposer_weights, seed=seed, device=device, dtype=dtype)
    return layer, vposer
