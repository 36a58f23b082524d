"""Plain-PyTorch reference of cross-view attention: softmax(scale q k^T) v over the K tokens of each frame.

Layout (N, K, H, D) = [frames, tokens (views), heads, head_dim], as in
:func:`mvlift.ops.cross_view_attention`. Half-precision inputs are computed in float32, float32 and float64
in their own dtype; the result is returned in the inputs' dtype. Differentiable through autograd;
:func:`cross_view_attention_backward` gives the same gradients in closed form (the CPU backward of the op
and an oracle for the kernel's backward).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _scale(d: int, scale: float | None) -> float:
    return 1.0 / math.sqrt(d) if scale is None else float(scale)


def cross_view_attention_probs(q: Tensor, k: Tensor, *, scale: float | None = None) -> Tensor:
    """Attention weights p[n, h, i, j] = softmax_j(scale * q[n, i, h] . k[n, j, h]).

    Args:
        q, k: (N, K, H, D).
        scale: score multiplier; default 1 / sqrt(D).

    Returns:
        (N, H, K, K) in float32 (float64 for float64 inputs); rows sum to 1.
    """
    cd = _compute_dtype(q.dtype)
    s = torch.einsum("nihd,njhd->nhij", q.to(cd), k.to(cd)) * _scale(q.shape[-1], scale)
    return torch.softmax(s, dim=-1)


def cross_view_attention(q: Tensor, k: Tensor, v: Tensor, *, scale: float | None = None) -> Tensor:
    """out[n, i, h] = sum_j softmax_j(scale * q[n, i, h] . k[n, j, h]) v[n, j, h].

    Args:
        q, k, v: (N, K, H, D) of one dtype.
        scale: score multiplier; default 1 / sqrt(D).

    Returns:
        (N, K, H, D) in the inputs' dtype.
    """
    p = cross_view_attention_probs(q, k, scale=scale)
    return torch.einsum("nhij,njhd->nihd", p, v.to(p.dtype)).to(q.dtype)


def cross_view_attention_backward(
    grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, *, scale: float | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Closed-form gradients of :func:`cross_view_attention` with respect to q, k and v.

    With p = softmax(s), s = scale q k^T, o = p v and g = dL/do (per frame and head):
    dv = p^T g, dp = g v^T, ds = p * (dp - rowsum(p * dp)), dq = scale ds k, dk = scale ds^T q.

    Args:
        grad_out: (N, K, H, D) gradient of the loss with respect to the output.
        q, k, v: (N, K, H, D), the forward's inputs.
        scale: score multiplier; default 1 / sqrt(D).

    Returns:
        (dq, dk, dv), each (N, K, H, D) in the inputs' dtype.
    """
    sc = _scale(q.shape[-1], scale)
    p = cross_view_attention_probs(q, k, scale=sc)
    cd = p.dtype
    g, qc, kc, vc = grad_out.to(cd), q.to(cd), k.to(cd), v.to(cd)
    dv = torch.einsum("nhij,nihd->njhd", p, g)
    dp = torch.einsum("nihd,njhd->nhij", g, vc)
    ds = p * (dp - (p * dp).sum(dim=-1, keepdim=True))
    dq = torch.einsum("nhij,njhd->nihd", ds, kc) * sc
    dk = torch.einsum("nhij,nihd->njhd", ds, qc) * sc
    return dq.to(q.dtype), dk.to(q.dtype), dv.to(q.dtype)
