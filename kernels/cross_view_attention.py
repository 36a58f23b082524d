"""Triton kernels for attention over a few tokens per frame (cross-view attention, K <= 16 views).

Layout: q, k, v and the output are (N, K, H, D) = [frames, tokens (views), heads, head_dim], the xformers
BMHK layout, with arbitrary strides. One program owns BLOCK_M (frame, head) pairs ("rows"; row r is frame
r // H, head r % H) as [BLOCK_M, BLOCK_K, BLOCK_D] register tiles, the token axis spread over the lanes of
one warp. Scores and softmax use broadcasting and ``tl.sum`` instead of ``tl.dot``, which needs tiles of 16
or more. The token axis of a tile is "my" token: the forward gives each lane its query and streams key j
loaded broadcast over the token axis (every lane reads the same addresses), so the scores reduce over D
only and the softmax over j runs in registers; the backward gives each lane its key and streams the
queries, so dk and dv accumulate in place. Padded tokens (K not a power of two) and padded channels (D not
a power of two) are masked. Every frame is independent, so the backward needs no atomics and the results
are deterministic.

Math, per frame and head (q_i, k_j, v_j rows of length D, i, j < K):
    s_ij = scale * q_i . k_j,   p_ij = exp(s_ij - max_j s_ij) / sum_j exp(s_ij - max_j s_ij),
    o_i  = sum_j p_ij v_j.
Gradient, given do_i = dL/do_i (the softmax is recomputed from q and k; nothing is saved by the forward):
    dv_j  = sum_i p_ij do_i,
    dp_ij = do_i . v_j,   ds_ij = p_ij (dp_ij - sum_j' p_ij' dp_ij'),
    dq_i  = scale * sum_j ds_ij k_j,   dk_j = scale * sum_i ds_ij q_i.
The exponentials are computed as exp2 of scores pre-multiplied by scale * log2(e). Loads are converted
to the accumulation type (float32, or float64 for float64 inputs) and results are rounded to the output
dtype once, at the store. ``scale`` travels to the kernel as a float32 scalar.

Call through :func:`mvlift.ops.cross_view_attention`; the launchers here assume checked inputs.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
import triton
import triton.language as tl

from mvlift.ops._backend import triton_interpret

LOG2E = 1.4426950408889634  # 1 / ln(2)

# Candidate launch configurations of the compiled kernels, pruned per (K, D, dtype) by `_prune`.
_BLOCK_MS, _WARPS = (1, 2, 4, 8, 16), (1, 2, 4)
# The forward also has 8-warp candidates, which the prune keeps only when no config of 1-4 warps is within
# the register budget: for K = 16, D = 128 in float32 every 4-warp config holds 16 x 16 values per thread and
# spilled 56 bytes. (Elsewhere 8-warp configs spilled 8-24 bytes where 4 warps did not.)
_FWD_CONFIGS = [
    triton.Config({"BLOCK_M": bm}, num_warps=w, num_stages=1) for bm in _BLOCK_MS for w in (*_WARPS, 8)
]
_BWD_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "CHUNK": c}, num_warps=w, num_stages=1)
    for bm in _BLOCK_MS
    for w in _WARPS
    for c in (4, 16)
]


def _layout(block_m: int, num_warps: int, k: int, d: int, elem_size: int) -> tuple[bool, int, int]:
    """How a [BLOCK_M, BLOCK_K, BLOCK_D] tile spreads over a program's threads.

    Triton lays such a tile out with 16-byte vectors along D, then lanes along D, tokens and rows, then warps
    in the same order. Returns (whether one row's K x D tile stays inside a warp, so token reductions need
    no shared memory; tile values per thread; the vector width).
    """
    vec = max(1, 16 // elem_size)
    row = triton.next_power_of_2(k) * triton.next_power_of_2(d)
    return num_warps == 1 or row // vec <= 32, block_m * row // (32 * num_warps), vec


def _registers_ok(
    which: str, per_thread: int, k: int, chunk: int, elem_size: int, in_warp: bool = True
) -> bool:
    """A register budget fitted to ptxas counts on sm_90 (no spills; ``benchmarks/compile_kernels.py
    --set full`` checks every kept config): the forward holds the q and output tiles plus the prefetched keys
    and values, the backward five tiles plus the prefetched queries and output gradients of one CHUNK.

    A backward whose rows span several warps (``in_warp`` False: its token sums go through shared memory)
    gets a tighter bound, 400 instead of 480, and at most 4 queries per CHUNK: at 416 (16 values per
    thread, 16 bytes of CHUNK prefetch per value) such configs spilled 8-32 bytes (K = 16, D = 64 fp32,
    BLOCK_M 2 / 4 warps / CHUNK 4; K = 8, D = 128 bf16, CHUNK 8 at 1 / 2 and 2 / 4), and with CHUNK 6 to
    16 already at 272-352 (K = 12 and 16, D = 64, 16-bit, CHUNK = K; K = 6, D = 128 fp16, CHUNK 6), where
    the in-warp K = 8, D = 64 configs did not."""
    if which == "fwd":
        return per_thread * triton.next_power_of_2(k) * elem_size <= 512
    if in_warp:
        return per_thread * (10 + chunk * elem_size) <= 480
    return chunk <= 4 and per_thread * (10 + chunk * elem_size) <= 400


#: (which, K, D, element size, BLOCK_M, num_warps) that ptxas 12.8 (Triton 3.7.1's) spills inside the
#: budget, found by ``benchmarks/compile_kernels.py --set full`` and never kept: K = 3, D = 32 fp32 on
#: sm_90 (8 bytes at 40 registers; not on sm_80), K = 2, D = 128 fp32 at BLOCK_M 8 on sm_80 (8 bytes).
_PTXAS_SPILLS = {("fwd", 3, 32, 4, 4, 2), ("fwd", 3, 32, 4, 8, 4), ("fwd", 2, 128, 4, 8, 1)}


def _prune(which: str):
    """An ``early_config_prune`` hook: within the register budget, no idle lanes, rows inside one warp."""

    def prune(configs: list[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
        args = {**named_args, **kwargs}
        return _kept_configs(which, configs, args["K"], args["D"], args["q_ptr"].element_size())

    return prune


def _kept_configs(
    which: str, configs: list[triton.Config], k: int, d: int, elem_size: int
) -> list[triton.Config]:
    """The configs that :func:`_prune` keeps for (K, D, element size), CHUNK capped at K."""
    cands = {}
    for cfg in configs:
        meta = dict(cfg.kwargs)
        if "CHUNK" in meta:
            meta["CHUNK"] = min(meta["CHUNK"], k)
        key = (meta["BLOCK_M"], cfg.num_warps, meta.get("CHUNK", k))
        if key not in cands:
            cands[key] = triton.Config(meta, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    rated = {}  # config -> (rows inside a warp, no idle lanes, within the register budget, values/thread)
    for (bm, w, chunk), cfg in cands.items():
        if (which, k, d, elem_size, bm, w) in _PTXAS_SPILLS:
            continue
        in_warp, per_thread, vec = _layout(bm, w, k, d, elem_size)
        rated[cfg] = (
            in_warp,
            per_thread >= vec,
            _registers_ok(which, per_thread, k, chunk, elem_size, in_warp),
            per_thread,
        )
    kept = [c for c, r in rated.items() if r[0] and r[1] and r[2] and c.num_warps <= 4]
    if not kept:  # tiny K x D: lanes idle at any size; take the fullest tile within the budget
        small = [c for c, r in rated.items() if r[0] and r[2] and c.num_warps <= 4]
        if small:
            kept = [max(small, key=lambda c: (rated[c][3], c.kwargs["BLOCK_M"], -c.num_warps))]
    if not kept:  # large K x D: rows across warps (shared-memory reductions), or the fewest values/thread
        kept = [c for c, r in rated.items() if r[1] and r[2] and c.num_warps <= 4]
        kept = kept or [c for c, r in rated.items() if r[1] and r[2]]  # 8 warps: the last resort
        kept = kept or [min(rated, key=lambda c: (rated[c][3], c.kwargs["BLOCK_M"]))]
    return kept


class LaunchConfigWarning(RuntimeWarning):
    """Fixed launch parameters of the cross-view attention outside the register budget of the autotune
    prune: the compiled kernel will likely spill registers (slow); the autotuned default does not."""


def _complete_fixed(which: str, fixed: dict[str, int], k: int, d: int, elem_size: int) -> dict[str, int]:
    """Fixed launch parameters for a compiled launch, completed and checked.

    Missing ones come from the first config the autotune prune keeps that agrees with the given ones (else
    from its first config); a :class:`LaunchConfigWarning` when the result is neither kept by the prune nor
    within its register budget.
    """
    kept = _kept_configs(which, _FWD_CONFIGS if which == "fwd" else _BWD_CONFIGS, k, d, elem_size)

    def params(cfg: triton.Config) -> dict[str, int]:
        return {"num_warps": cfg.num_warps, **cfg.kwargs}

    agree = [c for c in kept if all(params(c).get(key, val) == val for key, val in fixed.items())]
    out = {**params((agree or kept)[0]), **fixed}
    if "CHUNK" in out:
        out["CHUNK"] = min(out["CHUNK"], k)
    in_warp, per_thread, _ = _layout(out["BLOCK_M"], out["num_warps"], k, d, elem_size)
    within = _registers_ok(which, per_thread, k, out.get("CHUNK", k), elem_size, in_warp)
    if not within and all(params(c) != out for c in kept):
        given = f"block_m={out['BLOCK_M']}, num_warps={out['num_warps']}"
        given += f", chunk={out['CHUNK']}" if "CHUNK" in out else ""
        warnings.warn(
            f"cross_view_attention {which}: {given} for K={k}, D={d} ({elem_size}-byte elements) is outside "
            "the autotune prune's register budget and will likely spill registers; leave block_m, num_warps "
            "and chunk unset for the autotuned launch",
            LaunchConfigWarning,
            stacklevel=4,
        )
    return out


def _interpret_block_m(k: int, d: int) -> int:
    """BLOCK_M for the CPU interpreter: large tiles (few programs), about 4096 elements each."""
    return max(1, min(64, 4096 // (triton.next_power_of_2(k) * triton.next_power_of_2(d))))


@triton.jit
def _cva_fwd_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    o_ptr,
    M,
    H,
    sqn,
    sqk,
    sqh,
    sqd,
    skn,
    skk,
    skh,
    skd,
    svn,
    svk,
    svh,
    svd,
    son,
    sok,
    soh,
    sod,
    scale_log2e,
    K: tl.constexpr,
    D: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    # o_t = sum_j softmax_j(scale * q_t . k_j) v_j for BLOCK_M (frame, head) rows. Token axis = query t: each
    # thread keeps its query's slice of q and of the output; key j is loaded broadcast over the token axis
    # (all query lanes read the same addresses), so the scores need only a reduction over D and the
    # softmax over j is a loop over registers: no data moves between tokens.
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    n = (rows // H)[:, None, None]
    h = (rows % H)[:, None, None]
    tok = tl.arange(0, BLOCK_K)[None, :, None]
    ch = tl.arange(0, BLOCK_D)[None, None, :]
    mask = (rows < M)[:, None, None] & (tok < K) & (ch < D)
    k_row = k_ptr + n * skn + h * skh + ch * skd + tok * 0  # [BLOCK_M, BLOCK_K, BLOCK_D], equal over tokens
    v_row = v_ptr + n * svn + h * svh + ch * svd + tok * 0

    qt = tl.load(q_ptr + n * sqn + h * sqh + tok * sqk + ch * sqd, mask=mask, other=0.0).to(ACC)
    s = ()  # s[j]: [BLOCK_M, BLOCK_K] scores of every query against key j, in log2 units
    m = tl.full((BLOCK_M, BLOCK_K), float("-inf"), ACC)
    for j in tl.static_range(K):
        kj = tl.load(k_row + j * skk, mask=mask, other=0.0).to(ACC)
        sj = tl.sum(qt * kj, axis=2) * scale_log2e
        s = s + (sj,)
        m = tl.maximum(m, sj)
    l = tl.zeros((BLOCK_M, BLOCK_K), ACC)
    acc = tl.zeros((BLOCK_M, BLOCK_K, BLOCK_D), ACC)
    for j in tl.static_range(K):
        pj = tl.exp2(s[j] - m)
        l += pj
        vj = tl.load(v_row + j * svk, mask=mask, other=0.0).to(ACC)
        acc += pj[:, :, None] * vj
    out = acc * (1.0 / l)[:, :, None]
    tl.store(o_ptr + n * son + h * soh + tok * sok + ch * sod, out.to(o_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _cva_bwd_kernel(
    do_ptr,
    q_ptr,
    k_ptr,
    v_ptr,
    dq_ptr,
    dk_ptr,
    dv_ptr,
    M,
    H,
    sdon,
    sdok,
    sdoh,
    sdod,
    sqn,
    sqk,
    sqh,
    sqd,
    skn,
    skk,
    skh,
    skd,
    svn,
    svk,
    svh,
    svd,
    sgn,
    sgk,
    sgh,
    sgd,
    scale,
    scale_log2e,
    K: tl.constexpr,
    D: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_M: tl.constexpr,
    CHUNK: tl.constexpr,
):
    # Token axis = key j: each thread keeps its key's slice of k, v, dk, dv. Per query i (loaded broadcast
    # over the token axis), recompute p_ij = softmax_j(scale * q_i . k_j), then
    #   dv_j += p_ij do_i;  ds_ij = p_ij (do_i . v_j - sum_j' p_ij' do_i . v_j');
    #   dk_j += scale * ds_ij q_i;  dq_i = scale * sum_j ds_ij k_j (a reduction over the token axis).
    # dq, dk, dv share the strides (sgn, sgk, sgh, sgd).
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    n = (rows // H)[:, None, None]
    h = (rows % H)[:, None, None]
    tok = tl.arange(0, BLOCK_K)[None, :, None]
    ch = tl.arange(0, BLOCK_D)[None, None, :]
    mask = (rows < M)[:, None, None] & (tok < K) & (ch < D)
    tok_ok = tl.arange(0, BLOCK_K)[None, :] < K
    q_row = q_ptr + n * sqn + h * sqh + ch * sqd + tok * 0  # equal over tokens
    do_row = do_ptr + n * sdon + h * sdoh + ch * sdod + tok * 0

    kt = tl.load(k_ptr + n * skn + h * skh + tok * skk + ch * skd, mask=mask, other=0.0).to(ACC)
    vt = tl.load(v_ptr + n * svn + h * svh + tok * svk + ch * svd, mask=mask, other=0.0).to(ACC)
    dq = tl.zeros((BLOCK_M, BLOCK_K, BLOCK_D), dtype=ACC)
    dk = tl.zeros((BLOCK_M, BLOCK_K, BLOCK_D), dtype=ACC)
    dv = tl.zeros((BLOCK_M, BLOCK_K, BLOCK_D), dtype=ACC)
    for i0 in range(0, K, CHUNK):  # CHUNK queries unrolled per step; one step (fully static) when CHUNK == K
        for ii in tl.static_range(CHUNK):
            i = i0 + ii
            qmask = mask & (i < K)  # queries past K load zeros and contribute nothing
            qi = tl.load(q_row + i * sqk, mask=qmask, other=0.0).to(ACC)
            doi = tl.load(do_row + i * sdok, mask=qmask, other=0.0).to(ACC)
            s = tl.sum(qi * kt, axis=2) * scale_log2e  # [BLOCK_M, BLOCK_K]
            s = tl.where(tok_ok, s, float("-inf"))
            p = tl.exp2(s - tl.max(s, axis=1)[:, None])
            p = p * (1.0 / tl.sum(p, axis=1))[:, None]  # 0 on padded tokens
            dv += p[:, :, None] * doi
            dp = tl.sum(doi * vt, axis=2)  # [BLOCK_M, BLOCK_K]
            ds = p * (dp - tl.sum(p * dp, axis=1)[:, None])
            dqi = tl.sum(ds[:, :, None] * kt, axis=1)  # [BLOCK_M, BLOCK_D]
            dq = tl.where(tok == i, dqi[:, None, :], dq)
            dk += ds[:, :, None] * qi

    g_off = n * sgn + h * sgh + tok * sgk + ch * sgd
    tl.store(dq_ptr + g_off, (dq * scale).to(dq_ptr.dtype.element_ty), mask=mask)
    tl.store(dk_ptr + g_off, (dk * scale).to(dk_ptr.dtype.element_ty), mask=mask)
    tl.store(dv_ptr + g_off, dv.to(dv_ptr.dtype.element_ty), mask=mask)


# Compiled launches pick BLOCK_M, num_warps (and the backward's CHUNK) per (K, D, dtypes) by timing the
# pruned candidates once; the choice is cached on disk.
_cva_fwd_tuned = triton.autotune(
    configs=_FWD_CONFIGS,
    key=["K", "D"],
    prune_configs_by={"early_config_prune": _prune("fwd")},
    cache_results=True,
)(_cva_fwd_kernel)
_cva_bwd_tuned = triton.autotune(
    configs=_BWD_CONFIGS,
    key=["K", "D"],
    prune_configs_by={"early_config_prune": _prune("bwd")},
    cache_results=True,
)(_cva_bwd_kernel)


def _acc_dtype(dtype: torch.dtype) -> tl.dtype:
    return tl.float64 if dtype == torch.float64 else tl.float32


def _launch(
    tuned: triton.runtime.Autotuner,
    plain: triton.JITFunction,
    m: int,
    fixed: dict[str, int],
    args: tuple,
    meta: dict,
    device: torch.device,
    elem_size: int,
) -> None:
    """Launch ``plain`` with the ``fixed`` launch parameters when given (always in the interpreter, where
    missing ones get defaults), else the autotuned ``tuned``. Compiled fixed launches are completed and
    checked by :func:`_complete_fixed`."""
    k, d = meta["K"], meta["D"]
    if triton_interpret():
        fixed = {"BLOCK_M": _interpret_block_m(k, d), **fixed}
        if "CHUNK" in plain.arg_names:
            fixed.setdefault("CHUNK", k)
    elif fixed:
        which = "bwd" if "CHUNK" in plain.arg_names else "fwd"
        fixed = _complete_fixed(which, fixed, k, d, elem_size)
    if triton_interpret() or fixed:
        grid = (triton.cdiv(m, fixed["BLOCK_M"]),)
        with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
            plain[grid](*args, **meta, **fixed)
    else:
        with torch.cuda.device(device):
            tuned[lambda cfg: (triton.cdiv(m, cfg["BLOCK_M"]),)](*args, **meta)


def _fixed(block_m: int | None, num_warps: int | None, chunk: int | None = None) -> dict[str, int]:
    given = {"BLOCK_M": block_m, "num_warps": num_warps, "CHUNK": chunk}
    return {key: val for key, val in given.items() if val is not None}


def _meta(q: torch.Tensor) -> dict:
    _, k, _, d = q.shape
    return dict(
        K=k,
        D=d,
        BLOCK_K=triton.next_power_of_2(k),
        BLOCK_D=triton.next_power_of_2(d),
        ACC=_acc_dtype(q.dtype),
    )


def cross_view_attention_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    *,
    block_m: int | None = None,
    num_warps: int | None = None,
) -> torch.Tensor:
    """Attention over the K tokens of each frame and head: softmax(scale q k^T) v.

    Args:
        q, k, v: (N, K, H, D) tensors of one dtype on one device (any strides), K >= 1, D >= 1.
        scale: multiplier of the scores q . k.
        block_m, num_warps: fixed launch parameters (powers of two) instead of the autotuned ones.

    Returns:
        The output, (N, K, H, D), contiguous, in the inputs' dtype.
    """
    n, kk, h, d = q.shape
    out = torch.empty((n, kk, h, d), dtype=q.dtype, device=q.device)
    m = n * h
    if m == 0:
        return out
    args = (q, k, v, out, m, h, *q.stride(), *k.stride(), *v.stride(), *out.stride(), scale * LOG2E)
    _launch(
        _cva_fwd_tuned,
        _cva_fwd_kernel,
        m,
        _fixed(block_m, num_warps),
        args,
        _meta(q),
        q.device,
        q.element_size(),
    )
    return out


def cross_view_attention_backward(
    grad_out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    *,
    block_m: int | None = None,
    num_warps: int | None = None,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`cross_view_attention_forward` with respect to q, k and v.

    Args:
        grad_out: (N, K, H, D) gradient of the loss with respect to the output (any strides).
        q, k, v, scale: the forward's inputs.
        block_m, num_warps, chunk: fixed launch parameters instead of the autotuned ones; ``chunk`` queries
            are unrolled per loop step (default K: fully unrolled).

    Returns:
        (dq, dk, dv), each (N, K, H, D), contiguous, in the inputs' dtype.
    """
    n, kk, h, d = q.shape
    dq = torch.empty((n, kk, h, d), dtype=q.dtype, device=q.device)
    dk = torch.empty_like(dq)
    dv = torch.empty_like(dq)
    m = n * h
    if m == 0:
        return dq, dk, dv
    args = (
        grad_out,
        q,
        k,
        v,
        dq,
        dk,
        dv,
        m,
        h,
        *grad_out.stride(),
        *q.stride(),
        *k.stride(),
        *v.stride(),
        *dq.stride(),
        scale,
        scale * LOG2E,
    )
    fixed = _fixed(block_m, num_warps, chunk)
    _launch(_cva_bwd_tuned, _cva_bwd_kernel, m, fixed, args, _meta(q), q.device, q.element_size())
    return dq, dk, dv
