"""pytest-benchmark timings of the fused losses, forward + backward (gradient w.r.t. the points), per
provider.

Providers: ``eager`` (the reference in :mod:`mvlift.reference.losses`), ``compile``
(``torch.compile(reference)``) and ``ours`` (:mod:`mvlift.ops`: the Triton kernels on CUDA). Shapes: the
issue's V = 6 views (all 15 pairs), T = 120 frames, J in {18, 24}, B in {1, 64, 1024}.

On a CPU-only machine only what means something there runs: ``eager`` and ``ours`` (which on CPU is the same
reference behind the custom op, so the pair measures the op's dispatch overhead) at B in {1, 64};
``compile`` (inductor) and B = 1024 are skipped, and so is ``ours`` under ``TRITON_INTERPRET=1`` (the
interpreter is a correctness tool, not a speed one). On CUDA each timed call ends with a synchronize, and
the peak extra memory of one call is stored in the benchmark's ``extra_info``.

    pytest benchmarks/bench_losses.py --benchmark-only --benchmark-group-by=param:op,param:B,param:J

The full GPU table (speedups, byte floor, bandwidth, memory) is ``benchmarks/gpu_losses.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from mvlift import ops
from mvlift.ops import _backend
from mvlift.reference import losses as ref

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
V, T = 6, 120


def _inputs(op: str, B: int, J: int) -> tuple[torch.Tensor, ...]:
    """Random inputs; the first one is the differentiated tensor."""
    g = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return (torch.rand(*shape, generator=g) * 2 - 1).to(DEVICE)

    if op == "epipolar":
        x = rand(B, V, T, J, 2).requires_grad_()
        F = torch.randn(V, V, 3, 3, generator=g).to(DEVICE)
        F = F + F.transpose(0, 1).transpose(-1, -2)  # F[j, i] = F[i, j]^T, as real fundamental matrices
        return x, F
    lines = torch.randn(B, T, J, 3, generator=g).to(DEVICE)
    if op == "line":
        return rand(B, T, J, 2).requires_grad_(), lines
    return rand(B, T, J, 2).requires_grad_(), rand(B, T, J, 2), lines


REFERENCES: dict[str, Callable[..., torch.Tensor]] = {
    "epipolar": lambda x, F: ref.epipolar_loss(x, F),
    "line": lambda x, lines: ref.line_matching_loss(x, lines),
    "stage1": lambda xp, x0, lines: ref.stage1_loss(xp, x0, lines)[0],
}
OURS: dict[str, Callable[..., torch.Tensor]] = {
    "epipolar": lambda x, F: ops.epipolar_loss(x, F, check_values=False),
    "line": ops.line_matching_loss,
    "stage1": lambda xp, x0, lines: ops.stage1_loss(xp, x0, lines)[0],
}


def _provider(op: str, name: str) -> Callable[..., torch.Tensor]:
    if name == "eager":
        return REFERENCES[op]
    if name == "compile":
        torch._dynamo.reset()
        return torch.compile(REFERENCES[op], fullgraph=True, dynamic=False)
    return OURS[op]


def _skip_reason(name: str, B: int) -> str | None:
    if CUDA:
        return None
    if name == "compile":
        return "torch.compile (inductor) is only benchmarked on CUDA"
    if B > 64:
        return "B = 1024 is only benchmarked on CUDA"
    if name == "ours" and _backend.use_triton(torch.empty(0)):
        return "TRITON_INTERPRET=1: the interpreter is not a speed benchmark"
    return None


def _peak_extra_mb(fn: Callable[[], object]) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = fn()
    torch.cuda.synchronize()
    del out
    return (torch.cuda.max_memory_allocated() - base) / 1e6


@pytest.mark.parametrize("provider", ["eager", "compile", "ours"])
@pytest.mark.parametrize("B", [1, 64, 1024])
@pytest.mark.parametrize("J", [18, 24])
@pytest.mark.parametrize("op", ["epipolar", "line", "stage1"])
def test_fwd_bwd(benchmark, op: str, J: int, B: int, provider: str) -> None:
    reason = _skip_reason(provider, B)
    if reason:
        pytest.skip(reason)
    args = _inputs(op, B, J)
    fn = _provider(op, provider)

    def step() -> torch.Tensor:
        (dx,) = torch.autograd.grad(fn(*args), args[0])
        if CUDA:
            torch.cuda.synchronize()
        return dx

    dx = step()  # warm-up (compilation) and a check against the eager reference
    (want,) = torch.autograd.grad(REFERENCES[op](*args), args[0])
    torch.testing.assert_close(dx, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    if CUDA:
        benchmark.extra_info["peak_extra_MB"] = _peak_extra_mb(step)
    benchmark.extra_info["device"] = torch.cuda.get_device_name() if CUDA else "cpu"
    benchmark(step)
