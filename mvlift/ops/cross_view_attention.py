"""Cross-view attention: softmax attention among the K <= 16 tokens (views) of each frame.

Generic attention kernels are tuned for long sequences; with 4..8 tokens per frame they spend most of their
time on tiling overhead. The Triton kernels in :mod:`mvlift.kernels.cross_view_attention` keep each frame's
K x D tiles in registers instead (forward, and a fused backward that recomputes the softmax).

Dispatch (see :mod:`mvlift.ops._backend`): CUDA tensors -> Triton kernels (float16, bfloat16, float32;
float64 on CUDA takes the reference); CPU tensors -> the reference :mod:`mvlift.reference.attention`, or
the Triton kernels in the interpreter when ``TRITON_INTERPRET=1``. Registered as
``torch.library.custom_op("mvlift::cross_view_attention")`` with fake and autograd implementations, so it
traces under ``torch.compile(fullgraph=True)``. First-order gradients only (no double backward).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from mvlift.ops._backend import use_triton
from mvlift.reference import attention as _ref

__all__ = ["cross_view_attention"]

MAX_TOKENS = 16
MAX_HEAD_DIM = 128
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _use_kernel(t: Tensor) -> bool:
    """Whether the Triton kernels run for ``t`` (float64 runs them only in the CPU interpreter)."""
    return use_triton(t) and not (t.is_cuda and t.dtype == torch.float64)


@torch.library.custom_op("mvlift::cross_view_attention", mutates_args=())
def _cross_view_attention(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    if _use_kernel(q):
        from mvlift.kernels.cross_view_attention import cross_view_attention_forward

        return cross_view_attention_forward(q, k, v, scale)
    return _ref.cross_view_attention(q, k, v, scale=scale).contiguous()


@_cross_view_attention.register_fake
def _(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    return q.new_empty(q.shape)


@torch.library.custom_op("mvlift::cross_view_attention_backward", mutates_args=())
def _cross_view_attention_backward(
    grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, scale: float
) -> tuple[Tensor, Tensor, Tensor]:
    if _use_kernel(q):
        from mvlift.kernels.cross_view_attention import cross_view_attention_backward

        return cross_view_attention_backward(grad_out, q, k, v, scale)
    dq, dk, dv = _ref.cross_view_attention_backward(grad_out, q, k, v, scale=scale)
    return dq.contiguous(), dk.contiguous(), dv.contiguous()


@_cross_view_attention_backward.register_fake
def _(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, scale: float) -> tuple[Tensor, Tensor, Tensor]:
    return q.new_empty(q.shape), q.new_empty(q.shape), q.new_empty(q.shape)


def _setup_context(ctx, inputs: tuple, output: Tensor) -> None:
    q, k, v, scale = inputs
    ctx.save_for_backward(q, k, v)
    ctx.scale = scale


def _backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
    q, k, v = ctx.saved_tensors
    dq, dk, dv = _cross_view_attention_backward(grad_out, q, k, v, ctx.scale)
    return dq, dk, dv, None


_cross_view_attention.register_autograd(_backward, setup_context=_setup_context)


def _check(q: object, k: object, v: object, scale: object) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"cross_view_attention: {name} must be a torch.Tensor, got {type(t).__name__}")
    if q.dim() != 4:
        raise ValueError(
            f"cross_view_attention: q must have shape (N, K, H, D) [frames, tokens, heads, head_dim], "
            f"got shape {tuple(q.shape)}"
        )
    for name, t in (("k", k), ("v", v)):
        if t.shape != q.shape:
            raise ValueError(
                f"cross_view_attention: {name} must have the shape of q {tuple(q.shape)} (N, K, H, D), "
                f"got {tuple(t.shape)}"
            )
    n_tok, head_dim = q.shape[1], q.shape[3]
    if not 1 <= n_tok <= MAX_TOKENS:
        raise ValueError(
            f"cross_view_attention: the token count K = q.shape[1] must be in [1, {MAX_TOKENS}] (few-token "
            f"attention; use torch.nn.functional.scaled_dot_product_attention beyond), got {n_tok}"
        )
    if not 1 <= head_dim <= MAX_HEAD_DIM:
        raise ValueError(
            f"cross_view_attention: the head dim D = q.shape[3] must be in [1, {MAX_HEAD_DIM}], "
            f"got {head_dim}"
        )
    if q.dtype not in _DTYPES:
        raise TypeError(
            f"cross_view_attention: q must be float16, bfloat16, float32 or float64, got {q.dtype}"
        )
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise TypeError(f"cross_view_attention: {name} must have q's dtype {q.dtype}, got {t.dtype}")
        if t.device != q.device:
            raise ValueError(f"cross_view_attention: {name} must be on q's device {q.device}, got {t.device}")
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
            raise TypeError(f"cross_view_attention: scale must be a real number or None, got {scale!r}")
        if not math.isfinite(float(scale)):
            raise ValueError(f"cross_view_attention: scale must be finite, got {scale!r}")


def cross_view_attention(q: Tensor, k: Tensor, v: Tensor, *, scale: float | None = None) -> Tensor:
    """Softmax attention among the K tokens of each frame and head, without mask.

    ``out[n, i, h] = sum_j softmax_j(scale * q[n, i, h] . k[n, j, h]) v[n, j, h]``: the
    ``scaled_dot_product_attention`` of ``q.transpose(1, 2)``, ... transposed back, for few tokens.

    Args:
        q, k, v: (N, K, H, D) = [frames (e.g. batch * time), tokens (views), heads, head_dim], the
            xformers BMHK layout; one dtype (float16, bfloat16, float32, float64) and one device.
            1 <= K <= 16, 1 <= D <= 128 (any D: padded channels are masked). Any strides (e.g. slices of a
            fused qkv projection) are read in place, no copy.
        scale: score multiplier, default 1 / sqrt(D).

    Returns:
        (N, K, H, D), contiguous, in the inputs' dtype. Half-precision inputs accumulate in float32.
        Differentiable (first order) in q, k and v; deterministic.

    Raises:
        TypeError: a non-tensor input, an unsupported or mismatched dtype, a non-real scale.
        ValueError: a wrong or mismatched shape, K > 16, D > 128, mismatched devices, a non-finite scale.
    """
    _check(q, k, v, scale)
    sc = 1.0 / math.sqrt(q.shape[3]) if scale is None else float(scale)
    return _cross_view_attention(q, k, v, sc)
