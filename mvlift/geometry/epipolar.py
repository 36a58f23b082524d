"""Epipolar geometry: fundamental matrices between every pair of views, epipoles, epipolar lines and the
point-to-epipolar-line distances used as multi-view consistency losses.

Convention (``docs/conventions.md``): ``F[..., i, j] @ x~_i`` is the epipolar line of a point x_i of view i
in view j, so ``x~_j^T F[i, j] x~_i = 0``, ``F[j, i] = F[i, j]^T`` and ``F[i, i] = 0``; ``x~ = (x, y, 1)``.
A line (a, b, c) means ``a x + b y + c = 0``; a normalized line has ``a^2 + b^2 = 1`` and the sign rule
a > 0, or a == 0 and b > 0. Everything works in whatever image frame the projection matrices map to
(pixels for ``K [R | t]``, the normalized [-1, 1] frame for ``N K [R | t]``); distances are in that unit.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mvlift.geometry.cameras import Cameras

__all__ = [
    "all_pairs",
    "camera_centers_homogeneous",
    "camera_epipoles",
    "epipolar_lines",
    "epipoles",
    "fundamental_from_cameras",
    "fundamental_matrices",
    "normalize_lines",
    "point_line_distance",
    "ring_pairs",
    "sampson_distance",
    "symmetric_epipolar_distance",
]

# Rows kept when row p of a 3x4 camera matrix is dropped, and the 2x2 column minors (Plücker coordinates
# of the 2x4 remainder) in the order (01, 02, 03, 12, 13, 23).
_KEPT_ROWS = ((1, 2), (0, 2), (0, 1))
_COL_A = (0, 0, 0, 1, 1, 2)
_COL_B = (1, 2, 3, 2, 3, 3)
# Laplace expansion of a 4x4 determinant [A; B] (A, B: 2x4) along A's two rows:
# det = sum_k _PLUCKER_SIGN[k] * L_A[k] * L_B[_COMPLEMENT[k]] (the Plücker inner product).
_COMPLEMENT = (5, 4, 3, 2, 1, 0)
_PLUCKER_SIGN = (1.0, -1.0, 1.0, 1.0, -1.0, 1.0)

#: A pair of views is "coincident" when its fundamental matrix before scaling is below this multiple of
#: the dtype's machine epsilon, relative to the scale of the two (Frobenius-normalized) cameras. Measured:
#: truly coincident centres give < 1 eps (float32 and float64, pixel and normalized P); the neighbours of a
#: 6-camera, 3 m ring give about 0.1 (i.e. 1e6 eps in float32).
COINCIDENT_TOL_EPS = 32.0


def _check_points(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (..., 2), got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (..., 2), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def _check_F(F: Tensor, name: str = "F") -> None:
    if not isinstance(F, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (..., 3, 3), got {type(F).__name__}")
    if F.ndim < 2 or F.shape[-2:] != (3, 3):
        raise ValueError(f"{name} must have shape (..., 3, 3), got {tuple(F.shape)}")
    if not F.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {F.dtype}")


def _check_P(P: Tensor) -> None:
    if not isinstance(P, Tensor):
        raise TypeError(f"P must be a torch.Tensor of shape (..., V, 3, 4), got {type(P).__name__}")
    if P.ndim < 3 or P.shape[-2:] != (3, 4):
        raise ValueError(f"P must have shape (..., V, 3, 4), got {tuple(P.shape)}")
    if not P.is_floating_point():
        raise TypeError(f"P must be a floating-point tensor, got dtype {P.dtype}")


def _homogeneous(x: Tensor) -> Tensor:
    return torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)


def _unit_frobenius(P: Tensor) -> Tensor:
    """Scale each 3x4 matrix to unit Frobenius norm (homogeneous quantities are unchanged)."""
    n = torch.linalg.vector_norm(P, dim=(-2, -1), keepdim=True)
    return P / n.clamp_min(torch.finfo(P.dtype).tiny)


# ------------------------------------------------------------------------------------ fundamental
def _plucker_rows(P: Tensor) -> Tensor:
    """(..., 3, 4) -> (..., 3, 6): for each dropped row p, the 2x2 column minors of the two kept rows."""
    rows = torch.tensor(_KEPT_ROWS, device=P.device)
    A = P[..., rows, :]  # (..., 3, 2, 4)
    ca = torch.tensor(_COL_A, device=P.device)
    cb = torch.tensor(_COL_B, device=P.device)
    r0, r1 = A[..., 0, :], A[..., 1, :]
    return r0[..., ca] * r1[..., cb] - r0[..., cb] * r1[..., ca]


def fundamental_matrices(P: Tensor, *, check: bool = True) -> Tensor:
    """Fundamental matrices between every ordered pair of V views.

    Computed in closed form from the cameras (Hartley & Zisserman, eq. 17.3): ``F[i, j][q, p] =
    (-1)^(p+q) det([P_i without row p; P_j without row q])``, each 4x4 determinant expanded in Plücker
    coordinates, so F is a polynomial in the (Frobenius-normalized) camera matrices: no inverses, no SVD,
    exact gradients. Valid for any finite or affine cameras, pixel or normalized ``P`` alike.

    Each F[i, j] (i < j) is scaled to unit Frobenius norm with a deterministic sign (its entry of largest
    magnitude is positive); F[j, i] is then exactly F[i, j]^T and F[i, i] is exactly zero.

    Args:
        P: projection matrices (..., V, 3, 4) (``Cameras.P`` or ``Cameras.P_normalized``).
        check: raise when two views share a camera centre (one host sync). With ``check=False`` such a
            pair gives a meaningless (but finite) F.

    Returns:
        F of shape (..., V, V, 3, 3) with ``x~_j^T F[..., i, j, :, :] x~_i = 0``.

    Raises:
        ValueError: views i and j share a camera centre (no fundamental matrix).
    """
    _check_P(P)
    V = P.shape[-3]
    dtype = P.dtype
    L = _plucker_rows(_unit_frobenius(P))  # (..., V, 3, 6)
    iu = torch.triu_indices(V, V, 1, device=P.device)  # (2, Pn), lexicographic i < j
    Li, Lj = L[..., iu[0], :, :], L[..., iu[1], :, :]  # (..., Pn, 3, 6)
    sign = torch.tensor(_PLUCKER_SIGN, dtype=dtype, device=P.device)
    comp = torch.tensor(_COMPLEMENT, device=P.device)
    # raw[q, p] = sum_k sign_k Li[p, k] Lj[q, comp_k]
    raw = torch.einsum("...pk,...qk->...qp", Li * sign, Lj[..., comp])
    pq = torch.arange(3, device=P.device)
    raw = raw * (1.0 - 2.0 * ((pq[:, None] + pq[None, :]) % 2)).to(dtype)  # (-1)^(p+q)

    norm = torch.linalg.vector_norm(raw, dim=(-2, -1))  # (..., Pn)
    if check and raw.numel():
        scale = torch.linalg.vector_norm(Li, dim=(-2, -1)) * torch.linalg.vector_norm(Lj, dim=(-2, -1))
        bad = norm.detach() <= COINCIDENT_TOL_EPS * torch.finfo(dtype).eps * scale.detach()
        bad = bad.reshape(-1, bad.shape[-1]).any(dim=0)  # (Pn,): bad anywhere in the batch
        if bool(bad.any()):
            k = int(torch.nonzero(bad)[0, 0])
            i, j = int(iu[0, k]), int(iu[1, k])
            raise ValueError(f"views {i} and {j} share a camera centre: no fundamental matrix")
    Fu = raw / norm.clamp_min(torch.finfo(dtype).tiny)[..., None, None]
    flat = Fu.flatten(-2)
    big = flat.detach().abs().argmax(dim=-1, keepdim=True)
    s = torch.where(torch.gather(flat.detach(), -1, big) < 0, -1.0, 1.0).to(dtype)
    Fu = Fu * s[..., None]

    # Scatter the upper triangle and its transpose into (..., V, V, 3, 3) (differentiable, exact).
    onehot = torch.zeros(iu.shape[1], V, V, dtype=dtype, device=P.device)
    k = torch.arange(iu.shape[1], device=P.device)
    upper = onehot.index_put((k, iu[0], iu[1]), torch.ones((), dtype=dtype, device=P.device))
    lower = onehot.index_put((k, iu[1], iu[0]), torch.ones((), dtype=dtype, device=P.device))
    return torch.einsum("kij,...kab->...ijab", upper, Fu) + torch.einsum("kij,...kba->...ijab", lower, Fu)


def fundamental_from_cameras(cams: Cameras, normalized: bool = False, *, check: bool = True) -> Tensor:
    """:func:`fundamental_matrices` of ``cams.P`` (pixels) or ``cams.P_normalized`` ([-1, 1] frame).

    Returns:
        (*batch, V, V, 3, 3).
    """
    if not isinstance(cams, Cameras):
        raise TypeError(f"cams must be a mvlift.geometry.Cameras, got {type(cams).__name__}")
    return fundamental_matrices(cams.P_normalized if normalized else cams.P, check=check)


# ------------------------------------------------------------------------------------ epipoles
def _null_vector_rows(F: Tensor) -> Tensor:
    """Unit vector orthogonal to the rows of a rank-2 F (..., 3, 3): the largest pairwise cross product."""
    r0, r1, r2 = F[..., 0, :], F[..., 1, :], F[..., 2, :]
    c = torch.stack(
        [
            torch.linalg.cross(r0, r1, dim=-1),
            torch.linalg.cross(r0, r2, dim=-1),
            torch.linalg.cross(r1, r2, dim=-1),
        ],
        dim=-2,
    )  # (..., 3, 3)
    n = torch.linalg.vector_norm(c, dim=-1)  # (..., 3)
    best = n.detach().argmax(dim=-1, keepdim=True)
    e = torch.gather(c, -2, best[..., None].expand(*best.shape, 3))[..., 0, :]
    return _orient_homogeneous(e / torch.gather(n, -1, best).clamp_min(torch.finfo(F.dtype).tiny))


def _orient_homogeneous(e: Tensor) -> Tensor:
    """Sign rule for homogeneous points: w > 0; when w == 0, the largest-magnitude entry is positive."""
    w = e[..., 2].detach()
    big = torch.gather(e.detach(), -1, e.detach().abs().argmax(dim=-1, keepdim=True))[..., 0]
    s = torch.where(w != 0, torch.sign(w), torch.where(big < 0, -1.0, 1.0).to(e.dtype))
    return e * s[..., None]


def epipoles(F: Tensor) -> tuple[Tensor, Tensor]:
    """Both epipoles of fundamental matrices ``F = F[i, j]`` (x_i -> epipolar line in view j).

    Args:
        F: (..., 3, 3), rank 2.

    Returns:
        ``(e_i, e_j)``, homogeneous, each (..., 3), unit norm, oriented with w > 0 (or, for an epipole at
        infinity, its largest-magnitude entry positive):

        - ``e_i``: the epipole in view i = the image of camera j's centre in view i; ``F @ e_i = 0``.
        - ``e_j``: the epipole in view j = the image of camera i's centre in view j; ``F^T @ e_j = 0``.
          Every epipolar line ``F @ x~_i`` passes through it.

        A zero F (the diagonal F[i, i]) gives zero vectors. Dehomogenize with ``e[..., :2] / e[..., 2:]``.
    """
    _check_F(F)
    return _null_vector_rows(F), _null_vector_rows(F.transpose(-1, -2))


def camera_centers_homogeneous(P: Tensor) -> Tensor:
    """Homogeneous camera centres (..., 4), the null vectors of P (..., 3, 4): ``P @ C = 0``.

    ``C_k = (-1)^(k+1) det(P without column k)``, so for ``P = K [R | t]`` (det K R > 0) the last entry
    is ``det(K R) > 0`` and ``C[:3] / C[3]`` is the centre ``-R^T t``; an affine camera gives ``C[3] = 0``.
    """
    if not isinstance(P, Tensor) or P.ndim < 2 or P.shape[-2:] != (3, 4):
        raise ValueError(f"P must be a tensor of shape (..., 3, 4), got {getattr(P, 'shape', type(P))}")
    cols = [[c for c in range(4) if c != k] for k in range(4)]
    dets = [torch.linalg.det(P[..., :, c]) for c in cols]
    return torch.stack([d if k % 2 else -d for k, d in enumerate(dets)], dim=-1)


def camera_epipoles(P: Tensor) -> Tensor:
    """Epipoles straight from the cameras: ``E[..., i, j] = P_j @ C_i`` (camera i's centre seen in view j).

    Args:
        P: (..., V, 3, 4), pixel or normalized.

    Returns:
        Homogeneous epipoles (..., V, V, 3), unit norm, not re-oriented: w > 0 iff camera i's centre is in
        front of camera j (for cameras with det(K R) > 0). E[i, j] is the ``e_j`` of
        :func:`epipoles` (F[i, j]) up to sign; the diagonal is zero.
    """
    _check_P(P)
    Pn = _unit_frobenius(P)
    C = camera_centers_homogeneous(Pn)  # (..., V, 4)
    E = torch.einsum("...jab,...ib->...ija", Pn, C)
    V = P.shape[-3]
    off_diagonal = ~torch.eye(V, dtype=torch.bool, device=P.device)
    E = E * off_diagonal[..., None].to(E.dtype)  # P_i C_i = 0 up to round-off: make it exact
    n = torch.linalg.vector_norm(E, dim=-1, keepdim=True)
    return E / n.clamp_min(torch.finfo(P.dtype).tiny)


# ------------------------------------------------------------------------------------ lines
def normalize_lines(lines: Tensor) -> Tensor:
    """Scale lines (..., 3) to ``a^2 + b^2 = 1`` with the sign rule a > 0, or a == 0 and b > 0.

    A degenerate line (a = b = 0: the line at infinity, e.g. the epipolar line of the epipole itself)
    becomes (1, 0, 0), finite, with zero gradient.
    """
    if not isinstance(lines, Tensor) or lines.ndim < 1 or lines.shape[-1] != 3:
        raise ValueError(
            f"lines must be a tensor of shape (..., 3), got {getattr(lines, 'shape', type(lines))}"
        )
    fallback = torch.zeros_like(lines)
    fallback[..., 0] = 1.0
    return _normalize_lines(lines, fallback)


def _normalize_lines(lines: Tensor, fallback: Tensor) -> Tensor:
    """Normalize + sign rule; rows with a = b = 0 take ``fallback`` (assumed already normalized)."""
    a, b = lines[..., 0], lines[..., 1]
    n2 = a * a + b * b
    degenerate = n2 <= torch.finfo(lines.dtype).tiny
    n = torch.sqrt(torch.where(degenerate, torch.ones_like(n2), n2))
    positive = (a > 0) | ((a == 0) & (b > 0))
    s = torch.where(positive, 1.0, -1.0).to(lines.dtype)
    out = lines * (s / n)[..., None]
    return torch.where(degenerate[..., None], fallback, out)


def epipolar_lines(x_i: Tensor, F_ij: Tensor, normalize: bool = True) -> Tensor:
    """Epipolar lines in view j of points of view i: ``l = F_ij @ (x, y, 1)``.

    Args:
        x_i: points of view i (..., 2).
        F_ij: F[i, j] (..., 3, 3), broadcast against x_i's leading dims.
        normalize: apply :func:`normalize_lines` (a^2 + b^2 = 1, sign rule); else the raw ``F x~``.

    Returns:
        Lines (..., 3) in view j.
    """
    _check_points(x_i, "x_i")
    _check_F(F_ij, "F_ij")
    lines = (F_ij @ _homogeneous(x_i)[..., None])[..., 0]
    return normalize_lines(lines) if normalize else lines


def point_line_distance(x: Tensor, lines: Tensor, eps: float = 1e-12) -> Tensor:
    """``|a x + b y + c| / sqrt(a^2 + b^2 + eps)``; x (..., 2), lines (..., 3) broadcast -> (...)."""
    _check_points(x, "x")
    if not isinstance(lines, Tensor) or lines.ndim < 1 or lines.shape[-1] != 3:
        raise ValueError(
            f"lines must be a tensor of shape (..., 3), got {getattr(lines, 'shape', type(lines))}"
        )
    a, b, c = lines[..., 0], lines[..., 1], lines[..., 2]
    return (a * x[..., 0] + b * x[..., 1] + c).abs() / torch.sqrt(a * a + b * b + eps)


def symmetric_epipolar_distance(x_i: Tensor, x_j: Tensor, F_ij: Tensor, eps: float = 1e-12) -> Tensor:
    """Mean of the two point-to-epipolar-line distances of a correspondence (unit: the points' unit).

    ``0.5 * (d(x_j, F_ij x~_i) + d(x_i, F_ij^T x~_j))`` with ``d(x, l) = |l . x~| / sqrt(a^2 + b^2 + eps)``.

    Args:
        x_i: points in view i (..., 2); x_j: points in view j (..., 2); F_ij: F[i, j] (..., 3, 3); all
            broadcast.

    Returns:
        (...).
    """
    _check_points(x_i, "x_i")
    _check_points(x_j, "x_j")
    _check_F(F_ij, "F_ij")
    xi, xj = _homogeneous(x_i), _homogeneous(x_j)
    line_j = (F_ij @ xi[..., None])[..., 0]
    line_i = (F_ij.transpose(-1, -2) @ xj[..., None])[..., 0]
    return 0.5 * (point_line_distance(x_j, line_j, eps) + point_line_distance(x_i, line_i, eps))


def sampson_distance(x_i: Tensor, x_j: Tensor, F_ij: Tensor, eps: float = 1e-12) -> Tensor:
    """First-order geometric (Sampson) error of a correspondence, not squared (unit: the points' unit).

    ``|x~_j^T F x~_i| / sqrt((F x~_i)_0^2 + (F x~_i)_1^2 + (F^T x~_j)_0^2 + (F^T x~_j)_1^2 + eps)``.

    Args:
        x_i (..., 2), x_j (..., 2), F_ij (..., 3, 3): broadcast.

    Returns:
        (...).
    """
    _check_points(x_i, "x_i")
    _check_points(x_j, "x_j")
    _check_F(F_ij, "F_ij")
    xi, xj = _homogeneous(x_i), _homogeneous(x_j)
    line_j = (F_ij @ xi[..., None])[..., 0]
    line_i = (F_ij.transpose(-1, -2) @ xj[..., None])[..., 0]
    num = (line_j * xj).sum(dim=-1).abs()
    den = line_j[..., 0] ** 2 + line_j[..., 1] ** 2 + line_i[..., 0] ** 2 + line_i[..., 1] ** 2
    return num / torch.sqrt(den + eps)


# ------------------------------------------------------------------------------------ view pairs
def all_pairs(num_views: int, *, device: torch.device | str | None = None) -> Tensor:
    """All unordered view pairs (i, j), i < j, in lexicographic order: LongTensor (V (V - 1) / 2, 2)."""
    if not isinstance(num_views, int) or num_views < 0:
        raise ValueError(f"num_views must be a non-negative int, got {num_views!r}")
    return torch.triu_indices(num_views, num_views, 1, device=device).T.contiguous()


def ring_pairs(num_views: int, input_view: int = 0, *, device: torch.device | str | None = None) -> Tensor:
    """Ring-neighbour pairs (i, i + 1 mod V) plus every (input_view, j) pair, as (min, max), deduplicated
    and sorted lexicographically: LongTensor (P, 2). (The pairs the authors' stage-2 code uses.)"""
    if not isinstance(num_views, int) or num_views < 0:
        raise ValueError(f"num_views must be a non-negative int, got {num_views!r}")
    if num_views and not 0 <= input_view < num_views:
        raise ValueError(f"input_view must be in [0, {num_views}), got {input_view}")
    pairs = {(min(i, (i + 1) % num_views), max(i, (i + 1) % num_views)) for i in range(num_views)}
    pairs |= {(min(input_view, j), max(input_view, j)) for j in range(num_views)}
    pairs = sorted(p for p in pairs if p[0] != p[1])
    return torch.tensor(pairs, dtype=torch.long, device=device).reshape(-1, 2)
