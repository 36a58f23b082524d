"""GPU table for cross-view attention: SDPA vs torch.compile(reference) vs the Triton kernel.

For each dtype and view count K, at N frames x K views x H heads x D (default the issue's 7680 x K x 8 x 64),
forward and forward + backward: the median time (``triton.testing.do_bench``), the speedup over SDPA, the
byte floor (forward: q, k, v read + out written = 4 N K H D elements; backward: dout, q, k, v read + dq,
dk, dv written = 7; forward + backward = 11), the floor's time at the measured device-to-device copy
bandwidth, and the achieved bandwidth (floor bytes / time) as a share of that copy bandwidth.

    python benchmarks/gpu_cross_view_attention.py [--views 4 6 8] [--dtypes bf16 fp32] [--out table.md]

Each provider is checked against the float32 reference before it is timed. ``--device cpu`` runs the same
table on the CPU with wall-clock medians (a smoke test of this script; there ``ours`` is the reference path
unless ``TRITON_INTERPRET=1``); use small ``--n`` with it.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mvlift.ops import cross_view_attention
from mvlift.reference.attention import cross_view_attention as reference

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
FWD_UNITS, BWD_UNITS = 4, 7  # tensors of N K H D elements moved by the forward and by the backward


def sdpa_bmhk(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """torch's SDPA on the (N, K, H, D) layout (transposed views in and out, no copies)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


Bench = Callable[[Callable[[], object]], float]


def median_seconds(fn: Callable[[], object]) -> float:
    """Median time of ``fn`` in seconds, by ``triton.testing.do_bench`` (L2 flushed between runs)."""
    from triton.testing import do_bench

    return do_bench(fn, return_mode="median") * 1e-3


def wall_clock_median(fn: Callable[[], object], reps: int = 5) -> float:
    """Median wall-clock time of ``fn`` in seconds after one warm-up call (for ``--device cpu``)."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def copy_bandwidth(device: str = "cuda", n_bytes: int = 1 << 30, bench: Bench = median_seconds) -> float:
    """Measured device-to-device copy bandwidth in bytes/s (read + write of an ``n_bytes`` buffer)."""
    src = torch.empty(n_bytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    return 2 * n_bytes / bench(lambda: dst.copy_(src))


def providers() -> dict[str, Callable[..., torch.Tensor]]:
    return {
        "sdpa": sdpa_bmhk,
        "compiled reference": torch.compile(reference, fullgraph=True, dynamic=False),
        "ours": cross_view_attention,  # the Triton kernels on CUDA
    }


def forward(fn: Callable[..., torch.Tensor], q, k, v, g) -> torch.Tensor:
    """One timed forward (no autograd graph)."""
    with torch.no_grad():
        return fn(q, k, v)


def forward_backward(fn: Callable[..., torch.Tensor], q, k, v, g) -> tuple[torch.Tensor, ...]:
    """One timed forward + backward with upstream gradient ``g``."""
    return torch.autograd.grad(fn(q, k, v), (q, k, v), g)


def check(fn: Callable[..., torch.Tensor], q, k, v, g) -> None:
    """Output and gradients of ``fn`` against the float32 reference on the same inputs."""
    out = fn(q, k, v)
    grads = torch.autograd.grad(out, (q, k, v), g)
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    want = reference(q32, k32, v32)
    want_grads = torch.autograd.grad(want, (q32, k32, v32), g.float())
    tol = 2e-2 if q.dtype in (torch.bfloat16, torch.float16) else 1e-4
    for got, exp in zip((out, *grads), (want, *want_grads), strict=True):
        torch.testing.assert_close(got.float(), exp, rtol=tol, atol=tol * exp.abs().max().item())


def table(
    n: int,
    views: list[int],
    heads: int,
    dim: int,
    dtypes: list[str],
    device: str = "cuda",
    bench: Bench = median_seconds,
    copy_bytes: int = 1 << 30,
) -> list[str]:
    """The markdown table: a description line, then the header and one row per (dtype, K, pass, provider)."""
    bw = copy_bandwidth(device, copy_bytes, bench)
    dev_name = torch.cuda.get_device_name() if device == "cuda" else device
    lines = [
        f"Device: {dev_name}; copy bandwidth {bw / 1e9:.0f} GB/s; "
        f"N = {n}, H = {heads}, D = {dim}; torch {torch.__version__}.",
        "",
        "| dtype | K | pass | provider | median (µs) | speedup vs SDPA | floor (MB) | floor at copy bw (µs) "
        "| achieved (GB/s) | % of copy bw |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dname in dtypes:
        dtype = DTYPES[dname]
        for kv in views:
            torch.manual_seed(0)
            torch._dynamo.reset()  # a fresh compile per shape, clear of the recompile limit
            shape = (n, kv, heads, dim)
            q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
            g = torch.randn(shape, device=device, dtype=dtype)
            tensor_bytes = q.numel() * q.element_size()
            fns = providers()
            for fn in fns.values():
                check(fn, q, k, v, g)
            for mode, units in (("fwd", FWD_UNITS), ("fwd+bwd", FWD_UNITS + BWD_UNITS)):
                floor = units * tensor_bytes
                times = {}
                for name, fn in fns.items():
                    step = forward if mode == "fwd" else forward_backward
                    run = functools.partial(step, fn, q, k, v, g)
                    times[name] = bench(run)
                for name, t in times.items():
                    achieved = floor / t
                    lines.append(
                        f"| {dname} | {kv} | {mode} | {name} | {t * 1e6:.1f} | {times['sdpa'] / t:.2f}x "
                        f"| {floor / 1e6:.1f} | {floor / bw * 1e6:.1f} | {achieved / 1e9:.0f} "
                        f"| {100 * achieved / bw:.0f}% |"
                    )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=7680, help="frames N (batch x time)")
    ap.add_argument("--views", type=int, nargs="+", default=[4, 6, 8], help="tokens per frame K")
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=list(DTYPES))
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--out", help="also write the table (markdown) to this file")
    args = ap.parse_args(argv)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print(
                "gpu_cross_view_attention: no CUDA device (use --device cpu for a smoke run)", file=sys.stderr
            )
            return 1
        lines = table(args.n, args.views, args.heads, args.dim, args.dtypes)
    else:
        lines = table(
            args.n,
            args.views,
            args.heads,
            args.dim,
            args.dtypes,
            "cpu",
            wall_clock_median,
            copy_bytes=1 << 26,
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
