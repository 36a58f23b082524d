"""mvlift.ops.triangulate / triangulate_sequences: the native kernels against the float64 SVD reference,
the reference against independent oracles (exact recovery, scipy least squares), weights, flags and
degenerate inputs, shapes and broadcasting, torch.library checks, bad input, real CMU motion seen by a
camera ring, and CPU-vs-CUDA parity (on a GPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import torch

from mvlift.geometry import look_at
from mvlift.ops import TriangulationFlag, TriangulationInfo, _backend, triangulate, triangulate_sequences
from mvlift.reference import triangulate as ref
from mvlift.reference.project import project_points

DEG = int(TriangulationFlag.DEGENERATE)
BEHIND = int(TriangulationFlag.BEHIND_CAMERA)
NOT_CONV = int(TriangulationFlag.NOT_CONVERGED)
requires_native = pytest.mark.skipif(_backend.native() is None, reason="mvlift._C not built")
requires_cuda = pytest.mark.cuda  # skipped without a GPU (tests/conftest.py)


# ------------------------------------------------------------------------------------------------ scenes
def random_cameras(
    V: int,
    batch: tuple[int, ...] = (),
    *,
    dist: tuple[float, float] = (2.5, 5.0),
    focal: tuple[float, float] = (600.0, 1400.0),
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """P (*batch, V, 3, 4) of well-spread 1920x1080 cameras around the origin, looking near it.

    Camera k sits at azimuth ``a0 + k d + jitter`` with ``d = min(360 / V, 90)`` deg and jitter within
    +-d/4 (so two views are 45-135 deg apart), elevation within +-45 deg, random distance and focal length.
    A ball of radius 1 m around the origin is in front of every camera.
    """
    shape = (*batch, V)
    f64 = dict(dtype=torch.float64)
    step = min(2 * math.pi / V, math.pi / 2)
    az = 2 * math.pi * torch.rand(*batch, 1, **f64) + step * (
        torch.arange(V, **f64) + 0.5 * torch.rand(shape, **f64) - 0.25
    )
    el = (torch.rand(shape, **f64) - 0.5) * (math.pi / 2)
    d = dist[0] + (dist[1] - dist[0]) * torch.rand(shape, **f64)
    eye = torch.stack([d * el.cos() * az.sin(), d * el.sin(), d * el.cos() * az.cos()], dim=-1)
    R, t = look_at(eye, 0.2 * torch.randn(*shape, 3, **f64))
    f = focal[0] + (focal[1] - focal[0]) * torch.rand(shape, **f64)
    K = torch.zeros(*shape, 3, 3, **f64)
    K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2], K[..., 2, 2] = f, f, 960.0, 540.0, 1.0
    return (K @ torch.cat([R, t[..., None]], dim=-1)).to(dtype)


def random_points(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(n, 3) points in the ball of radius 0.6 m around the origin."""
    v = torch.randn(n, 3, dtype=torch.float64)
    r = 0.6 * torch.rand(n, 1, dtype=torch.float64) ** (1 / 3)
    return (v / v.norm(dim=-1, keepdim=True) * r).to(dtype)


def observe(P: torch.Tensor, X: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
    """Pixels (..., V, 2) of points X (..., 3) in cameras P ((V, 3, 4) or (..., V, 3, 4)), plus noise."""
    uv, _ = project_points(X[..., None, :], P)
    return uv + noise * torch.randn_like(uv)


def dist3(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.double() - b.double()).norm(dim=-1)


CPU_ISAS = ["baseline", "avx2"]


@pytest.fixture(params=CPU_ISAS)
def cpu_isa(request):
    """Runs the test once per instruction set of the native CPU kernels (csrc/common/cpu_isa.h)."""
    mod = _backend.native()
    if mod is None:
        pytest.skip("mvlift._C not built")
    if request.param == "avx2" and not mod.cpu_supports_avx2():
        pytest.skip("this build or processor has no AVX2 + FMA path")
    before = mod.cpu_isa()
    mod.set_cpu_isa(request.param)
    yield request.param
    mod.set_cpu_isa(before)


# ------------------------------------------------------------------------------- against the reference
@pytest.mark.usefixtures("cpu_isa")
@requires_native
@pytest.mark.parametrize("V", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_item", [False, True])
def test_dlt_matches_svd_reference(seed, V, dtype, per_item):
    N = 97
    P = random_cameras(V, (N,) if per_item else ())
    X = random_points(N)
    x = observe(P, X, noise=1.0)
    w = 0.2 + torch.rand(N, V, dtype=torch.float64)
    Xr, rms_r, n_r, f_r = ref.triangulate(x, P, w)
    Xo, info = triangulate(x.to(dtype), P.to(dtype), weights=w.to(dtype))
    assert isinstance(info, TriangulationInfo)
    assert Xo.dtype == info.rms.dtype == dtype and info.num_views.dtype == info.flags.dtype == torch.int32
    assert torch.equal(info.num_views, n_r) and torch.equal(info.flags, f_r)
    assert (f_r == 0).all()
    tol_x, tol_px = (1e-9, 1e-7) if dtype == torch.float64 else (1e-4, 2e-3)
    assert dist3(Xo, Xr).max() < tol_x
    torch.testing.assert_close(info.rms.double(), rms_r, atol=tol_px, rtol=0)


@pytest.mark.usefixtures("cpu_isa")
@requires_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_refinement_matches_reference(seed, dtype):
    N, V = 300, 5
    P = random_cameras(V, (N,), dist=(1.2, 8.0), focal=(300.0, 2000.0))
    X = random_points(N)
    x = observe(P, X, noise=2.0)
    Xr, rms_r, _, f_r = ref.triangulate(x, P, None, 8)
    Xo, info = triangulate(x.to(dtype), P.to(dtype), refine_iters=8)
    tol_x = 1e-10 if dtype == torch.float64 else 2e-5
    assert dist3(Xo, Xr).max() < tol_x
    torch.testing.assert_close(
        info.rms.double(), rms_r, atol=1e-9 if dtype == torch.float64 else 1e-3, rtol=0
    )
    assert torch.equal(info.flags & ~NOT_CONV, f_r & ~NOT_CONV)


def test_reference_recovers_noise_free_points(seed):
    P = random_cameras(4, (50,))
    X = random_points(50)
    Xr, rms, n, flags = ref.triangulate(observe(P, X), P)
    assert dist3(Xr, X).max() < 1e-10
    assert (rms < 1e-8).all() and (n == 4).all() and (flags == 0).all()


def test_reference_refinement_reaches_least_squares_optimum(seed):
    """Converged LM equals scipy's least-squares minimiser of the weighted reprojection error."""
    N, V = 12, 4
    P = random_cameras(V, (N,), dist=(1.2, 8.0), focal=(300.0, 2000.0))
    x = observe(P, random_points(N), noise=3.0)
    w = 0.3 + torch.rand(N, V, dtype=torch.float64)
    Xr, rms, _, flags = ref.triangulate(x, P, w, 30)
    assert (flags == 0).all()
    for i in range(N):
        Pi, xi, wi = P[i].numpy(), x[i].numpy(), w[i].sqrt().numpy()

        def residuals(X, Pi=Pi, xi=xi, wi=wi):
            proj = Pi[:, :, :3] @ X + Pi[:, :, 3]
            return ((proj[:, :2] / proj[:, 2:] - xi) * wi[:, None]).ravel()

        sol = scipy.optimize.least_squares(
            residuals, Xr[i].numpy() + 0.05, xtol=1e-15, ftol=1e-15, gtol=1e-15
        )
        np.testing.assert_allclose(Xr[i].numpy(), sol.x, atol=1e-7)
        assert abs(math.sqrt((sol.fun**2).sum() / w[i].sum().item()) - rms[i].item()) < 1e-7


# ------------------------------------------------------------------------------------- method properties
@pytest.mark.usefixtures("cpu_isa")
@requires_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noise_free_points_are_recovered(seed, dtype):
    P = random_cameras(3, (64,))
    X = random_points(64)
    Xo, info = triangulate(observe(P, X).to(dtype), P.to(dtype), refine_iters=2)
    assert dist3(Xo, X).max() < (1e-10 if dtype == torch.float64 else 2e-5)
    assert (info.num_views == 3).all() and ((info.flags & DEG) == 0).all()


@requires_native
def test_refinement_lowers_reprojection_and_3d_error(seed):
    N, V = 2000, 4
    P = random_cameras(V, (N,), dist=(1.2, 8.0), focal=(300.0, 2000.0))
    X = random_points(N)
    x = observe(P, X, noise=2.0)
    X0, info0 = triangulate(x, P)
    X3, info3 = triangulate(x, P, refine_iters=3)
    X10, info10 = triangulate(x, P, refine_iters=10)
    # The cost may only rise by rounding noise (4 eps (cost + sqrt(cost sum w |x|^2)) per step).
    assert (info3.rms <= info0.rms * (1 + 1e-9)).all()
    assert (info10.rms <= info3.rms * (1 + 1e-9)).all()
    e0, e3, e10 = dist3(X0, X).mean(), dist3(X3, X).mean(), dist3(X10, X).mean()
    assert e3 < 0.9 * e0 and e10 <= e3 * (1 + 1e-6)
    assert ((info10.flags & NOT_CONV) == 0).all()
    assert ((info0.flags & NOT_CONV) == 0).all()  # no refinement, no convergence claim


@requires_native
def test_not_converged_flag_after_one_step(seed):
    P = random_cameras(4, (200,), dist=(1.2, 8.0), focal=(300.0, 2000.0))
    x = observe(P, random_points(200), noise=3.0)
    _, info = triangulate(x, P, refine_iters=1)
    assert ((info.flags & NOT_CONV) != 0).float().mean() > 0.9


@requires_native
def test_invariant_to_image_frame_for_dlt(seed):
    """Pixels with P, or the normalized [-1, 1] frame with N P, give the same DLT point."""
    P = random_cameras(5, (40,))
    x = observe(P, random_points(40), noise=2.0)
    Nm = torch.tensor([[2 / 1920, 0, -1], [0, 2 / 1080, -1], [0, 0, 1]], dtype=torch.float64)
    xn = x * torch.tensor([2 / 1920, 2 / 1080], dtype=torch.float64) - 1
    Xp, _ = triangulate(x, P)
    Xn, _ = triangulate(xn, Nm @ P)
    assert dist3(Xp, Xn).max() < 1e-10


@pytest.mark.usefixtures("cpu_isa")
@requires_native
@pytest.mark.parametrize("refine_iters", [0, 3])
def test_zero_weight_view_has_no_influence(seed, refine_iters):
    N, V = 64, 6
    P = random_cameras(V, (N,))
    x = observe(P, random_points(N), noise=1.5)
    w = 0.5 + torch.rand(N, V, dtype=torch.float64)
    k = int(torch.randint(V, ()).item())
    bad = x.clone()
    bad[:, k] += 300.0 * torch.randn(N, 2, dtype=torch.float64)
    w0 = w.clone()
    w0[:, k] = 0.0
    keep = [v for v in range(V) if v != k]
    Xa, ia = triangulate(bad, P, weights=w0, refine_iters=refine_iters)
    Xb, ib = triangulate(x[:, keep], P[:, keep], weights=w[:, keep], refine_iters=refine_iters)
    assert dist3(Xa, Xb).max() < 1e-12
    torch.testing.assert_close(ia.rms, ib.rms, atol=1e-10, rtol=0)
    assert (ia.num_views == V - 1).all() and torch.equal(ia.flags, ib.flags)
    # A NaN observation (unit weight) is ignored the same way.
    nan = bad.clone()
    nan[:, k] = float("nan")
    Xc, ic = triangulate(nan, P, weights=torch.where(w0 == 0, 1.0, w0), refine_iters=refine_iters)
    assert dist3(Xc, Xb).max() < 1e-12 and (ic.num_views == V - 1).all()


@requires_native
def test_uniform_weight_scale_does_not_change_the_point(seed):
    P = random_cameras(4, (30,))
    x = observe(P, random_points(30), noise=2.0)
    w = 0.1 + torch.rand(30, 4, dtype=torch.float64)
    for refine_iters, tol in ((0, 1e-12), (12, 1e-11)):
        Xa, ia = triangulate(x, P, weights=w, refine_iters=refine_iters)
        Xb, ib = triangulate(x, P, weights=37.5 * w, refine_iters=refine_iters)
        assert dist3(Xa, Xb).max() < tol
        torch.testing.assert_close(ia.rms, ib.rms)


# --------------------------------------------------------------------------------- flags and degeneracy
def _camera(eye, target, f=1000.0):
    R, t = look_at(torch.tensor(eye, dtype=torch.float64), torch.tensor(target, dtype=torch.float64))
    K = torch.tensor([[f, 0, 960.0], [0, f, 540.0], [0, 0, 1]], dtype=torch.float64)
    return K @ torch.cat([R, t[:, None]], dim=-1)


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_degenerate_inputs_are_flagged(backend, monkeypatch):
    if backend == "reference":
        monkeypatch.setattr(_backend, "native", lambda: None)
    elif _backend.native() is None:
        pytest.skip("mvlift._C not built")
    target = [0.1, 1.0, -0.2]
    good = torch.stack(
        [_camera([3, 1.2, 0.5], target), _camera([-1, 1.5, 3], target), _camera([0, 2, -3], target)]
    )
    Xt = torch.tensor(target, dtype=torch.float64)
    x_good = observe(good, Xt)
    cases = {}
    # 1 valid view; all weights zero.
    cases["one_view"] = (x_good, good, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), 1)
    cases["no_view"] = (x_good, good, torch.zeros(3, dtype=torch.float64), 0)
    # Two cameras at the same centre, looking in slightly different directions.
    same = torch.stack([_camera([0.5, 1.3, 3.0], target), _camera([0.5, 1.3, 3.0], [0.4, 1.1, 0.0])])
    cases["same_centre"] = (observe(same, Xt), same, None, 2)
    # Two cameras on one line through the point: identical rays.
    d = torch.tensor([0.6, 0.1, 0.8], dtype=torch.float64)
    line = torch.stack([_camera((Xt + 2 * d).tolist(), target), _camera((Xt + 5 * d).tolist(), target)])
    cases["one_ray"] = (observe(line, Xt), line, None, 2)
    # Parallel rays: the point is at infinity.
    far = Xt + 1e9 * torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)
    par = torch.stack([_camera([0.0, 1.0, 3.0], [0.0, 1.0, 0.0]), _camera([0.5, 1.0, 3.0], [0.5, 1.0, 0.0])])
    cases["infinity"] = (observe(par, far), par, None, 2)
    # A singular camera is not a valid view.
    sing = good.clone()
    sing[1:] = 0.0
    cases["singular_P"] = (x_good, sing, None, 1)
    for name, (x, P, w, n_valid) in cases.items():
        X, info = triangulate(x, P, weights=w, refine_iters=3)
        assert info.flags.item() == DEG, name
        assert torch.isnan(X).all() and torch.isnan(info.rms).all(), name
        assert info.num_views.item() == n_valid, name
    # Degenerate points do not disturb good ones in the same batch.
    xb = torch.stack([x_good, x_good])
    wb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    X, info = triangulate(xb, good, weights=wb)
    assert info.flags.tolist() == [0, DEG] and dist3(X[0], Xt) < 1e-9


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_behind_camera_flag(backend, monkeypatch):
    if backend == "reference":
        monkeypatch.setattr(_backend, "native", lambda: None)
    elif _backend.native() is None:
        pytest.skip("mvlift._C not built")
    target = [0.0, 1.0, 0.0]
    P = torch.stack([_camera([0, 1, 3], target), _camera([3, 1, 0], target), _camera([-3, 1, 0], target)])
    behind0 = torch.tensor([0.2, 1.1, 4.0], dtype=torch.float64)  # behind camera 0 (at z = 3, looking at -z)
    front = torch.tensor([0.2, 1.1, 0.3], dtype=torch.float64)
    X, info = triangulate(observe(P, torch.stack([behind0, front])), P)
    assert info.flags.tolist() == [BEHIND, 0]
    assert dist3(X, torch.stack([behind0, front])).max() < 1e-9
    # -P is the same camera: the depth sign follows det(P[:, :3]), so nothing changes.
    flip = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)[:, None, None] * P
    X2, info2 = triangulate(observe(P, torch.stack([behind0, front])), flip)
    assert info2.flags.tolist() == [BEHIND, 0] and dist3(X2, X).max() < 1e-9


# ------------------------------------------------------------------------------------ shapes and layout
@requires_native
def test_broadcasting_shared_and_per_item_P(seed):
    V = 4
    P = random_cameras(V, (2, 3))
    X = random_points(2 * 3 * 5).reshape(2, 3, 5, 3)
    x = observe(P[:, :, None], X, noise=1.0)  # (2, 3, 5, V, 2)
    w = 0.5 + torch.rand(V, dtype=torch.float64)
    Xo, info = triangulate(x, P[:, :, None], weights=w, refine_iters=2)
    assert Xo.shape == (2, 3, 5, 3) and info.rms.shape == info.flags.shape == info.num_views.shape == (
        2,
        3,
        5,
    )
    for i in range(2):
        for j in range(3):
            Xs, infos = triangulate(x[i, j], P[i, j], weights=w, refine_iters=2)  # shared P path
            torch.testing.assert_close(Xo[i, j], Xs, rtol=0, atol=1e-12)
            torch.testing.assert_close(infos.rms, info.rms[i, j], rtol=0, atol=1e-12)
    # One point, one set of views.
    X1, info1 = triangulate(x[0, 0, 0], P[0, 0], weights=w, refine_iters=2)
    # (Equal to rounding: the AVX2 + FMA build may contract the shared- and per-item-P paths differently.)
    assert X1.shape == (3,) and info1.rms.shape == ()
    torch.testing.assert_close(X1, Xo[0, 0, 0], rtol=0, atol=1e-12)


@requires_native
@pytest.mark.parametrize("per_sequence", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sequences_match_triangulate(seed, per_sequence, dtype):
    B, V, T, J = 2, 5, 7, 3
    P = random_cameras(V, (B,) if per_sequence else ())
    X = random_points(B * T * J).reshape(B, T, J, 3)
    Pb = P[:, None, None] if per_sequence else P
    x = observe(Pb, X, noise=1.0).permute(0, 3, 1, 2, 4).contiguous()  # (B, V, T, J, 2)
    w = torch.rand(B, V, T, J, dtype=torch.float64)
    Xs, info = triangulate_sequences(x.to(dtype), P.to(dtype), weights=w.to(dtype), refine_iters=3)
    assert Xs.shape == (B, T, J, 3) and info.flags.shape == (B, T, J)
    Xp, infop = triangulate(
        x.permute(0, 2, 3, 1, 4).to(dtype),
        Pb.to(dtype),
        weights=w.permute(0, 2, 3, 1).to(dtype),
        refine_iters=3,
    )
    assert torch.equal(Xs, Xp) and torch.equal(info.rms, infop.rms)
    assert torch.equal(info.flags, infop.flags) and torch.equal(info.num_views, infop.num_views)


@requires_native
def test_cpu_isas_agree_to_rounding(seed):
    """The baseline and AVX2 + FMA builds of the CPU kernel: same flags and view counts, points equal to
    rounding (FMA contraction is the only difference), including weights, NaNs and refinement."""
    mod = _backend.native()
    if not mod.cpu_supports_avx2():
        pytest.skip("this build or processor has no AVX2 + FMA path")
    P = random_cameras(6, (40,))
    x = observe(P, random_points(40), noise=1.0)
    w = 0.2 + torch.rand(40, 6, dtype=torch.float64)
    w[0, :5], w[1, 2], x[2, 3] = 0.0, float("nan"), float("nan")
    before = mod.cpu_isa()
    out = {}
    try:
        for isa in CPU_ISAS:
            mod.set_cpu_isa(isa)
            assert mod.cpu_isa() == isa
            out[isa] = {
                dt: triangulate(x.to(dt), P.to(dt), weights=w.to(dt), refine_iters=3)
                for dt in (torch.float32, torch.float64)
            }
    finally:
        mod.set_cpu_isa(before)
    for dt, tol in ((torch.float64, 1e-10), (torch.float32, 2e-4)):
        (Xb, ib), (Xa, ia) = out["baseline"][dt], out["avx2"][dt]
        # NOT_CONVERGED (the last LM step still above sqrt(eps)) may flip with rounding; the rest may not.
        assert torch.equal(ib.flags & ~NOT_CONV, ia.flags & ~NOT_CONV)
        assert torch.equal(ib.num_views, ia.num_views)
        assert ib.flags[0] == DEG and ia.flags[0] == DEG and torch.isnan(Xa[0]).all()
        assert ((ib.flags[1:] & ~NOT_CONV) == 0).all()
        settled = ((ib.flags | ia.flags) & NOT_CONV) == 0
        settled[0] = False
        assert settled.sum() >= 30  # nearly every point converges in 3 steps
        assert dist3(Xb[settled], Xa[settled]).max() < tol


@requires_native
def test_deterministic_and_thread_count_invariant(seed):
    mod = _backend.native()
    P = random_cameras(6)
    x = observe(P, random_points(5000), noise=1.0)
    before = mod.get_num_threads()
    try:
        mod.set_num_threads(1)
        X1, i1 = triangulate(x, P, refine_iters=2)
        mod.set_num_threads(3)
        X3, i3 = triangulate(x, P, refine_iters=2)
        X3b, _ = triangulate(x, P, refine_iters=2)
    finally:
        mod.set_num_threads(before)
    assert torch.equal(X1, X3) and torch.equal(X3, X3b) and torch.equal(i1.rms, i3.rms)


@pytest.mark.usefixtures("cpu_isa")
@requires_native
def test_native_matches_reference_fallback(seed, monkeypatch):
    """Same results through the reference fallback, with NaN / zero / negative weights and NaN points."""
    P = random_cameras(4, (20,))
    x = observe(P, random_points(20), noise=1.0)
    w = 0.5 + torch.rand(20, 4, dtype=torch.float64)
    w[0, 1], w[1, 2], w[2, 0], w[3, :3] = float("nan"), 0.0, -1.0, 0.0
    x[4, 3] = float("nan")
    Xn, infon = triangulate(x, P, weights=w, refine_iters=4)
    monkeypatch.setattr(_backend, "native", lambda: None)
    Xr, infor = triangulate(x, P, weights=w, refine_iters=4)
    ok = infon.flags == 0
    assert ok.sum() == 19 and infon.flags[3] == DEG
    assert dist3(Xn[ok], Xr[ok]).max() < 1e-10 and torch.isnan(Xr[~ok]).all()
    torch.testing.assert_close(infon.rms, infor.rms, equal_nan=True)
    assert torch.equal(infon.flags, infor.flags) and torch.equal(infon.num_views, infor.num_views)
    assert infon.num_views[:5].tolist() == [3, 3, 3, 1, 3]


def test_empty_inputs():
    P = random_cameras(3)
    X, info = triangulate(torch.empty(0, 3, 2, dtype=torch.float64), P)
    assert X.shape == (0, 3) and info.rms.shape == (0,) and info.flags.dtype == torch.int32
    Xs, infos = triangulate_sequences(torch.empty(2, 3, 0, 4, 2), P.float())
    assert Xs.shape == (2, 0, 4, 3) and infos.num_views.shape == (2, 0, 4)
    # Zero views: every point is degenerate.
    X0, info0 = triangulate(torch.zeros(5, 0, 2), torch.zeros(0, 3, 4))
    assert torch.isnan(X0).all() and (info0.flags == DEG).all() and (info0.num_views == 0).all()


# ------------------------------------------------------------------------------------ torch.library checks
@pytest.mark.parametrize("per_item", [False, True])
@pytest.mark.parametrize("with_weights", [False, True])
def test_opcheck(seed, per_item, with_weights):
    B, V, M = 3, 4, 5
    P = random_cameras(V, (B,) if per_item else (1,))
    X = random_points(B * M).reshape(B, M, 3)
    x = observe(P[:, None], X, noise=1.0).permute(0, 2, 1, 3).contiguous()  # (B, V, M, 2)
    w = torch.rand(B, V, M, dtype=torch.float64) if with_weights else None
    torch.library.opcheck(torch.ops.mvlift.triangulate.default, (x, P, w, 2))


def test_gradient_is_refused():
    P = random_cameras(3)
    x = observe(P, random_points(4)).requires_grad_()
    with pytest.raises(ValueError, match="not differentiable.*x requires grad"):
        triangulate(x, P)
    with torch.no_grad():
        X, _ = triangulate(x, P)
    assert not X.requires_grad
    # The registered autograd formula refuses too (direct op call).
    out = torch.ops.mvlift.triangulate(x.transpose(0, 1)[None], P[None], None, 0)  # (1, V, N, 2) layout
    with pytest.raises(RuntimeError, match="not differentiable"):
        out[0].sum().backward()


def test_bad_inputs():
    P = random_cameras(3)
    x = observe(P, random_points(4))
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        triangulate(x.half(), P.half())
    with pytest.raises(TypeError, match="P must have x's dtype"):
        triangulate(x, P.float())
    with pytest.raises(TypeError, match="weights must have x's dtype"):
        triangulate(x, P, weights=torch.ones(3, dtype=torch.float32))
    with pytest.raises(TypeError, match="x must be a tensor"):
        triangulate(x.numpy(), P)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., V, 2\)"):
        triangulate(torch.zeros(4, 3, 3, dtype=torch.float64), P)
    with pytest.raises(ValueError, match=r"P must have shape \(3, 3, 4\)"):
        triangulate(x, P[:2])
    with pytest.raises(ValueError, match=r"P must have shape"):
        triangulate(x, P[..., :3])
    with pytest.raises(ValueError, match=r"weights must have shape \(\.\.\., 3\)"):
        triangulate(x, P, weights=torch.ones(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="do not broadcast"):
        triangulate(x, P.expand(5, 3, 3, 4))
    with pytest.raises(ValueError, match="must be on x's device"):
        triangulate(x, P.to("meta"))
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="refine_iters must be an int >= 0"):
            triangulate(x, P, refine_iters=bad)
    xs = torch.zeros(2, 3, 4, 5, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"x must have shape \(B, V, T, J, 2\)"):
        triangulate_sequences(xs[0], P)
    with pytest.raises(ValueError, match=r"P must have shape \(3, 3, 4\) or \(2, 3, 3, 4\)"):
        triangulate_sequences(xs, P.expand(4, 3, 3, 4))
    with pytest.raises(ValueError, match=r"weights must have shape \(2, 3, 4, 5\)"):
        triangulate_sequences(xs, P, weights=torch.ones(2, 3, 4, dtype=torch.float64))


# ------------------------------------------------------------------------------------------- real motion
@pytest.mark.parametrize("clip", ["05_01", "05_02"])
def test_cmu_clip_round_trip(cmu_dir, clip):
    """Real CMU joints projected into a 6-camera ring (3 m, 1 m high) and triangulated back."""
    from mvlift.data import load_mocap
    from mvlift.geometry import ring_cameras

    pos = torch.as_tensor(load_mocap(cmu_dir / "asfamc" / f"{clip}.amc", max_frames=240).positions)
    pos = pos[::2].double()  # (120, 31, 3), metres
    centre = pos[0].mean(0)
    P = ring_cameras(6, radius=3.0, height=1.0, look_at=(centre[0].item(), 1.0, centre[2].item())).P
    x = observe(P, pos).permute(2, 0, 1, 3)[None].contiguous()  # (1, 6, T, J, 2) pixels
    for dtype, tol in ((torch.float64, 1e-5), (torch.float32, 1e-3)):
        X, info = triangulate_sequences(x.to(dtype), P.to(dtype), refine_iters=2)
        assert (info.flags == 0).all() and (info.num_views == 6).all()
        assert dist3(X[0], pos).max() < tol, dtype


# ---------------------------------------------------------------------------------------------------- CUDA
@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_item", [False, True])
def test_cuda_matches_cpu(seed, dtype, per_item):
    if not _backend.native_cuda():
        pytest.skip("mvlift._C built without CUDA")
    N, V = 3001, 6
    P = random_cameras(V, (N,) if per_item else ())
    x = observe(P, random_points(N), noise=1.0)
    w = torch.where(torch.rand(N, V, dtype=torch.float64) < 0.2, 0.0, 1.0)
    x[5, 2] = float("nan")
    for refine in (0, 4):
        Xc, ic = triangulate(x.to(dtype), P.to(dtype), weights=w.to(dtype), refine_iters=refine)
        Xg, ig = triangulate(
            x.to(dtype).cuda(), P.to(dtype).cuda(), weights=w.to(dtype).cuda(), refine_iters=refine
        )
        ok = (ic.flags & DEG) == 0
        assert torch.equal(ig.flags.cpu(), ic.flags) and torch.equal(ig.num_views.cpu(), ic.num_views)
        assert dist3(Xg.cpu()[ok], Xc[ok]).max() < (1e-10 if dtype == torch.float64 else 1e-4)
        assert torch.isnan(Xg.cpu()[~ok]).all()
    if not per_item:  # the views-major sequence layout on the GPU
        xs = x.permute(1, 0, 2)[None, :, :, None].to(dtype).cuda()  # (1, V, N, 1, 2)
        ws = w.T[None, :, :, None].to(dtype).cuda()
        Xs, _ = triangulate_sequences(xs, P.to(dtype).cuda(), weights=ws, refine_iters=4)
        assert dist3(Xs[0, :, 0].cpu()[ok], Xc[ok]).max() < (1e-10 if dtype == torch.float64 else 1e-4)
