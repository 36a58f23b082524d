"""Synthetic scenes for the geometry tests: random cameras around a target and 3D points in front of them."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from mvlift.geometry import Cameras, look_at


def make_cameras(
    num_views: int,
    batch: tuple[int, ...] = (),
    *,
    dtype: torch.dtype = torch.float64,
    generic_k: bool = True,
    image_size: tuple[int, int] = (1920, 1080),
) -> Cameras:
    """Random cameras 2.5-4 m from a jittered target near (0, 1, 0), all views in general position.

    ``generic_k`` draws a K with unequal focal lengths, an off-centre principal point and a small skew,
    so tests do not depend on the default intrinsics."""
    shape = (*batch, num_views)
    az = torch.rand(shape, dtype=torch.float64) * 2 * math.pi
    el = (torch.rand(shape, dtype=torch.float64) - 0.5) * 1.0
    d = 2.5 + 1.5 * torch.rand(shape, dtype=torch.float64)
    target = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64) + 0.2 * torch.randn(
        *shape, 3, dtype=torch.float64
    )
    eye = target + d[..., None] * torch.stack(
        [torch.cos(el) * torch.sin(az), torch.sin(el), torch.cos(el) * torch.cos(az)], dim=-1
    )
    R, t = look_at(eye, target)
    K = torch.zeros(*shape, 3, 3, dtype=torch.float64)
    f = 600.0 + 800.0 * torch.rand(shape, dtype=torch.float64)
    K[..., 0, 0] = f
    K[..., 1, 1] = f * (1.0 + (0.1 * torch.randn(shape, dtype=torch.float64) if generic_k else 0.0))
    K[..., 0, 1] = 2.0 * torch.randn(shape, dtype=torch.float64) if generic_k else 0.0
    K[..., 0, 2] = image_size[0] / 2 + (50.0 * torch.randn(shape, dtype=torch.float64) if generic_k else 0.0)
    K[..., 1, 2] = image_size[1] / 2 + (50.0 * torch.randn(shape, dtype=torch.float64) if generic_k else 0.0)
    K[..., 2, 2] = 1.0
    return Cameras(K, R, t, image_size).to(dtype)


def make_points(shape: tuple[int, ...], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """World points (*shape, 3) within about 0.5 m of (0, 1, 0): in front of every ``make_cameras`` view."""
    X = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64) + 0.5 * (
        torch.rand(*shape, 3, dtype=torch.float64) - 0.5
    )
    return X.to(dtype)


@pytest.fixture
def scene(seed: int) -> Callable[..., Cameras]:
    """``make_cameras`` after the ``seed`` fixture has seeded torch."""
    return make_cameras


@pytest.fixture
def points(seed: int) -> Callable[..., torch.Tensor]:
    """``make_points`` after the ``seed`` fixture has seeded torch."""
    return make_points
