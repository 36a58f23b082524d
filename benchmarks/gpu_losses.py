"""GPU table for the fused losses: eager reference vs torch.compile(reference) vs the Triton kernels.

For each op (``epipolar``: :func:`mvlift.ops.epipolar_loss`, all 15 pairs of V = 6 views; ``line``:
:func:`mvlift.ops.line_matching_loss`; ``stage1``: :func:`mvlift.ops.stage1_loss`), each batch size B and
joint count J (T = 120 frames), forward and forward + backward (gradient w.r.t. the points only), one row
per provider with:

- the median time (``triton.testing.do_bench``, L2 flushed between runs) and the speedups vs eager and vs
  torch.compile;
- the byte floor, i.e. the bytes any implementation must move: forward = the inputs read once;
  forward + backward = the inputs read once + the gradient written once (epipolar: x read + dx written + F;
  a two-pass forward/backward like ours reads x twice, so its best case is 1.5x this floor);
- the achieved bandwidth (floor bytes / time) vs the measured device-to-device copy bandwidth;
- the peak extra memory of one call (``torch.cuda.max_memory_allocated`` above what was allocated before,
  including the returned gradient) and the scratch part of it (minus the gradient's bytes).

``ours`` runs with ``check_values=False`` (the default check of F and the weights costs one host sync per
call); the ``ours (checked)`` rows show the default. Every provider is checked against the float64
reference before it is timed.

    python benchmarks/gpu_losses.py [--ops epipolar line stage1] [--batches 1 64 1024] [--joints 18 24]
                                    [--csv out.csv] [--markdown out.md]

``--device cpu`` runs the same table on the CPU with small sizes and wall-clock medians (a smoke test of
this script; there ``ours`` is the reference path unless ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import argparse
import csv
import functools
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mvlift import ops
from mvlift.geometry import fundamental_from_cameras, ring_cameras
from mvlift.reference import losses as ref

Bench = Callable[[Callable[[], object]], float]
KEYS = [
    "op", "B", "V", "T", "J", "mode", "provider", "median_us", "vs_eager", "vs_compile", "floor_MB",
    "floor_us", "achieved_GBps", "pct_copy_bw", "peak_extra_MB", "scratch_MB",
]  # fmt: skip
COLUMNS = [
    "op", "B", "V", "T", "J", "pass", "provider", "median_us", "vs_eager", "vs_compile", "floor_MB",
    "floor_us_at_copy_bw", "achieved_GBps", "pct_copy_bw", "peak_extra_MB", "scratch_MB",
]  # fmt: skip


def do_bench_seconds(fn: Callable[[], object]) -> float:
    """Median time of ``fn`` in seconds, by ``triton.testing.do_bench``."""
    from triton.testing import do_bench

    return do_bench(fn, return_mode="median") * 1e-3


def wall_seconds(fn: Callable[[], object], reps: int = 5) -> float:
    """Median wall-clock time of ``fn`` in seconds (CPU smoke runs)."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def copy_bandwidth(device: str, n_bytes: int, bench: Bench) -> float:
    """Measured copy bandwidth in bytes/s: read + write of an ``n_bytes`` float32 buffer."""
    src = torch.empty(n_bytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    return 2 * n_bytes / bench(lambda: dst.copy_(src))


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_extra_bytes(fn: Callable[[], object], device: str) -> float:
    """Peak memory of one ``fn()`` above what was allocated before (NaN off CUDA)."""
    if device != "cuda":
        return float("nan")
    _sync(device)
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = fn()
    _sync(device)
    del out
    return float(torch.cuda.max_memory_allocated() - base)


@dataclass
class Problem:
    """One op at one shape: its inputs, the providers, and the bytes of its floor."""

    args: tuple  # positional inputs; args[0] is the differentiated tensor
    providers: dict[str, Callable[..., torch.Tensor]]
    floor_fwd: int
    floor_fwd_bwd: int
    reference: Callable[..., torch.Tensor]  # float64 check oracle, same signature


def _bytes(*ts: torch.Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in ts if t is not None)


def _compiled(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    return torch.compile(fn, fullgraph=True, dynamic=False)


def epipolar_problem(
    B: int, V: int, T: int, J: int, device: str, dtype: torch.dtype, distance: str
) -> Problem:
    """Points in the normalized frame, F of a 3 m camera ring (shared by the batch), all pairs."""
    cams = ring_cameras(V, radius=3.0, height=1.0, look_at=(0.0, 1.0, 0.0), dtype=torch.float64)
    F = fundamental_from_cameras(cams, normalized=True).to(device, torch.float32)
    x = (torch.rand(B, V, T, J, 2, device=device) - 0.5).to(dtype).requires_grad_()

    def eager(x, F):
        return ref.epipolar_loss(x, F, distance=distance)

    def ours(x, F):
        return ops.epipolar_loss(x, F, distance=distance, check_values=False)

    def ours_checked(x, F):
        return ops.epipolar_loss(x, F, distance=distance)

    return Problem(
        args=(x, F),
        providers={"eager": eager, "compile": _compiled(eager), "ours": ours, "ours (checked)": ours_checked},
        floor_fwd=_bytes(x, F),
        floor_fwd_bwd=2 * _bytes(x) + _bytes(F),
        reference=eager,
    )


def line_problem(B: int, V: int, T: int, J: int, device: str, dtype: torch.dtype, distance: str) -> Problem:
    x = (torch.rand(B, T, J, 2, device=device) * 2 - 1).to(dtype).requires_grad_()
    lines = torch.randn(B, T, J, 3, device=device).to(dtype)

    def eager(x, lines):
        return ref.line_matching_loss(x, lines)

    return Problem(
        args=(x, lines),
        providers={"eager": eager, "compile": _compiled(eager), "ours": ops.line_matching_loss},
        floor_fwd=_bytes(x, lines),
        floor_fwd_bwd=2 * _bytes(x) + _bytes(lines),
        reference=eager,
    )


def stage1_problem(B: int, V: int, T: int, J: int, device: str, dtype: torch.dtype, distance: str) -> Problem:
    xp = (torch.rand(B, T, J, 2, device=device) * 2 - 1).to(dtype).requires_grad_()
    x0 = (torch.rand(B, T, J, 2, device=device) * 2 - 1).to(dtype)
    lines = torch.randn(B, T, J, 3, device=device).to(dtype)

    def eager(xp, x0, lines):
        return ref.stage1_loss(xp, x0, lines)[0]

    def ours(xp, x0, lines):
        return ops.stage1_loss(xp, x0, lines)[0]

    return Problem(
        args=(xp, x0, lines),
        providers={"eager": eager, "compile": _compiled(eager), "ours": ours},
        floor_fwd=_bytes(xp, x0, lines),
        floor_fwd_bwd=2 * _bytes(xp) + _bytes(x0, lines),
        reference=eager,
    )


PROBLEMS = {"epipolar": epipolar_problem, "line": line_problem, "stage1": stage1_problem}


def forward(fn: Callable[..., torch.Tensor], args: tuple) -> torch.Tensor:
    with torch.no_grad():
        return fn(*args)


def forward_backward(fn: Callable[..., torch.Tensor], args: tuple) -> torch.Tensor:
    return torch.autograd.grad(fn(*args), args[0])[0]


def check(name: str, fn: Callable[..., torch.Tensor], problem: Problem) -> None:
    """Loss and gradient of ``fn`` against the float64 reference on the same inputs."""
    args = problem.args
    out = fn(*args)
    grad = torch.autograd.grad(out, args[0])[0]
    a64 = tuple(a.detach().double() for a in args)
    x64 = a64[0].requires_grad_()
    want = problem.reference(x64, *a64[1:])
    want_grad = torch.autograd.grad(want, x64)[0]
    tol = 2e-2 if args[0].dtype in (torch.float16, torch.bfloat16) else 1e-4
    for got, exp in ((out, want), (grad, want_grad)):
        err = ((got.double() - exp).abs().max() / exp.abs().max().clamp_min(1e-30)).item()
        if not err < tol:
            raise AssertionError(f"{name}: relative error {err:.2e} >= {tol} against the float64 reference")


def rows(
    op: str,
    batches: list[int],
    views: int,
    frames: int,
    joints: list[int],
    device: str,
    dtype: torch.dtype,
    distance: str,
    copy_bw: float,
    bench: Bench,
) -> list[dict]:
    out = []
    for J in joints:
        for B in batches:
            torch.manual_seed(0)
            torch._dynamo.reset()  # a fresh compile per shape
            problem = PROBLEMS[op](B, views, frames, J, device, dtype, distance)
            if device != "cuda":
                problem.providers.pop("compile")  # inductor on a small CPU: slow and beside the point
            for name, fn in problem.providers.items():
                check(name, fn, problem)
            grad_bytes = _bytes(problem.args[0])
            for mode, step, floor in (
                ("fwd", forward, problem.floor_fwd),
                ("fwd+bwd", forward_backward, problem.floor_fwd_bwd),
            ):
                times, peaks = {}, {}
                for name, fn in problem.providers.items():
                    run = functools.partial(step, fn, problem.args)
                    times[name] = bench(run)
                    peaks[name] = peak_extra_bytes(run, device)
                for name, t in times.items():
                    scratch = peaks[name] - (grad_bytes if mode == "fwd+bwd" else 0)
                    out.append(
                        dict(
                            op=op,
                            B=B,
                            V=views if op == "epipolar" else 1,
                            T=frames,
                            J=J,
                            mode=mode,
                            provider=name,
                            median_us=t * 1e6,
                            vs_eager=times["eager"] / t,
                            vs_compile=times["compile"] / t if "compile" in times else float("nan"),
                            floor_MB=floor / 1e6,
                            floor_us=floor / copy_bw * 1e6,
                            achieved_GBps=floor / t / 1e9,
                            pct_copy_bw=100 * floor / t / copy_bw,
                            peak_extra_MB=peaks[name] / 1e6,
                            scratch_MB=scratch / 1e6,
                        )  # fmt: skip
                    )
    return out


def markdown(header: str, table: list[dict]) -> str:
    lines = [
        header,
        "",
        "| op | B | V | T | J | pass | provider | median (µs) | vs eager | vs compile | floor (MB) "
        "| floor at copy bw (µs) | achieved (GB/s) | % copy bw | peak extra (MB) | scratch (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['op']} | {r['B']} | {r['V']} | {r['T']} | {r['J']} | {r['mode']} | {r['provider']} "
            f"| {r['median_us']:.1f} | {r['vs_eager']:.1f}x | {r['vs_compile']:.1f}x | {r['floor_MB']:.2f} "
            f"| {r['floor_us']:.1f} | {r['achieved_GBps']:.0f} | {r['pct_copy_bw']:.0f}% "
            f"| {r['peak_extra_MB']:.1f} | {r['scratch_MB']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    ap.add_argument(
        "--batches", type=int, nargs="+", default=None, help="default 1 64 1024 (CUDA), 1 4 (CPU)"
    )
    ap.add_argument("--views", type=int, default=6)
    ap.add_argument("--frames", type=int, default=None, help="T; default 120 (CUDA), 30 (CPU)")
    ap.add_argument("--joints", type=int, nargs="+", default=[18, 24])
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--distance", default="symmetric", choices=["symmetric", "sampson"])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--csv", help="also write the rows as CSV to this file")
    ap.add_argument("--markdown", help="also write the markdown table to this file")
    args = ap.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("gpu_losses: needs a CUDA device (or --device cpu for a smoke run)", file=sys.stderr)
        return 1
    batches = args.batches or ([1, 64, 1024] if cuda else [1, 4])
    frames = args.frames or (120 if cuda else 30)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    bench: Bench = do_bench_seconds if cuda else wall_seconds
    bw = copy_bandwidth(args.device, (1 << 30) if cuda else (1 << 26), bench)
    import triton

    dev_name = torch.cuda.get_device_name() if cuda else "cpu"
    header = (
        f"Device: {dev_name}; copy bandwidth {bw / 1e9:.0f} GB/s; dtype {args.dtype}; "
        f"distance {args.distance}; torch {torch.__version__}, triton {triton.__version__}."
    )
    table = []
    for op in args.ops:
        table += rows(
            op, batches, args.views, frames, args.joints, args.device, dtype, args.distance, bw, bench
        )
    text = markdown(header, table)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["# " + header])
            w.writerow(COLUMNS)
            for r in table:
                w.writerow([r[k] for k in KEYS])
    return 0


if __name__ == "__main__":
    sys.exit(main())
