"""Skeleton plots for 2D keypoints and 3D world motion (matplotlib, no display needed).

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly, so nothing here
touches pyplot's global state or needs a display. Left-side joints are drawn in blue, right-side joints in
red, the others in grey.

- 2D: pixels or the normalized frame, image y pointing down (docs/conventions.md).
- 3D: world Y is drawn as the vertical axis (plot axes: x -> X, -z -> Y, y -> Z, a proper rotation, so the
  motion is not mirrored); a floor grid at y = 0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import animation
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mvlift.atomic import atomic_write

__all__ = [
    "plot_skeleton_2d",
    "plot_skeleton_3d",
    "save_sequence_png",
    "save_viewpoints_png",
    "save_gif",
    "gif_available",
]

_LEFT, _RIGHT, _CENTER = "#1f77b4", "#d62728", "#555555"


def _as_numpy(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    return np.asarray(x, dtype=np.float64)


def _sequence(x: Any, dims: int, name: str) -> np.ndarray:
    """(J, D) or (T, J, D) -> (T, J, D)."""
    arr = _as_numpy(x, name)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[-1] != dims or arr.shape[1] == 0 or arr.shape[0] == 0:
        raise ValueError(f"{name} must have shape (J, {dims}) or (T, J, {dims}), got {tuple(arr.shape)}")
    return arr


def _bones_and_colors(skeleton: Any, num_joints: int) -> tuple[list[tuple[int, int]], list[str]]:
    """Bones from a Skeleton (``.parents``/``.joint_names``) or a parents sequence; colours by side."""
    names: Sequence[str] | None = None
    if skeleton is None:
        parents: Sequence[int] = ()
    elif hasattr(skeleton, "parents"):
        parents = skeleton.parents
        names = getattr(skeleton, "joint_names", None)
    else:
        parents = [int(p) for p in skeleton]
    if parents and len(parents) != num_joints:
        raise ValueError(f"skeleton has {len(parents)} joints but the array has {num_joints}")
    bones = [(int(p), c) for c, p in enumerate(parents) if int(p) >= 0]
    colors = []
    for j in range(num_joints):
        n = names[j].lower() if names is not None else ""
        colors.append(
            _LEFT if n.startswith(("left", "l_")) else _RIGHT if n.startswith(("right", "r_")) else _CENTER
        )
    return bones, colors


def _frames(num: int, frames: int | Sequence[int] | None) -> list[int]:
    if frames is None:
        return list(range(num))
    idx = [int(frames)] if isinstance(frames, (int, np.integer)) else [int(f) for f in frames]
    for f in idx:
        if not -num <= f < num:
            raise ValueError(f"frame {f} is out of range for {num} frames")
    return [f % num for f in idx]


def _new_axes(projection: str | None = None, figsize: tuple[float, float] = (5, 5)) -> Axes:
    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig.add_subplot(1, 1, 1, projection=projection)


def plot_skeleton_2d(
    kp: Any,
    skeleton: Any = None,
    ax: Axes | None = None,
    *,
    frames: int | Sequence[int] | None = None,
    conf: Any = None,
    image_size: tuple[int, int] | None = None,
    normalized: bool = False,
    title: str | None = None,
) -> Axes:
    """Draw 2D skeletons.

    Args:
        kp: (J, 2) or (T, J, 2) keypoints (pixels, or the normalized frame with ``normalized=True``).
        skeleton: a :class:`mvlift.data.skeletons.Skeleton`, a parents sequence (-1 = root) or None (joints
            only).
        ax: axes to draw into (a new Agg figure when None).
        frames: frame index or indices to overlay (default: all); later frames are drawn more opaque.
        conf: optional (T, J) / (J,) confidences; joints (and bones touching them) with conf <= 0 are
            skipped.
        image_size: (W, H): draws the image border and uses it as the limits (pixels).
        normalized: coordinates are in [-1, 1]; the limits are the canvas [-1, 1]^2, drawn with the
            proportions of ``image_size`` (default 1920 x 1080).
        title: optional axes title.

    Returns:
        The axes (``ax.figure`` is the figure).
    """
    seq = _sequence(kp, 2, "kp")
    t_len, j = seq.shape[:2]
    c = np.ones((t_len, j)) if conf is None else _as_numpy(conf, "conf").reshape(-1, j)
    if c.shape != (t_len, j):
        raise ValueError(f"conf must have shape {(t_len, j)} or ({j},), got {tuple(np.shape(conf))}")
    bones, colors = _bones_and_colors(skeleton, j)
    ax = ax if ax is not None else _new_axes()
    idx = _frames(t_len, frames)
    for n, f in enumerate(idx):
        alpha = 0.25 + 0.75 * (n + 1) / len(idx)
        ok = (c[f] > 0) & np.all(np.isfinite(seq[f]), axis=-1)
        for p, ch in bones:
            if ok[p] and ok[ch]:
                ax.plot(*seq[f, [p, ch]].T, color=colors[ch], lw=2, alpha=alpha, solid_capstyle="round")
        ax.scatter(
            seq[f, ok, 0],
            seq[f, ok, 1],
            c=[colors[i] for i in np.flatnonzero(ok)],
            s=12,
            alpha=alpha,
            zorder=3,
        )
    if normalized:
        ax.set_xlim(-1, 1)
        ax.set_ylim(1, -1)
        ax.plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], color="0.7", lw=1)
    elif image_size is not None:
        w, h = image_size
        ax.plot([0, w, w, 0, 0], [0, 0, h, h, 0], color="0.7", lw=1)
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
    else:
        ax.invert_yaxis()
    # normalized units are W/2 px (x) and H/2 px (y): draw them with the canvas' true proportions
    w_h = image_size if image_size is not None else (1920, 1080)
    ax.set_aspect(w_h[1] / w_h[0] if normalized else "equal")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def _world_to_plot(x: np.ndarray) -> np.ndarray:
    """World (x, y, z), Y up -> plot (x, -z, y), Z up (a rotation: no mirroring)."""
    return np.stack([x[..., 0], -x[..., 2], x[..., 1]], axis=-1)


def plot_skeleton_3d(
    positions: Any,
    skeleton: Any = None,
    ax: Axes | None = None,
    *,
    frames: int | Sequence[int] | None = None,
    trajectory: bool = True,
    floor: bool = True,
    limits: tuple[np.ndarray, np.ndarray] | None = None,
    title: str | None = None,
    elev: float = 15.0,
    azim: float = -60.0,
) -> Axes:
    """Draw 3D skeletons in the world frame (Y up, metres).

    Args:
        positions: (J, 3) or (T, J, 3) world positions.
        skeleton: Skeleton, parents sequence or None.
        ax: a 3D axes (``projection='3d'``) to draw into, or None for a new figure.
        frames: frame(s) to draw (default: all, later ones more opaque).
        trajectory: draw the path of the root (mean of the skeleton's root joints, else joint 0) on the floor.
        floor: draw a floor grid at y = 0.
        limits: (lo, hi) world-coordinate bounds (3,) each; default: the data's bounding cube.
        title, elev, azim: axes title and view angles (degrees).

    Returns:
        The axes.
    """
    seq = _sequence(positions, 3, "positions")
    t_len, j = seq.shape[:2]
    bones, colors = _bones_and_colors(skeleton, j)
    ax = ax if ax is not None else _new_axes("3d")
    if not hasattr(ax, "get_zlim"):
        raise ValueError("plot_skeleton_3d needs a 3D axes (projection='3d')")
    if limits is None:
        finite = seq[np.isfinite(seq).all(-1)]
        lo, hi = finite.min(0), finite.max(0)
        centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 0.5)
        lo, hi = centre - half, centre + half
        lo[1], hi[1] = min(lo[1], 0.0), max(hi[1], 2 * half + min(lo[1], 0.0))
    else:
        lo, hi = (np.asarray(v, dtype=np.float64) for v in limits)
    pl, ph = _world_to_plot(lo), _world_to_plot(hi)
    if floor:
        xs = np.linspace(lo[0], hi[0], 6)
        zs = np.linspace(lo[2], hi[2], 6)
        for x in xs:
            ax.plot(*_world_to_plot(np.array([[x, 0, zs[0]], [x, 0, zs[-1]]])).T, color="0.85", lw=0.8)
        for z in zs:
            ax.plot(*_world_to_plot(np.array([[xs[0], 0, z], [xs[-1], 0, z]])).T, color="0.85", lw=0.8)
    if trajectory and t_len > 1:
        root = list(getattr(skeleton, "root", (0,)))
        path = seq[:, root].mean(1)
        path[:, 1] = 0.0
        ax.plot(*_world_to_plot(path).T, color="0.5", lw=1, ls="--")
    idx = _frames(t_len, frames)
    for n, f in enumerate(idx):
        alpha = 0.25 + 0.75 * (n + 1) / len(idx)
        p3 = _world_to_plot(seq[f])
        for p, ch in bones:
            ax.plot(*p3[[p, ch]].T, color=colors[ch], lw=2, alpha=alpha)
        ax.scatter(*p3.T, c=colors, s=8, alpha=alpha, depthshade=False)
    ax.set_xlim(min(pl[0], ph[0]), max(pl[0], ph[0]))
    ax.set_ylim(min(pl[1], ph[1]), max(pl[1], ph[1]))
    ax.set_zlim(pl[2], ph[2])
    ax.set_box_aspect((1, 1, 1))
    ax.set_xlabel("x")
    ax.set_ylabel("-z")
    ax.set_zlabel("y (up)")
    ax.view_init(elev=elev, azim=azim)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def _atomic_save(fig: Figure, path: Path, **kwargs: Any) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, **kwargs))


def _save_png(fig: Figure, path: str | os.PathLike[str], title: str | None) -> Path:
    """Add the figure title (if any) and write the PNG atomically; returns the path."""
    if title:
        fig.suptitle(title, fontsize=10)
    out = Path(path)
    _atomic_save(fig, out, format="png")
    return out


def save_sequence_png(
    path: str | os.PathLike[str],
    sequence: Any,
    skeleton: Any = None,
    *,
    num_frames: int = 6,
    frames: Sequence[int] | None = None,
    conf: Any = None,
    image_size: tuple[int, int] | None = None,
    normalized: bool = False,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Save a strip of frames of a 2D (T, J, 2) or 3D (T, J, 3) sequence as a PNG.

    Args:
        path: output file (written atomically).
        sequence: (T, J, 2) keypoints or (T, J, 3) world positions.
        skeleton: Skeleton, parents sequence or None.
        num_frames: how many evenly spaced frames when ``frames`` is None.
        frames: explicit frame indices.
        conf, image_size, normalized: 2D options of :func:`plot_skeleton_2d`.
        title: figure title.
        dpi: resolution.

    Returns:
        The written path.
    """
    seq = _as_numpy(sequence, "sequence")
    if seq.ndim != 3 or seq.shape[-1] not in (2, 3):
        raise ValueError(f"sequence must have shape (T, J, 2) or (T, J, 3), got {tuple(seq.shape)}")
    t_len = seq.shape[0]
    if frames is None:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        frames = np.unique(np.linspace(0, t_len - 1, min(num_frames, t_len)).round().astype(int)).tolist()
    idx = _frames(t_len, frames)
    three_d = seq.shape[-1] == 3
    fig = Figure(figsize=(2.6 * len(idx), 3.0 if three_d else 2.8), dpi=dpi)
    FigureCanvasAgg(fig)
    if three_d:
        finite = seq[np.isfinite(seq).all(-1)]
        lo, hi = finite.min(0), finite.max(0)
        centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 0.5)
        lo, hi = centre - half, centre + half
    conf_arr = None if conf is None else _as_numpy(conf, "conf")
    for n, f in enumerate(idx):
        if three_d:
            ax = fig.add_subplot(1, len(idx), n + 1, projection="3d")
            plot_skeleton_3d(seq, skeleton, ax, frames=[f], limits=(lo, hi), title=f"frame {f}")
        else:
            ax = fig.add_subplot(1, len(idx), n + 1)
            c = None if conf_arr is None else conf_arr[f]
            plot_skeleton_2d(
                seq[f], skeleton, ax, conf=c, image_size=image_size, normalized=normalized, title=f"frame {f}"
            )
            if image_size is None and not normalized:
                finite = seq[np.isfinite(seq).all(-1)]
                lo2, hi2 = finite.min(0), finite.max(0)
                pad = 0.05 * float((hi2 - lo2).max() or 1.0)
                ax.set_xlim(lo2[0] - pad, hi2[0] + pad)
                ax.set_ylim(hi2[1] + pad, lo2[1] - pad)
            ax.tick_params(labelsize=6)
    return _save_png(fig, path, title)


VIEWPOINTS: dict[str, tuple[float, float]] = {
    "front": (10.0, -90.0),
    "side": (10.0, 0.0),
    "oblique": (25.0, -50.0),
    "top": (85.0, -90.0),
}
"""Named (elevation, azimuth) pairs in degrees for :func:`save_viewpoints_png`: ``front`` looks along -Z
(toward the world origin from +Z, like camera 0 of the rings), ``side`` along -X, ``top`` down the Y axis."""


def save_viewpoints_png(
    path: str | os.PathLike[str],
    positions: Any,
    skeleton: Any = None,
    *,
    viewpoints: Sequence[str] | Mapping[str, tuple[float, float]] = ("front", "side", "oblique", "top"),
    num_frames: int = 5,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Save the whole 3D motion seen from several viewpoints, one panel each, as a PNG.

    Every panel draws ``num_frames`` evenly spaced frames (later ones more opaque), the root trajectory on
    the floor and the floor grid, in the same world box (Y up, metres), so depth and the global path are
    visible from the side and top views.

    Args:
        path: output file (written atomically).
        positions: (T, J, 3) world positions.
        skeleton: Skeleton, parents sequence or None.
        viewpoints: names from :data:`VIEWPOINTS`, or a mapping of panel titles to (elevation, azimuth).
        num_frames: frames drawn per panel.
        title: figure title. dpi: resolution.

    Returns:
        The written path.
    """
    seq = _sequence(positions, 3, "positions")
    if seq.ndim != 3:
        raise ValueError(f"positions must have shape (T, J, 3), got {tuple(seq.shape)}")
    if isinstance(viewpoints, Mapping):
        views = {str(k): (float(v[0]), float(v[1])) for k, v in viewpoints.items()}
    else:
        unknown = [v for v in viewpoints if v not in VIEWPOINTS]
        if unknown:
            raise ValueError(f"viewpoints: unknown names {unknown}; choose from {list(VIEWPOINTS)}")
        views = {v: VIEWPOINTS[v] for v in viewpoints}
    if not views:
        raise ValueError("viewpoints: give at least one viewpoint")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    finite = seq[np.isfinite(seq).all(-1)]
    if finite.size == 0:
        raise ValueError("positions: no finite joint to draw")
    lo, hi = finite.min(0), finite.max(0)
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 0.5)
    lo, hi = centre - half, centre + half
    t_len = seq.shape[0]
    frames = np.unique(np.linspace(0, t_len - 1, min(num_frames, t_len)).round().astype(int)).tolist()
    fig = Figure(figsize=(3.2 * len(views), 3.4), dpi=dpi)
    FigureCanvasAgg(fig)
    for n, (name, (elev, azim)) in enumerate(views.items()):
        ax = fig.add_subplot(1, len(views), n + 1, projection="3d")
        plot_skeleton_3d(seq, skeleton, ax, frames=frames, limits=(lo, hi), title=name, elev=elev, azim=azim)
        ax.tick_params(labelsize=6)
    return _save_png(fig, path, title)


def gif_available() -> bool:
    """Whether GIFs can be written (matplotlib's Pillow writer is available)."""
    return bool(animation.writers.is_available("pillow"))


def save_gif(
    path: str | os.PathLike[str],
    sequence: Any,
    skeleton: Any = None,
    *,
    fps: float = 30.0,
    stride: int = 1,
    conf: Any = None,
    image_size: tuple[int, int] | None = None,
    normalized: bool = False,
    title: str | None = None,
    dpi: int = 80,
) -> Path:
    """Save an animated GIF of a 2D (T, J, 2) or 3D (T, J, 3) sequence (needs Pillow).

    Args:
        path: output ``.gif`` (written atomically).
        sequence: (T, J, 2) or (T, J, 3).
        skeleton: Skeleton, parents sequence or None.
        fps: playback frame rate of the source; with ``stride`` k every k-th frame is drawn at fps / k.
        conf, image_size, normalized: 2D options of :func:`plot_skeleton_2d`.

    Raises:
        RuntimeError: Pillow is not installed (``pip install pillow``).
    """
    if not gif_available():
        raise RuntimeError("save_gif needs Pillow for matplotlib's PillowWriter: pip install pillow")
    seq = _as_numpy(sequence, "sequence")
    if seq.ndim != 3 or seq.shape[-1] not in (2, 3):
        raise ValueError(f"sequence must have shape (T, J, 2) or (T, J, 3), got {tuple(seq.shape)}")
    if stride < 1 or not fps > 0:
        raise ValueError(f"stride must be >= 1 and fps > 0, got stride={stride}, fps={fps}")
    idx = list(range(0, seq.shape[0], stride))
    three_d = seq.shape[-1] == 3
    ax = _new_axes("3d" if three_d else None, (4, 4))
    fig = ax.figure
    conf_arr = None if conf is None else _as_numpy(conf, "conf")
    finite = seq[np.isfinite(seq).all(-1)]
    lo, hi = finite.min(0), finite.max(0)
    if three_d:
        centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 0.5)
        lims = (centre - half, centre + half)

    def draw(f: int) -> list[Any]:
        ax.clear()
        label = f"{title + ' - ' if title else ''}frame {f}"
        if three_d:
            plot_skeleton_3d(seq, skeleton, ax, frames=[f], limits=lims, title=label)
        else:
            c = None if conf_arr is None else conf_arr[f]
            plot_skeleton_2d(
                seq[f], skeleton, ax, conf=c, image_size=image_size, normalized=normalized, title=label
            )
            if image_size is None and not normalized:
                pad = 0.05 * float((hi - lo).max() or 1.0)
                ax.set_xlim(lo[0] - pad, hi[0] + pad)
                ax.set_ylim(hi[1] + pad, lo[1] - pad)
        return []

    anim = animation.FuncAnimation(fig, draw, frames=idx, blit=False)
    return atomic_write(
        path, lambda tmp: anim.save(tmp, writer=animation.PillowWriter(fps=fps / stride), dpi=dpi)
    )
