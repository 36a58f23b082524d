"""Triton kernels of the fused all-pairs epipolar consistency loss (call it through
:func:`mvlift.ops.epipolar_loss`; the plain-torch reference is :func:`mvlift.reference.losses.epipolar_loss`).

Layout. One program owns a tile of BLOCK flattened (t, j) points of one sequence b, for ALL V views: it loads
the V view tiles of x (and of the weights) once into registers (as compile-time tuples of V tensors), then
loops, fully unrolled, over the view pairs (a compile-time tuple ``PAIRS``), loading the 9 entries of
``F[b, i, j]`` per pair. No (B, P, T, J) intermediate exists. The forward writes one (sum w d, sum w) partial
per program; a one-program kernel then reduces the partials in a fixed order (deterministic) into the loss
and the per-sequence statistics that the backward needs. The backward recomputes the pair terms per point
and writes dx (and dw) once per point. dF has a kernel of its own, one program per (sequence, pair, chunk
of tiles) that loads only the pair's two views, accumulates per point over its tiles and writes 9 partial
sums, which the launcher adds with ``torch.sum`` (deterministic for a fixed shape); inside the dx kernel its
block-wide sums (9 per pair) doubled the registers and made V = 8 spill. Every grid is flat (1-D), so the
tile count per sequence has no 65535 limit (CUDA's limit on grid axes 1 and 2).

Registers (one point per thread; ``benchmarks/compile_kernels.py`` prints them, ``benchmarks/RESULTS.md``
keeps the table): on sm_90 and sm_80 no kernel spills up to V = 14, in every dtype; the dx + dw kernel
spills about 120 bytes at V = 15 and 400 at V = 16 (the largest V allowed), in float64 136 at V = 16 (and
the float64 forward 16 bytes at V = 15 on sm_80). CI fails on any spill at V <= 8.

Math for one pair (i, j), with p = x~_i = (u, v, 1), q = x~_j = (qx, qy, 1), F = F[b, i, j]:

    l = F p            (epipolar line of x_i in view j)
    m = F^T q          (epipolar line of x_j in view i)
    r = q^T F p = q . l = p . m
    symmetric: d = 0.5 |r| (A + C),     A = (l0^2 + l1^2 + eps)^-1/2,  C = (m0^2 + m1^2 + eps)^-1/2
    sampson:   d = |r| S,               S = (l0^2 + l1^2 + m0^2 + m1^2 + eps)^-1/2

Gradient (per point, G = dLoss/dd = grad_out * w / normaliser), with Gr = dd/dr (sign(r) = 0 at r = 0, as
torch.abs), Gl_a = dd/dl_a, Gm_b = dd/dm_b:

    symmetric: Gr = 0.5 sign(r) (A + C),  Gl_a = -0.5 |r| A^3 l_a,  Gm_b = -0.5 |r| C^3 m_b
    sampson:   Gr = sign(r) S,            Gl_a = -|r| S^3 l_a,       Gm_b = -|r| S^3 m_b
    du  = Gr m0 + Gl0 F00 + Gl1 F10        dqx = Gr l0 + Gm0 F00 + Gm1 F01
    dv  = Gr m1 + Gl0 F01 + Gl1 F11        dqy = Gr l1 + Gm0 F10 + Gm1 F11
    dF[a, b] = (Gr q_a + [a < 2] Gl_a) p_b + [b < 2] Gm_b q_a

and, for the weights, with the pair weight w = weights_i weights_j mask and L the (per-sequence) loss,
dLoss/dw = grad_out (d - L) / normaliser for the means and grad_out d for the sum.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from mvlift.ops._backend import device_guard, triton_interpret

__all__ = [
    "DISTANCES",
    "MAX_PROGRAMS",
    "REDUCTIONS",
    "epipolar_loss_backward",
    "epipolar_loss_forward",
    "finalize_partials",
    "flat_grid",
]

#: ``distance`` name -> the kernels' DIST code.
DISTANCES = {"symmetric": 0, "sampson": 1}
#: ``reduction`` name -> the kernels' RED code.
REDUCTIONS = {"mean": 0, "sum": 1, "per_sequence": 2}
_EPS = 1e-12


def _block() -> tuple[int, int]:
    """(BLOCK points per program, num_warps).

    On the GPU one point per thread: 128 points, 4 warps (sm_90, V = 6, float32, weights and mask: 40
    registers forward, 72 for dx + dw, 45 for dF, no spills; V = 8: 48 / 128 / 45; 256 points triples
    the forward's registers). In the interpreter a program costs about the same whatever its size.
    """
    if triton_interpret():
        return 64, 1
    return 128, 4


# ----------------------------------------------------------------------------------------------- helpers
@triton.jit
def _bump(t, I: tl.constexpr, val):
    """Tuple ``t`` with ``val`` added to its element I (tuples of tensors are immutable)."""
    return t[:I] + (t[I] + val,) + t[I + 1 :]


@triton.jit
def _pin(t, FP64: tl.constexpr):
    """``t`` unchanged, through an opaque move with side effects: LLVM may neither sink the arithmetic that
    computes t below it nor hoist later loads above it.

    Why: the pair loops are unrolled, and LLVM otherwise hoists the scalar loads of every pair's F to the
    top of the kernel and sinks the arithmetic to its end, so all 9 P entries of F are live at once (252
    registers at V = 8: the float32 backward sat at 240 registers, the bfloat16 one and the float64 forward
    at V = 6 spilled). Pinning each pair's accumulators bounds the live F entries to one pair's.
    """
    if FP64:
        return tl.inline_asm_elementwise(
            "mov.b64 $0, $1;", "=l,l", [t], dtype=tl.float64, is_pure=False, pack=1
        )
    else:
        return tl.inline_asm_elementwise(
            "mov.b32 $0, $1;", "=r,r", [t], dtype=tl.float32, is_pure=False, pack=1
        )


@triton.jit
def _pin_at(t, I: tl.constexpr, FP64: tl.constexpr):
    """Tuple ``t`` with its element I pinned (:func:`_pin`)."""
    return t[:I] + (_pin(t[I], FP64),) + t[I + 1 :]


@triton.jit
def _load_f(f_ptr, CDT: tl.constexpr):
    """The 9 entries of one row-major 3x3 matrix, as scalars of the compute dtype."""
    f00 = tl.load(f_ptr + 0).to(CDT)
    f01 = tl.load(f_ptr + 1).to(CDT)
    f02 = tl.load(f_ptr + 2).to(CDT)
    f10 = tl.load(f_ptr + 3).to(CDT)
    f11 = tl.load(f_ptr + 4).to(CDT)
    f12 = tl.load(f_ptr + 5).to(CDT)
    f20 = tl.load(f_ptr + 6).to(CDT)
    f21 = tl.load(f_ptr + 7).to(CDT)
    f22 = tl.load(f_ptr + 8).to(CDT)
    return f00, f01, f02, f10, f11, f12, f20, f21, f22


@triton.jit
def _rsqrt(v, FP64: tl.constexpr):
    """1 / sqrt(v). float32: the hardware approximation (rsqrt.approx.f32, about 2 ulp). float64: the IEEE
    square root and division, because ``tl.math.rsqrt`` lowers to ``rsqrt.approx.f64`` there (about 2^-23
    relative error, far from float64 accuracy)."""
    if FP64:
        return 1.0 / tl.sqrt(v)
    else:
        return tl.math.rsqrt(v)


@triton.jit
def _pair_terms(
    u, v, qx, qy, f00, f01, f02, f10, f11, f12, f20, f21, f22,
    DIST: tl.constexpr, EPS: tl.constexpr, FP64: tl.constexpr,
):  # fmt: skip
    """Distance d of one pair and the factors of its gradient (see the module docstring):
    returns d, Gr (without sign(r)), gl, gm (Gl_a = gl l_a, Gm_b = gm m_b), l0, l1, m0, m1, r."""
    l0 = f00 * u + f01 * v + f02
    l1 = f10 * u + f11 * v + f12
    m0 = f00 * qx + f10 * qy + f20
    m1 = f01 * qx + f11 * qy + f21
    r = qx * l0 + qy * l1 + (f20 * u + f21 * v + f22)
    ar = tl.abs(r)
    if DIST == 0:
        a = _rsqrt(l0 * l0 + l1 * l1 + EPS, FP64)
        c = _rsqrt(m0 * m0 + m1 * m1 + EPS, FP64)
        d = 0.5 * ar * (a + c)
        gr = 0.5 * (a + c)
        gl = -0.5 * ar * a * a * a
        gm = -0.5 * ar * c * c * c
    else:
        s = _rsqrt(l0 * l0 + l1 * l1 + m0 * m0 + m1 * m1 + EPS, FP64)
        d = ar * s
        gr = s
        gl = -ar * s * s * s
        gm = gl
    return d, gr, gl, gm, l0, l1, m0, m1, r


@triton.jit
def _load_views(x_ptr, w_ptr, b, offs, valid, N, V: tl.constexpr, HAS_W: tl.constexpr, CDT: tl.constexpr):
    """The tile ``offs`` of sequence b in every view: tuples (x coords, y coords, weights) of V tensors."""
    two = tl.arange(0, 2)
    xs = ()
    ys = ()
    ws = ()
    for k in tl.static_range(V):
        row = (b * V + k) * N  # int64
        xy = tl.load(x_ptr + 2 * row + offs[:, None] * 2 + two[None, :], mask=valid[:, None], other=0.0)
        px, py = tl.split(xy.to(CDT))
        xs = xs + (px,)
        ys = ys + (py,)
        if HAS_W:
            ws = ws + (tl.load(w_ptr + row + offs, mask=valid, other=0.0).to(CDT),)
    return xs, ys, ws


@triton.jit
def _frame_weight(m_ptr, b, offs, valid, J, T, HAS_M: tl.constexpr, CDT: tl.constexpr):
    """1 for points inside the sequence and on a valid frame, else 0."""
    w = valid.to(CDT)
    if HAS_M:
        mk = tl.load(m_ptr + b * T + offs // J, mask=valid, other=0)
        w = w * (mk != 0).to(CDT)
    return w


# ----------------------------------------------------------------------------------------------- kernels
@triton.jit
def _seq_tile(NT):
    """(b, tile) of this program in the flat grid of B * NT programs (b int64: offsets may pass 2^31)."""
    pid = tl.program_id(0)
    return (pid // NT).to(tl.int64), pid % NT


@triton.jit
def _grad_scale(go_ptr, loss_ptr, stats_ptr, b, B, RED: tl.constexpr, CDT: tl.constexpr):
    """g = dLoss/d(sum w d) of sequence b, and the loss value that d is compared with in dLoss/dw."""
    if RED == 1:  # sum
        g = tl.load(go_ptr).to(CDT)
        lval = tl.zeros([], CDT)
    else:
        srow = B if RED == 0 else b  # mean: the totals row; per-sequence: row b
        sidx = 0 if RED == 0 else b
        wsum = tl.load(stats_ptr + 2 * srow + 1).to(CDT)
        inv = tl.where(wsum > 0, 1.0 / tl.where(wsum > 0, wsum, 1.0), 0.0)
        g = tl.load(go_ptr + sidx).to(CDT) * inv
        lval = tl.load(loss_ptr + sidx).to(CDT)
    return g, lval


@triton.jit
def _epipolar_fwd_kernel(
    x_ptr,  # (B, V, T, J, 2) any float dtype, contiguous
    f_ptr,  # (V, V, 3, 3) or (B, V, V, 3, 3), compute dtype
    w_ptr,  # (B, V, T, J) or dummy
    m_ptr,  # (B, T) uint8 or dummy
    part_ptr,  # (B, NT, 2) compute dtype: per-program (sum w d, sum w)
    N,  # T * J
    J,
    T,
    NT,  # programs per sequence = cdiv(N, BLOCK); grid (B * NT,)
    f_stride_b,  # 0 (shared F) or V * V * 9
    V: tl.constexpr,
    PAIRS: tl.constexpr,  # tuple of (i, j)
    DIST: tl.constexpr,
    HAS_W: tl.constexpr,
    HAS_M: tl.constexpr,
    FP64: tl.constexpr,
    EPS: tl.constexpr,
    BLOCK: tl.constexpr,
    PIN: tl.constexpr,
):
    CDT: tl.constexpr = tl.float64 if FP64 else tl.float32
    b, tile = _seq_tile(NT)
    offs = tile * BLOCK + tl.arange(0, BLOCK)
    valid = offs < N
    base = _frame_weight(m_ptr, b, offs, valid, J, T, HAS_M, CDT)
    xs, ys, ws = _load_views(x_ptr, w_ptr, b, offs, valid, N, V, HAS_W, CDT)
    fb = f_ptr + b * f_stride_b
    acc_s = tl.zeros([BLOCK], CDT)
    acc_w = tl.zeros([BLOCK], CDT)
    for p in tl.static_range(len(PAIRS)):
        f00, f01, f02, f10, f11, f12, f20, f21, f22 = _load_f(fb + (PAIRS[p][0] * V + PAIRS[p][1]) * 9, CDT)
        d, gr, gl, gm, l0, l1, m0, m1, r = _pair_terms(
            xs[PAIRS[p][0]], ys[PAIRS[p][0]], xs[PAIRS[p][1]], ys[PAIRS[p][1]],
            f00, f01, f02, f10, f11, f12, f20, f21, f22, DIST, EPS, FP64,
        )  # fmt: skip
        w = base
        if HAS_W:
            w = w * ws[PAIRS[p][0]] * ws[PAIRS[p][1]]
        acc_s += w * d
        acc_w += w
        if PIN:  # one pair's F entries live at a time (see _pin)
            acc_s = _pin(acc_s, FP64)
    out = part_ptr + (b * NT + tile) * 2
    tl.store(out, tl.sum(acc_s, axis=0))
    tl.store(out + 1, tl.sum(acc_w, axis=0))


@triton.jit
def _epipolar_bwd_kernel(
    x_ptr,  # (B, V, T, J, 2)
    f_ptr,  # (V, V, 3, 3) or (B, V, V, 3, 3), compute dtype
    w_ptr,  # (B, V, T, J) or dummy
    m_ptr,  # (B, T) uint8 or dummy
    go_ptr,  # grad of the loss: () or (B,)
    loss_ptr,  # the forward's loss: () or (B,)
    stats_ptr,  # (B + 1, 2): per-sequence (sum w d, sum w), then the totals
    dx_ptr,  # (B, V, T, J, 2), x's dtype, or dummy
    dw_ptr,  # (B, V, T, J), weights' dtype, or dummy
    B,
    N,
    J,
    T,
    NT,  # grid (B * NT,)
    f_stride_b,
    V: tl.constexpr,
    PAIRS: tl.constexpr,
    DIST: tl.constexpr,
    RED: tl.constexpr,
    HAS_W: tl.constexpr,
    HAS_M: tl.constexpr,
    NEED_DX: tl.constexpr,
    NEED_DW: tl.constexpr,
    FP64: tl.constexpr,
    EPS: tl.constexpr,
    BLOCK: tl.constexpr,
    PIN: tl.constexpr,
):
    """dx and dw, written once per point. dF has its own kernel (:func:`_epipolar_df_kernel`): its 9
    block-wide sums per pair would double this kernel's registers and make it spill."""
    CDT: tl.constexpr = tl.float64 if FP64 else tl.float32
    b, tile = _seq_tile(NT)
    offs = tile * BLOCK + tl.arange(0, BLOCK)
    valid = offs < N
    base = _frame_weight(m_ptr, b, offs, valid, J, T, HAS_M, CDT)
    xs, ys, ws = _load_views(x_ptr, w_ptr, b, offs, valid, N, V, HAS_W, CDT)
    g, lval = _grad_scale(go_ptr, loss_ptr, stats_ptr, b, B, RED, CDT)

    gxs = ()
    gys = ()
    gws = ()
    for _k in tl.static_range(V):
        gxs = gxs + (tl.zeros([BLOCK], CDT),)
        gys = gys + (tl.zeros([BLOCK], CDT),)
        gws = gws + (tl.zeros([BLOCK], CDT),)

    fb = f_ptr + b * f_stride_b
    for p in tl.static_range(len(PAIRS)):
        f00, f01, f02, f10, f11, f12, f20, f21, f22 = _load_f(fb + (PAIRS[p][0] * V + PAIRS[p][1]) * 9, CDT)
        d, gr, gl, gm, l0, l1, m0, m1, r = _pair_terms(
            xs[PAIRS[p][0]], ys[PAIRS[p][0]], xs[PAIRS[p][1]], ys[PAIRS[p][1]],
            f00, f01, f02, f10, f11, f12, f20, f21, f22, DIST, EPS, FP64,
        )  # fmt: skip
        if NEED_DX:
            w = base
            if HAS_W:
                w = w * ws[PAIRS[p][0]] * ws[PAIRS[p][1]]
            G = g * w
            sgn = tl.where(r > 0, 1.0, tl.where(r < 0, -1.0, 0.0)).to(CDT)
            Gr = G * sgn * gr
            Gl0 = G * gl * l0
            Gl1 = G * gl * l1
            Gm0 = G * gm * m0
            Gm1 = G * gm * m1
            gxs = _bump(gxs, PAIRS[p][0], Gr * m0 + Gl0 * f00 + Gl1 * f10)
            gys = _bump(gys, PAIRS[p][0], Gr * m1 + Gl0 * f01 + Gl1 * f11)
            gxs = _bump(gxs, PAIRS[p][1], Gr * l0 + Gm0 * f00 + Gm1 * f01)
            gys = _bump(gys, PAIRS[p][1], Gr * l1 + Gm0 * f10 + Gm1 * f11)
            if PIN:  # one pair's F entries live at a time (see _pin)
                gxs = _pin_at(_pin_at(gxs, PAIRS[p][0], FP64), PAIRS[p][1], FP64)
                gys = _pin_at(_pin_at(gys, PAIRS[p][0], FP64), PAIRS[p][1], FP64)
        if NEED_DW:
            cw = g * (d - lval) * base
            gws = _bump(gws, PAIRS[p][0], cw * ws[PAIRS[p][1]])
            gws = _bump(gws, PAIRS[p][1], cw * ws[PAIRS[p][0]])

    two = tl.arange(0, 2)
    for k in tl.static_range(V):
        row = (b * V + k) * N
        if NEED_DX:
            gxy = tl.join(gxs[k], gys[k]).to(dx_ptr.dtype.element_ty)
            tl.store(dx_ptr + 2 * row + offs[:, None] * 2 + two[None, :], gxy, mask=valid[:, None])
        if NEED_DW:
            tl.store(dw_ptr + row + offs, gws[k].to(dw_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _epipolar_df_kernel(
    x_ptr,  # (B, V, T, J, 2)
    f_ptr,  # (V, V, 3, 3) or (B, V, V, 3, 3), compute dtype
    w_ptr,  # (B, V, T, J) or dummy
    m_ptr,  # (B, T) uint8 or dummy
    go_ptr,  # grad of the loss: () or (B,)
    loss_ptr,  # the forward's loss: () or (B,)
    stats_ptr,  # (B + 1, 2)
    df_ptr,  # (B, NC, V, V, 9) compute dtype, zero-filled: per-program dF of the used pairs
    B,
    N,
    J,
    T,
    NT,  # tiles of BLOCK points per sequence
    NC,  # chunks of TILES tiles per sequence; grid (B * P * NC,)
    TILES,
    f_stride_b,
    V: tl.constexpr,
    PAIRS: tl.constexpr,
    DIST: tl.constexpr,
    RED: tl.constexpr,
    HAS_W: tl.constexpr,
    HAS_M: tl.constexpr,
    FP64: tl.constexpr,
    EPS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """dF of one pair over a chunk of up to TILES tiles of one sequence: the 9 products accumulate per point
    across the tiles, then 9 block-wide sums. Only the two views of the pair are loaded, so the registers do
    not grow with V."""
    CDT: tl.constexpr = tl.float64 if FP64 else tl.float32
    NPAIRS: tl.constexpr = len(PAIRS)
    pid = tl.program_id(0)
    chunk = pid % NC
    rest = pid // NC
    pair = rest % NPAIRS
    b = (rest // NPAIRS).to(tl.int64)
    vi = pair * 0  # the pair's views: a run-time pick from the compile-time PAIRS
    vj = pair * 0
    for q in tl.static_range(NPAIRS):
        vi = tl.where(pair == q, PAIRS[q][0], vi)
        vj = tl.where(pair == q, PAIRS[q][1], vj)
    g, lval = _grad_scale(go_ptr, loss_ptr, stats_ptr, b, B, RED, CDT)
    f00, f01, f02, f10, f11, f12, f20, f21, f22 = _load_f(f_ptr + b * f_stride_b + (vi * V + vj) * 9, CDT)
    row_i = (b * V + vi) * N
    row_j = (b * V + vj) * N
    two = tl.arange(0, 2)
    acc0 = tl.zeros([BLOCK], CDT)
    acc1 = tl.zeros([BLOCK], CDT)
    acc2 = tl.zeros([BLOCK], CDT)
    acc3 = tl.zeros([BLOCK], CDT)
    acc4 = tl.zeros([BLOCK], CDT)
    acc5 = tl.zeros([BLOCK], CDT)
    acc6 = tl.zeros([BLOCK], CDT)
    acc7 = tl.zeros([BLOCK], CDT)
    acc8 = tl.zeros([BLOCK], CDT)
    t_end = tl.minimum(chunk * TILES + TILES, NT)
    for tile in range(chunk * TILES, t_end):
        offs = tile * BLOCK + tl.arange(0, BLOCK)
        valid = offs < N
        w = _frame_weight(m_ptr, b, offs, valid, J, T, HAS_M, CDT)
        pi = tl.load(x_ptr + 2 * row_i + offs[:, None] * 2 + two[None, :], mask=valid[:, None], other=0.0)
        pj = tl.load(x_ptr + 2 * row_j + offs[:, None] * 2 + two[None, :], mask=valid[:, None], other=0.0)
        u, v = tl.split(pi.to(CDT))
        qx, qy = tl.split(pj.to(CDT))
        if HAS_W:
            w = w * tl.load(w_ptr + row_i + offs, mask=valid, other=0.0).to(CDT)
            w = w * tl.load(w_ptr + row_j + offs, mask=valid, other=0.0).to(CDT)
        d, gr, gl, gm, l0, l1, m0, m1, r = _pair_terms(
            u, v, qx, qy, f00, f01, f02, f10, f11, f12, f20, f21, f22, DIST, EPS, FP64
        )
        G = g * w
        sgn = tl.where(r > 0, 1.0, tl.where(r < 0, -1.0, 0.0)).to(CDT)
        Gr = G * sgn * gr
        Gl0 = G * gl * l0
        Gl1 = G * gl * l1
        Gm0 = G * gm * m0
        Gm1 = G * gm * m1
        a0 = Gr * qx + Gl0
        a1 = Gr * qy + Gl1
        acc0 += a0 * u + Gm0 * qx
        acc1 += a0 * v + Gm1 * qx
        acc2 += a0
        acc3 += a1 * u + Gm0 * qy
        acc4 += a1 * v + Gm1 * qy
        acc5 += a1
        acc6 += Gr * u + Gm0
        acc7 += Gr * v + Gm1
        acc8 += Gr
    dfo = df_ptr + ((b * NC + chunk) * V * V + vi * V + vj) * 9
    tl.store(dfo + 0, tl.sum(acc0, axis=0))
    tl.store(dfo + 1, tl.sum(acc1, axis=0))
    tl.store(dfo + 2, tl.sum(acc2, axis=0))
    tl.store(dfo + 3, tl.sum(acc3, axis=0))
    tl.store(dfo + 4, tl.sum(acc4, axis=0))
    tl.store(dfo + 5, tl.sum(acc5, axis=0))
    tl.store(dfo + 6, tl.sum(acc6, axis=0))
    tl.store(dfo + 7, tl.sum(acc7, axis=0))
    tl.store(dfo + 8, tl.sum(acc8, axis=0))


@triton.jit
def _finalize_kernel(
    part_ptr,  # (B, NT, 2): per-program (sum w d, sum w)
    stats_ptr,  # out (B + 1, 2): per-sequence sums, then the totals
    loss_ptr,  # out () or (B,)
    B,
    NT,
    RED: tl.constexpr,
    FP64: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    """One program: reduce the partials in a fixed order (deterministic) into the stats and the loss."""
    CDT: tl.constexpr = tl.float64 if FP64 else tl.float32
    ob = tl.arange(0, BLOCK_B)
    ot = tl.arange(0, BLOCK_T)
    tot_s = tl.zeros([BLOCK_B], CDT)
    tot_w = tl.zeros([BLOCK_B], CDT)
    for b0 in range(0, B, BLOCK_B):
        rb = b0 + ob
        mb = rb < B
        s = tl.zeros([BLOCK_B], CDT)
        w = tl.zeros([BLOCK_B], CDT)
        for t0 in range(0, NT, BLOCK_T):
            rt = t0 + ot
            m2 = mb[:, None] & (rt < NT)[None, :]
            ptr = part_ptr + (rb[:, None] * NT + rt[None, :]) * 2
            s += tl.sum(tl.load(ptr, mask=m2, other=0.0), axis=1)
            w += tl.sum(tl.load(ptr + 1, mask=m2, other=0.0), axis=1)
        tl.store(stats_ptr + rb * 2, s, mask=mb)
        tl.store(stats_ptr + rb * 2 + 1, w, mask=mb)
        if RED == 2:
            tl.store(loss_ptr + rb, s / tl.where(w > 0, w, 1.0), mask=mb)
        tot_s += s
        tot_w += w
    S = tl.sum(tot_s, axis=0)
    W = tl.sum(tot_w, axis=0)
    tl.store(stats_ptr + 2 * B, S)
    tl.store(stats_ptr + 2 * B + 1, W)
    if RED == 0:
        tl.store(loss_ptr, S / tl.where(W > 0, W, 1.0))
    elif RED == 1:
        tl.store(loss_ptr, S)


# ----------------------------------------------------------------------------------------------- launchers
#: Most programs of one launch: CUDA's grid axis 0 limit (the kernels use a flat 1-D grid, whose axis 0
#: takes 2^31 - 1 blocks; axes 1 and 2 take only 65535).
MAX_PROGRAMS = 2**31 - 1


def flat_grid(op: str, what: str, programs: int) -> tuple[int]:
    """The 1-D grid ``(programs,)``; a clear ValueError when it passes CUDA's limit :data:`MAX_PROGRAMS`."""
    if programs > MAX_PROGRAMS:
        raise ValueError(
            f"{op}: the inputs need {programs} programs ({what}), more than one launch takes "
            f"({MAX_PROGRAMS}, CUDA's grid limit); split the batch"
        )
    return (programs,)


def finalize_partials(partials: torch.Tensor, reduction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Reduce per-program partials (B, NT, 2) = (sum w d, sum w) into ``(loss, stats)``.

    ``stats`` (B + 1, 2) holds the per-sequence sums and, in its last row, the totals; ``loss`` is the
    weighted mean sum / weight (shape (), 0 when the weight is 0), the sum (shape ()) or the per-sequence
    means (shape (B,)) for ``reduction`` ``"mean"`` / ``"sum"`` / ``"per_sequence"``. One launch, no host
    sync.
    """
    B, NT = partials.shape[0], partials.shape[1]
    red = REDUCTIONS[reduction]
    # Tiny blocks in the interpreter, so that the tests run the loops over several blocks.
    blk, warps = (2, 1) if triton_interpret() else (32, 4)
    stats = torch.empty((B + 1, 2), dtype=partials.dtype, device=partials.device)
    loss = torch.empty((B,) if red == 2 else (), dtype=partials.dtype, device=partials.device)
    with device_guard(partials):
        _finalize_kernel[(1,)](
            partials,
            stats,
            loss,
            B,
            NT,
            RED=red,
            FP64=partials.dtype == torch.float64,
            BLOCK_B=blk,
            BLOCK_T=blk,
            num_warps=warps,
        )
    return loss, stats


def _dummy(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return like if t is None else t


def _mask_bytes(mask: torch.Tensor | None) -> torch.Tensor | None:
    return None if mask is None else mask.view(torch.uint8)


def _df_tiles() -> int:
    """Tiles per program of the dF kernel: on the GPU enough work per program to amortise its 9 block-wide
    sums; in the interpreter 2, so that the tests run chunks of several tiles and several chunks."""
    return 2 if triton_interpret() else 8


def epipolar_loss_forward(
    x: torch.Tensor,
    F: torch.Tensor,
    weights: torch.Tensor | None,
    mask: torch.Tensor | None,
    pairs: tuple[tuple[int, int], ...],
    distance: str,
    reduction: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused epipolar loss forward: two launches (the pair kernel, then the fixed-order reduction).

    Preconditions (checked by :func:`mvlift.ops.epipolar_loss`): every tensor contiguous and on one device;
    x (B, V, T, J, 2) float16/bfloat16/float32/float64; F (V, V, 3, 3) or (B, V, V, 3, 3) in the compute
    dtype (float64 for float64 x, else float32); weights (B, V, T, J) float or None; mask (B, T) bool or None;
    ``pairs`` a non-empty tuple of distinct (i, j), 0 <= i != j < V; ``distance`` in :data:`DISTANCES`;
    ``reduction`` in :data:`REDUCTIONS`. Grid (B cdiv(T J, BLOCK),), flat (at most :data:`MAX_PROGRAMS`
    programs, else a ValueError). Launches on x's device.

    Returns:
        ``(loss, stats)`` as in :func:`finalize_partials`, in the compute dtype.
    """
    B, V, T, J = x.shape[:4]
    N = T * J
    block, warps = _block()
    NT = triton.cdiv(N, block)
    grid = flat_grid("epipolar_loss", f"B = {B} sequences x {NT} tiles of {block} points", B * NT)
    partials = torch.empty((B, NT, 2), dtype=F.dtype, device=x.device)
    if B * NT > 0:
        with device_guard(x):
            _epipolar_fwd_kernel[grid](
                x,
                F,
                _dummy(weights, x),
                _dummy(_mask_bytes(mask), x),
                partials,
                N,
                J,
                T,
                NT,
                0 if F.dim() == 4 else V * V * 9,
                V=V,
                PAIRS=pairs,
                DIST=DISTANCES[distance],
                HAS_W=weights is not None,
                HAS_M=mask is not None,
                FP64=F.dtype == torch.float64,
                EPS=_EPS,
                BLOCK=block,
                PIN=not triton_interpret(),
                num_warps=warps,
            )
    return finalize_partials(partials, reduction)


def epipolar_loss_backward(
    grad_loss: torch.Tensor,
    x: torch.Tensor,
    F: torch.Tensor,
    weights: torch.Tensor | None,
    mask: torch.Tensor | None,
    loss: torch.Tensor,
    stats: torch.Tensor,
    pairs: tuple[tuple[int, int], ...],
    distance: str,
    reduction: str,
    need_x: bool = True,
    need_F: bool = False,
    need_weights: bool = False,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Fused epipolar loss backward: one launch recomputes the pair terms and writes dx (and dw) once per
    point; dF (when asked) is a second launch, one program per (sequence, pair, chunk of tiles), whose
    per-program partials ``torch.sum`` adds up.

    Args:
        grad_loss: the loss's gradient, shape of ``loss``; loss, stats: the forward's outputs; the other
            arguments as in :func:`epipolar_loss_forward`.

    Returns:
        ``(dx, dF, dweights)``: like x, F, weights, or None where not asked.
    """
    B, V, T, J = x.shape[:4]
    N = T * J
    block, warps = _block()
    NT = triton.cdiv(N, block)
    need_weights = need_weights and weights is not None
    dx = torch.empty_like(x) if need_x else None
    dw = torch.empty_like(weights) if need_weights else None
    go = grad_loss.to(F.dtype).contiguous()
    f_stride_b = 0 if F.dim() == 4 else V * V * 9
    common = dict(
        V=V,
        PAIRS=pairs,
        DIST=DISTANCES[distance],
        RED=REDUCTIONS[reduction],
        HAS_W=weights is not None,
        HAS_M=mask is not None,
        FP64=F.dtype == torch.float64,
        EPS=_EPS,
        BLOCK=block,
        num_warps=warps,
    )
    w_arg, m_arg = _dummy(weights, x), _dummy(_mask_bytes(mask), x)
    if B * NT > 0 and (need_x or need_weights):
        what = f"B = {B} sequences x {NT} tiles of {block} points"
        grid = flat_grid("epipolar_loss backward", what, B * NT)
        with device_guard(x):
            _epipolar_bwd_kernel[grid](
                x, F, w_arg, m_arg, go, loss, stats, _dummy(dx, x), _dummy(dw, x), B, N, J, T, NT, f_stride_b,
                NEED_DX=need_x, NEED_DW=need_weights, PIN=not triton_interpret(), **common,
            )  # fmt: skip
    dF = None
    if need_F:
        tiles = _df_tiles()
        NC = triton.cdiv(NT, tiles)
        # dF partials in the (V, V) layout of F (zeros where no pair is), so that no index op (and no host
        # copy of the pair list) is needed to assemble dF.
        dfp = torch.zeros((B, NC, V, V, 9), dtype=F.dtype, device=x.device)
        if B * NC > 0:
            what = f"B = {B} sequences x {len(pairs)} pairs x {NC} chunks of {tiles} tiles"
            grid = flat_grid("epipolar_loss backward (dF)", what, B * len(pairs) * NC)
            with device_guard(x):
                _epipolar_df_kernel[grid](
                    x, F, w_arg, m_arg, go, loss, stats, dfp, B, N, J, T, NT, NC, tiles, f_stride_b, **common
                )  # fmt: skip
        dF = dfp.sum(dim=(0, 1) if F.dim() == 4 else 1).view(F.shape)  # fixed-shape torch.sum: deterministic
    return dx, dF, dw
