"""Pinhole projection of a batch of 3D points by the native extension (C++ on CPU, CUDA on GPU tensors).

``csrc/project/`` holds the kernels; the plain-PyTorch version is
:func:`mvlift.reference.project.project_points` (the fallback when ``mvlift._C`` is missing, or has no usable
CUDA part for a CUDA tensor: then with a :class:`~mvlift.ops._backend.SlowFallbackWarning` saying why).
Registered as ``torch.library.custom_op("mvlift::project_points")`` with a fake implementation and an
analytic backward in torch (w.r.t. X and P), so it traces under ``torch.compile``; the backward is made of
torch ops, so higher-order gradients work too.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mvlift.ops import _backend
from mvlift.reference import project as _ref

__all__ = ["project_points"]

_DTYPES = (torch.float32, torch.float64)


def _native_project(X: Tensor, P: Tensor) -> tuple[Tensor, Tensor] | None:
    """Native projection of X (N, 3) with P (1 or N, 3, 4), or None when no native kernel applies."""
    mod = _backend.native_for(X.device, "project_points", "the PyTorch reference mvlift.reference.project")
    if mod is None:
        return None
    uv = X.new_empty((X.shape[0], 2))
    depth = X.new_empty((X.shape[0],))
    if X.shape[0] == 0:
        return uv, depth
    if X.is_cuda:
        mod.project_points_cuda(X, P, uv, depth, _backend.cuda_stream(X))
    else:
        mod.project_points(X, P, uv, depth)
    return uv, depth


@torch.library.custom_op("mvlift::project_points", mutates_args=())
def _project_points(X: Tensor, P: Tensor) -> tuple[Tensor, Tensor]:
    """X (N, 3), P (1 or N, 3, 4) -> uv (N, 2), depth (N,)."""
    X, P = X.contiguous(), P.contiguous()
    out = _native_project(X, P)
    if out is not None:
        return out
    uv, depth = _ref.project_points(X, P)
    return uv.contiguous(), depth.contiguous()


@_project_points.register_fake
def _(X: Tensor, P: Tensor) -> tuple[Tensor, Tensor]:
    return X.new_empty((X.shape[0], 2)), X.new_empty((X.shape[0],))


def _setup_context(ctx, inputs, output) -> None:
    X, P = inputs
    ctx.save_for_backward(X, P)


def _backward(ctx, grad_uv: Tensor | None, grad_depth: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    # proj = P X~ (X~ = (X, 1)), u = proj_0 / z, v = proj_1 / z, depth = z = proj_2. The gradient w.r.t. proj:
    #   k = (g_u / z, g_v / z, g_d - (g_u u + g_v v) / z);  then dL/dX = P[:, :3]^T k,  dL/dP = k X~^T.
    X, P = ctx.saved_tensors
    Xh = torch.cat([X, torch.ones_like(X[:, :1])], dim=-1)  # (N, 4)
    proj = (P @ Xh[..., None])[..., 0]  # (N, 3)
    z = proj[:, 2]
    uv = proj[:, :2] / z[:, None]
    g_uv = grad_uv if grad_uv is not None else torch.zeros_like(uv)
    g_d = grad_depth if grad_depth is not None else torch.zeros_like(z)
    # dL/dproj (N, 3)
    coef = torch.cat([g_uv / z[:, None], (g_d - (g_uv * uv).sum(-1) / z)[:, None]], dim=-1)
    grad_X = grad_P = None
    if ctx.needs_input_grad[0]:
        grad_X = (P[..., :3].transpose(-1, -2) @ coef[..., None])[..., 0]
    if ctx.needs_input_grad[1]:
        grad_P = coef[:, :, None] * Xh[:, None, :]  # (N, 3, 4)
        if P.shape[0] == 1:
            grad_P = grad_P.sum(0, keepdim=True)
    return grad_X, grad_P


_project_points.register_autograd(_backward, setup_context=_setup_context)


def project_points(X: Tensor, P: Tensor) -> tuple[Tensor, Tensor]:
    """Project 3D points to the image with projection matrices ``P = K [R | t]`` (``docs/conventions.md``).

    Args:
        X: points (..., 3), world units (metres), float32 or float64.
        P: projection matrices (3, 4) shared by every point, or (..., 3, 4) broadcast against X's batch
            dims; same dtype and device as X.

    Returns:
        ``uv`` (..., 2) = ``(P_0 . X~, P_1 . X~) / (P_2 . X~)`` with ``X~ = (X, 1)``, in P's image units
        (pixels for K in pixels); ``depth`` (...) = ``P_2 . X~`` (positive in front of the camera; the
        camera-frame z when ``K[2] = (0, 0, 1)``). ``(...)`` is the broadcast batch shape. A point with
        depth 0 gives inf/NaN like IEEE division. Differentiable w.r.t. X and P.

    Raises:
        TypeError: X or P not a floating tensor of float32/float64, or their dtypes differ.
        ValueError: wrong trailing shapes, batch dims that do not broadcast, different devices.
    """
    if not isinstance(X, Tensor) or not isinstance(P, Tensor):
        raise TypeError(
            f"project_points: X and P must be tensors, got {type(X).__name__}, {type(P).__name__}"
        )
    if X.dtype not in _DTYPES:
        raise TypeError(f"project_points: X must be float32 or float64, got {X.dtype}")
    if P.dtype != X.dtype:
        raise TypeError(f"project_points: P must have X's dtype {X.dtype}, got {P.dtype}")
    if X.device != P.device:
        raise ValueError(f"project_points: X and P must be on one device, got {X.device} and {P.device}")
    if X.ndim < 1 or X.shape[-1] != 3:
        raise ValueError(f"project_points: X must have shape (..., 3), got {tuple(X.shape)}")
    if P.ndim < 2 or P.shape[-2:] != (3, 4):
        raise ValueError(f"project_points: P must have shape (3, 4) or (..., 3, 4), got {tuple(P.shape)}")
    try:
        batch = torch.broadcast_shapes(X.shape[:-1], P.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"project_points: batch dims of X {tuple(X.shape)} and P {tuple(P.shape)} do not broadcast"
        ) from None
    n = 1
    for d in batch:
        n *= d
    Xf = X.expand(*batch, 3).reshape(n, 3)
    if all(d == 1 for d in P.shape[:-2]):
        Pf = P.reshape(1, 3, 4)
    else:
        Pf = P.expand(*batch, 3, 4).reshape(n, 3, 4)
    uv, depth = _project_points(Xf, Pf)
    return uv.reshape(*batch, 2), depth.reshape(batch)
