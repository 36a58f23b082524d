"""Plain-PyTorch multi-view triangulation: the oracle, CPU/GPU fallback and benchmark baseline of
:func:`mvlift.ops.triangulate`.

Same method, tolerances and flags as the native kernels (``csrc/triangulate/triangulate.h``), written with
batched tensor ops: the homogeneous DLT is solved by ``torch.linalg.svd`` (the smallest right singular
vector of the weighted row matrix, which is the smallest eigenvector of the 4x4 normal matrix the kernels
diagonalise by Jacobi), and the Levenberg-Marquardt refinement follows the kernels' schedule step for step.

Method, per point (views with a non-positive / non-finite weight, a non-finite observation, or a camera
whose left 3x3 block is singular or whose last column is not finite are *invalid* and ignored):

1. World normalisation: ``c`` = mean of the valid camera centres, ``s`` = their RMS distance to ``c``;
   the unknown is ``X' = (X - c) / s``.
2. DLT rows ``u P_2 - P_0`` and ``v P_2 - P_1`` per valid view, rewritten for ``X'`` and scaled so their
   first three entries form a unit vector: each row times ``[X'; 1]`` is the signed distance from ``X'`` to
   a plane through the camera centre containing the observed ray. Weighted by ``sqrt(w_v)``.
3. ``[X'; w]`` = smallest right singular vector; ``X = c + s X'[:3] / w``.
4. ``refine_iters`` Levenberg-Marquardt steps on ``sum_v w_v |x_v - proj_v(X)|^2`` (damping
   ``lambda diag(H)``; lambda starts at 1e-3, x0.1 after an accepted step (>= 1e-12), x10 otherwise
   (<= 1e12); a step is accepted when the cost does not rise by more than its rounding noise,
   ``4 eps (cost + sqrt(cost sum_v w_v |x_v|^2))`` (a strict decrease would stall far from the minimiser),
   and, if the DLT point was in front of every valid camera, it stays in front of all of them).

Outputs and flags: see :func:`triangulate`.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["BEHIND_CAMERA", "DEGENERATE", "NOT_CONVERGED", "triangulate"]

#: X is NaN: < 2 valid views, coincident camera centres, rays on one line, or a point at infinity.
DEGENERATE = 1
#: The result has depth <= 0 in some valid view.
BEHIND_CAMERA = 2
#: refine_iters > 0 and the last proposed LM step was still longer than sqrt(eps) (1 + |X'|).
NOT_CONVERGED = 4

_LAMBDA_INIT, _LAMBDA_MIN, _LAMBDA_MAX = 1e-3, 1e-12, 1e12
_RANK_TOL_EPS = 100.0
_ACCEPT_SLACK_EPS = 4.0


def _camera_centres(P: Tensor) -> tuple[Tensor, Tensor]:
    """Centres C (..., 3) and orientation sign(det P[:, :3]) (...; 0 = unusable camera) of P (..., 3, 4)."""
    m0, m1, m2, p4 = P[..., 0, :3], P[..., 1, :3], P[..., 2, :3], P[..., 3]
    c0, c1, c2 = torch.linalg.cross(m1, m2), torch.linalg.cross(m2, m0), torch.linalg.cross(m0, m1)
    det = (m0 * c0).sum(-1)
    centre = -(c0 * p4[..., 0:1] + c1 * p4[..., 1:2] + c2 * p4[..., 2:3]) / det[..., None]
    ok = (det != 0) & torch.isfinite(det) & torch.isfinite(p4).all(-1)
    return centre, torch.where(ok, torch.sign(det), torch.zeros_like(det))


def _evaluate(
    Xn: Tensor, c: Tensor, s: Tensor, P: Tensor, x: Tensor, w: Tensor, sign: Tensor, valid: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Cost (...), H (..., 3, 3), g (..., 3) in Xn, and 'behind some valid camera' (...) at X = c + s Xn."""
    X = c + s[..., None] * Xn  # (..., 3)
    proj = (P[..., :3] @ X[..., None, :, None])[..., 0] + P[..., 3]  # (..., V, 3)
    z = proj[..., 2]
    behind = (valid & ~(z * sign > 0)).any(-1)
    zs = torch.where(valid, z, torch.ones_like(z))
    uv = proj[..., :2] / zs[..., None]  # (..., V, 2)
    r = torch.where(valid[..., None], uv - x, torch.zeros_like(uv))
    wv = torch.where(valid, w, torch.zeros_like(w))
    cost = (wv * (r * r).sum(-1)).sum(-1)
    # d uv / d Xn = s (P[:2, :3] - uv P[2, :3]) / z
    J = (P[..., :2, :3] - uv[..., None] * P[..., 2:3, :3]) * (s[..., None, None, None] / zs[..., None, None])
    J = torch.where(valid[..., None, None], J, torch.zeros_like(J))  # (..., V, 2, 3)
    H = torch.einsum("...v,...vki,...vkj->...ij", wv, J, J)
    g = torch.einsum("...v,...vki,...vk->...i", wv, J, r)
    return cost, H, g, behind


def triangulate(
    x: Tensor, P: Tensor, weights: Tensor | None = None, refine_iters: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Triangulate points from V views (module docstring: method).

    Args:
        x: observations (..., V, 2) in the image frame of P (pixels, or the normalized frame for a P that
            maps to it).
        P: projection matrices (V, 3, 4) or (..., V, 3, 4), broadcast against x's batch dims.
        weights: (..., V) confidences, 0 = view ignored; None = all 1.
        refine_iters: Levenberg-Marquardt iterations after the DLT (>= 0).

    Returns:
        ``X`` (..., 3) world points (NaN when DEGENERATE); ``rms`` (...) weighted reprojection RMS
        ``sqrt(sum_v w_v |x_v - proj_v(X)|^2 / sum_v w_v)`` in x's units (NaN when DEGENERATE);
        ``num_views`` (...) int32 valid views; ``flags`` (...) int32 bitmask of DEGENERATE, BEHIND_CAMERA,
        NOT_CONVERGED. Computed in x's dtype. Not meant for autograd (like :func:`mvlift.ops.triangulate`,
        which is not differentiable).
    """
    dtype, device = x.dtype, x.device
    eps = torch.finfo(dtype).eps
    sqrt_eps = eps**0.5
    V = x.shape[-2]
    w_in = weights if weights is not None else torch.ones(x.shape[:-1], dtype=dtype, device=device)
    batch = torch.broadcast_shapes(x.shape[:-2], P.shape[:-3], w_in.shape[:-1])
    x = x.expand(*batch, V, 2)
    P = P.to(dtype).expand(*batch, V, 3, 4)
    w = w_in.to(dtype).expand(*batch, V)

    centre, sign = _camera_centres(P)  # (..., V, 3), (..., V)
    valid = (sign != 0) & (w > 0) & torch.isfinite(w) & torch.isfinite(x).all(-1)
    n = valid.sum(-1)
    nf = n.clamp_min(1).to(dtype)
    centre0 = torch.where(valid[..., None], centre, torch.zeros_like(centre))
    c = centre0.sum(-2) / nf[..., None]
    dev = torch.where(valid[..., None], centre - c[..., None, :], torch.zeros_like(centre))
    s = ((dev * dev).sum((-1, -2)) / nf).sqrt()
    degenerate = (n < 2) | ~(s > sqrt_eps * torch.linalg.vector_norm(c, dim=-1)) | ~torch.isfinite(s)
    s_safe = torch.where(degenerate, torch.ones_like(s), s)

    # Row-normalised DLT in the normalised world frame: rows (..., V, 2, 4).
    rows = x[..., :, None] * P[..., 2:3, :] - P[..., :2, :]
    normal = rows[..., :3]
    nrm = torch.linalg.vector_norm(normal, dim=-1)
    row_ok = valid[..., None] & (nrm > 0)
    nrm = torch.where(row_ok, nrm, torch.ones_like(nrm))
    offset = ((normal * c[..., None, None, :]).sum(-1) + rows[..., 3]) / (nrm * s_safe[..., None, None])
    A = (
        torch.cat([normal / nrm[..., None], offset[..., None]], dim=-1)
        * w.clamp_min(0).sqrt()[..., None, None]
    )
    A = torch.where(row_ok[..., None] & ~degenerate[..., None, None, None], A, torch.zeros_like(A))
    A = A.reshape(*batch, 2 * V, 4)
    if 2 * V < 4:
        A = torch.cat([A, A.new_zeros(*batch, 4 - 2 * V, 4)], dim=-2)
    # Degenerate points get a harmless identity so that the batched SVD never sees NaN.
    eye = torch.eye(4, dtype=dtype, device=device)
    A = torch.where(degenerate[..., None, None], torch.cat([eye, A.new_zeros(A.shape[-2] - 4, 4)]), A)
    _, S, Vh = torch.linalg.svd(A, full_matrices=False)
    lam = S * S  # eigenvalues of A^T A, descending
    degenerate |= ~(lam[..., 0] > 0) | ~(lam[..., 2] > _RANK_TOL_EPS * eps * lam[..., 0])
    e = Vh[..., 3, :]
    degenerate |= ~(e[..., 3].abs() > sqrt_eps * torch.linalg.vector_norm(e[..., :3], dim=-1))
    e3 = torch.where(degenerate, torch.ones_like(e[..., 3]), e[..., 3])
    Xn = torch.where(degenerate[..., None], torch.zeros_like(e[..., :3]), e[..., :3] / e3[..., None])

    cost, H, g, behind = _evaluate(Xn, c, s_safe, P, x, w, sign, valid)
    wv = torch.where(valid, w, torch.zeros_like(w))
    obs2 = (wv * torch.where(valid[..., None], x, torch.zeros_like(x)).square().sum(-1)).sum(-1)
    keep_in_front = ~behind
    lam_lm = torch.full_like(cost, _LAMBDA_INIT)
    last_step = torch.zeros_like(cost)
    big = torch.finfo(dtype).max
    for _ in range(refine_iters):
        A3 = H + torch.diag_embed(torch.diagonal(H, dim1=-2, dim2=-1) * lam_lm[..., None])
        A3 = torch.where(degenerate[..., None, None], torch.eye(3, dtype=dtype, device=device), A3)
        L, info = torch.linalg.cholesky_ex(A3)
        ok = (info == 0) & ~degenerate
        L = torch.where(ok[..., None, None], L, torch.eye(3, dtype=dtype, device=device))
        step = torch.cholesky_solve(-g[..., None], L)[..., 0]
        step = torch.where(ok[..., None], step, torch.zeros_like(step))
        norm_x = torch.linalg.vector_norm(Xn, dim=-1)
        last_step = torch.where(
            ok, torch.linalg.vector_norm(step, dim=-1) / (1 + norm_x), torch.full_like(cost, big)
        )
        Xc = Xn + step
        c_cost, c_H, c_g, c_behind = _evaluate(Xc, c, s_safe, P, x, w, sign, valid)
        slack = _ACCEPT_SLACK_EPS * eps * (cost + (cost * obs2).sqrt())
        accept = ok & (c_cost <= cost + slack) & ~(keep_in_front & c_behind)
        Xn = torch.where(accept[..., None], Xc, Xn)
        cost = torch.where(accept, c_cost, cost)
        H = torch.where(accept[..., None, None], c_H, H)
        g = torch.where(accept[..., None], c_g, g)
        behind = torch.where(accept, c_behind, behind)
        lam_lm = torch.where(
            accept, (lam_lm * 0.1).clamp_min(_LAMBDA_MIN), (lam_lm * 10).clamp_max(_LAMBDA_MAX)
        )

    X = c + s_safe[..., None] * Xn
    degenerate |= ~torch.isfinite(X).all(-1)
    wsum = wv.sum(-1)
    rms = (cost / torch.where(degenerate, torch.ones_like(wsum), wsum)).sqrt()
    nan = torch.full_like(rms, float("nan"))
    X = torch.where(degenerate[..., None], nan[..., None], X)
    rms = torch.where(degenerate, nan, rms)
    flags = torch.where(behind, BEHIND_CAMERA, 0)
    if refine_iters > 0:
        flags = flags | torch.where(last_step <= sqrt_eps, 0, NOT_CONVERGED)
    flags = torch.where(degenerate, DEGENERATE, flags).to(torch.int32)
    return X, rms, n.to(torch.int32), flags
