"""mvlift.ops.epipolar_loss: the Triton kernels (interpreter on CPU) against the float64 reference, the
reference against mvlift.geometry, the CPU reference path, torch.library checks, edge cases, input checks
and real CMU motion seen by a camera ring."""

from __future__ import annotations

import importlib

import pytest
import torch

from mvlift.ops import _backend, epipolar_loss
from mvlift.reference import losses as ref

epi_mod = importlib.import_module("mvlift.ops.epipolar_loss")

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
kernel_only = pytest.mark.skipif(
    not _backend.use_triton(torch.empty(0, device=DEVICE)),
    reason="Triton kernels not runnable here (no CUDA and TRITON_INTERPRET unset)",
)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|, in float64."""
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).abs().max() / b.abs().max()).item()


def make_inputs(B, V, T, J, *, weights=False, mask=False, per_seq=False, dtype=torch.float32, device=DEVICE):
    """Random points in [-1.5, 1.5]^2, random F, weights in [0, 1] with some exact zeros, a random mask
    with at least one valid frame."""
    x = (3 * torch.rand(B, V, T, J, 2, dtype=torch.float64) - 1.5).to(device, dtype)
    F = torch.randn(*((B,) if per_seq else ()), V, V, 3, 3, dtype=torch.float64).to(device, dtype)
    w = None
    if weights:
        w = torch.rand(B, V, T, J, dtype=torch.float64)
        w = torch.where(torch.rand_like(w) < 0.15, 0.0, w).to(device, dtype)
    m = None
    if mask:
        m = torch.rand(B, T) < 0.7
        m[:, 0] = True
        m = m.to(device)
    return x, F, w, m


def ref_loss_and_grads(x, F, w, m, g, **kw):
    """Float64 reference loss and its gradients (autograd) w.r.t. x, F and the weights."""
    x64 = x.detach().double().requires_grad_()
    F64 = F.detach().double().requires_grad_()
    w64 = None if w is None else w.detach().double().requires_grad_()
    out = ref.epipolar_loss(x64, F64, weights=w64, mask=m, **kw)
    leaves = [t for t in (x64, F64, w64) if t is not None]
    return out, torch.autograd.grad(out, leaves, g.double())


RING6 = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 5), (0, 2), (0, 3), (0, 4)]  # ring + input view
# (B, V, T, J, weights, mask, per-sequence F, pairs, distance, reduction): V from 2 to 8, B = 1 and > 1,
# T * J never a multiple of the tile, every distance x reduction, pairs in both orders.
CASES = [
    (1, 2, 5, 13, False, False, False, None, "symmetric", "mean"),
    (3, 3, 7, 11, True, True, False, None, "sampson", "sum"),
    (2, 4, 9, 17, True, False, True, [(0, 1), (2, 1), (3, 0)], "symmetric", "per_sequence"),
    (1, 5, 3, 29, False, True, True, None, "sampson", "mean"),
    (2, 6, 11, 18, True, True, False, RING6, "symmetric", "mean"),
    (3, 7, 5, 9, False, False, False, [(6, 0), (1, 5)], "symmetric", "none"),
    (1, 8, 13, 7, True, True, True, None, "sampson", "per_sequence"),
    (2, 6, 3, 24, False, True, True, None, "symmetric", "sum"),
]  # fmt: skip


@kernel_only
@pytest.mark.parametrize("case", CASES, ids=[f"V{c[1]}-{c[8]}-{c[9]}" for c in CASES])
def test_fp32_forward_and_grads_match_reference(seed, case):
    B, V, T, J, has_w, has_m, per_seq, pairs, distance, reduction = case
    x, F, w, m = make_inputs(B, V, T, J, weights=has_w, mask=has_m, per_seq=per_seq)
    leaves = [t.requires_grad_() for t in (x, F, w) if t is not None]
    kw = dict(pairs=pairs, distance=distance, reduction=reduction)
    out = epipolar_loss(x, F, weights=w, mask=m, **kw)
    assert out.dtype == torch.float32
    assert out.shape == ((B,) if reduction in ("per_sequence", "none") else ())
    g = torch.rand_like(out) + 0.5
    grads = torch.autograd.grad(out, leaves, g)
    want, want_grads = ref_loss_and_grads(x, F, w, m, g, **kw)
    assert rel_err(out, want) < 1e-4
    for got, exp, leaf in zip(grads, want_grads, leaves, strict=True):
        assert got.dtype == leaf.dtype and got.shape == leaf.shape
        assert rel_err(got, exp) < 1e-4


@kernel_only
def test_fp64_kernel_matches_reference(seed):
    x, F, w, m = make_inputs(2, 4, 7, 13, weights=True, mask=True, dtype=torch.float64)
    leaves = [t.requires_grad_() for t in (x, F, w)]
    for distance in ("symmetric", "sampson"):
        out = epipolar_loss(x, F, weights=w, mask=m, distance=distance)
        assert out.dtype == torch.float64
        grads = torch.autograd.grad(out, leaves)
        want, want_grads = ref_loss_and_grads(x, F, w, m, torch.ones(()), distance=distance)
        assert rel_err(out, want) < 1e-10
        for got, exp in zip(grads, want_grads, strict=True):
            assert rel_err(got, exp) < 1e-10


@kernel_only
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_accumulate_in_fp32(seed, dtype):
    x, F, w, m = make_inputs(2, 3, 5, 11, weights=True, mask=True)
    x, w = x.to(dtype).requires_grad_(), w.to(dtype)
    out = epipolar_loss(x, F, weights=w, mask=m)
    assert out.dtype == torch.float32
    (dx,) = torch.autograd.grad(out, x)
    assert dx.dtype == dtype
    want, (want_dx, *_) = ref_loss_and_grads(x, F, w, m, torch.ones(()))  # the same rounded inputs
    assert rel_err(out, want) < 1e-5
    assert rel_err(dx, want_dx) < 1e-2  # dx is rounded to the half dtype


# --- the reference ----------------------------------------------------------------------------------------


def test_reference_distances_match_geometry(seed):
    geo = pytest.importorskip("mvlift.geometry.epipolar")
    xi = torch.rand(4, 9, 2, dtype=torch.float64) * 3 - 1.5
    xj = torch.rand(4, 9, 2, dtype=torch.float64) * 3 - 1.5
    F = torch.randn(4, 1, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(
        ref.epipolar_distances(xi, xj, F, "symmetric"), geo.symmetric_epipolar_distance(xi, xj, F)
    )
    torch.testing.assert_close(ref.epipolar_distances(xi, xj, F, "sampson"), geo.sampson_distance(xi, xj, F))


def test_reference_loss_is_the_weighted_mean_over_pairs(seed):
    geo = pytest.importorskip("mvlift.geometry.epipolar")
    x, F, w, m = make_inputs(
        2, 4, 3, 5, weights=True, mask=True, per_seq=True, dtype=torch.float64, device="cpu"
    )
    num, den = 0.0, 0.0
    for i, j in geo.all_pairs(4).tolist():
        d = geo.symmetric_epipolar_distance(x[:, i], x[:, j], F[:, None, None, i, j])  # (B, T, J)
        wp = w[:, i] * w[:, j] * m[:, :, None]
        num, den = num + (wp * d).sum(), den + wp.sum()
    torch.testing.assert_close(ref.epipolar_loss(x, F, weights=w, mask=m), num / den)


@pytest.mark.parametrize("distance", ["symmetric", "sampson"])
def test_reference_gradcheck(seed, distance):
    x, F, w, m = make_inputs(2, 3, 3, 4, weights=True, mask=True, dtype=torch.float64, device="cpu")
    w = w + 0.1  # away from 0: the loss is smooth in the weights there too
    for reduction in ("mean", "per_sequence"):

        def fn(x_, F_, w_, reduction=reduction):
            return ref.epipolar_loss(x_, F_, weights=w_, mask=m, distance=distance, reduction=reduction)

        assert torch.autograd.gradcheck(fn, (x.requires_grad_(), F.requires_grad_(), w.requires_grad_()))


# --- dispatch, torch.library --------------------------------------------------------------------------------


def test_reference_path_when_kernels_are_off(seed, monkeypatch):
    monkeypatch.setattr(_backend, "use_triton", lambda t: False)
    x, F, w, m = make_inputs(2, 4, 5, 7, weights=True, mask=True, per_seq=True, device="cpu")
    leaves = [t.requires_grad_() for t in (x, F, w)]
    for reduction in ("mean", "sum", "per_sequence"):
        out = epipolar_loss(x, F, weights=w, mask=m, pairs=[(1, 0), (2, 3)], reduction=reduction)
        g = torch.rand_like(out)
        grads = torch.autograd.grad(out, leaves, g)
        want, want_grads = ref_loss_and_grads(x, F, w, m, g, pairs=[(1, 0), (2, 3)], reduction=reduction)
        # float32 against the float64 oracle: the project's fp32 bound (1e-5 was seed-flaky)
        assert rel_err(out, want) < 1e-4
        for got, exp in zip(grads, want_grads, strict=True):
            assert rel_err(got, exp) < 1e-4
    # only x differentiated: the unused gradients are distinct empty outputs (custom ops may not alias)
    out = epipolar_loss(x, F.detach(), weights=w.detach(), mask=m)
    (dx,) = torch.autograd.grad(out, x)
    assert rel_err(dx, ref_loss_and_grads(x, F, w, m, torch.ones(()))[1][0]) < 1e-4


@pytest.mark.parametrize("kernels", [True, False])
def test_opcheck(seed, monkeypatch, kernels):
    if kernels and not _backend.use_triton(torch.empty(0, device=DEVICE)):
        pytest.skip("Triton kernels not runnable here")
    if not kernels:
        monkeypatch.setattr(_backend, "use_triton", lambda t: False)
    x, F, w, m = make_inputs(2, 3, 3, 5, weights=True, mask=True)
    x.requires_grad_(), F.requires_grad_(), w.requires_grad_()
    torch.library.opcheck(epi_mod._epipolar_loss, (x, F, w, m, [0, 1, 2, 1], "symmetric", "mean"))
    torch.library.opcheck(
        epi_mod._epipolar_loss, (x, F, None, None, [0, 1, 0, 2, 1, 2], "sampson", "per_sequence")
    )


# --- edge cases -------------------------------------------------------------------------------------------


def _f_with_epipoles(e_i: torch.Tensor, e_j: torch.Tensor) -> torch.Tensor:
    """A random rank-2 F with F (e_i, 1) = 0 and F^T (e_j, 1) = 0: e_i, e_j are the epipoles of views i
    and j, and the epipolar line of a point at an epipole has a = b = c = 0."""
    eye = torch.eye(3, dtype=e_i.dtype)
    proj = []
    for e in (e_i, e_j):
        n = torch.cat([e, torch.ones(1, dtype=e.dtype)])
        n = n / n.norm()
        proj.append(eye - torch.outer(n, n))
    return proj[1] @ torch.randn(3, 3, dtype=e_i.dtype) @ proj[0]


@pytest.mark.parametrize("distance", ["symmetric", "sampson"])
def test_points_at_the_epipole_and_zero_weights_are_finite(seed, distance):
    B, V, T, J = 1, 2, 3, 5
    x, _, w, _ = make_inputs(B, V, T, J, weights=True, device="cpu")
    e_i = torch.tensor([0.25, -0.5], dtype=torch.float64)
    e_j = torch.tensor([-0.75, 0.5], dtype=torch.float64)
    F = torch.zeros(V, V, 3, 3, dtype=torch.float64)
    F[0, 1] = _f_with_epipoles(e_i, e_j)
    F[1, 0] = F[0, 1].T
    assert (F[0, 1] @ torch.tensor([0.25, -0.5, 1.0], dtype=torch.float64)).abs().max() < 1e-12
    x[:, 0, :, :2] = e_i.float()  # joints 0 and 1 of view 0 sit on its epipole
    x[:, 1, :, 1] = e_j.float()  # joint 1 of view 1 too: both of its lines vanish
    paths = [ref.epipolar_loss] + ([epipolar_loss] if _backend.use_triton(x.to(DEVICE)) else [])
    for fn in paths:
        for wc in (w, torch.zeros_like(w)):
            leaves = [t.clone().to(DEVICE).requires_grad_() for t in (x, F.float(), wc)]
            out = fn(*leaves[:2], weights=leaves[2], distance=distance)
            grads = torch.autograd.grad(out, leaves)
            assert torch.isfinite(out)
            assert all(torch.isfinite(g).all() for g in grads)
            if not wc.any():
                assert out == 0 and all((g == 0).all() for g in grads)


@kernel_only
def test_all_frames_masked_gives_zero_and_zero_grads(seed):
    x, F, _, m = make_inputs(2, 3, 4, 5, mask=True)
    m = torch.zeros_like(m)
    x.requires_grad_()
    for reduction in ("mean", "sum", "per_sequence"):
        out = epipolar_loss(x, F, mask=m, reduction=reduction)
        (dx,) = torch.autograd.grad(out.sum(), x)
        assert (out == 0).all() and (dx == 0).all()


@kernel_only
def test_empty_sequences(seed):
    x, F, _, _ = make_inputs(3, 3, 0, 5)
    x.requires_grad_()
    out = epipolar_loss(x, F, reduction="per_sequence")
    assert out.shape == (3,) and (out == 0).all()
    (dx,) = torch.autograd.grad(out.sum(), x)
    assert dx.shape == x.shape
    assert epipolar_loss(x, F) == 0


@kernel_only
def test_deterministic(seed):
    x, F, w, m = make_inputs(3, 5, 9, 17, weights=True, mask=True, per_seq=True)
    leaves = [t.requires_grad_() for t in (x, F, w)]
    runs = []
    for _ in range(2):
        out = epipolar_loss(x, F, weights=w, mask=m)
        runs.append((out, *torch.autograd.grad(out, leaves)))
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


@kernel_only
def test_outputs_are_fully_written(seed, monkeypatch):
    """Every buffer the launchers allocate is poisoned with NaN: a result that misses an entry shows it."""
    x, F, w, m = make_inputs(2, 4, 7, 13, weights=True, mask=True)
    leaves = [t.requires_grad_() for t in (x, F, w)]
    clean = []
    for reduction in ("mean", "per_sequence"):
        out = epipolar_loss(x, F, weights=w, mask=m, reduction=reduction)
        clean.append((out, *torch.autograd.grad(out.sum(), leaves)))
    empty, empty_like = torch.empty, torch.empty_like
    monkeypatch.setattr(torch, "empty", lambda *a, **k: empty(*a, **k).fill_(float("nan")))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: empty_like(*a, **k).fill_(float("nan")))
    for reduction, want in zip(("mean", "per_sequence"), clean, strict=True):
        out = epipolar_loss(x, F, weights=w, mask=m, reduction=reduction)
        got = (out, *torch.autograd.grad(out.sum(), leaves))
        for a, b in zip(got, want, strict=True):
            assert torch.equal(a, b)


@kernel_only
def test_non_contiguous_inputs(seed):
    x, F, w, m = make_inputs(2, 3, 5, 7, weights=True, mask=True)
    xt = x.transpose(2, 3).contiguous().transpose(2, 3).requires_grad_()  # same values, permuted strides
    wt = w.transpose(2, 3).contiguous().transpose(2, 3)
    assert not (xt.is_contiguous() or wt.is_contiguous())
    out = epipolar_loss(xt, F.transpose(-1, -2).contiguous().transpose(-1, -2), weights=wt, mask=m)
    (dx,) = torch.autograd.grad(out, xt)
    want, (want_dx, *_) = ref_loss_and_grads(x, F, w, m, torch.ones(()))
    assert rel_err(out, want) < 1e-4 and rel_err(dx, want_dx) < 1e-4


def test_tensor_pairs_equal_list_pairs(seed):
    x, F, _, _ = make_inputs(1, 4, 3, 5)
    a = epipolar_loss(x, F, pairs=torch.tensor([[0, 3], [2, 1]]))
    b = epipolar_loss(x, F, pairs=[(0, 3), (2, 1)])
    assert torch.equal(a, b)


# --- input checks -----------------------------------------------------------------------------------------


def _nan_F(F: torch.Tensor) -> torch.Tensor:
    out = F.clone()
    out[0, 1, 2, 2] = float("nan")
    return out


# (overrides of the valid arguments x, F, weights, mask, exception, message)
BAD = [
    (lambda x, F, w, m: dict(x=x.numpy()), TypeError, "x must be a torch.Tensor"),
    (lambda x, F, w, m: dict(x=x[..., 0]), ValueError, r"x must have shape \(B, V, T, J, 2\)"),
    (lambda x, F, w, m: dict(x=x.to(torch.int32)), TypeError, "x must be float16, bfloat16, float32"),
    (lambda x, F, w, m: dict(x=x[:, :1], F=F[:1, :1]), ValueError, r"V = x.shape\[1\] must be in \[2, 16\]"),
    (lambda x, F, w, m: dict(F=F.numpy()), TypeError, "F must be a torch.Tensor"),
    (lambda x, F, w, m: dict(F=F[:, :, :2]), ValueError, r"F must have shape \(V, V, 3, 3\)"),
    (lambda x, F, w, m: dict(F=F.to(torch.int64)), TypeError, "F must be float16"),
    (lambda x, F, w, m: dict(F=_nan_F(F)), ValueError, "F must be finite"),
    (lambda x, F, w, m: dict(weights=w[:, :, :3]), ValueError, r"weights must have shape \(B, V, T, J\)"),
    (lambda x, F, w, m: dict(weights=-w), ValueError, "weights must be finite and >= 0"),
    (lambda x, F, w, m: dict(weights=w.to(torch.int32)), TypeError, "weights must be float16"),
    (lambda x, F, w, m: dict(mask=m.float()), TypeError, "mask must be a bool tensor"),
    (lambda x, F, w, m: dict(mask=m[:1]), ValueError, r"mask must have shape \(B, T\)"),
    (lambda x, F, w, m: dict(pairs=[(0, 3)]), ValueError, r"each pair \(i, j\) needs 0 <= i, j < V = 3"),
    (lambda x, F, w, m: dict(pairs=[(1, 1)]), ValueError, "i != j"),
    (lambda x, F, w, m: dict(pairs=[(0, 1), (1, 0)]), ValueError, "pairs must be distinct"),
    (lambda x, F, w, m: dict(pairs=[]), ValueError, "at least one"),
    (lambda x, F, w, m: dict(pairs=[(0, 1.0)]), TypeError, "pairs must be a sequence of"),
    (lambda x, F, w, m: dict(pairs=torch.zeros(2, 3, dtype=torch.long)), ValueError, r"shape \(P, 2\)"),
    (lambda x, F, w, m: dict(pairs=torch.zeros(2, 2)), TypeError, "pairs must be an integer tensor"),
    (lambda x, F, w, m: dict(pairs="01"), TypeError, "pairs must be None"),
    (lambda x, F, w, m: dict(distance="l2"), ValueError, "distance must be one of"),
    (lambda x, F, w, m: dict(reduction="max"), ValueError, "reduction must be one of"),
    (lambda x, F, w, m: dict(check_values=1), TypeError, "check_values must be a bool"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD, ids=[c[2] for c in BAD])
def test_bad_inputs_raise(case):
    x, F, w, m = make_inputs(2, 3, 4, 5, weights=True, mask=True, device="cpu")
    override, exc, match = case
    kw = dict(x=x, F=F, weights=w, mask=m) | override(x, F, w, m)
    x_, F_ = kw.pop("x"), kw.pop("F")
    with pytest.raises(exc, match=match):
        epipolar_loss(x_, F_, **kw)


def test_per_sequence_F_batch_must_match():
    x, F, _, _ = make_inputs(2, 3, 4, 5, per_seq=True, device="cpu")
    with pytest.raises(ValueError, match=r"\(B, V, V, 3, 3\) = \(3, 3, 3, 3, 3\)"):
        epipolar_loss(torch.cat([x, x[:1]]), F)


@pytest.mark.cuda
def test_device_mismatch_raises():
    x, F, w, m = make_inputs(2, 3, 4, 5, weights=True, mask=True, device="cpu")
    with pytest.raises(ValueError, match="F must be on x's device"):
        epipolar_loss(x, F.cuda())
    with pytest.raises(ValueError, match="mask must be on x's device"):
        epipolar_loss(x, F, mask=m.cuda())


# --- real motion ------------------------------------------------------------------------------------------


@kernel_only
def test_real_cmu_projections_are_consistent_and_noise_grows_the_loss(cmu_dir, seed):
    """05_01 (walk) seen by a 6-camera ring: exact projections give ~0 (normalized [-1, 1] frame), and
    the loss grows with pixel noise, about like the noise (the mean point-to-line distance of noisy
    points)."""
    from mvlift.data import load_mocap
    from mvlift.geometry import fundamental_from_cameras, ring_cameras

    motion = load_mocap(cmu_dir / "asfamc" / "05_01.amc", max_frames=45)
    X = torch.as_tensor(motion.positions, dtype=torch.float64)[::3]  # (15, 31, 3) metres, Y up
    root = X[0].mean(dim=0)
    cams = ring_cameras(6, radius=3.0, height=1.0, look_at=(float(root[0]), 1.0, float(root[2])))
    x = cams.project(X, normalized=True)[None]  # (1, 6, T, J, 2)
    F = fundamental_from_cameras(cams, normalized=True)  # (6, 6, 3, 3)
    assert x.shape == (1, 6, 15, 31, 2) and x.abs().max() < 1.0  # all joints inside the image

    exact = epipolar_loss(x.float().to(DEVICE), F.float().to(DEVICE))
    assert exact < 1e-4  # 1e-4 normalized units ~ 0.1 px (float32 rounding of the points)
    assert epipolar_loss(x.to(DEVICE), F.to(DEVICE)) < 1e-9  # float64

    px = 2.0 / 1920  # one pixel in normalized units (x axis)
    prev = exact
    for sigma_px in (1.0, 4.0, 16.0):
        noisy = (x + sigma_px * px * torch.randn_like(x)).float().to(DEVICE)
        losses = [epipolar_loss(noisy, F.float().to(DEVICE), distance=d) for d in ("symmetric", "sampson")]
        want = ref.epipolar_loss(noisy.double(), F.to(DEVICE))
        assert rel_err(losses[0], want) < 1e-4
        assert losses[0] > 3 * prev  # grows with the noise
        assert 0.2 * sigma_px * px < losses[0] < 3 * sigma_px * px  # the order of the noise
        assert 0.3 < losses[1] / losses[0] < 1.0  # Sampson: a first-order distance <= the symmetric one
        prev = losses[0]
