"""mvlift.body.load_body_models / check_smpl_skeleton: checks first, with the caller's setting names."""

from __future__ import annotations

import pytest
import torch

from mvlift.body import SMPL_SKELETONS, check_smpl_skeleton, load_body_models, write_smpl_pickle
from mvlift.data.procedural import QUADRUPED17
from mvlift.data.skeletons import BODY14, OPENPOSE18, SMPL24


def test_supported_skeletons():
    assert SMPL_SKELETONS == (BODY14.name, OPENPOSE18.name, SMPL24.name)
    for skel in (BODY14, OPENPOSE18, SMPL24):
        check_smpl_skeleton(skel)
    with pytest.raises(ValueError, match=r"--skeleton: an SMPL fit needs one of .* got 'quadruped17'"):
        check_smpl_skeleton(QUADRUPED17, "--skeleton")
    with pytest.raises(ValueError, match="got 'str'"):
        check_smpl_skeleton("body14")


def test_load_body_models(tmp_path, smplx_module, hbp_module, synthetic_model):
    smpl = write_smpl_pickle(tmp_path / "smpl.pkl", synthetic_model)
    layer, vposer = load_body_models(smpl, None, skeleton=BODY14, seed=3, dtype=torch.float64)
    assert layer.v_template.dtype == torch.float64 and layer.v_template.shape[0] == 120
    z = torch.randn(2, 32, dtype=torch.float64)
    assert torch.isfinite(vposer.decode(z, output_type="matrot")).all()
    # The same seed gives the same random VPoser; the error messages carry the caller's prefix.
    _, again = load_body_models(smpl, None, seed=3, dtype=torch.float64)
    torch.testing.assert_close(again.decode(z, output_type="matrot"), vposer.decode(z, output_type="matrot"))
    with pytest.raises(
        FileNotFoundError, match=r"stage3\.smpl_model: SMPL model file not found: .*none\.pkl"
    ):
        load_body_models(tmp_path / "none.pkl", None, where="stage3.")
    with pytest.raises(FileNotFoundError, match=r"--vposer_weights: VPoser weights not found"):
        load_body_models(smpl, tmp_path / "vposer_v1_0", where="--")
    with pytest.raises(ValueError, match="an SMPL fit needs one of"):
        load_body_models(tmp_path / "none.pkl", None, skeleton=QUADRUPED17)  # the skeleton is checked first
