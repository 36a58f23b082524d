"""Triton kernels of the line-matching loss and of the fused stage-1 training loss (call them through
:func:`mvlift.ops.line_matching_loss` and :func:`mvlift.ops.stage1_loss`; references in
:mod:`mvlift.reference.losses`).

One program owns a tile of BLOCK flattened (t, j) points of one sequence b (a flat 1-D grid of B x tiles
programs); it reads each point (and its line) once, writes one partial per program, and a one-program
kernel reduces the partials in a fixed order (deterministic). The backward kernels recompute the
per-point terms and write each gradient once.

Math per point, with r = a x + b y + c and w = mask[b, t] (1 without a mask):

    line matching:  S = sum w |r|,  W = sum w;   loss = S / W (mean), S (sum), S_b / W_b (per sequence)
                    dx = g w sign(r) (a, b),  d(a, b, c) = g w sign(r) (x, y, 1),  g = grad / W (or grad)
    stage 1:        l1 = sum w (|dx| + |dy|) / (2 W),  line = sum w |r^| / W  (r^ from x0_pred),
                    total = l1 + line_weight * line
                    dx0_pred = w (c1 sign(x0_pred - x0) + c2 sign(r^) (a, b)),
                    dx0 = -w c1 sign(x0_pred - x0),
                    d(a, b, c) = w c2 sign(r^) (x^, y^, 1),
                    c1 = (g_total + g_l1) / (2 W),  c2 = (line_weight g_total + g_line) / W

with sign(0) = 0 (as torch.abs) and every mean 0, with zero gradients, when W = 0.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from mvlift.ops._backend import device_guard, triton_interpret

from .epipolar_loss import (
    REDUCTIONS,
    _dummy,
    _frame_weight,
    _mask_bytes,
    _seq_tile,
    finalize_partials,
    flat_grid,
)

__all__ = [
    "line_matching_loss_backward",
    "line_matching_loss_forward",
    "stage1_loss_backward",
    "stage1_loss_forward",
]


def _block() -> tuple[int, int]:
    """(BLOCK points per program, num_warps): two points per thread on the GPU; in the interpreter small
    tiles, so that the tests run several per sequence."""
    if triton_interpret():
        return 64, 1
    return 256, 4


# ----------------------------------------------------------------------------------------------- helpers
@triton.jit
def _load_points(ptr, b, offs, valid, N, CDT: tl.constexpr):
    """x and y of the tile ``offs`` of sequence b of a (B, T, J, 2) tensor."""
    two = tl.arange(0, 2)
    xy = tl.load(ptr + 2 * b * N + offs[:, None] * 2 + two[None, :], mask=valid[:, None], other=0.0)
    return tl.split(xy.to(CDT))


@triton.jit
def _load_lines(ptr, b, offs, valid, N, CDT: tl.constexpr):
    """a, b, c of the tile ``offs`` of sequence b of a (B, T, J, 3) tensor."""
    base = ptr + 3 * b * N + offs * 3
    la = tl.load(base, mask=valid, other=0.0).to(CDT)
    lb = tl.load(base + 1, mask=valid, other=0.0).to(CDT)
    lc = tl.load(base + 2, mask=valid, other=0.0).to(CDT)
    return la, lb, lc


@triton.jit
def _store_lines(ptr, b, offs, valid, N, ga, gb, gc):
    base = ptr + 3 * b * N + offs * 3
    tl.store(base, ga.to(ptr.dtype.element_ty), mask=valid)
    tl.store(base + 1, gb.to(ptr.dtype.element_ty), mask=valid)
    tl.store(base + 2, gc.to(ptr.dtype.element_ty), mask=valid)


@triton.jit
def _store_points(ptr, b, offs, valid, N, gx, gy):
    two = tl.arange(0, 2)
    gxy = tl.join(gx, gy).to(ptr.dtype.element_ty)
    tl.store(ptr + 2 * b * N + offs[:, None] * 2 + two[None, :], gxy, mask=valid[:, None])


@triton.jit
def _sign(r):
    return tl.where(r > 0, 1.0, tl.where(r < 0, -1.0, 0.0)).to(r.dtype)


# ------------------------------------------------------------------------------------------- line matching
@triton.jit
def _line_fwd_kernel(
    x_ptr,  # (B, T, J, 2)
    l_ptr,  # (B, T, J, 3)
    m_ptr,  # (B, T) uint8 or dummy
    part_ptr,  # (B, NT, 2): per-program (sum w |r|, sum w)
    N,
    J,
    T,
    NT,
    HAS_M: tl.constexpr,
    FP64: tl.constexpr,
    BLOCK: tl.constexpr,
):
    CDT: tl.constexpr = tl.float64 if FP64 else tl.float32
    b, tile = _seq_tile(NT)  # flat grid (B * NT,)
    offs = tile * BLOCK + tl.arange(0, BLOCK)
    valid = offs < N
    w = _frame_weight(m_ptr, b, offs, valid, J, T, HAS_M, CDT)
    px, py = _load_points(x_ptr, b, offs, valid, N, CDT)
    la, lb, lc = _load_lines(l_ptr, b, offs, valid, N, CDT)
    r = la * px + lb * py + lc
    out = part_ptr + (b * NT + tile) * 2
    tl.store(out, tl.sum(w * tl.abs(r), axis=0))
    tl.store(out + 1, tl.sum(w, axis=0))


@triton.jit
def _line_bwd_kernel(
    x_ptr,
    l_ptr,
    m_ptr,
    go_ptr,  # () or (B,)
    stats_ptr,  # (B + 1, 2)
    dx_ptr,  # (B, T, J, 2) or dummy
    dl_ptr,  # (B, T, J, 3) or dummy
    B,
    N,
    J,
    T,
    NT,
    RED: tl.constexpr,
    HAS_M: tl.constexpr,
    NEED_DX: tl.constexpr,
    NEED_DL: tl.constexpr,
    FP64: tl.constexpr,
    BLOCK: tl.constexpr,
):
    CDT: tl.constexpr = tl.float64 if FP64 else tl.float32
    b, tile = _seq_tile(NT)  # flat grid (B * NT,)
    offs = tile * BLOCK + tl.arange(0, BLOCK)
    valid = offs < N
    w = _frame_weight(m_ptr, b, offs, valid, J, T, HAS_M, CDT)
    px, py = _load_points(x_ptr, b, offs, valid, N, CDT)
    la, lb, lc = _load_lines(l_ptr, b, offs, valid, N, CDT)
    if RED == 1:  # sum
        g = tl.load(go_ptr).to(CDT)
    else:
        srow = B if RED == 0 else b
        sidx = 0 if RED == 0 else b
        wsum = tl.load(stats_ptr + 2 * srow + 1).to(CDT)
        g = tl.load(go_ptr + sidx).to(CDT) * tl.where(wsum > 0, 1.0 / tl.where(wsum > 0, wsum, 1.0), 0.0)
    G = g * w * _sign(la * px + lb * py + lc)
    if NEED_DX:
        _store_points(dx_ptr, b, offs, valid, N, G * la, G * lb)
    if NEED_DL:
        _store_lines(dl_ptr, b, offs, valid, N, G * px, G * py, G)


# ----------------------------------------------------------------------------------------------- stage 1
@triton.jit
def _stage1_fwd_kernel(
    xp_ptr,  # x0_pred (B, T, J, 2)
    x0_ptr,  # x0 (B, T, J, 2)
    l_ptr,  # (B, T, J, 3)
    m_ptr,  # (B, T) uint8 or dummy
    part_ptr,  # (B * NT, 3): per-program (sum w |x0_pred - x0|_1, sum w |r^|, sum w)
    N,
    J,
    T,
    NT,
    HAS_M: tl.constexpr,
    FP64: tl.constexpr,
    BLOCK: tl.constexpr,
):
    CDT: tl.constexpr = tl.float64 if FP64 else tl.float32
    b, tile = _seq_tile(NT)  # flat grid (B * NT,)
    offs = tile * BLOCK + tl.arange(0, BLOCK)
    valid = offs < N
    w = _frame_weight(m_ptr, b, offs, valid, J, T, HAS_M, CDT)
    px, py = _load_points(xp_ptr, b, offs, valid, N, CDT)
    qx, qy = _load_points(x0_ptr, b, offs, valid, N, CDT)
    la, lb, lc = _load_lines(l_ptr, b, offs, valid, N, CDT)
    out = part_ptr + (b * NT + tile) * 3
    tl.store(out, tl.sum(w * (tl.abs(px - qx) + tl.abs(py - qy)), axis=0))
    tl.store(out + 1, tl.sum(w * tl.abs(la * px + lb * py + lc), axis=0))
    tl.store(out + 2, tl.sum(w, axis=0))


@triton.jit
def _stage1_finalize_kernel(
    part_ptr,  # (R, 3) partials
    out_ptr,  # out (4,): total, l1, line, sum w
    R,
    line_weight,
    FP64: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    """One program: fixed-order (deterministic) reduction of the partials, then the three losses."""
    CDT: tl.constexpr = tl.float64 if FP64 else tl.float32
    o = tl.arange(0, BLOCK_R)
    s1 = tl.zeros([BLOCK_R], CDT)
    s2 = tl.zeros([BLOCK_R], CDT)
    sw = tl.zeros([BLOCK_R], CDT)
    for r0 in range(0, R, BLOCK_R):
        rr = r0 + o
        m = rr < R
        s1 += tl.load(part_ptr + rr * 3, mask=m, other=0.0)
        s2 += tl.load(part_ptr + rr * 3 + 1, mask=m, other=0.0)
        sw += tl.load(part_ptr + rr * 3 + 2, mask=m, other=0.0)
    S1 = tl.sum(s1, axis=0)
    S2 = tl.sum(s2, axis=0)
    W = tl.sum(sw, axis=0)
    Ws = tl.where(W > 0, W, 1.0)
    l1 = S1 / (2.0 * Ws)
    line = S2 / Ws
    tl.store(out_ptr, l1 + line_weight * line)
    tl.store(out_ptr + 1, l1)
    tl.store(out_ptr + 2, line)
    tl.store(out_ptr + 3, W)


@triton.jit
def _stage1_bwd_kernel(
    xp_ptr,
    x0_ptr,
    l_ptr,
    m_ptr,
    go_ptr,  # (4,): grads of total, l1, line (the 4th is ignored)
    out_ptr,  # the forward's (4,) output
    dxp_ptr,
    dx0_ptr,
    dl_ptr,
    N,
    J,
    T,
    NT,
    line_weight,
    HAS_M: tl.constexpr,
    NEED_DXP: tl.constexpr,
    NEED_DX0: tl.constexpr,
    NEED_DL: tl.constexpr,
    FP64: tl.constexpr,
    BLOCK: tl.constexpr,
):
    CDT: tl.constexpr = tl.float64 if FP64 else tl.float32
    b, tile = _seq_tile(NT)  # flat grid (B * NT,)
    offs = tile * BLOCK + tl.arange(0, BLOCK)
    valid = offs < N
    w = _frame_weight(m_ptr, b, offs, valid, J, T, HAS_M, CDT)
    px, py = _load_points(xp_ptr, b, offs, valid, N, CDT)
    qx, qy = _load_points(x0_ptr, b, offs, valid, N, CDT)
    la, lb, lc = _load_lines(l_ptr, b, offs, valid, N, CDT)
    W = tl.load(out_ptr + 3).to(CDT)
    inv = tl.where(W > 0, 1.0 / tl.where(W > 0, W, 1.0), 0.0)
    g_total = tl.load(go_ptr).to(CDT)
    c1 = (g_total + tl.load(go_ptr + 1).to(CDT)) * 0.5 * inv
    c2 = (line_weight * g_total + tl.load(go_ptr + 2).to(CDT)) * inv
    sx = w * c1 * _sign(px - qx)
    sy = w * c1 * _sign(py - qy)
    G = w * c2 * _sign(la * px + lb * py + lc)
    if NEED_DXP:
        _store_points(dxp_ptr, b, offs, valid, N, sx + G * la, sy + G * lb)
    if NEED_DX0:
        _store_points(dx0_ptr, b, offs, valid, N, -sx, -sy)
    if NEED_DL:
        _store_lines(dl_ptr, b, offs, valid, N, G * px, G * py, G)


# ----------------------------------------------------------------------------------------------- launchers
def _grid(op: str, x: torch.Tensor) -> tuple[int, int, int, int, int, int, int, tuple[int]]:
    """(B, T, J, N = T J, BLOCK, num_warps, NT = tiles per sequence, the flat grid (B NT,))."""
    B, T, J = x.shape[:3]
    block, warps = _block()
    NT = triton.cdiv(T * J, block)
    grid = flat_grid(op, f"B = {B} sequences x {NT} tiles of {block} points", B * NT)
    return B, T, J, T * J, block, warps, NT, grid


def line_matching_loss_forward(
    x: torch.Tensor,
    lines: torch.Tensor,
    mask: torch.Tensor | None,
    reduction: str,
    compute_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Line-matching loss forward (two launches: the point kernel, then the fixed-order reduction).

    Preconditions (checked by :func:`mvlift.ops.line_matching_loss`): contiguous tensors on one device;
    x (B, T, J, 2) and lines (B, T, J, 3) float16/bfloat16/float32/float64; mask (B, T) bool or None;
    reduction in ``"mean"``, ``"sum"``, ``"per_sequence"``; compute_dtype float32 or float64. Flat grid
    (B cdiv(T J, BLOCK),): at most 2^31 - 1 programs, else a ValueError. Launches on x's device.

    Returns:
        ``(loss, stats)`` as in :func:`mvlift.kernels.epipolar_loss.finalize_partials`.
    """
    B, T, J, N, block, warps, NT, grid = _grid("line_matching_loss", x)
    partials = torch.empty((B, NT, 2), dtype=compute_dtype, device=x.device)
    if B * NT > 0:
        with device_guard(x):
            _line_fwd_kernel[grid](
                x, lines, _dummy(_mask_bytes(mask), x), partials, N, J, T, NT,
                HAS_M=mask is not None, FP64=compute_dtype == torch.float64, BLOCK=block, num_warps=warps,
            )  # fmt: skip
    return finalize_partials(partials, reduction)


def line_matching_loss_backward(
    grad_loss: torch.Tensor,
    x: torch.Tensor,
    lines: torch.Tensor,
    mask: torch.Tensor | None,
    stats: torch.Tensor,
    reduction: str,
    need_x: bool = True,
    need_lines: bool = False,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Line-matching loss backward: one launch writes dx (and dlines) once per point.

    Returns:
        ``(dx, dlines)`` like x and lines, or None where not asked.
    """
    B, T, J, N, block, warps, NT, grid = _grid("line_matching_loss backward", x)
    dx = torch.empty_like(x) if need_x else None
    dl = torch.empty_like(lines) if need_lines else None
    if B * NT > 0 and (need_x or need_lines):
        with device_guard(x):
            _line_bwd_kernel[grid](
                x, lines, _dummy(_mask_bytes(mask), x), grad_loss.to(stats.dtype).contiguous(), stats,
                x if dx is None else dx, lines if dl is None else dl, B, N, J, T, NT,
                RED=REDUCTIONS[reduction], HAS_M=mask is not None, NEED_DX=need_x, NEED_DL=need_lines,
                FP64=stats.dtype == torch.float64, BLOCK=block, num_warps=warps,
            )  # fmt: skip
    return dx, dl


def stage1_loss_forward(
    x0_pred: torch.Tensor,
    x0: torch.Tensor,
    lines: torch.Tensor,
    mask: torch.Tensor | None,
    line_weight: float,
    compute_dtype: torch.dtype,
) -> torch.Tensor:
    """Fused stage-1 loss forward: the L1 and line terms in one pass (plus the fixed-order reduction).

    Preconditions (checked by :func:`mvlift.ops.stage1_loss`): contiguous tensors on one device; x0_pred,
    x0 (B, T, J, 2), lines (B, T, J, 3) float16/bfloat16/float32/float64; mask (B, T) bool or None.

    Returns:
        (4,) in ``compute_dtype``: ``total, l1, line, W`` (W = the number of valid (b, t, j)).
    """
    B, T, J, N, block, warps, NT, grid = _grid("stage1_loss", x0_pred)
    fp64 = compute_dtype == torch.float64
    partials = torch.empty((B * NT, 3), dtype=compute_dtype, device=x0_pred.device)
    out = torch.empty((4,), dtype=compute_dtype, device=x0_pred.device)
    fin_block, fin_warps = (4, 1) if triton_interpret() else (128, 4)  # tests run the loop several times
    with device_guard(x0_pred):
        if B * NT > 0:
            _stage1_fwd_kernel[grid](
                x0_pred, x0, lines, _dummy(_mask_bytes(mask), x0_pred), partials, N, J, T, NT,
                HAS_M=mask is not None, FP64=fp64, BLOCK=block, num_warps=warps,
            )  # fmt: skip
        _stage1_finalize_kernel[(1,)](
            partials, out, B * NT, float(line_weight), FP64=fp64, BLOCK_R=fin_block, num_warps=fin_warps
        )
    return out


def stage1_loss_backward(
    grad_out: torch.Tensor,
    x0_pred: torch.Tensor,
    x0: torch.Tensor,
    lines: torch.Tensor,
    mask: torch.Tensor | None,
    out: torch.Tensor,
    line_weight: float,
    need_x0_pred: bool = True,
    need_x0: bool = False,
    need_lines: bool = False,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Fused stage-1 loss backward: one launch writes each asked gradient once per point.

    Args:
        grad_out: (4,) gradient of the forward's output; out: the forward's (4,) output.

    Returns:
        ``(dx0_pred, dx0, dlines)``, or None where not asked.
    """
    B, T, J, N, block, warps, NT, grid = _grid("stage1_loss backward", x0_pred)
    dxp = torch.empty_like(x0_pred) if need_x0_pred else None
    dx0 = torch.empty_like(x0) if need_x0 else None
    dl = torch.empty_like(lines) if need_lines else None
    if B * NT > 0 and (need_x0_pred or need_x0 or need_lines):
        with device_guard(x0_pred):
            _stage1_bwd_kernel[grid](
                x0_pred, x0, lines, _dummy(_mask_bytes(mask), x0_pred), grad_out.to(out.dtype).contiguous(),
                out, x0_pred if dxp is None else dxp, x0 if dx0 is None else dx0, lines if dl is None else dl,
                N, J, T, NT, float(line_weight),
                HAS_M=mask is not None, NEED_DXP=need_x0_pred, NEED_DX0=need_x0, NEED_DL=need_lines,
                FP64=out.dtype == torch.float64, BLOCK=block, num_warps=warps,
            )  # fmt: skip
    return dxp, dx0, dl
