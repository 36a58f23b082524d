"""Per-stage diagnostics of a finished (or partly finished) run whose data source has 3D ground truth.

``diagnose(config)`` writes ``diagnostics.json`` and ``diagnostics.md`` into the run folder, one entry per
stage, so that a run that lifts badly says which stage failed:

- **stage 1** - samples of the stage-1 model conditioned on the stage-2 ring's line conditions (the input
  view's epipolar lines in each other view, as stage 2 and the stage-1-only ablation use them): the mean
  distance of the sampled joints to their lines, in pixels, and the 2D bone-length spread over time (mean
  over bones of std / mean of each bone's 2D length), beside the same spread of the real input windows.
- **stage 2** - the optimised 6-view 2D of the synthetic shards: the mean symmetric epipolar distance over
  all view pairs and the mean distance of the free views' joints to the input view's epipolar lines, in
  pixels of the 1920 x 1080 canvas.
- **stage 3** - the synthetic 3D (``joints3d`` of the shards) against the training windows' true 3D:
  MPJPE and PA-MPJPE (mm, :func:`mvlift.metrics.evaluate_sequence`), and the single-view optimisation
  baseline (:func:`mvlift.baselines.fit_single_view`) on the same windows: the bar stage 3 must clear.
- **stage 4** - the views the multi-view model generates for the evaluation windows against the views of
  the true motion in the same ring, in pixels. The true motion is placed in the ring's world frame by the
  rigid transform (rotation, translation; its scale fixed by the lifted motion's size) that fits its
  projection into camera 0 to the input 2D, found by Gauss-Newton from the similarity Procrustes start
  onto the lifted motion.

The training windows' 3D is read here only, to report; no training step ever reads it. Each entry is
computed from what exists: a run without stage-4 weights gets no stage-4 line.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mvlift.atomic import atomic_write_json, atomic_write_text

__all__ = ["diagnose", "format_diagnostics", "pixel_line_distance", "pixel_epipolar_distance"]


def _pixel_normalization(image_size: tuple[int, int], like: Tensor) -> Tensor:
    """N (3, 3) with ``x_normalized = N x_pixels`` (docs/conventions.md)."""
    w, h = image_size
    return torch.tensor(
        [[2.0 / w, 0.0, -1.0], [0.0, 2.0 / h, -1.0], [0.0, 0.0, 1.0]], dtype=like.dtype, device=like.device
    )


def pixel_line_distance(x: Tensor, lines: Tensor, image_size: tuple[int, int] = (1920, 1080)) -> Tensor:
    """Distance in pixels of normalised points x (..., 2) to normalised lines (..., 3) (a x + b y + c = 0).

    The normalised frame is anisotropic (x / (W/2), y / (H/2)), so the line is mapped to pixels first:
    ``l_px = N^T l``.
    """
    N = _pixel_normalization(image_size, x)
    w, h = image_size
    px = torch.stack([(x[..., 0] + 1) * w / 2, (x[..., 1] + 1) * h / 2], dim=-1)
    lp = lines @ N  # row form of N^T l
    num = (lp[..., 0] * px[..., 0] + lp[..., 1] * px[..., 1] + lp[..., 2]).abs()
    return num / lp[..., :2].norm(dim=-1).clamp_min(1e-12)


def pixel_epipolar_distance(
    views: Tensor, F: Tensor, mask: Tensor | None = None, image_size: tuple[int, int] = (1920, 1080)
) -> float:
    """Mean symmetric epipolar distance in pixels over all view pairs, frames and joints.

    Args:
        views: (B, V, T, J, 2) normalised 2D; F: (V, V, 3, 3) normalised-frame fundamental matrices
            (``x_j^T F[i, j] x_i = 0``); mask: (B, T) valid frames.
    """
    from mvlift.geometry.epipolar import symmetric_epipolar_distance

    N = _pixel_normalization(image_size, views)
    w, h = image_size
    px = torch.stack([(views[..., 0] + 1) * w / 2, (views[..., 1] + 1) * h / 2], dim=-1)
    V = views.shape[1]
    total, count = 0.0, 0.0
    m = None if mask is None else mask[:, :, None].to(views.dtype).expand(views.shape[0], *views.shape[2:4])
    for i in range(V):
        for j in range(i + 1, V):
            Fp = N.T @ F[i, j] @ N
            d = symmetric_epipolar_distance(px[:, i], px[:, j], Fp)  # (B, T, J)
            if m is None:
                total += float(d.sum())
                count += d.numel()
            else:
                total += float((d * m).sum())
                count += float(m.sum())
    return total / max(count, 1.0)


def _bone_spread_2d(x: Tensor, parents: tuple[int, ...], mask: Tensor) -> float:
    """Mean over sequences and bones of std / mean of the 2D bone length over the valid frames.

    x (B, T, J, 2) normalised (converted to pixels first); mask (B, T)."""
    px = torch.stack([(x[..., 0] + 1) * 960.0, (x[..., 1] + 1) * 540.0], dim=-1)
    child = [j for j, p in enumerate(parents) if p >= 0]
    parent = [parents[j] for j in child]
    lengths = (px[:, :, child] - px[:, :, parent]).norm(dim=-1)  # (B, T, nb)
    w = mask.to(x.dtype)[..., None]
    n = w.sum(1).clamp_min(1.0)
    mean = (lengths * w).sum(1) / n
    std = (((lengths - mean[:, None]) ** 2 * w).sum(1) / n).sqrt()
    return float((std / mean.clamp_min(1e-6)).mean())


def _score_3d(pred: Tensor, positions: np.ndarray, valid: np.ndarray, skeleton: Any) -> dict[str, float]:
    """Mean MPJPE / PA-MPJPE (mm) of predictions (N, T, J, 3) against the truth, failed windows counted."""
    from mvlift.metrics import evaluate_sequence

    rows, failed = [], 0
    for i in range(pred.shape[0]):
        p = pred[i].double().cpu().numpy()
        if not np.isfinite(p[valid[i]]).all():
            failed += 1
            continue
        r = evaluate_sequence(p, positions[i], skeleton=skeleton, mask=valid[i])
        rows.append((r["mpjpe"], r["pa_mpjpe"]))
    if not rows:
        return {"windows": float(pred.shape[0]), "failed": float(failed)}
    arr = np.array(rows)
    return {
        "mpjpe": float(arr[:, 0].mean()),
        "pa_mpjpe": float(arr[:, 1].mean()),
        "pa_mpjpe_median": float(np.median(arr[:, 1])),
        "windows": float(pred.shape[0]),
        "failed": float(failed),
    }


def _subset(n: int, limit: int) -> np.ndarray:
    """``limit`` evenly spaced indices of range(n) (all when n <= limit)."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def _stage1(
    config: Any, model: torch.nn.Module, data: Any, idx: np.ndarray, skeleton: Any
) -> dict[str, float]:
    from mvlift.geometry import epipolar_line_conditions
    from mvlift.stages.stage2 import sample_views_stage1_only

    x = torch.as_tensor(data.keypoints[idx], dtype=torch.float32)
    mask = torch.as_tensor(data.mask[idx])
    res = sample_views_stage1_only(model, x, config.stage2, mask=mask, steps=config.lift.steps, seed=0)
    V = res.views.shape[1]
    F = res.F.to(torch.float32)
    dists, weights = [], []
    for v in range(1, V):
        lines = epipolar_line_conditions(x, F[0, v])
        d = pixel_line_distance(res.views[:, v].double(), lines.double(), config.stage2.image_size)
        dists.append((d * mask[..., None]).sum())
        weights.append(mask.sum() * d.shape[-1])
    samples = res.views[:, 1:].reshape(-1, *x.shape[1:])
    mask_rep = mask.repeat(V - 1, 1)
    parents = tuple(skeleton.parents)
    return {
        "line_px": float(sum(dists) / sum(weights)),
        "bone_spread_2d_samples": _bone_spread_2d(samples.double(), parents, mask_rep),
        "bone_spread_2d_data": _bone_spread_2d(x.double(), parents, mask),
        "windows": float(len(idx)),
    }


def _stage2(config: Any, syn: dict[str, Tensor]) -> dict[str, float]:
    from mvlift.geometry import epipolar_line_conditions
    from mvlift.stages.stage2 import make_ring

    views = syn["stage2_views"].double()
    mask = syn["mask"]
    _, F = make_ring(config.stage2, dtype=torch.float64, device="cpu")
    epi = pixel_epipolar_distance(views, F, mask, config.stage2.image_size)
    line_sum, line_n = 0.0, 0.0
    for v in range(1, views.shape[1]):
        lines = epipolar_line_conditions(views[:, 0], F[0, v])
        d = pixel_line_distance(views[:, v], lines, config.stage2.image_size)
        line_sum += float((d * mask[..., None]).sum())
        line_n += float(mask.sum()) * d.shape[-1]
    return {"epipolar_px": epi, "line_px": line_sum / max(line_n, 1.0), "windows": float(views.shape[0])}


def _place_truth_in_ring(
    truth: Tensor, lifted: Tensor, x_input: Tensor, P0: Tensor, mask: Tensor, iters: int = 30
) -> Tensor:
    """The true motion (T, J, 3) moved rigidly into the ring's frame so that camera 0 sees the input.

    Start: the similarity Procrustes of the truth onto the lifted motion (all valid frames); then the
    rotation and translation are refined by damped Gauss-Newton on the camera-0 reprojection error of the
    valid frames (the scale stays the start's: a projection does not fix it)."""
    from mvlift.metrics.alignment import similarity_procrustes

    v = mask
    s, R, t = similarity_procrustes(truth[v].reshape(-1, 3), lifted[v].reshape(-1, 3))
    Y = s * truth @ R.T + t
    target = x_input[v].reshape(-1, 2)
    c = Y[v].reshape(-1, 3).mean(0)  # rotations turn about the valid frames' centroid

    def moved(p: Tensor, pts: Tensor) -> Tensor:
        """pts turned by the axis-angle p[:3] (Rodrigues) about c, then shifted by p[3:]."""
        w, d = p[:3], p[3:]
        theta = w.norm().clamp_min(1e-12)
        k = w / theta
        Kx = torch.zeros(3, 3, dtype=p.dtype)
        Kx[0, 1], Kx[0, 2], Kx[1, 0], Kx[1, 2], Kx[2, 0], Kx[2, 1] = -k[2], k[1], k[2], -k[0], -k[1], k[0]
        Rm = torch.eye(3, dtype=p.dtype) + torch.sin(theta) * Kx + (1 - torch.cos(theta)) * Kx @ Kx
        return (pts - c) @ Rm.T + c + d

    def residual(p: Tensor) -> Tensor:
        Z = moved(p, Y[v].reshape(-1, 3))
        uvw = torch.cat([Z, torch.ones_like(Z[:, :1])], dim=1) @ P0.T
        return (uvw[:, :2] / uvw[:, 2:] - target).reshape(-1)

    p = torch.full((6,), 1e-6, dtype=truth.dtype)
    lam = 1e-3
    for _ in range(iters):
        r = residual(p)
        J = torch.autograd.functional.jacobian(residual, p, vectorize=True, strategy="forward-mode")
        H = J.T @ J + lam * torch.eye(6, dtype=p.dtype)
        step = torch.linalg.solve(H, -J.T @ r)
        if residual(p + step).pow(2).sum() < r.pow(2).sum():
            p, lam = p + step, lam * 0.3
        else:
            lam *= 10.0
    return moved(p, Y)


def _stage4(
    config: Any, model: torch.nn.Module, data: Any, gt: Any, idx: np.ndarray, skeleton: Any
) -> dict[str, float]:
    from mvlift.stages.lift import lift

    x = torch.as_tensor(data.keypoints[idx], dtype=torch.float32)
    mask = torch.as_tensor(data.mask[idx]) & torch.as_tensor(gt.window_mask[idx])
    # the generated views are measured; the stage-2 fusion changes only the 3D, so it is left out
    res = lift(
        model,
        x,
        dataclasses.replace(config.lift, stage2_weight=0.0),
        mask=torch.as_tensor(data.mask[idx]),
        parents=tuple(skeleton.parents),
        root=tuple(skeleton.root),
    )
    P = res.cameras.P_normalized.double()
    w, h = config.lift.image_size
    errors, input_errors = [], []
    for k, i in enumerate(idx):
        lifted = res.joints3d[k].double()
        v = mask[k] & torch.isfinite(lifted).all(-1).all(-1)
        if int(v.sum()) < 2:
            continue
        truth = _place_truth_in_ring(torch.as_tensor(gt.positions[i]), lifted, x[k].double(), P[0], v)
        Xh = torch.cat([truth, torch.ones_like(truth[..., :1])], dim=-1)
        uvw = torch.einsum("vij,tkj->vtki", P, Xh)
        true_views = uvw[..., :2] / uvw[..., 2:]  # (K, T, J, 2)
        diff = (res.views[k].double() - true_views)[:, v]
        px = torch.stack([diff[..., 0] * w / 2, diff[..., 1] * h / 2], dim=-1).norm(dim=-1)  # (K, Tv, J)
        errors.append(px[1:].mean(dim=(1, 2)))
        input_errors.append(float(px[0].mean()))
    if not errors:
        return {"windows": float(len(idx)), "failed": float(len(idx))}
    per_view = torch.stack(errors).mean(0)
    out = {f"view{v + 1}_px": float(e) for v, e in enumerate(per_view)}
    out["generated_px"] = float(per_view.mean())
    out["truth_fit_to_input_px"] = float(np.mean(input_errors))
    out["windows"] = float(len(errors))
    return out


def diagnose(config: Any, *, max_windows: int = 64) -> dict[str, Any]:
    """Compute the per-stage diagnostics of the run folder ``config.run_dir`` (module docstring).

    Args:
        config: the run's :class:`mvlift.stages.pipeline.PipelineConfig`.
        max_windows: at most this many (evenly spaced) windows per stage, to bound the cost.

    Returns:
        ``{"stage1": {...}, "stage2": {...}, "stage3": {...}, "single_view": {...}, "stage4": {...}}``
        (entries whose inputs are missing are left out); also written to ``diagnostics.json`` / ``.md``.
    """
    from mvlift.baselines import SingleViewFitConfig, fit_single_view
    from mvlift.data.singleview import load_singleview_dataset, load_singleview_eval
    from mvlift.stages.pipeline import _skeleton
    from mvlift.stages.shards import load_shards
    from mvlift.training.checkpoint import list_checkpoints, load_model

    run = Path(config.run_dir)
    train_dir = run / "data" / "train"
    if not (train_dir / "manifest.json").exists():
        raise FileNotFoundError(f"{train_dir} has no dataset: run the data step first (mvlift run CONFIG)")
    skeleton = _skeleton(config.data.skeleton)
    data = load_singleview_dataset(train_dir)
    truth = load_singleview_eval(train_dir)
    out: dict[str, Any] = {}
    with torch.no_grad():
        if list_checkpoints(run / "stage1" / "checkpoints"):
            m1 = load_model(run / "stage1")
            out["stage1"] = _stage1(config, m1, data, _subset(len(data), max_windows), skeleton)
    syn_dir = run / "synthetic"
    if (syn_dir / "manifest.json").exists():
        syn = load_shards(syn_dir)
        sel = _subset(syn["mask"].shape[0], max_windows)
        out["stage2"] = _stage2(config, {k: v[sel] for k, v in syn.items()})
        windows = syn["window_index"].numpy() if "window_index" in syn else np.arange(syn["mask"].shape[0])
        windows = windows[sel]
        valid = truth.window_mask[windows] & data.mask[windows]
        out["stage3"] = _score_3d(syn["joints3d"][sel], truth.positions[windows], valid, skeleton)
        x = torch.as_tensor(data.keypoints[windows], dtype=torch.float32)
        sv = fit_single_view(
            x,
            skeleton,
            SingleViewFitConfig(),
            mask=torch.as_tensor(data.mask[windows]),
            conf=torch.as_tensor(data.conf[windows], dtype=torch.float32),
        )
        out["single_view"] = _score_3d(sv, truth.positions[windows], valid, skeleton)
    eval_dir = run / "data" / "eval"
    if list_checkpoints(run / "stage4" / "checkpoints") and (eval_dir / "manifest.json").exists():
        m4 = load_model(run / "stage4")
        edata = load_singleview_dataset(eval_dir)
        egt = load_singleview_eval(eval_dir)
        with torch.no_grad():
            out["stage4"] = _stage4(config, m4, edata, egt, _subset(len(edata), max_windows), skeleton)
    atomic_write_json(run / "diagnostics.json", out)
    atomic_write_text(run / "diagnostics.md", format_diagnostics(out) + "\n")
    return out


_LINES = {
    "stage1": ("stage 1 samples", ("line_px", "bone_spread_2d_samples", "bone_spread_2d_data")),
    "stage2": ("stage 2 views", ("epipolar_px", "line_px")),
    "stage3": ("stage 3 synthetic 3D", ("mpjpe", "pa_mpjpe", "pa_mpjpe_median", "failed")),
    "single_view": ("single-view baseline, same windows", ("mpjpe", "pa_mpjpe", "pa_mpjpe_median", "failed")),
    "stage4": ("stage 4 generated views (eval)", ("generated_px", "view1_px", "view2_px", "view3_px")),
}


def format_diagnostics(diag: dict[str, Any]) -> str:
    """A Markdown table, one line per stage: what it measures and its figures (px, mm or unitless)."""
    lines = ["| stage | figures | windows |", "|---|---|---|"]
    for key, (title, names) in _LINES.items():
        if key not in diag:
            continue
        d = diag[key]
        figs = ", ".join(f"{n} {d[n]:.3g}" for n in names if n in d and math.isfinite(d[n]))
        lines.append(f"| {title} | {figs} | {int(d.get('windows', 0))} |")
    return "\n".join(lines)


def load_diagnostics(run_dir: str | Path) -> dict[str, Any]:
    """Read ``diagnostics.json`` of a run folder."""
    return json.loads((Path(run_dir) / "diagnostics.json").read_text())
