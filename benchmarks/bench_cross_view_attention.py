"""pytest-benchmark timings of cross-view attention, forward and forward + backward, per provider.

Providers: ``ours`` (:func:`mvlift.ops.cross_view_attention`: Triton on CUDA, the reference on CPU unless
``TRITON_INTERPRET=1``), ``sdpa`` (``torch.nn.functional.scaled_dot_product_attention`` on the transposed
layout) and ``reference`` (:func:`mvlift.reference.attention.cross_view_attention`, eager). On CPU a small
float32 shape; on CUDA the issue's shape, N = 7680 frames x K views x 8 heads x 64, in bfloat16.

    pytest benchmarks/bench_cross_view_attention.py --benchmark-only --benchmark-group-by=param:case

The full GPU table (byte floors, bandwidth, torch.compile) is ``benchmarks/gpu_cross_view_attention.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from mvlift.ops import cross_view_attention
from mvlift.reference.attention import cross_view_attention as reference

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
DTYPE = torch.bfloat16 if CUDA else torch.float32
N_FRAMES = 7680 if CUDA else 256
HEADS, HEAD_DIM = 8, 64


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


PROVIDERS: dict[str, Callable[..., torch.Tensor]] = {
    "ours": cross_view_attention,
    "sdpa": _sdpa,
    "reference": reference,
}


def _sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
@pytest.mark.parametrize("n_views", [4, 8])
def test_cross_view_attention(benchmark, provider: str, mode: str, n_views: int) -> None:
    torch.manual_seed(0)
    shape = (N_FRAMES, n_views, HEADS, HEAD_DIM)
    q, k, v = (torch.randn(shape, device=DEVICE, dtype=DTYPE, requires_grad=True) for _ in range(3))
    g = torch.randn(shape, device=DEVICE, dtype=DTYPE)
    fn = PROVIDERS[provider]
    benchmark.group = f"{mode} N={N_FRAMES} K={n_views} H={HEADS} D={HEAD_DIM} {DTYPE}".replace("torch.", "")
    benchmark.extra_info.update(device=str(DEVICE), shape=shape, dtype=str(DTYPE))

    if mode == "fwd":

        def run() -> torch.Tensor:
            with torch.no_grad():
                out = fn(q, k, v)
            _sync()
            return out

        out = benchmark(run)
        assert out.shape == shape
    else:

        def run() -> tuple[torch.Tensor, ...]:
            grads = torch.autograd.grad(fn(q, k, v), (q, k, v), g)
            _sync()
            return grads

        grads = benchmark(run)
        assert all(t.shape == shape and torch.isfinite(t).all() for t in grads)
