"""Stage-1 line conditions: for every joint of every frame, a line through the joint and an epipole.

MVLift's stage-1 model is conditioned on, per joint and frame, the line through the joint and a (virtual)
epipole, ``L in R^{T x J x 3}``; in stage 2 the conditions of a target view are the epipolar lines of the
input view's joints (which all pass through the epipole of the input camera in that view). Lines are
computed in the normalized [-1, 1] frame and follow ``docs/conventions.md``: (a, b, c) means
``a x + b y + c = 0``, normalized to ``a^2 + b^2 = 1`` with the sign rule a > 0, or a == 0 and b > 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mvlift.geometry.cameras import ring_cameras
from mvlift.geometry.epipolar import _normalize_lines, camera_epipoles

__all__ = ["epipolar_line_conditions", "line_conditions", "ring_epipoles", "sample_virtual_epipoles"]

#: Ring epipoles whose homogeneous w (of the unit 3-vector) is below this are treated as at infinity
#: (their normalized coordinates would exceed 1e6) and never sampled.
_MIN_EPIPOLE_W = 1e-6


def _check_joints(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (..., T, J, 2), got {type(x).__name__}")
    if x.ndim < 3 or x.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (..., T, J, 2), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def line_conditions(x: Tensor, epipole: Tensor) -> Tensor:
    """Normalized lines through each joint and the epipole.

    With ``x = (x, y)`` and the epipole ``(vx, vy)``: ``a = y - vy``, ``b = vx - x``, ``c = x vy - vx y``
    (the cross product ``(x, y, 1) x (vx, vy, 1)``), then scaled to ``a^2 + b^2 = 1`` with the sign rule.
    A homogeneous epipole (vx, vy, w) is accepted too (``(x, y, 1) x (vx, vy, w)``; w = 0 is an epipole at
    infinity: lines parallel to direction (vx, vy)).

    Fallback: a joint exactly at the epipole (or a zero epipole) gets the vertical line through the joint,
    (1, 0, -x), finite and with zero gradient with respect to the epipole.

    Args:
        x: joints (..., T, J, 2), normalized frame.
        epipole: (..., 2) or homogeneous (..., 3); its leading dims broadcast against x's (...).

    Returns:
        Lines (..., T, J, 3).
    """
    _check_joints(x, "x")
    if not isinstance(epipole, Tensor) or epipole.ndim < 1 or epipole.shape[-1] not in (2, 3):
        raise ValueError(
            f"epipole must be a tensor of shape (..., 2) or homogeneous (..., 3), "
            f"got {getattr(epipole, 'shape', type(epipole))}"
        )
    if epipole.dtype != x.dtype or epipole.device != x.device:
        raise TypeError(
            f"epipole must match x's dtype/device ({x.dtype}, {x.device}), "
            f"got ({epipole.dtype}, {epipole.device})"
        )
    if epipole.shape[-1] == 2:
        epipole = torch.cat([epipole, torch.ones_like(epipole[..., :1])], dim=-1)
    e = epipole[..., None, None, :]  # (..., 1, 1, 3)
    xh = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)
    xh, e = torch.broadcast_tensors(xh, e)
    lines = torch.linalg.cross(xh, e, dim=-1)
    fallback = torch.stack([torch.ones_like(xh[..., 0]), torch.zeros_like(xh[..., 0]), -xh[..., 0]], dim=-1)
    return _normalize_lines(lines, fallback)


def epipolar_line_conditions(x_ref: Tensor, F_ref_to_view: Tensor) -> Tensor:
    """Normalized epipolar lines, in a target view, of the reference view's joints (stage-2 conditions).

    ``l = F_ref_to_view @ (x, y, 1)``, scaled to ``a^2 + b^2 = 1`` with the sign rule. All lines pass
    through the epipole of the reference camera in the target view. Fallback: a joint exactly at the
    reference view's epipole (F x~ = 0) gets (1, 0, 0).

    Args:
        x_ref: joints of the reference view (..., T, J, 2), in the frame F was built for (normalized
            frame for ``fundamental_from_cameras(cams, normalized=True)``).
        F_ref_to_view: ``F[ref, view]`` (..., 3, 3) (see ``docs/conventions.md``); leading dims broadcast
            against x_ref's (...).

    Returns:
        Lines (..., T, J, 3) in the target view.
    """
    _check_joints(x_ref, "x_ref")
    if not isinstance(F_ref_to_view, Tensor) or F_ref_to_view.ndim < 2 or F_ref_to_view.shape[-2:] != (3, 3):
        raise ValueError(
            f"F_ref_to_view must be a tensor of shape (..., 3, 3), "
            f"got {getattr(F_ref_to_view, 'shape', type(F_ref_to_view))}"
        )
    if F_ref_to_view.dtype != x_ref.dtype or F_ref_to_view.device != x_ref.device:
        raise TypeError(
            f"F_ref_to_view must match x_ref's dtype/device ({x_ref.dtype}, {x_ref.device}), "
            f"got ({F_ref_to_view.dtype}, {F_ref_to_view.device})"
        )
    xh = torch.cat([x_ref, torch.ones_like(x_ref[..., :1])], dim=-1)
    lines = (F_ref_to_view[..., None, None, :, :] @ xh[..., None])[..., 0]
    fallback = torch.zeros_like(lines)
    fallback[..., 0] = 1.0
    return _normalize_lines(lines, fallback)


def ring_epipoles(
    ring_views: int = 30,
    *,
    ring_radius: float = 3.0,
    focal: float = 1000.0,
    image_size: Sequence[int] = (1920, 1080),
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """The finite epipoles a horizontal camera ring produces with camera 0, in the normalized frame.

    Row k - 1 is the epipole of camera 0 seen in camera k (camera 0's centre projected into view k,
    ``N P_k C_0``), for k = 1 .. ring_views - 1; pairs whose epipole is at infinity (|w| < 1e-6 of the unit
    homogeneous vector) are left out. The ring: :func:`ring_cameras` with its default look-at point, so the
    optical axes are horizontal and every epipole lies on ``y = 0``. Adjacent cameras give far-away
    epipoles (|x| about 10 for 12 degrees), the camera opposite gives (0, 0).

    Returns:
        (M, 2), M <= ring_views - 1.
    """
    if not isinstance(ring_views, int) or ring_views < 2:
        raise ValueError(f"ring_views must be an int >= 2, got {ring_views!r}")
    cams = ring_cameras(
        ring_views, radius=ring_radius, focal=focal, image_size=image_size, dtype=torch.float64
    )
    E = camera_epipoles(cams.P_normalized)[0, 1:]  # (V-1, 3): C_0 seen in view k
    finite = E[:, 2].abs() >= _MIN_EPIPOLE_W
    E = E[finite]
    return (E[:, :2] / E[:, 2:]).to(dtype=dtype, device=device)


def sample_virtual_epipoles(
    n: int,
    *,
    p_ring: float = 0.5,
    box: float = 3.0,
    generator: torch.Generator | None = None,
    ring_views: int = 30,
    ring_radius: float = 3.0,
    focal: float = 1000.0,
    image_size: Sequence[int] = (1920, 1080),
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Virtual epipoles for stage-1 training, one per sequence, in the normalized frame.

    With probability ``p_ring``, an epipole drawn uniformly from :func:`ring_epipoles` (camera 0's centre
    seen by a random other camera of a ``ring_views``-camera ring of radius ``ring_radius``); otherwise a
    point uniform in ``[-box, box]^2``.

    Args:
        n: number of epipoles.
        generator: torch.Generator for reproducible draws (draws happen on its device, default CPU).

    Returns:
        (n, 2).
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if not 0.0 <= p_ring <= 1.0:
        raise ValueError(f"p_ring must be in [0, 1], got {p_ring}")
    if not box > 0:
        raise ValueError(f"box must be positive, got {box}")
    table = ring_epipoles(ring_views, ring_radius=ring_radius, focal=focal, image_size=image_size)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    table = table.to(gen_device)
    use_ring = torch.rand(n, generator=generator, device=gen_device, dtype=torch.float64) < p_ring
    idx = torch.randint(len(table), (n,), generator=generator, device=gen_device)
    uniform = (
        torch.rand(n, 2, generator=generator, device=gen_device, dtype=torch.float64) * 2.0 - 1.0
    ) * box
    out = torch.where(use_ring[:, None], table[idx], uniform)
    return out.to(dtype=dtype, device=device)
