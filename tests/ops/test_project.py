"""mvlift.ops.project_points: the native projection (C++ on CPU, CUDA on GPU) against the float64 torch
reference, broadcasting, gradients (gradcheck, gradgradcheck), torch.library checks, bad input,
non-contiguous and empty inputs, the reference fallback, and CPU-vs-CUDA parity (on a GPU)."""

from __future__ import annotations

import pytest
import torch

from mvlift.ops import _backend, project_points
from mvlift.reference import project as ref

requires_native = pytest.mark.skipif(_backend.native() is None, reason="mvlift._C not built")
requires_cuda = pytest.mark.cuda  # skipped without a GPU (tests/conftest.py)


def random_P(*batch: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Cameras K [R | t] (*batch, 3, 4) with random rotation, f in [500, 1500] px and the origin 3-5 m in
    front, so points near the origin project with depth > 0."""
    f64 = dict(dtype=torch.float64)
    q = torch.randn(*batch, 3, 3, **f64)
    R, _ = torch.linalg.qr(q)
    R = R * torch.linalg.det(R)[..., None, None].sign()  # a rotation (det +1)
    t = torch.cat([0.3 * torch.randn(*batch, 2, **f64), 3 + 2 * torch.rand(*batch, 1, **f64)], dim=-1)
    f = 500 + 1000 * torch.rand(batch, **f64)
    K = torch.zeros(*batch, 3, 3, **f64)
    K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2], K[..., 2, 2] = f, f, 960.0, 540.0, 1.0
    return (K @ torch.cat([R, t[..., None]], dim=-1)).to(dtype)


def random_X(*shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return (0.8 * torch.randn(*shape, 3, dtype=torch.float64)).clamp(-1.5, 1.5).to(dtype)


@requires_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_point", [False, True])
@pytest.mark.parametrize("n", [1, 37, 1001])
def test_matches_reference(seed, dtype, per_point, n):
    X = random_X(n)
    P = random_P(n) if per_point else random_P()
    uv_r, d_r = ref.project_points(X, P)
    uv, d = project_points(X.to(dtype), P.to(dtype))
    assert uv.dtype == d.dtype == dtype and uv.shape == (n, 2) and d.shape == (n,)
    rtol = 1e-13 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(uv.double(), uv_r, rtol=rtol, atol=rtol * uv_r.abs().max().item())
    torch.testing.assert_close(d.double(), d_r, rtol=rtol, atol=rtol * d_r.abs().max().item())
    assert (d_r > 0).all()


@requires_native
def test_native_path_is_used_and_matches_fallback(seed, monkeypatch):
    X, P = random_X(50), random_P()
    uv_n, d_n = project_points(X, P)
    monkeypatch.setattr(_backend, "native", lambda: None)
    uv_f, d_f = project_points(X, P)
    torch.testing.assert_close(uv_n, uv_f, rtol=1e-14, atol=1e-10)
    torch.testing.assert_close(d_n, d_f, rtol=1e-14, atol=1e-14)


def test_broadcasting(seed):
    X = random_X(4, 5)
    P = random_P(5)
    uv, d = project_points(X, P)  # P (5, 3, 4) against X batch (4, 5)
    assert uv.shape == (4, 5, 2) and d.shape == (4, 5)
    for i in range(4):
        for j in range(5):
            uv_ij, d_ij = ref.project_points(X[i, j], P[j])
            torch.testing.assert_close(uv[i, j], uv_ij)
            torch.testing.assert_close(d[i, j], d_ij)
    # One point seen by 7 cameras; a shared (1, 1, 3, 4) matrix.
    uv7, _ = project_points(X[0, 0], random_P(7))
    assert uv7.shape == (7, 2)
    P1 = random_P()
    uvs, _ = project_points(X, P1[None, None])
    torch.testing.assert_close(uvs, ref.project_points(X, P1)[0])


def test_non_contiguous_inputs(seed):
    X = random_X(6, 9).transpose(0, 1)  # (9, 6, 3), non-contiguous
    P = random_P(6, 9).transpose(0, 1)
    assert not X.is_contiguous() and not P.is_contiguous()
    uv, d = project_points(X, P)
    uv_c, d_c = project_points(X.contiguous(), P.contiguous())
    assert torch.equal(uv, uv_c) and torch.equal(d, d_c)


def test_behind_camera_has_negative_depth():
    P = torch.tensor([[1000.0, 0, 960, 0], [0, 1000, 540, 0], [0, 0, 1, 0]], dtype=torch.float64)
    X = torch.tensor([[0.1, 0.2, 2.0], [0.1, 0.2, -2.0]], dtype=torch.float64)
    uv, d = project_points(X, P)
    assert d.tolist() == [2.0, -2.0]
    torch.testing.assert_close(uv, torch.tensor([[1010.0, 640.0], [910.0, 440.0]], dtype=torch.float64))


def test_empty_input():
    uv, d = project_points(torch.empty(0, 3), random_P(dtype=torch.float32))
    assert uv.shape == (0, 2) and d.shape == (0,)
    uv, d = project_points(torch.empty(2, 0, 3, dtype=torch.float64), random_P(2, 1))
    assert uv.shape == (2, 0, 2) and d.shape == (2, 0)


@pytest.mark.parametrize("per_point", [False, True])
def test_gradcheck(seed, per_point):
    X = random_X(5).requires_grad_()
    P = (random_P(5) if per_point else random_P()).requires_grad_()
    assert torch.autograd.gradcheck(project_points, (X, P))
    assert torch.autograd.gradgradcheck(project_points, (X, P))


def test_gradients_match_reference_float32(seed):
    X = random_X(33, dtype=torch.float32).requires_grad_()
    P = random_P(dtype=torch.float32).requires_grad_()
    g_uv, g_d = torch.randn(33, 2), torch.randn(33)
    uv, d = project_points(X, P)
    gX, gP = torch.autograd.grad((uv * g_uv).sum() + (d * g_d).sum(), (X, P))
    X64, P64 = X.detach().double().requires_grad_(), P.detach().double().requires_grad_()
    uv64, d64 = ref.project_points(X64, P64)
    rX, rP = torch.autograd.grad((uv64 * g_uv.double()).sum() + (d64 * g_d.double()).sum(), (X64, P64))
    for a, b in ((gX, rX), (gP, rP)):
        assert ((a.double() - b).abs().max() / b.abs().max()).item() < 1e-4


@pytest.mark.parametrize("per_point", [False, True])
def test_opcheck(seed, per_point):
    X = random_X(7).requires_grad_()
    P = (random_P(7) if per_point else random_P(1)).requires_grad_()
    torch.library.opcheck(torch.ops.mvlift.project_points.default, (X, P))
    torch.library.opcheck(torch.ops.mvlift.project_points.default, (X.detach().float(), P.detach().float()))


def test_bad_inputs():
    X, P = random_X(3), random_P()
    with pytest.raises(TypeError, match="X must be float32 or float64"):
        project_points(X.long(), P.long())
    with pytest.raises(TypeError, match="P must have X's dtype"):
        project_points(X, P.float())
    with pytest.raises(TypeError, match="X and P must be tensors"):
        project_points(X.numpy(), P)
    with pytest.raises(ValueError, match=r"X must have shape \(\.\.\., 3\)"):
        project_points(X[:, :2], P)
    with pytest.raises(ValueError, match=r"P must have shape \(3, 4\) or \(\.\.\., 3, 4\)"):
        project_points(X, P[:, :3])
    with pytest.raises(ValueError, match="do not broadcast"):
        project_points(X, random_P(4))
    with pytest.raises(ValueError, match="one device"):
        project_points(X, P.to("meta"))


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_point", [False, True])
def test_cuda_matches_cpu(seed, dtype, per_point):
    if not _backend.native_cuda():
        pytest.skip("mvlift._C built without CUDA")
    X = random_X(1025, dtype=dtype)
    P = random_P(1025, dtype=dtype) if per_point else random_P(dtype=dtype)
    uv_c, d_c = project_points(X, P)
    uv_g, d_g = project_points(X.cuda(), P.cuda())
    rtol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(uv_g.cpu(), uv_c, rtol=rtol, atol=rtol * uv_c.abs().max().item())
    torch.testing.assert_close(d_g.cpu(), d_c, rtol=rtol, atol=rtol * d_c.abs().max().item())
    Xg, Pg = X.cuda().double().requires_grad_(), P.cuda().double().requires_grad_()
    assert torch.autograd.gradcheck(project_points, (Xg[:4], Pg[:4] if per_point else Pg))
