"""Cameras: normalized frame, intrinsics, look-at, rings, projection, back-projection, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mvlift.geometry import (
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

F64 = torch.float64


# ------------------------------------------------------------------------------------ normalized frame
def test_normalized_pixel_maps_are_inverse(seed):
    size = (1920, 1080)
    uv = torch.rand(7, 5, 2, dtype=F64) * torch.tensor([1920.0, 1080.0], dtype=F64)
    xy = pixels_to_normalized(uv, size)
    torch.testing.assert_close(normalized_to_pixels(xy, size), uv, rtol=0, atol=1e-9)
    xy2 = torch.rand(11, 2, dtype=F64) * 4 - 2
    torch.testing.assert_close(
        pixels_to_normalized(normalized_to_pixels(xy2, size), size), xy2, rtol=0, atol=1e-12
    )
    # corners and centre, per the conventions doc (x_n = 2u/W - 1, y_n = 2v/H - 1)
    corners = torch.tensor([[0.0, 0.0], [1920.0, 1080.0], [960.0, 540.0], [480.0, 810.0]], dtype=F64)
    expected = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0], [-0.5, 0.5]], dtype=F64)
    torch.testing.assert_close(pixels_to_normalized(corners, size), expected)


def test_normalization_matrix_matches_point_map(seed):
    size = (640, 480)
    N = normalization_matrix(size)
    uv = torch.rand(9, 2, dtype=F64) * 640
    uvh = torch.cat([uv, torch.ones(9, 1, dtype=F64)], dim=-1)
    torch.testing.assert_close((uvh @ N.T)[:, :2], pixels_to_normalized(uv, size))
    torch.testing.assert_close((uvh @ N.T)[:, 2], torch.ones(9, dtype=F64))


def test_image_size_validation():
    with pytest.raises(ValueError, match="image_size"):
        normalization_matrix((0, 10))
    with pytest.raises(TypeError, match="image_size"):
        pixels_to_normalized(torch.zeros(1, 2), "big")
    with pytest.raises(ValueError, match=r"uv must have shape \(\.\.\., 2\)"):
        pixels_to_normalized(torch.zeros(3, 3))


# ------------------------------------------------------------------------------------ intrinsics / look-at
def test_intrinsics_layout_and_batching(seed):
    K = intrinsics(1000.0)
    assert K.dtype == F64 and K.shape == (3, 3)
    torch.testing.assert_close(
        K, torch.tensor([[1000.0, 0, 960], [0, 1000, 540], [0, 0, 1]], dtype=F64), rtol=0, atol=0
    )
    f = 500 + 1000 * torch.rand(4, 2)
    Kb = intrinsics(f, (640, 480))
    assert Kb.shape == (4, 2, 3, 3) and Kb.dtype == torch.float32
    torch.testing.assert_close(Kb[..., 0, 0], f)
    torch.testing.assert_close(Kb[..., 1, 1], f)
    torch.testing.assert_close(Kb[..., :2, 2], torch.tensor([320.0, 240.0]).expand(4, 2, 2))


def test_look_at_axes(seed):
    # canonical: a camera on +Z looking at the origin sees world +X to the right and world +Y up (image -y)
    R, t = look_at(torch.tensor([0.0, 0.0, 5.0], dtype=F64), torch.zeros(3, dtype=F64))
    torch.testing.assert_close(R, torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=F64)))
    torch.testing.assert_close(t, torch.tensor([0.0, 0.0, 5.0], dtype=F64))

    eye = torch.randn(10, 3, dtype=F64) * 3
    target = torch.randn(10, 3, dtype=F64)
    R, t = look_at(eye, target)
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3, dtype=F64).expand(10, 3, 3))
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(10, dtype=F64))
    Xc = (R @ target[..., None])[..., 0] + t  # the target in camera coordinates: on the +z axis
    torch.testing.assert_close(Xc[:, :2], torch.zeros(10, 2, dtype=F64), rtol=0, atol=1e-12)
    assert (Xc[:, 2] > 0).all()
    torch.testing.assert_close(Xc[:, 2], (target - eye).norm(dim=-1))
    torch.testing.assert_close(-(R.transpose(-1, -2) @ t[..., None])[..., 0], eye)  # centre
    assert (R[:, 1, 1] < 0).all()  # image y axis points down (world up projects to -y)
    assert R[:, 0, 1].abs().max() < 1e-12  # x axis horizontal: no roll


def test_look_at_degenerate():
    with pytest.raises(ValueError, match="coincide"):
        look_at(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="parallel to up"):
        look_at(torch.tensor([0.0, 5.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match=r"eye must have shape"):
        look_at(torch.zeros(2), torch.ones(3))


# ------------------------------------------------------------------------------------ rings
@pytest.mark.parametrize("num_views", [1, 4, 6, 7])
def test_ring_layout(num_views, seed):
    start = float(torch.rand(()) * 2 * math.pi)
    target = torch.tensor([0.3, 0.9, -0.2], dtype=F64)
    cams = ring_cameras(num_views, radius=3.0, start_azimuth=start, look_at=target)
    assert cams.num_views == num_views and cams.batch_shape == () and cams.dtype == F64
    rel = cams.centers - target
    torch.testing.assert_close(rel.norm(dim=-1), torch.full((num_views,), 3.0, dtype=F64))
    torch.testing.assert_close(rel[:, 1], torch.zeros(num_views, dtype=F64), rtol=0, atol=1e-12)
    az = torch.atan2(rel[:, 0], rel[:, 2])  # azimuth convention: offset (r sin az, h, r cos az)
    expected = start + torch.arange(num_views, dtype=F64) * 2 * math.pi / num_views
    diff = torch.remainder(az - expected + math.pi, 2 * math.pi) - math.pi
    torch.testing.assert_close(diff, torch.zeros_like(diff), rtol=0, atol=1e-12)
    # every camera looks at the target: it projects to the principal point, in front
    torch.testing.assert_close(
        cams.project(target), torch.tensor([960.0, 540.0], dtype=F64).expand(num_views, 2)
    )
    torch.testing.assert_close(cams.project(target, normalized=True), torch.zeros(num_views, 2, dtype=F64))
    torch.testing.assert_close(cams.depth(target), torch.full((num_views,), 3.0, dtype=F64))
    torch.testing.assert_close(cams.K, intrinsics(1000.0).expand(num_views, 3, 3))


def test_ring_azimuth_convention():
    # azimuth 0: on +Z of the look-at point; azimuth pi/2: on +X (counter-clockwise seen from +Y)
    cams = ring_cameras(4, radius=2.0, look_at=(0.0, 1.0, 0.0))
    expected = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [0.0, 1.0, -2.0], [-2.0, 1.0, 0.0]], dtype=F64)
    torch.testing.assert_close(cams.centers, expected, rtol=0, atol=1e-12)


def test_ring_height_and_elevation(seed):
    target = torch.tensor([0.0, 0.9, 0.0], dtype=F64)
    cams = ring_cameras(5, radius=3.0, height=1.6, look_at=target)
    torch.testing.assert_close(cams.centers[:, 1], torch.full((5,), 1.6, dtype=F64))
    torch.testing.assert_close(cams.centers[:, [0, 2]].norm(dim=-1), torch.full((5,), 3.0, dtype=F64))
    torch.testing.assert_close(cams.project(target, normalized=True), torch.zeros(5, 2, dtype=F64))

    el = 0.3
    cams = ring_cameras(5, radius=3.0, elevation=el, look_at=target)
    rel = cams.centers - target
    torch.testing.assert_close(rel.norm(dim=-1), torch.full((5,), 3.0, dtype=F64))
    torch.testing.assert_close(rel[:, 1], torch.full((5,), 3.0 * math.sin(el), dtype=F64))
    torch.testing.assert_close(cams.project(target, normalized=True), torch.zeros(5, 2, dtype=F64))
    with pytest.raises(ValueError, match="either height"):
        ring_cameras(5, height=1.0, elevation=0.2)
    with pytest.raises(ValueError, match="num_views"):
        ring_cameras(0)


def test_ring_batched_matches_unbatched(seed):
    B, V = 3, 6
    start = torch.rand(B, dtype=F64) * 2 * math.pi
    target = torch.randn(B, 3, dtype=F64)
    cams = ring_cameras(
        V, start_azimuth=start, look_at=target, focal=torch.tensor([800.0, 1000.0, 1200.0], dtype=F64)
    )
    assert cams.batch_shape == (B,) and cams.num_views == V
    assert cams.P.shape == (B, V, 3, 4) and cams.centers.shape == (B, V, 3)
    for b in range(B):
        single = ring_cameras(
            V, start_azimuth=float(start[b]), look_at=target[b], focal=[800.0, 1000.0, 1200.0][b]
        )
        torch.testing.assert_close(cams.P[b], single.P)
        torch.testing.assert_close(cams[b].R, single.R)


# ------------------------------------------------------------------------------------ projection
def test_project_backproject_roundtrip_float64(scene, points):
    cams = scene(5)
    X = points((17,))
    uv = cams.project(X)  # (V, N, 2)
    z = cams.depth(X)  # (V, N)
    assert (z > 0).all()
    back = backproject(uv, z, cams.K[:, None], cams.R[:, None], cams.t[:, None])
    torch.testing.assert_close(back, X.expand(5, 17, 3), rtol=0, atol=1e-9)
    # normalized pixels with N @ K
    xy = cams.project(X, normalized=True)
    back_n = backproject(xy, z, cams.K_normalized[:, None], cams.R[:, None], cams.t[:, None])
    torch.testing.assert_close(back_n, X.expand(5, 17, 3), rtol=0, atol=1e-9)


def test_project_matches_numpy_loop(scene, points):
    cams = scene(3, (2,))
    X = points((2, 4, 5))
    uv = cams.project(X)
    assert uv.shape == (2, 3, 4, 5, 2)
    K, R, t, Xn = cams.K.numpy(), cams.R.numpy(), cams.t.numpy(), X.numpy()
    ref = np.empty((2, 3, 4, 5, 2))
    for b in range(2):
        for v in range(3):
            for i in range(4):
                for j in range(5):
                    xc = R[b, v] @ Xn[b, i, j] + t[b, v]
                    p = K[b, v] @ xc
                    ref[b, v, i, j] = p[:2] / p[2]
    np.testing.assert_allclose(uv.numpy(), ref, rtol=1e-12, atol=1e-9)


def test_project_broadcasting_rule(scene, points):
    B, V, T, J = 2, 4, 3, 5
    cams = scene(V, (B,))
    X = points((B, T, J))
    uv = cams.project(X)
    assert uv.shape == (B, V, T, J, 2)
    assert cams.depth(X).shape == (B, V, T, J)
    # the plain helper with explicit broadcasting agrees
    ref = project(X[:, None], cams.P[:, :, None, None])
    torch.testing.assert_close(uv, ref)
    # camera batch broadcasts against X's leading dim of size 1
    torch.testing.assert_close(cams.project(X[:1]), project(X[:1, None], cams.P[:, :, None, None]))
    # unbatched cameras: every leading dim of X is a point dim
    single = cams[0]
    assert single.project(X[0]).shape == (V, T, J, 2)
    assert single.project(X).shape == (V, B, T, J, 2)
    torch.testing.assert_close(single.project(X)[:, 0], uv[0])
    # one point
    assert single.project(X[0, 0, 0]).shape == (V, 2)
    with pytest.raises(ValueError, match="do not broadcast"):
        cams.project(points((3, T, J)))
    with pytest.raises(ValueError, match=r"X must have shape"):
        cams.project(X[..., :2])


def test_normalized_projection_consistent(scene, points):
    cams = scene(4, (3,))
    X = points((3, 6))
    torch.testing.assert_close(
        cams.project(X, normalized=True), pixels_to_normalized(cams.project(X), cams.image_size)
    )
    torch.testing.assert_close(cams.P_normalized, normalization_matrix(cams.image_size) @ cams.P)
    uv_n, w = project_with_depth(X[:, None], cams.P_normalized[:, :, None])
    torch.testing.assert_close(uv_n, cams.project(X, normalized=True))
    torch.testing.assert_close(w, cams.depth(X))  # K's last row is (0, 0, 1): w is the depth


def test_centers_project_to_nothing(scene):
    cams = scene(4)
    C = torch.cat([cams.centers, torch.ones(4, 1, dtype=F64)], dim=-1)
    residual = (cams.P @ C[..., None])[..., 0]
    assert residual.abs().max() < 1e-9 * cams.P.abs().max()


def test_float32(scene, points):
    cams64 = scene(4, (2,))
    X64 = points((2, 7))
    cams32 = cams64.to(torch.float32)
    assert cams32.dtype == torch.float32 and cams32.P.dtype == torch.float32
    uv32 = cams32.project(X64.float())
    torch.testing.assert_close(uv32.double(), cams64.project(X64), rtol=1e-5, atol=1e-3)
    K = intrinsics(1000.0, dtype=torch.float32)
    assert K.dtype == torch.float32
    rc = ring_cameras(6, dtype=torch.float32)
    assert rc.P.dtype == torch.float32


def test_gradcheck_projection(seed):
    cams = ring_cameras(3, start_azimuth=0.4)
    X = (torch.tensor([0.0, 1.0, 0.0], dtype=F64) + 0.3 * torch.randn(2, 3, dtype=F64)).requires_grad_()
    K = cams.K.clone().requires_grad_()
    R = cams.R.clone().requires_grad_()
    t = cams.t.clone().requires_grad_()

    def fn(X, K, R, t):
        return Cameras(K, R, t, cams.image_size).project(X, normalized=True)

    assert torch.autograd.gradcheck(fn, (X, K, R, t))
    P = cams.P.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda X, P: project(X[None], P[:, None]), (X, P))
    uv = cams.project(X.detach()).requires_grad_()
    z = cams.depth(X.detach()).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda uv, z: backproject(uv, z, K[:, None], R[:, None], t[:, None]), (uv, z)
    )


def test_ring_gradients_flow_to_inputs(seed):
    start = torch.rand(2, dtype=F64).requires_grad_()
    target = torch.randn(2, 3, dtype=F64).requires_grad_()
    X = 0.3 * torch.randn(2, 4, 3, dtype=F64)  # well inside the 3 m ring: no point near a camera plane

    def fn(start, target):
        return ring_cameras(3, start_azimuth=start, look_at=target).project(X + target[:, None])

    assert torch.autograd.gradcheck(fn, (start, target))


# ------------------------------------------------------------------------------------ validation
def test_singular_K_raises():
    K = intrinsics(1000.0).clone()
    K[1] = K[0]  # two equal rows
    R = torch.eye(3, dtype=F64)[None]
    t = torch.tensor([[0.0, 0.0, 3.0]], dtype=F64)
    with pytest.raises(ValueError, match="singular"):
        Cameras(K[None], R, t)
    with pytest.raises(ValueError, match="singular"):
        Cameras(intrinsics(torch.tensor([1000.0, 0.0], dtype=F64)), R.expand(2, 3, 3), t.expand(2, 3))


def test_camera_shape_and_dtype_validation():
    K = intrinsics(1000.0)[None]
    R = torch.eye(3, dtype=F64)[None]
    t = torch.tensor([[0.0, 0.0, 3.0]], dtype=F64)
    with pytest.raises(ValueError, match=r"R must have shape"):
        Cameras(K, R[..., :2], t)
    with pytest.raises(ValueError, match=r"t must have shape"):
        Cameras(K, R, t[..., :2])
    with pytest.raises(ValueError, match="must broadcast"):
        Cameras(K.expand(2, 3, 3), R.expand(3, 3, 3), t)
    with pytest.raises(TypeError, match="one dtype"):
        Cameras(K.float(), R, t)
    with pytest.raises(TypeError, match="dtype/device"):
        Cameras(K, R, t).project(torch.zeros(3, dtype=torch.float32))
    cams = Cameras(K, R, t)  # K broadcasts when batch dims broadcast
    assert Cameras(intrinsics(1000.0), R.expand(4, 3, 3), t.expand(4, 3)).K.shape == (4, 3, 3)
    assert cams.num_views == 1


def test_select_getitem_to(scene):
    cams = scene(5, (3,))
    sub = cams.select([4, 1])
    assert sub.num_views == 2 and sub.batch_shape == (3,)
    torch.testing.assert_close(sub.P, cams.P[:, [4, 1]])
    assert cams.select(2).num_views == 1
    torch.testing.assert_close(cams.select(-1).R, cams.R[:, 4:5])
    with pytest.raises(IndexError):
        cams.select(5)
    one = cams[1]
    assert one.batch_shape == () and one.num_views == 5
    torch.testing.assert_close(one.P, cams.P[1])
    assert cams[0:2].batch_shape == (2,)
    with pytest.raises(IndexError):
        cams[0, 1]
    assert len(cams) == 3
    assert cams.to(torch.float32).dtype == torch.float32


# ------------------------------------------------------------------------------------ random cameras
def test_random_cameras(seed):
    g = torch.Generator().manual_seed(seed)
    kw = dict(
        elevation_range=(-0.2, 0.4),
        distance_range=(2.0, 5.0),
        focal_range=(700.0, 1300.0),
        target=(0.1, 0.9, -0.3),
    )
    cams = random_cameras(64, generator=g, **kw)
    again = random_cameras(64, generator=torch.Generator().manual_seed(seed), **kw)
    torch.testing.assert_close(cams.P, again.P, rtol=0, atol=0)
    assert cams.batch_shape == (64,) and cams.num_views == 1
    target = torch.tensor([0.1, 0.9, -0.3], dtype=F64)
    rel = cams.centers[:, 0] - target
    d = rel.norm(dim=-1)
    assert (d >= 2.0 - 1e-9).all() and (d <= 5.0 + 1e-9).all()
    el = torch.asin(rel[:, 1] / d)
    assert (el >= -0.2 - 1e-9).all() and (el <= 0.4 + 1e-9).all()
    f = cams.K[:, 0, 0, 0]
    assert (f >= 700).all() and (f <= 1300).all() and f.std() > 50
    torch.testing.assert_close(
        cams.project(target.expand(64, 3)), torch.tensor([960.0, 540.0], dtype=F64).expand(64, 1, 2)
    )
    X = target + 0.2 * torch.randn(64, 10, 4, 3, dtype=F64)
    assert cams.project(X).shape == (64, 1, 10, 4, 2)
    with pytest.raises(ValueError, match="distance_range"):
        random_cameras(2, distance_range=(4.0, 3.0))
