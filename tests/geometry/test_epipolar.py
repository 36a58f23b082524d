"""Epipolar geometry: F convention and properties, epipoles, lines, distances, view pairs, gradients."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mvlift.geometry import (
    Cameras,
    all_pairs,
    camera_centers_homogeneous,
    camera_epipoles,
    epipolar_lines,
    epipoles,
    fundamental_from_cameras,
    fundamental_matrices,
    intrinsics,
    normalize_lines,
    point_line_distance,
    ring_cameras,
    ring_pairs,
    sampson_distance,
    symmetric_epipolar_distance,
)

F64 = torch.float64


def hom(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)


def numpy_fundamental(Pi: np.ndarray, Pj: np.ndarray) -> np.ndarray:
    """Independent reference: F (x_i -> line in j) = [e_j]_x P_j P_i^+, e_j = P_j C_i (SVD null vector)."""
    C = np.linalg.svd(Pi)[2][-1]
    e = Pj @ C
    ex = np.array([[0, -e[2], e[1]], [e[2], 0, -e[0]], [-e[1], e[0], 0]])
    return ex @ Pj @ np.linalg.pinv(Pi)


def cameras_for(kind: str, batch: tuple[int, ...], scene) -> Cameras:
    if kind == "ring":
        return ring_cameras(6, start_azimuth=torch.rand(batch, dtype=F64) * 6.3)
    return scene(5, batch)


# ------------------------------------------------------------------------------------ F convention
@pytest.mark.parametrize("kind", ["ring", "random"])
@pytest.mark.parametrize("normalized", [False, True])
def test_fundamental_convention_all_ordered_pairs(kind, normalized, scene, points):
    cams = cameras_for(kind, (2,), scene)
    V = cams.num_views
    F = fundamental_from_cameras(cams, normalized=normalized)
    assert F.shape == (2, V, V, 3, 3)
    X = points((2, 50))
    x = cams.project(X, normalized=normalized)  # (2, V, 50, 2)
    for i, j in itertools.permutations(range(V), 2):
        xi, xj = hom(x[:, i]), hom(x[:, j])
        residual = torch.einsum("bna,bac,bnc->bn", xj, F[:, i, j], xi)
        scale = xi.norm(dim=-1) * xj.norm(dim=-1)  # |F| = 1
        assert (residual.abs() / scale).max() < 1e-9, (i, j)


@pytest.mark.parametrize("kind", ["ring", "random"])
def test_fundamental_structure(kind, scene):
    cams = cameras_for(kind, (3,), scene)
    V = cams.num_views
    F = fundamental_from_cameras(cams)
    eye = torch.eye(V, dtype=torch.bool)
    assert (F[:, eye] == 0).all()
    assert torch.equal(F, F.transpose(1, 2).transpose(-1, -2))  # F[j, i] == F[i, j]^T exactly
    off = F[:, ~eye]  # (3, V(V-1), 3, 3)
    torch.testing.assert_close(off.flatten(-2).norm(dim=-1), torch.ones(3, V * (V - 1), dtype=F64))
    s = torch.linalg.svdvals(off)
    assert (s[..., 2] / s[..., 0]).max() < 1e-12  # rank 2
    assert (s[..., 1] / s[..., 0]).min() > 1e-8
    # deterministic sign for i < j: the largest-magnitude entry is positive
    iu = all_pairs(V)
    upper = F[:, iu[:, 0], iu[:, 1]].flatten(-2)
    top = torch.gather(upper, -1, upper.abs().argmax(dim=-1, keepdim=True))
    assert (top > 0).all()


def test_fundamental_matches_independent_numpy(scene):
    cams = scene(4)
    for P in (cams.P, cams.P_normalized):
        F = fundamental_matrices(P).numpy()
        Pn = P.numpy()
        for i, j in itertools.permutations(range(4), 2):
            ref = numpy_fundamental(Pn[i], Pn[j])
            ref = ref / np.linalg.norm(ref)
            assert abs(abs(np.sum(ref * F[i, j])) - 1.0) < 1e-10, (i, j)


def test_fundamental_pixel_vs_normalized(scene):
    # F_pix = N^T F_norm N up to scale and sign
    cams = scene(4, (2,))
    Fp = fundamental_from_cameras(cams)
    Fn = fundamental_from_cameras(cams, normalized=True)
    N = cams.normalization
    mapped = N.T @ Fn @ N
    mapped = mapped / mapped.flatten(-2).norm(dim=-1)[..., None, None].clamp_min(1e-300)
    dot = (mapped * Fp).sum(dim=(-1, -2)).abs()
    mask = ~torch.eye(4, dtype=torch.bool)
    torch.testing.assert_close(dot[:, mask], torch.ones(2, 12, dtype=F64))


def test_batched_matches_unbatched(scene):
    cams = scene(4, (2, 3))
    F = fundamental_from_cameras(cams)
    assert F.shape == (2, 3, 4, 4, 3, 3)
    for a in range(2):
        for b in range(3):
            torch.testing.assert_close(F[a, b], fundamental_matrices(cams.P[a, b]), rtol=0, atol=1e-14)


def test_coincident_centres_raise(scene):
    cams = scene(4)
    R, t = cams.R.clone(), cams.t.clone()
    # view 2 rotated about view 1's centre: same centre, different orientation
    rot = torch.linalg.matrix_exp(
        torch.tensor([[0.0, -0.3, 0.1], [0.3, 0.0, -0.2], [-0.1, 0.2, 0.0]], dtype=F64)
    )
    R[2] = rot @ R[1]
    t[2] = -(R[2] @ cams.centers[1])
    bad = Cameras(cams.K, R, t, cams.image_size)
    with pytest.raises(ValueError, match="views 1 and 2 share a camera centre"):
        fundamental_from_cameras(bad)
    with pytest.raises(ValueError, match="views 1 and 2 share a camera centre"):
        fundamental_from_cameras(bad.to(torch.float32), normalized=True)
    F = fundamental_from_cameras(bad, check=False)
    assert torch.isfinite(F).all()
    # a single view, and no pairs at all, are fine
    assert fundamental_from_cameras(cams.select(0)).shape == (1, 1, 3, 3)


def test_input_validation():
    with pytest.raises(ValueError, match=r"P must have shape \(\.\.\., V, 3, 4\)"):
        fundamental_matrices(torch.zeros(3, 4))
    with pytest.raises(TypeError, match="floating-point"):
        fundamental_matrices(torch.zeros(2, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"F_ij must have shape"):
        epipolar_lines(torch.zeros(2), torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"x_j must have shape"):
        sampson_distance(torch.zeros(2), torch.zeros(3), torch.eye(3))
    with pytest.raises(TypeError, match="Cameras"):
        fundamental_from_cameras(torch.zeros(2, 3, 4))


def test_float32_close_to_float64(scene, points):
    cams = scene(5)
    F64_ = fundamental_from_cameras(cams, normalized=True)
    F32 = fundamental_from_cameras(cams.to(torch.float32), normalized=True)
    assert F32.dtype == torch.float32
    torch.testing.assert_close(F32.double(), F64_, rtol=0, atol=2e-5)
    x = cams.project(points((20,)), normalized=True).float()
    d = symmetric_epipolar_distance(x[0], x[1], F32[0, 1])
    assert d.dtype == torch.float32 and d.max() < 1e-4


# ------------------------------------------------------------------------------------ epipoles
def test_epipoles_are_null_vectors_and_camera_images(scene):
    cams = scene(4)
    for normalized in (False, True):
        F = fundamental_from_cameras(cams, normalized=normalized)
        E = camera_epipoles(cams.P_normalized if normalized else cams.P)
        for i, j in itertools.permutations(range(4), 2):
            e_i, e_j = epipoles(F[i, j])
            assert (F[i, j] @ e_i).abs().max() < 1e-12
            assert (F[i, j].T @ e_j).abs().max() < 1e-12
            torch.testing.assert_close(e_i.norm(), torch.tensor(1.0, dtype=F64))
            C = cams.centers
            pi = cams.select(i).project(C[j], normalized=normalized)[0]  # camera j's centre seen in view i
            pj = cams.select(j).project(C[i], normalized=normalized)[0]
            torch.testing.assert_close(e_i[:2] / e_i[2], pi, rtol=1e-8, atol=1e-8)
            torch.testing.assert_close(e_j[:2] / e_j[2], pj, rtol=1e-8, atol=1e-8)
            torch.testing.assert_close(E[i, j][:2] / E[i, j][2], pj, rtol=1e-8, atol=1e-8)
            # every epipolar line in view j passes through e_j
            x = torch.rand(5, 2, dtype=F64)
            assert point_line_distance(e_j[:2] / e_j[2], epipolar_lines(x, F[i, j])).max() < 1e-6
        assert (E[torch.arange(4), torch.arange(4)] == 0).all()


def test_epipole_orientation_and_centers(scene):
    cams = scene(3, (2,))
    C = camera_centers_homogeneous(cams.P)
    assert (C[..., 3] > 0).all()
    torch.testing.assert_close(C[..., :3] / C[..., 3:], cams.centers)
    F = fundamental_from_cameras(cams)
    e_i, e_j = epipoles(F)
    assert e_i.shape == (2, 3, 3, 3)
    off = ~torch.eye(3, dtype=torch.bool)
    assert (e_i[:, off][..., 2] >= 0).all() and (e_j[:, off][..., 2] >= 0).all()
    assert (e_i[:, ~off] == 0).all()  # zero F on the diagonal -> zero epipole, no NaN


def test_ring_opposite_cameras_epipole_at_principal_point():
    cams = ring_cameras(6)
    F = fundamental_from_cameras(cams, normalized=True)
    e_i, e_j = epipoles(F[0, 3])
    torch.testing.assert_close(e_j[:2] / e_j[2], torch.zeros(2, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(e_i[:2] / e_i[2], torch.zeros(2, dtype=F64), rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------ lines and distances
def test_epipolar_lines_normalized_and_pass_through_match(scene, points):
    cams = scene(3)
    F = fundamental_from_cameras(cams)
    x = cams.project(points((30,)))
    lines = epipolar_lines(x[0], F[0, 2])
    assert lines.shape == (30, 3)
    torch.testing.assert_close(lines[:, :2].norm(dim=-1), torch.ones(30, dtype=F64))
    a, b = lines[:, 0], lines[:, 1]
    assert ((a > 0) | ((a == 0) & (b > 0))).all()
    assert point_line_distance(x[2], lines).max() < 1e-7  # pixels
    raw = epipolar_lines(x[0], F[0, 2], normalize=False)
    torch.testing.assert_close(raw, (F[0, 2] @ hom(x[0])[..., None])[..., 0])
    torch.testing.assert_close(torch.linalg.cross(raw, lines, dim=-1), torch.zeros(30, 3, dtype=F64))


def test_normalize_lines_sign_rule_and_fallback(seed):
    lines = torch.randn(20, 3, dtype=F64)
    lines[0, 0] = 0.0
    lines[0, 1] = -2.0
    lines[1, :2] = 0.0  # degenerate
    out = normalize_lines(lines)
    torch.testing.assert_close(out[2:, :2].norm(dim=-1), torch.ones(18, dtype=F64))
    assert (out[2:, 0] > 0).all()
    torch.testing.assert_close(
        out[0], torch.stack([torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64), -lines[0, 2] / 2])
    )
    torch.testing.assert_close(out[1], torch.tensor([1.0, 0.0, 0.0], dtype=F64))
    torch.testing.assert_close(torch.linalg.cross(out[2:], lines[2:], dim=-1), torch.zeros(18, 3, dtype=F64))


def test_distances_zero_for_consistent_projections(scene, points):
    cams = scene(4, (2,))
    F = fundamental_from_cameras(cams, normalized=True)
    x = cams.project(points((2, 10, 7)), normalized=True)  # (2, V, T, J, 2)
    pairs = all_pairs(4)
    xi, xj = x[:, pairs[:, 0]], x[:, pairs[:, 1]]  # (2, P, T, J, 2)
    Fij = F[:, pairs[:, 0], pairs[:, 1]][:, :, None, None]  # (2, P, 1, 1, 3, 3)
    sym = symmetric_epipolar_distance(xi, xj, Fij)
    sam = sampson_distance(xi, xj, Fij)
    assert sym.shape == sam.shape == (2, 6, 10, 7)
    assert sym.max() < 1e-9 and sam.max() < 1e-9


def test_distances_grow_with_noise(scene, points):
    cams = scene(3)
    F = fundamental_from_cameras(cams)
    x = cams.project(points((400,)))
    means_sym, means_sam = [], []
    for sigma in (0.5, 2.0, 8.0):
        gen = torch.Generator().manual_seed(1)
        xj = x[1] + sigma * torch.randn(x[1].shape, generator=gen, dtype=F64)
        d_sym = symmetric_epipolar_distance(x[0], xj, F[0, 1])
        d_sam = sampson_distance(x[0], xj, F[0, 1])
        assert (d_sym > 0).all() and (d_sam > 0).all()
        means_sym.append(float(d_sym.mean()))
        means_sam.append(float(d_sam.mean()))
        # isotropic pixel noise on x_j: its distance to the exact line F x~_i is |n . noise|, half-normal
        # with mean sigma * sqrt(2 / pi) = 0.80 sigma (400 samples: standard error 0.03 sigma)
        d_j = point_line_distance(xj, epipolar_lines(x[0], F[0, 1])).mean()
        assert 0.68 * sigma < float(d_j) < 0.92 * sigma
    assert means_sym[0] < means_sym[1] < means_sym[2]
    assert means_sam[0] < means_sam[1] < means_sam[2]


def test_distances_match_numpy_loop(scene, points, seed):
    cams = scene(2)
    F = fundamental_from_cameras(cams)[0, 1]
    x = cams.project(points((25,)))
    xi, xj = x[0], x[1] + 3.0 * torch.randn(25, 2, dtype=F64)
    sym = symmetric_epipolar_distance(xi, xj, F, eps=0.0).numpy()
    sam = sampson_distance(xi, xj, F, eps=0.0).numpy()
    pld = point_line_distance(xj, epipolar_lines(xi, F, normalize=False), eps=0.0).numpy()
    Fn, a, b = F.numpy(), xi.numpy(), xj.numpy()
    for n in range(25):
        pa, pb = np.append(a[n], 1.0), np.append(b[n], 1.0)
        lj, li = Fn @ pa, Fn.T @ pb
        dj = abs(lj @ pb) / np.hypot(lj[0], lj[1])
        di = abs(li @ pa) / np.hypot(li[0], li[1])
        # atol: a noisy point can land next to its line, where |r| cancels (pixels)
        np.testing.assert_allclose(sym[n], 0.5 * (dj + di), rtol=1e-10, atol=1e-9)
        np.testing.assert_allclose(pld[n], dj, rtol=1e-10, atol=1e-9)
        ref_sam = abs(pb @ Fn @ pa) / np.sqrt(lj[0] ** 2 + lj[1] ** 2 + li[0] ** 2 + li[1] ** 2)
        np.testing.assert_allclose(sam[n], ref_sam, rtol=1e-10, atol=1e-9)


def test_distance_is_symmetric_in_views(scene, points, seed):
    cams = scene(2)
    F = fundamental_from_cameras(cams)
    x = cams.project(points((8,))) + torch.randn(2, 8, 2, dtype=F64)
    torch.testing.assert_close(
        symmetric_epipolar_distance(x[0], x[1], F[0, 1]), symmetric_epipolar_distance(x[1], x[0], F[1, 0])
    )
    torch.testing.assert_close(sampson_distance(x[0], x[1], F[0, 1]), sampson_distance(x[1], x[0], F[1, 0]))


# ------------------------------------------------------------------------------------ gradients
def test_gradcheck_fundamental(seed):
    cams = ring_cameras(3, start_azimuth=0.3, look_at=(0.1, 1.0, 0.2), height=1.4)
    P = cams.P_normalized.clone().requires_grad_()
    assert torch.autograd.gradcheck(fundamental_matrices, (P,))
    Pp = (cams.P / 1000.0).clone().requires_grad_()
    assert torch.autograd.gradcheck(fundamental_matrices, (Pp,))


def test_gradcheck_distances(scene, points):
    cams = scene(2)
    F = fundamental_from_cameras(cams, normalized=True)[0, 1].clone().requires_grad_()
    x = cams.project(points((6,)), normalized=True)
    xi = x[0].clone().requires_grad_()
    xj = (x[1] + 0.05 * torch.randn(6, 2, dtype=F64)).requires_grad_()
    assert torch.autograd.gradcheck(symmetric_epipolar_distance, (xi, xj, F))
    assert torch.autograd.gradcheck(sampson_distance, (xi, xj, F))
    assert torch.autograd.gradcheck(lambda x, F: epipolar_lines(x, F), (xi, F))


def test_gradient_through_cameras_to_distance(seed):
    start = torch.tensor(0.2, dtype=F64, requires_grad=True)
    x = torch.rand(2, 5, 2, dtype=F64) * 2 - 1

    def loss(start):
        F = fundamental_from_cameras(ring_cameras(4, start_azimuth=start), normalized=True)
        return symmetric_epipolar_distance(x[0], x[1], F[0, 1])

    assert torch.autograd.gradcheck(loss, (start,))


# ------------------------------------------------------------------------------------ pairs
def test_all_pairs():
    for V in (0, 1, 2, 6, 7):
        expected = list(itertools.combinations(range(V), 2))
        got = all_pairs(V)
        assert got.dtype == torch.long and got.shape == (len(expected), 2)
        assert [tuple(p) for p in got.tolist()] == expected
    assert all_pairs(6).shape == (15, 2)


def test_ring_pairs():
    def reference(V: int, input_view: int) -> list[tuple[int, int]]:
        pairs = set()
        for i in range(V):
            for a, b in ((i, (i + 1) % V), (input_view, i)):
                if a != b:
                    pairs.add((min(a, b), max(a, b)))
        return sorted(pairs)

    for V in (1, 2, 3, 4, 6, 9):
        for input_view in range(V):
            assert [tuple(p) for p in ring_pairs(V, input_view).tolist()] == reference(V, input_view)
    six = [tuple(p) for p in ring_pairs(6).tolist()]
    assert six == [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 2), (2, 3), (3, 4), (4, 5)]
    with pytest.raises(ValueError, match="input_view"):
        ring_pairs(4, 4)


def test_default_ring_intrinsics_in_fundamental():
    # F in pixels of a ring with the default K relates to the normalized one through N
    cams = ring_cameras(3)
    torch.testing.assert_close(cams.K[0], intrinsics(1000.0))
    Fp = fundamental_from_cameras(cams)
    Fn = fundamental_from_cameras(cams, normalized=True)
    N = cams.normalization
    back = N.T @ Fn[0, 1] @ N
    back = back / back.norm()
    torch.testing.assert_close((back * Fp[0, 1]).sum().abs(), torch.tensor(1.0, dtype=F64))
