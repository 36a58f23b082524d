"""VPoser v1 loading / decoding and rotation matrix -> axis-angle."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.spatial.transform import Rotation

from mvlift.body.vposer import (
    VPOSER_LATENT_DIM,
    body_rotations,
    decode_rotations,
    load_vposer,
    matrix_to_axis_angle,
)


def _angles_deg(rot: torch.Tensor) -> torch.Tensor:
    return matrix_to_axis_angle(rot).norm(dim=-1) * 180.0 / math.pi


def test_random_vposer_decodes_rotations(vposer, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(4, 3, VPOSER_LATENT_DIM, generator=g)
    rot = decode_rotations(vposer, z)
    assert rot.shape == (4, 3, 21, 3, 3) and rot.dtype == torch.float32
    eye = torch.eye(3).expand_as(rot)
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), eye, rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(rot.shape[:-2]), rtol=0, atol=1e-5)
    # centred on the rest pose: z = 0 decodes close to the identity, N(0, I) to moderate rotations
    assert _angles_deg(decode_rotations(vposer, torch.zeros(VPOSER_LATENT_DIM))).mean() < 10
    assert 5 < _angles_deg(rot).mean() < 45
    # deterministic (eval mode: no dropout), float64 latents give float64 rotations
    torch.testing.assert_close(decode_rotations(vposer, z), rot, rtol=0, atol=0)
    assert decode_rotations(vposer, z.double()).dtype == torch.float64
    # differentiable w.r.t. the latent; the model's parameters stay frozen
    zg = z.clone().requires_grad_(True)
    decode_rotations(vposer, zg).sum().backward()
    assert zg.grad is not None and zg.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in vposer.parameters()) and not vposer.training


def test_seeded_init_is_reproducible_and_leaves_global_rng(hbp_module):
    state = torch.random.get_rng_state()
    a, b, c = load_vposer(seed=11), load_vposer(seed=11), load_vposer(seed=12)
    assert torch.equal(torch.random.get_rng_state(), state)
    z = torch.randn(5, VPOSER_LATENT_DIM)
    torch.testing.assert_close(decode_rotations(a, z), decode_rotations(b, z), rtol=0, atol=0)
    assert not torch.allclose(decode_rotations(a, z), decode_rotations(c, z))
    assert load_vposer(seed=11, dtype=torch.float64).bodyprior_dec_fc1.weight.dtype == torch.float64


def test_load_weights_from_file_and_folder(vposer, tmp_path):
    snaps = tmp_path / "vposer_v1_0" / "snapshots"
    snaps.mkdir(parents=True)
    torch.save(vposer.state_dict(), snaps / "TR00_E096.pt")
    z = torch.randn(6, VPOSER_LATENT_DIM)
    ref = decode_rotations(vposer, z)
    for path in (tmp_path / "vposer_v1_0", snaps / "TR00_E096.pt"):
        loaded = load_vposer(path)
        torch.testing.assert_close(decode_rotations(loaded, z), ref, rtol=0, atol=0)
        assert not loaded.training
    # layer sizes are read from the weights
    from human_body_prior.train.vposer_smpl import VPoser

    small = VPoser(num_neurons=64, latentD=8, data_shape=[1, 21, 3])
    torch.save(small.state_dict(), tmp_path / "small.pt")
    assert load_vposer(tmp_path / "small.pt").latentD == 8


def test_load_errors(hbp_module, tmp_path):
    with pytest.raises(FileNotFoundError, match="weights_path"):
        load_vposer(tmp_path / "nope.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no snapshots"):
        load_vposer(tmp_path / "empty")
    torch.save({"vp_model.encoder_net.0.weight": torch.zeros(2)}, tmp_path / "v2.pt")
    with pytest.raises(ValueError, match="VPoser v2"):
        load_vposer(tmp_path / "v2.pt")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="state dict"):
        load_vposer(tmp_path / "list.pt")


def test_decode_errors(vposer):
    with pytest.raises(ValueError, match=r"latent: expected a tensor of shape \(\.\.\., 32\)"):
        decode_rotations(vposer, torch.zeros(3, 31))
    with pytest.raises(TypeError, match="vposer"):
        decode_rotations(torch.nn.Linear(2, 2), torch.zeros(3, 32))
    with pytest.raises(ValueError, match=r"\(\.\.\., 21, 3, 3\)"):
        body_rotations(torch.zeros(2, 23, 3, 3))


def test_body_rotations_appends_identity_hands(seed):
    g = torch.Generator().manual_seed(seed)
    r = torch.linalg.qr(torch.randn(2, 5, 21, 3, 3, generator=g)).Q
    out = body_rotations(r)
    assert out.shape == (2, 5, 23, 3, 3)
    torch.testing.assert_close(out[..., :21, :, :], r, rtol=0, atol=0)
    torch.testing.assert_close(out[..., 21:, :, :], torch.eye(3).expand(2, 5, 2, 3, 3), rtol=0, atol=0)


def _rotvecs(n: int, g: torch.Generator) -> torch.Tensor:
    """Random axis-angles over the whole range plus the hard cases: 0, tiny, near pi, pi."""
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1)
    angle = torch.rand(n, 1, generator=g, dtype=torch.float64) * math.pi
    angle[:4] = torch.tensor([[0.0], [1e-9], [math.pi - 1e-7], [math.pi]], dtype=torch.float64)
    angle[4:8] = torch.tensor([[1e-4], [1e-2], [math.pi - 1e-3], [3.0]], dtype=torch.float64)
    return axis * angle


def test_matrix_to_axis_angle_matches_scipy(seed):
    g = torch.Generator().manual_seed(seed)
    rv = _rotvecs(500, g)
    mats = torch.from_numpy(Rotation.from_rotvec(rv.numpy()).as_matrix())
    got = matrix_to_axis_angle(mats)
    ref = torch.from_numpy(Rotation.from_matrix(mats.numpy()).as_rotvec())
    # at an angle of pi, v and -v are the same rotation: compare the rotations there
    back = torch.from_numpy(Rotation.from_rotvec(got.numpy()).as_matrix())
    torch.testing.assert_close(back, mats, rtol=0, atol=1e-12)
    away = rv.norm(dim=-1) < math.pi - 1e-3
    torch.testing.assert_close(got[away], ref[away], rtol=0, atol=1e-10)
    assert (got.norm(dim=-1) <= math.pi + 1e-12).all()
    # batch shape kept; float32 accurate to ~1e-6 rad (relative 1e-4 of the angle or better)
    got32 = matrix_to_axis_angle(mats.float().reshape(5, 100, 3, 3)).reshape(500, 3).double()
    back32 = torch.from_numpy(Rotation.from_rotvec(got32.numpy()).as_matrix())
    assert (back32 - mats).abs().max() < 1e-5
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        matrix_to_axis_angle(torch.zeros(4, 3))
    with pytest.raises(TypeError, match="floating"):
        matrix_to_axis_angle(torch.eye(3, dtype=torch.int64))
