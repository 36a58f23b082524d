"""Batched multi-view triangulation in one native kernel (C++ threads on CPU tensors, CUDA on GPU ones).

Stage 3 and final inference recover every joint of every frame of every sequence from V views: millions of
tiny problems. Each point is solved in registers by one CPU loop iteration or one CUDA thread
(``csrc/triangulate/``): a Hartley-normalised DLT whose 4x4 normal matrix is diagonalised by cyclic Jacobi
rotations, optionally followed by Levenberg-Marquardt steps on the weighted reprojection error.

Method, per point (exactly that of :mod:`mvlift.reference.triangulate`, the float64 SVD oracle):

1. Valid views: weight finite and > 0, finite observation, P whose left 3x3 block has a finite non-zero
   determinant and whose last column is finite. Invalid views are ignored entirely.
2. World normalisation: ``c`` = centroid of the valid camera centres, ``s`` = their RMS distance to ``c``;
   the unknown is ``X' = (X - c) / s``. (Hartley's 3D normalisation, applied to the only 3D points known
   before solving; the usual per-image 2D normalisation is meaningless with one point per view.)
3. DLT rows ``u P_2 - P_0`` and ``v P_2 - P_1``, rewritten for ``X'``, each scaled so its first three
   entries form a unit vector: a row times ``[X'; 1]`` is then the signed distance from ``X'`` to a plane
   through the camera centre containing the observed ray, in normalised world units. This makes the DLT
   invariant to any per-axis scale and offset of the image coordinates (pixels vs the normalized frame).
4. ``[X'; w]`` = eigenvector of the smallest eigenvalue of ``sum_v w_v (r1 r1^T + r2 r2^T)`` (4x4,
   trace-normalised, cyclic Jacobi; the reference uses an SVD of the weighted rows); ``X = c + s X'/w``.
5. ``refine_iters`` Levenberg-Marquardt steps on ``sum_v w_v |x_v - proj_v(X)|^2`` (in x's units, so the
   refined result does depend on the image frame): damping ``lambda diag(H)``, lambda from 1e-3, x0.1 after
   an accepted step, x10 after a rejected one; a step is accepted only if the cost does not rise by more
   than its rounding noise (``4 eps (cost + sqrt(cost sum_v w_v |x_v|^2))``) and, when the DLT point was in
   front of every valid camera, it stays in front. The cost therefore never increases beyond rounding.

Flags (:class:`TriangulationFlag`, a bitmask; eps = 2^-23 for float32, 2^-52 for float64):

- ``DEGENERATE`` (1): X and rms are NaN. Fewer than 2 valid views; valid camera centres coincide
  (``s <= sqrt(eps) |c|``); rays (nearly) on one line (second-smallest eigenvalue <= 100 eps x largest);
  point at infinity (``|w| <= sqrt(eps) |X'|`` for the unit eigenvector, i.e. farther than ~1/sqrt(eps)
  camera spreads from the cameras' centroid); or a non-finite result.
- ``BEHIND_CAMERA`` (2): the result has depth ``(P_2 . [X; 1]) sign(det P[:, :3]) <= 0`` in some valid view.
- ``NOT_CONVERGED`` (4): ``refine_iters > 0`` and the last proposed LM step was still longer than
  ``sqrt(eps) (1 + |X'|)`` (normalised units).

Not differentiable: calling it with inputs that require grad raises ``ValueError`` (detach them, or
differentiate a reprojection loss instead); the registered autograd formula raises too.

Dispatch (:mod:`mvlift.ops._backend`): ``mvlift._C.triangulate`` on CPU tensors, ``triangulate_cuda`` on
CUDA tensors (on their GPU, torch's current stream there); the reference when the native module (or its
CUDA part, or a CUDA runtime that starts) is missing, with a :class:`~mvlift.ops._backend.SlowFallbackWarning`
saying why.
Registered as ``torch.library.custom_op("mvlift::triangulate")`` with a fake implementation, so it traces
under ``torch.compile``.
"""

from __future__ import annotations

import enum
import math
from typing import NamedTuple

import torch
from torch import Tensor

from mvlift.ops import _backend
from mvlift.reference import triangulate as _ref

__all__ = ["TriangulationFlag", "TriangulationInfo", "triangulate", "triangulate_sequences"]

_DTYPES = (torch.float32, torch.float64)
_REFERENCE = "the float64 SVD reference mvlift.reference.triangulate (tens of times slower)"


class TriangulationFlag(enum.IntFlag):
    """Bits of :attr:`TriangulationInfo.flags` (module docstring: exact conditions)."""

    DEGENERATE = _ref.DEGENERATE
    BEHIND_CAMERA = _ref.BEHIND_CAMERA
    NOT_CONVERGED = _ref.NOT_CONVERGED


class TriangulationInfo(NamedTuple):
    """Per-point diagnostics of :func:`triangulate`; every field has the points' batch shape (...).

    Attributes:
        rms: weighted reprojection RMS ``sqrt(sum_v w_v |x_v - proj_v(X)|^2 / sum_v w_v)`` over the valid
            views, in x's units (pixels or normalized); NaN for DEGENERATE points.
        num_views: number of valid views, int32.
        flags: int32 bitmask of :class:`TriangulationFlag` (0 = fine).
    """

    rms: Tensor
    num_views: Tensor
    flags: Tensor


# ----------------------------------------------------------------------------------------------- custom op
def _degenerate_outputs(x: Tensor, B: int, M: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    nan = float("nan")
    return (
        x.new_full((B, M, 3), nan),
        x.new_full((B, M), nan),
        torch.zeros((B, M), dtype=torch.int32, device=x.device),
        torch.full((B, M), int(TriangulationFlag.DEGENERATE), dtype=torch.int32, device=x.device),
    )


@torch.library.custom_op("mvlift::triangulate", mutates_args=())
def _triangulate(
    x: Tensor, P: Tensor, weights: Tensor | None, refine_iters: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """x (B, V, M, 2), P (1 or B, V, 3, 4), weights (B, V, M) or None -> X (B, M, 3), rms (B, M),
    num_views (B, M) int32, flags (B, M) int32 (layout of ``csrc/triangulate/triangulate.h``)."""
    B, V, M, _ = x.shape
    if B * M == 0 or V == 0:
        return _degenerate_outputs(x, B, M)
    x, P = x.contiguous(), P.contiguous()
    weights = weights.contiguous() if weights is not None else None
    mod = _backend.native_for(x.device, "triangulate", _REFERENCE)
    if mod is not None:
        X = x.new_empty((B, M, 3))
        rms = x.new_empty((B, M))
        num_views = torch.empty((B, M), dtype=torch.int32, device=x.device)
        flags = torch.empty((B, M), dtype=torch.int32, device=x.device)
        if x.is_cuda:
            mod.triangulate_cuda(
                x, P, weights, refine_iters, X, rms, num_views, flags, _backend.cuda_stream(x)
            )
        else:
            mod.triangulate(x, P, weights, refine_iters, X, rms, num_views, flags)
        return X, rms, num_views, flags
    # Reference fallback: points-major layout (B, M, V, ...).
    w = weights.permute(0, 2, 1) if weights is not None else None
    X, rms, num_views, flags = _ref.triangulate(x.permute(0, 2, 1, 3), P[:, None], w, refine_iters)
    return X.contiguous(), rms.contiguous(), num_views.contiguous(), flags.contiguous()


@_triangulate.register_fake
def _(
    x: Tensor, P: Tensor, weights: Tensor | None, refine_iters: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    B, _, M, _ = x.shape
    return (
        x.new_empty((B, M, 3)),
        x.new_empty((B, M)),
        x.new_empty((B, M), dtype=torch.int32),
        x.new_empty((B, M), dtype=torch.int32),
    )


def _setup_context(ctx, inputs, output) -> None:
    pass


def _backward(ctx, *grads):
    raise RuntimeError(
        "mvlift::triangulate is not differentiable (its DLT/LM solution has no registered gradient); "
        "detach its inputs, or optimise a reprojection loss of the points instead"
    )


_triangulate.register_autograd(_backward, setup_context=_setup_context)


# ---------------------------------------------------------------------------------------------- public API
def _check_common(fn: str, x: Tensor, P: Tensor, weights: Tensor | None, refine_iters: int) -> None:
    for name, t in (("x", x), ("P", P), ("weights", weights)):
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"{fn}: {name} must be a tensor, got {type(t).__name__}")
    if x.dtype not in _DTYPES:
        raise TypeError(f"{fn}: x must be float32 or float64, got {x.dtype}")
    for name, t in (("P", P), ("weights", weights)):
        if t is None:
            continue
        if t.dtype != x.dtype:
            raise TypeError(f"{fn}: {name} must have x's dtype {x.dtype}, got {t.dtype}")
        if t.device != x.device:
            raise ValueError(f"{fn}: {name} must be on x's device {x.device}, got {t.device}")
    if not isinstance(refine_iters, int) or isinstance(refine_iters, bool) or refine_iters < 0:
        raise ValueError(f"{fn}: refine_iters must be an int >= 0, got {refine_iters!r}")
    if torch.is_grad_enabled():
        for name, t in (("x", x), ("P", P), ("weights", weights)):
            if t is not None and t.requires_grad:
                raise ValueError(
                    f"{fn}: triangulation is not differentiable, but {name} requires grad; pass "
                    f"{name}.detach() (or run under torch.no_grad())"
                )


def triangulate(
    x: Tensor, P: Tensor, *, weights: Tensor | None = None, refine_iters: int = 0
) -> tuple[Tensor, TriangulationInfo]:
    """Triangulate points seen in V views (module docstring: method, flags, dispatch).

    Args:
        x: observations (..., V, 2), float32 or float64, in the image frame of P: pixels for
            ``P = K [R | t]`` with K in pixels, or the normalized frame for a P that maps there.
        P: projection matrices (V, 3, 4) shared by every point, or (..., V, 3, 4) per item (batch dims
            broadcast against x's); same dtype and device as x.
        weights: optional (..., V) confidences (0 = view ignored), broadcast against x's batch dims.
        refine_iters: Levenberg-Marquardt iterations on the weighted reprojection error after the DLT
            (0 = DLT only; 3-5 reach convergence on typical data).

    Returns:
        ``(X, info)``: X (..., 3) world points in P's world units (NaN for DEGENERATE points) and a
        :class:`TriangulationInfo` of (...) tensors. ``(...)`` is the broadcast batch shape.
        Not differentiable.

    Raises:
        TypeError: non-tensor or non-float32/float64 inputs, or mismatching dtypes.
        ValueError: wrong shapes, batch dims that do not broadcast, mismatching devices, a negative
            ``refine_iters``, or inputs that require grad.
    """
    _check_common("triangulate", x, P, weights, refine_iters)
    if x.ndim < 2 or x.shape[-1] != 2:
        raise ValueError(f"triangulate: x must have shape (..., V, 2), got {tuple(x.shape)}")
    V = x.shape[-2]
    if P.ndim < 3 or P.shape[-3:] != (V, 3, 4):
        raise ValueError(
            f"triangulate: P must have shape ({V}, 3, 4) or (..., {V}, 3, 4) for x {tuple(x.shape)}, "
            f"got {tuple(P.shape)}"
        )
    if weights is not None and (weights.ndim < 1 or weights.shape[-1] != V):
        raise ValueError(
            f"triangulate: weights must have shape (..., {V}) for x {tuple(x.shape)}, "
            f"got {tuple(weights.shape)}"
        )
    shapes = [x.shape[:-2], P.shape[:-3]] + ([weights.shape[:-1]] if weights is not None else [])
    try:
        batch = torch.broadcast_shapes(*shapes)
    except RuntimeError:
        raise ValueError(
            f"triangulate: batch dims of x {tuple(x.shape)}, P {tuple(P.shape)}"
            + (f", weights {tuple(weights.shape)}" if weights is not None else "")
            + " do not broadcast"
        ) from None
    B = math.prod(batch)
    shared_P = all(d == 1 for d in P.shape[:-3])
    xb = x.expand(*batch, V, 2).reshape(B, V, 1, 2)
    wb = weights.expand(*batch, V).reshape(B, V, 1) if weights is not None else None
    if shared_P:
        Pb = P.reshape(1, V, 3, 4)
        if _views_major(x.device):
            # One sequence of B points, (1, V, B, 2): the threads of a warp (consecutive points) read
            # consecutive addresses, where (B, V, 1, 2) would stride them 8 V bytes apart. One transposing
            # copy (coalesced, in torch) buys coalesced reads of every view in the kernel.
            xb = xb.transpose(0, 2)
            wb = wb.transpose(0, 2) if wb is not None else None
    else:
        Pb = P.expand(*batch, V, 3, 4).reshape(B, V, 3, 4)  # per-point P: one point per sequence
    X, rms, num_views, flags = _triangulate(xb, Pb, wb, refine_iters)
    return X.reshape(*batch, 3), TriangulationInfo(
        rms.reshape(batch), num_views.reshape(batch), flags.reshape(batch)
    )


def _views_major(device: torch.device) -> bool:
    """Whether :func:`triangulate` hands points with a shared P to the kernel as one (1, V, N) sequence
    (coalesced GPU reads) rather than N one-point sequences (B = N, M = 1: each point's views together, which
    the CPU kernel, reading one point at a time, prefers)."""
    return device.type == "cuda"


def triangulate_sequences(
    x: Tensor, P: Tensor, *, weights: Tensor | None = None, refine_iters: int = 0
) -> tuple[Tensor, TriangulationInfo]:
    """Triangulate whole multi-view sequences: every joint of every frame of every batch item.

    Same method as :func:`triangulate`, reading x in the views-major layout of the multi-view pipeline
    (``docs/conventions.md``) without any transpose copy.

    Args:
        x: 2D sequences (B, V, T, J, 2), float32 or float64, in the image frame of P.
        P: projection matrices (V, 3, 4) shared by the batch, or (B, V, 3, 4) one set per sequence.
        weights: optional (B, V, T, J) confidences (0 = ignored).
        refine_iters: Levenberg-Marquardt iterations after the DLT.

    Returns:
        ``(X, info)``: X (B, T, J, 3) and a :class:`TriangulationInfo` of (B, T, J) tensors.

    Raises:
        TypeError / ValueError: as :func:`triangulate`.
    """
    _check_common("triangulate_sequences", x, P, weights, refine_iters)
    if x.ndim != 5 or x.shape[-1] != 2:
        raise ValueError(f"triangulate_sequences: x must have shape (B, V, T, J, 2), got {tuple(x.shape)}")
    B, V, T, J, _ = x.shape
    if P.shape not in ((V, 3, 4), (1, V, 3, 4), (B, V, 3, 4)):
        raise ValueError(
            f"triangulate_sequences: P must have shape ({V}, 3, 4) or ({B}, {V}, 3, 4) for x "
            f"{tuple(x.shape)}, got {tuple(P.shape)}"
        )
    if weights is not None and weights.shape != (B, V, T, J):
        raise ValueError(
            f"triangulate_sequences: weights must have shape ({B}, {V}, {T}, {J}), got {tuple(weights.shape)}"
        )
    Pb = P if P.ndim == 4 else P[None]
    wb = weights.reshape(B, V, T * J) if weights is not None else None
    X, rms, num_views, flags = _triangulate(x.reshape(B, V, T * J, 2), Pb, wb, refine_iters)
    return X.reshape(B, T, J, 3), TriangulationInfo(
        rms.reshape(B, T, J), num_views.reshape(B, T, J), flags.reshape(B, T, J)
    )
