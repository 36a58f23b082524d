"""GPU table for multi-view triangulation: our native kernel vs torch.linalg.svd vs Adam (official code).

Problem (the issue's): B = 1024 sequences x T = 120 frames x J = 24 joints = 2.9M points, V = 6 views of a
3 m camera ring (1 m high, f = 1000 px, 1920x1080), shared P; ground-truth joints within ~0.5 m of the
look-at point; pixels with ``--noise`` px Gaussian noise. One row per provider:

- ``ours dlt`` / ``ours lm3``: :func:`mvlift.ops.triangulate_sequences` on x (B, V, T, J, 2) (the
  pipeline's views-major layout, read in place), DLT only / with 3 Levenberg-Marquardt steps; float32
  (and ``--fp64`` rows);
- ``torch svd``: textbook DLT with batched ``torch.linalg.svd`` on (N, 2V, 4) (inputs given points-major,
  not timed: the most favourable case for it);
- ``reference``: :func:`mvlift.reference.triangulate.triangulate`, our exact method in plain torch;
- ``adam NNN``: the official code's stage-3 triangulation: free 3D joints (initialised at the look-at
  point), Adam lr 0.01, MSE of the reprojection in the normalized [-1, 1] frame, NNN steps (500).

Columns: median time (``triton.testing.do_bench`` on CUDA; the Adam row is one timed run), speedup vs
``torch svd``, mean / max 3D error vs ground truth (mm), points flagged (any flag) by our kernel, and the
byte floor: the bytes any implementation must move (x read once + X written once, the issue's 59 us at
3.0 TB/s for float32; ``+info`` adds our rms/num_views/flags outputs) at ``--peak-tbps`` and at the
measured device-to-device copy bandwidth, and our time as a multiple of the floor.

    python benchmarks/gpu_triangulate.py [--sequences 1024] [--frames 120] [--joints 24] [--noise 1.0]
                                         [--adam-steps 500] [--peak-tbps 3.0] [--fp64] [--markdown out.md]

``--device cpu`` runs the same table on the CPU with wall-clock medians (use small sizes: a smoke test of
this script, e.g. ``--device cpu --sequences 4 --adam-steps 20``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch

from mvlift.geometry import ring_cameras
from mvlift.ops import triangulate_sequences
from mvlift.reference import triangulate as ref
from mvlift.reference.project import project_points

WIDTH, HEIGHT = 1920, 1080


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_seconds(fn: Callable[[], object], device: str, reps: int = 5) -> float:
    """Median time of ``fn``: ``triton.testing.do_bench`` on CUDA (L2 flushed), wall clock on the CPU."""
    if device == "cuda":
        from triton.testing import do_bench

        return do_bench(fn, return_mode="median") * 1e-3
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def copy_bandwidth(device: str, n_bytes: int) -> float:
    """Measured copy bandwidth in bytes/s (read + write of an ``n_bytes`` buffer)."""
    src = torch.empty(n_bytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    return 2 * n_bytes / median_seconds(lambda: dst.copy_(src), device)


def make_problem(B: int, T: int, J: int, V: int, noise: float, device: str, seed: int = 0):
    """Ground truth X (B, T, J, 3) float64, P (V, 3, 4) float64, pixels x (B, V, T, J, 2) float64."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    look = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    P = ring_cameras(V, radius=3.0, height=1.0, look_at=tuple(look.tolist())).P.to(device)
    X = (look + 0.3 * torch.randn(B, T, J, 3, generator=g, dtype=torch.float64)).to(device)
    uv, _ = project_points(X[..., None, :], P)  # (B, T, J, V, 2)
    uv = uv + noise * torch.randn(uv.shape, generator=g, dtype=torch.float64).to(device)
    return X, P, uv.permute(0, 3, 1, 2, 4).contiguous(), look.to(device)


def torch_svd_dlt(x: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """Textbook DLT: x (N, V, 2), P (V, 3, 4) -> X (N, 3) by batched torch.linalg.svd."""
    A = x[..., :, None] * P[:, 2:3, :] - P[:, :2, :]  # (N, V, 2, 4)
    _, _, vh = torch.linalg.svd(A.reshape(x.shape[0], -1, 4), full_matrices=False)
    Xh = vh[:, -1]
    return Xh[:, :3] / Xh[:, 3:]


def adam_triangulate(x: torch.Tensor, P: torch.Tensor, init: torch.Tensor, steps: int) -> torch.Tensor:
    """The official code's stage-3 solver: free points, Adam lr 0.01, normalized-frame reprojection MSE."""
    scale = torch.tensor([2.0 / WIDTH, 2.0 / HEIGHT], dtype=x.dtype, device=x.device)
    target = x * scale - 1.0  # (N, V, 2) normalized frame
    X = init.expand(x.shape[0], 3).clone().requires_grad_()
    opt = torch.optim.Adam([X], lr=0.01)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        proj = (P[:, :, :3] @ X[:, None, :, None])[..., 0] + P[:, :, 3]  # (N, V, 3)
        pred = proj[..., :2] / proj[..., 2:] * scale - 1.0
        loss = (pred - target).square().mean()
        loss.backward()
        opt.step()
    return X.detach()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sequences", type=int, default=1024)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--joints", type=int, default=24)
    ap.add_argument("--views", type=int, default=6)
    ap.add_argument("--noise", type=float, default=1.0, help="pixel noise std")
    ap.add_argument("--adam-steps", type=int, default=500)
    ap.add_argument("--peak-tbps", type=float, default=3.0, help="bandwidth of the byte floor, TB/s")
    ap.add_argument("--fp64", action="store_true", help="also time our kernel in float64")
    ap.add_argument("--markdown", help="also write the table to this file")
    args = ap.parse_args(argv)
    dev = args.device
    B, T, J, V = args.sequences, args.frames, args.joints, args.views
    N = B * T * J

    X_gt, P64, x64, look = make_problem(B, T, J, V, args.noise, dev)
    P32, x32 = P64.float(), x64.float()
    x_pm = x32.permute(0, 2, 3, 1, 4).reshape(N, V, 2).contiguous()  # points-major copy for the baselines
    X_gt_flat = X_gt.reshape(N, 3)

    rows: list[dict] = []

    def record(name: str, seconds: float, X: torch.Tensor, flagged: float | None = None) -> None:
        err = 1000 * (X.double().reshape(N, 3) - X_gt_flat).norm(dim=-1)
        err = err[torch.isfinite(err)]
        rows.append(
            dict(
                provider=name,
                ms=seconds * 1e3,
                mean_mm=err.mean().item(),
                max_mm=err.max().item(),
                flagged=flagged,
            )
        )

    for dtype, xs, Ps in [(torch.float32, x32, P32)] + ([(torch.float64, x64, P64)] if args.fp64 else []):
        tag = "" if dtype == torch.float32 else " fp64"
        for iters, name in ((0, "ours dlt"), (3, "ours lm3")):
            X, info = triangulate_sequences(xs, Ps, refine_iters=iters)
            t = median_seconds(
                lambda xs=xs, Ps=Ps, iters=iters: triangulate_sequences(xs, Ps, refine_iters=iters), dev
            )
            record(name + tag, t, X, flagged=(info.flags != 0).float().mean().item())

    t = median_seconds(lambda: torch_svd_dlt(x_pm, P32), dev)
    record("torch svd", t, torch_svd_dlt(x_pm, P32))
    t = median_seconds(lambda: ref.triangulate(x_pm, P32), dev, reps=3)
    record("reference", t, ref.triangulate(x_pm, P32)[0])

    sync(dev)
    t0 = time.perf_counter()
    X_adam = adam_triangulate(x_pm, P32, look.float(), args.adam_steps)
    sync(dev)
    record(f"adam {args.adam_steps}", time.perf_counter() - t0, X_adam)

    floor = N * V * 2 * 4 + N * 3 * 4  # float32 x read + X written
    floor_info = floor + N * (4 + 4 + 4)  # + rms, num_views, flags
    bw_copy = copy_bandwidth(dev, 1 << 28 if dev == "cuda" else 1 << 24)
    floor_peak_us = floor / (args.peak_tbps * 1e12) * 1e6
    floor_copy_us = floor / bw_copy * 1e6
    svd_ms = next(r["ms"] for r in rows if r["provider"] == "torch svd")

    name = torch.cuda.get_device_name() if dev == "cuda" else "CPU"
    peak = args.peak_tbps * 1e12
    lines = [
        f"Triangulation, N = {B} x {T} x {J} = {N:,} points, V = {V}, noise {args.noise} px, {name}, "
        f"torch {torch.__version__}",
        f"Byte floor (float32 x + X): {floor / 1e6:.1f} MB = {floor_peak_us:.1f} us at {args.peak_tbps} "
        f"TB/s, {floor_copy_us:.1f} us at the measured copy bandwidth {bw_copy / 1e12:.2f} TB/s; with our "
        f"info outputs {floor_info / 1e6:.1f} MB = {floor_info / peak * 1e6:.1f} us",
        "",
        "| provider | median ms | vs torch svd | x floor (peak) | x floor (copy bw) | mean err mm "
        "| max err mm | flagged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        flagged = "" if r["flagged"] is None else f"{100 * r['flagged']:.3f}%"
        us = r["ms"] * 1e3
        lines.append(
            f"| {r['provider']} | {r['ms']:.3f} | {svd_ms / r['ms']:.1f}x | {us / floor_peak_us:.1f}x "
            f"| {us / floor_copy_us:.1f}x | {r['mean_mm']:.3f} | {r['max_mm']:.3f} | {flagged} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
