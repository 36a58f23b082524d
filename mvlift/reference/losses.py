"""Plain-PyTorch references of the multi-view consistency and stage-1 losses of :mod:`mvlift.ops`.

Same math as the Triton kernels in :mod:`mvlift.kernels.epipolar_loss` and :mod:`mvlift.kernels.line_loss`,
written with ordinary tensor ops (so eager PyTorch materialises the (B, P, T, J) intermediates that the
kernels avoid). They are the test oracle, the CPU fallback of the ops and the baseline of the benchmarks.
Differentiable by autograd w.r.t. every floating input.

Dtypes: float16 / bfloat16 inputs are computed in float32, float32 and float64 in their own dtype; results
are float32 (float64 for float64 points).

Conventions (``docs/conventions.md``): ``F[..., i, j] @ x~_i`` is the epipolar line of x_i in view j; a line
(a, b, c) means ``a x + b y + c = 0``; masks are (B, T) bool with True = valid frame; weights are
(B, V, T, J) with 0 = ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "EPS",
    "REDUCTIONS",
    "compute_dtype",
    "default_pairs",
    "epipolar_distances",
    "epipolar_loss",
    "epipolar_loss_terms",
    "line_matching_loss",
    "line_matching_terms",
    "reduce_terms",
    "stage1_loss",
]

#: Added under the square root of every line-norm so that a point at an epipole (zero-length line) gives
#: a finite distance and finite gradients. Same value as :mod:`mvlift.geometry.epipolar`.
EPS = 1e-12

#: Accepted ``reduction`` values. ``"none"`` is an alias of ``"per_sequence"``.
REDUCTIONS = ("mean", "sum", "per_sequence", "none")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the losses are computed and returned in: float64 for float64 inputs, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def default_pairs(num_views: int) -> list[tuple[int, int]]:
    """All unordered view pairs (i, j), i < j, in lexicographic order: V (V - 1) / 2 pairs."""
    return [(i, j) for i in range(num_views) for j in range(i + 1, num_views)]


def _pair_index(pairs: Sequence[Sequence[int]] | Tensor | None, num_views: int, device) -> Tensor:
    if pairs is None:
        pairs = default_pairs(num_views)
    idx = torch.as_tensor(pairs, dtype=torch.long, device=device).reshape(-1, 2)
    return idx


def epipolar_distances(
    x_i: Tensor, x_j: Tensor, F_ij: Tensor, distance: str = "symmetric", eps: float = EPS
) -> Tensor:
    """Point-to-epipolar-line distance of correspondences (x_i in view i, x_j in view j).

    With ``l = F_ij x~_i`` (the epipolar line of x_i in view j), ``m = F_ij^T x~_j`` (that of x_j in view i)
    and ``r = x~_j^T F_ij x~_i``:

    - ``"symmetric"``: ``0.5 (|r| / sqrt(l0^2 + l1^2 + eps) + |r| / sqrt(m0^2 + m1^2 + eps))``, the mean of
      the two point-to-line distances (equal to :func:`mvlift.geometry.symmetric_epipolar_distance`);
    - ``"sampson"``: ``|r| / sqrt(l0^2 + l1^2 + m0^2 + m1^2 + eps)`` (equal to
      :func:`mvlift.geometry.sampson_distance`).

    Args:
        x_i, x_j: (..., 2) points (the unit of F's image frame, e.g. pixels); F_ij: (..., 3, 3); broadcast.

    Returns:
        (...) distances in the points' unit.
    """
    F = F_ij
    u, v = x_i[..., 0], x_i[..., 1]
    qx, qy = x_j[..., 0], x_j[..., 1]
    f = [[F[..., a, b] for b in range(3)] for a in range(3)]
    l0 = f[0][0] * u + f[0][1] * v + f[0][2]
    l1 = f[1][0] * u + f[1][1] * v + f[1][2]
    l2 = f[2][0] * u + f[2][1] * v + f[2][2]
    m0 = f[0][0] * qx + f[1][0] * qy + f[2][0]
    m1 = f[0][1] * qx + f[1][1] * qy + f[2][1]
    r = (qx * l0 + qy * l1 + l2).abs()
    if distance == "symmetric":
        return 0.5 * (r / torch.sqrt(l0 * l0 + l1 * l1 + eps) + r / torch.sqrt(m0 * m0 + m1 * m1 + eps))
    if distance == "sampson":
        return r / torch.sqrt(l0 * l0 + l1 * l1 + m0 * m0 + m1 * m1 + eps)
    raise ValueError(f"distance must be 'symmetric' or 'sampson', got {distance!r}")


def epipolar_loss_terms(
    x: Tensor,
    F: Tensor,
    *,
    weights: Tensor | None = None,
    mask: Tensor | None = None,
    pairs: Sequence[Sequence[int]] | Tensor | None = None,
    distance: str = "symmetric",
) -> tuple[Tensor, Tensor]:
    """Per-sequence weighted sums of the pair distances and of the pair weights.

    ``S[b] = sum_{p, t, j} w[b, p, t, j] d[b, p, t, j]`` and ``W[b] = sum_{p, t, j} w[b, p, t, j]`` with
    ``w = weights[b, i_p, t, j] * weights[b, j_p, t, j] * mask[b, t]`` (1 where not given) and d the
    :func:`epipolar_distances` of pair p = (i_p, j_p) using ``F[..., i_p, j_p]``.

    Args:
        x: (B, V, T, J, 2) points of V views; F: (V, V, 3, 3) or (B, V, V, 3, 3); weights: (B, V, T, J);
        mask: (B, T) bool; pairs: (P, 2) view pairs, default all i < j; distance: see
        :func:`epipolar_distances`.

    Returns:
        ``(S, W)``, each (B,), in :func:`compute_dtype` of x.
    """
    cd = compute_dtype(x.dtype)
    V = x.shape[1]
    idx = _pair_index(pairs, V, x.device)
    xc = x.to(cd)
    Fc = F.to(cd)
    xi, xj = xc[:, idx[:, 0]], xc[:, idx[:, 1]]  # (B, P, T, J, 2)
    if Fc.dim() == 4:
        Fp = Fc[idx[:, 0], idx[:, 1]][None, :, None, None]  # (1, P, 1, 1, 3, 3)
    else:
        Fp = Fc[:, idx[:, 0], idx[:, 1]][:, :, None, None]  # (B, P, 1, 1, 3, 3)
    d = epipolar_distances(xi, xj, Fp, distance)  # (B, P, T, J)
    w = torch.ones((), dtype=cd, device=x.device)
    if weights is not None:
        wc = weights.to(cd)
        w = wc[:, idx[:, 0]] * wc[:, idx[:, 1]]  # (B, P, T, J)
    if mask is not None:
        w = w * mask.to(cd)[:, None, :, None]
    w = w.expand_as(d)
    return (w * d).sum(dim=(1, 2, 3)), w.sum(dim=(1, 2, 3))


def reduce_terms(S: Tensor, W: Tensor, reduction: str) -> Tensor:
    """Reduce per-sequence sums: ``"mean"`` sum(S) / sum(W) (a weighted mean), ``"sum"`` sum(S),
    ``"per_sequence"`` / ``"none"`` S / W of shape (B,). A zero normaliser gives 0 (and zero gradients)."""
    if reduction == "sum":
        return S.sum()
    if reduction == "mean":
        S, W = S.sum(), W.sum()
    elif reduction not in ("per_sequence", "none"):
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    # Where W == 0 every term has zero weight, so S == 0 and S / 1 == 0 with zero gradient.
    return S / torch.where(W > 0, W, torch.ones_like(W))


def epipolar_loss(
    x: Tensor,
    F: Tensor,
    *,
    weights: Tensor | None = None,
    mask: Tensor | None = None,
    pairs: Sequence[Sequence[int]] | Tensor | None = None,
    distance: str = "symmetric",
    reduction: str = "mean",
) -> Tensor:
    """Multi-view epipolar consistency loss (reference of :func:`mvlift.ops.epipolar_loss`).

    The weighted mean (``"mean"``), weighted sum (``"sum"``) or per-sequence weighted means
    (``"per_sequence"``, alias ``"none"``: shape (B,)) of the :func:`epipolar_distances` of every view pair
    at every (t, j), weighted by ``weights_i * weights_j * mask``. Arguments as in
    :func:`epipolar_loss_terms`.
    """
    S, W = epipolar_loss_terms(x, F, weights=weights, mask=mask, pairs=pairs, distance=distance)
    return reduce_terms(S, W, reduction)


def line_matching_terms(x: Tensor, lines: Tensor, *, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per-sequence sums of ``|a x + b y + c|`` over valid (t, j), and the valid counts.

    Args:
        x: (B, T, J, 2); lines: (B, T, J, 3) as (a, b, c); mask: (B, T) bool.

    Returns:
        ``(S, W)``, each (B,), in :func:`compute_dtype` of x.
    """
    cd = compute_dtype(x.dtype)
    xc, lc = x.to(cd), lines.to(cd)
    r = (lc[..., 0] * xc[..., 0] + lc[..., 1] * xc[..., 1] + lc[..., 2]).abs()  # (B, T, J)
    w = torch.ones_like(r)
    if mask is not None:
        w = w * mask.to(cd)[:, :, None]
    return (w * r).sum(dim=(1, 2)), w.sum(dim=(1, 2))


def line_matching_loss(
    x: Tensor, lines: Tensor, *, mask: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """Line-matching loss (reference of :func:`mvlift.ops.line_matching_loss`): the mean / sum /
    per-sequence mean of ``|a x + b y + c|`` over valid (b, t, j). Shapes as in
    :func:`line_matching_terms`."""
    S, W = line_matching_terms(x, lines, mask=mask)
    return reduce_terms(S, W, reduction)


def stage1_loss(
    x0_pred: Tensor, x0: Tensor, lines: Tensor, *, mask: Tensor | None = None, line_weight: float = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Stage-1 training loss (reference of :func:`mvlift.ops.stage1_loss`).

    ``l1 = mean |x0_pred - x0|`` over the valid elements (valid frames x J x 2 coordinates),
    ``line = mean |a x^ + b y^ + c|`` over the valid (b, t, j) with ``(x^, y^) = x0_pred``, and
    ``total = l1 + line_weight * line``. Both means are 0 when no frame is valid.

    Args:
        x0_pred, x0: (B, T, J, 2); lines: (B, T, J, 3); mask: (B, T) bool; line_weight: float.

    Returns:
        ``(total, l1, line)``, 0-dim tensors in :func:`compute_dtype` of x0_pred.
    """
    cd = compute_dtype(x0_pred.dtype)
    diff = (x0_pred.to(cd) - x0.to(cd)).abs().sum(dim=-1)  # (B, T, J)
    S_line, W = line_matching_terms(x0_pred, lines, mask=mask)
    if mask is not None:
        diff = diff * mask.to(cd)[:, :, None]
    W = W.sum()
    W_safe = torch.where(W > 0, W, torch.ones_like(W))
    l1 = diff.sum() / (2.0 * W_safe)
    line = S_line.sum() / W_safe
    return l1 + line_weight * line, l1, line
