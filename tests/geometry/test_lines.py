"""Stage-1 line conditions, stage-2 epipolar line conditions and virtual epipole sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mvlift.geometry import (
    epipolar_line_conditions,
    epipolar_lines,
    fundamental_from_cameras,
    line_conditions,
    point_line_distance,
    ring_cameras,
    ring_epipoles,
    sample_virtual_epipoles,
)

F64 = torch.float64


def assert_normalized(lines: torch.Tensor, tol: float = 1e-12) -> None:
    a, b = lines[..., 0], lines[..., 1]
    torch.testing.assert_close(a * a + b * b, torch.ones_like(a), rtol=0, atol=tol)
    assert ((a > 0) | ((a == 0) & (b > 0))).all()


# ------------------------------------------------------------------------------------ line_conditions
def test_line_conditions_through_joint_and_epipole(seed):
    B, T, J = 3, 5, 7
    x = torch.rand(B, T, J, 2, dtype=F64) * 2 - 1
    e = torch.randn(B, 2, dtype=F64) * 3
    lines = line_conditions(x, e)
    assert lines.shape == (B, T, J, 3)
    assert_normalized(lines)
    assert point_line_distance(x, lines).max() < 1e-12
    assert point_line_distance(e[:, None, None].expand(B, T, J, 2), lines).max() < 1e-12
    # the paper's formula, scaled: (y - vy, vx - x, x vy - vx y) is parallel to the result
    vx, vy = e[:, None, None, 0], e[:, None, None, 1]
    raw = torch.stack([x[..., 1] - vy, vx - x[..., 0], x[..., 0] * vy - vx * x[..., 1]], dim=-1)
    torch.testing.assert_close(
        torch.linalg.cross(raw, lines, dim=-1), torch.zeros_like(raw), rtol=0, atol=1e-12
    )


def test_line_conditions_match_numpy_loop(seed):
    x = torch.rand(4, 3, 2, dtype=F64) * 2 - 1
    e = torch.randn(2, dtype=F64)
    got = line_conditions(x, e).numpy()
    xn, (vx, vy) = x.numpy(), e.numpy()
    for t in range(4):
        for j in range(3):
            px, py = xn[t, j]
            a, b, c = py - vy, vx - px, px * vy - vx * py
            n = math.hypot(a, b)
            s = 1.0 if (a > 0 or (a == 0 and b > 0)) else -1.0
            np.testing.assert_allclose(got[t, j], s * np.array([a, b, c]) / n, rtol=1e-12, atol=1e-14)


def test_line_conditions_sign_rule_edge_cases():
    # a == 0: horizontal line, b must be positive; both orders of joint / epipole
    x = torch.tensor([[[0.2, 0.5], [-0.4, 0.5]]], dtype=F64)  # (T=1, J=2, 2)
    e = torch.tensor([0.0, 0.5], dtype=F64)
    lines = line_conditions(x, e)
    torch.testing.assert_close(lines[0, :, :2], torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=F64))
    torch.testing.assert_close(lines[0, :, 2], torch.tensor([-0.5, -0.5], dtype=F64))
    # vertical line: a > 0
    lines = line_conditions(torch.tensor([[[0.3, -0.9]]], dtype=F64), torch.tensor([0.3, 2.0], dtype=F64))
    torch.testing.assert_close(lines[0, 0], torch.tensor([1.0, 0.0, -0.3], dtype=F64))


def test_line_conditions_homogeneous_epipole(seed):
    x = torch.rand(2, 6, 5, 2, dtype=F64) * 2 - 1
    e = torch.randn(2, 2, dtype=F64)
    w = 0.5 + torch.rand(2, 1, dtype=F64)
    torch.testing.assert_close(line_conditions(x, torch.cat([e * w, w], -1)), line_conditions(x, e))
    # epipole at infinity: all lines parallel to the direction (dx, dy)
    d = torch.randn(2, 2, dtype=F64)
    lines = line_conditions(x, torch.cat([d, torch.zeros(2, 1, dtype=F64)], -1))
    assert_normalized(lines)
    along = (lines[..., :2] * d[:, None, None]).sum(-1)
    assert along.abs().max() < 1e-12
    assert point_line_distance(x, lines).max() < 1e-12


def test_line_conditions_joint_at_epipole_fallback():
    x = torch.tensor([[[0.25, -0.5], [0.1, 0.7]]], dtype=F64, requires_grad=True)
    e = torch.tensor([0.25, -0.5], dtype=F64, requires_grad=True)
    lines = line_conditions(x, e)
    torch.testing.assert_close(lines[0, 0], torch.tensor([1.0, 0.0, -0.25], dtype=F64))
    assert torch.isfinite(lines).all()
    lines.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(e.grad).all()
    # float32 too
    lines32 = line_conditions(x.detach().float(), e.detach().float())
    assert torch.isfinite(lines32).all()
    torch.testing.assert_close(lines32[0, 0], torch.tensor([1.0, 0.0, -0.25]))


def test_line_conditions_float32(seed):
    x = torch.rand(2, 30, 18, 2, dtype=F64) * 2 - 1
    e = torch.randn(2, 2, dtype=F64) * 3
    ref = line_conditions(x, e)
    got = line_conditions(x.float(), e.float())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-5)


def test_line_conditions_validation():
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., T, J, 2\)"):
        line_conditions(torch.zeros(5, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="epipole must be"):
        line_conditions(torch.zeros(1, 5, 2), torch.zeros(4))
    with pytest.raises(TypeError, match="dtype/device"):
        line_conditions(torch.zeros(1, 5, 2), torch.zeros(2, dtype=F64))


def test_gradcheck_line_conditions(seed):
    x = (torch.rand(2, 3, 4, 2, dtype=F64) * 2 - 1).requires_grad_()
    e = (torch.randn(2, 2, dtype=F64) * 2).requires_grad_()
    assert torch.autograd.gradcheck(line_conditions, (x, e))
    eh = torch.randn(2, 3, dtype=F64).requires_grad_()
    assert torch.autograd.gradcheck(line_conditions, (x, eh))


# ------------------------------------------------------------------------------------ epipolar conditions
def test_epipolar_line_conditions_consistent_views(seed):
    B, V, T, J = 2, 4, 6, 5
    cams = ring_cameras(V, start_azimuth=torch.rand(B, dtype=F64) * 6.3)
    F = fundamental_from_cameras(cams, normalized=True)  # (B, V, V, 3, 3)
    X = torch.tensor([0.0, 1.0, 0.0], dtype=F64) + 0.4 * (torch.rand(B, T, J, 3, dtype=F64) - 0.5)
    x = cams.project(X, normalized=True)  # (B, V, T, J, 2)
    for v in range(1, V):
        lines = epipolar_line_conditions(x[:, 0], F[:, 0, v])
        assert lines.shape == (B, T, J, 3)
        assert_normalized(lines)
        assert point_line_distance(x[:, v], lines).max() < 1e-10
        torch.testing.assert_close(lines, epipolar_lines(x[:, 0], F[:, 0, v, None, None]))
    # all pass through the input camera's epipole in the target view
    C0 = cams.centers[:, 0]  # (B, 3)
    e = cams.select(2).project(C0, normalized=True)[:, 0]  # (B, 2)
    lines = epipolar_line_conditions(x[:, 0], F[:, 0, 2])
    assert point_line_distance(e[:, None, None].expand(B, T, J, 2), lines).max() < 1e-10
    # for a real epipole they agree with line_conditions (same line, same sign rule)
    torch.testing.assert_close(lines, line_conditions(x[:, 2], e), rtol=0, atol=1e-9)


def test_epipolar_line_conditions_fallback_and_grad(seed):
    F = torch.randn(3, 3, dtype=F64)
    F[:, 2] = 0.0  # F @ (0, 0, 1) = 0 exactly: the reference view's epipole is the origin
    x = torch.rand(1, 3, 2, dtype=F64) * 2 - 1
    x[0, 0] = 0.0  # exactly at the reference view's epipole: F x~ = 0
    lines = epipolar_line_conditions(x, F)
    torch.testing.assert_close(lines[0, 0], torch.tensor([1.0, 0.0, 0.0], dtype=F64))
    assert torch.isfinite(lines).all()
    xr = (torch.rand(2, 3, 2, dtype=F64) * 2 - 1).requires_grad_()
    Fr = fundamental_from_cameras(ring_cameras(3), normalized=True)[0, 1].clone().requires_grad_()
    assert torch.autograd.gradcheck(epipolar_line_conditions, (xr, Fr))
    with pytest.raises(ValueError, match="F_ref_to_view"):
        epipolar_line_conditions(xr, Fr[:2])


# ------------------------------------------------------------------------------------ virtual epipoles
def test_ring_epipoles_are_projected_camera_centres():
    table = ring_epipoles(30)
    assert table.shape == (29, 2) and torch.isfinite(table).all()
    cams = ring_cameras(30)
    C0 = cams.centers[0]
    expected = cams.project(C0, normalized=True)[1:]  # camera 0 seen in camera k
    torch.testing.assert_close(table, expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(table[:, 1], torch.zeros(29, dtype=F64), rtol=0, atol=1e-9)  # horizontal ring
    torch.testing.assert_close(table[14], torch.zeros(2, dtype=F64), rtol=0, atol=1e-9)  # 180 degrees apart
    torch.testing.assert_close(table[:, 0], -table.flip(0)[:, 0], rtol=0, atol=1e-9)  # mirror symmetry
    # adjacent cameras (12 degrees): the epipole is far outside the image, f tan(84 deg) pixels from centre
    torch.testing.assert_close(
        table[0, 0].abs(), torch.tensor(1000.0 * math.tan(math.radians(84)) / 960, dtype=F64)
    )
    with pytest.raises(ValueError, match="ring_views"):
        ring_epipoles(1)


def test_sample_virtual_epipoles(seed):
    g = torch.Generator().manual_seed(seed)
    e = sample_virtual_epipoles(2000, generator=g)
    assert e.shape == (2000, 2) and e.dtype == F64 and torch.isfinite(e).all()
    again = sample_virtual_epipoles(2000, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(e, again)
    table = ring_epipoles(30)
    from_ring = (e[:, None] - table[None]).abs().amax(-1).amin(-1) < 1e-12
    frac = from_ring.float().mean().item()
    assert 0.44 < frac < 0.56  # p_ring = 0.5, 2000 draws: 5.4 standard deviations
    assert (e[~from_ring].abs() <= 3.0).all()
    assert e[~from_ring].abs().max() > 2.5  # the whole box is used

    ring_only = sample_virtual_epipoles(300, p_ring=1.0, generator=g, dtype=torch.float32)
    assert ring_only.dtype == torch.float32
    assert ((ring_only[:, None].double() - table[None]).abs().amax(-1).amin(-1) < 1e-5).all()
    assert len(torch.unique(ring_only[:, 0])) > 20  # many different ring pairs
    box_only = sample_virtual_epipoles(300, p_ring=0.0, box=1.5, generator=g)
    assert (box_only.abs() <= 1.5).all() and box_only.std() > 0.5
    with pytest.raises(ValueError, match="p_ring"):
        sample_virtual_epipoles(3, p_ring=1.5)
