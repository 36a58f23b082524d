"""The loss ops under torch.compile (fullgraph: no graph break, aot_eager backend) on the kernel and the
reference paths. (The kernels compiled for real GPU targets without a GPU: tests/test_kernel_compile.py.)"""

from __future__ import annotations

import pytest
import torch

from mvlift.ops import _backend, epipolar_loss, line_matching_loss, stage1_loss

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _inputs():
    B, V, T, J = 2, 3, 5, 7
    x = torch.rand(B, V, T, J, 2, device=DEVICE) * 2 - 1
    F = torch.randn(V, V, 3, 3, device=DEVICE)
    w = torch.rand(B, V, T, J, device=DEVICE)
    m = torch.rand(B, T, device=DEVICE) < 0.8
    m[:, 0] = True
    x0 = torch.rand(B, T, J, 2, device=DEVICE) * 2 - 1
    lines = torch.randn(B, T, J, 3, device=DEVICE)
    return [t.requires_grad_() if t.is_floating_point() else t for t in (x, F, w, m, x0, lines)]


def _losses(x, F, w, m, x0, lines):
    a = epipolar_loss(x, F, weights=w, mask=m, pairs=[(0, 1), (2, 0)])
    b = epipolar_loss(x, F, mask=m, distance="sampson", reduction="per_sequence").sum()
    c = line_matching_loss(x[:, 0], lines, mask=m)
    total, l1, line = stage1_loss(x[:, 1], x0, lines, mask=m, line_weight=0.5)
    return a + b + c + total + 0.25 * l1 - line


@pytest.mark.parametrize("kernels", [True, False])
def test_compile_fullgraph_matches_eager(seed, monkeypatch, kernels):
    if kernels and not _backend.use_triton(torch.empty(0, device=DEVICE)):
        pytest.skip("Triton kernels not runnable here")
    if not kernels:
        monkeypatch.setattr(_backend, "use_triton", lambda t: False)
    torch._dynamo.reset()
    inputs = _inputs()
    leaves = [t for t in inputs if t.requires_grad]
    eager = _losses(*inputs)
    eager_grads = torch.autograd.grad(eager, leaves)
    compiled = torch.compile(_losses, fullgraph=True, backend="aot_eager")  # raises on a graph break
    out = compiled(*inputs)
    grads = torch.autograd.grad(out, leaves)
    torch.testing.assert_close(out, eager, rtol=1e-6, atol=1e-6)
    for got, want in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch._dynamo.reset()
