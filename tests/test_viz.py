"""Skeleton plots: files are written, are valid PNG / GIF images and are not blank."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from mvlift.data.procedural import QUADRUPED17, generate_motion
from mvlift.data.skeletons import BODY14
from mvlift.viz import gif_available, plot_skeleton_2d, plot_skeleton_3d, save_gif, save_sequence_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _non_trivial(path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    rgb = img[..., :3].reshape(-1, 3)
    assert len(np.unique(rgb, axis=0)) > 10  # not one flat colour
    # coloured (left/right) pixels are present: the skeleton was drawn
    sat = rgb.max(1) - rgb.min(1)
    assert (sat > 0.3).mean() > 1e-4


@pytest.fixture(scope="module")
def walk():
    return generate_motion("walk", 40, 30, seed=1)


def test_sequence_png_3d_and_2d(tmp_path, walk):
    p3 = save_sequence_png(
        tmp_path / "walk3d.png", walk.positions, BODY14, num_frames=3, title="walk", dpi=60
    )
    _non_trivial(p3)
    # 2D: a side view in pixels, with a dropped joint
    kp = walk.positions[..., [0, 1]] * np.array([300.0, -300.0]) + np.array([960.0, 900.0])
    conf = np.ones(kp.shape[:2])
    conf[:, 4] = 0
    p2 = save_sequence_png(
        tmp_path / "walk2d.png", torch.as_tensor(kp), BODY14, frames=[0, 10, 20], conf=conf
    )
    _non_trivial(p2)
    pn = save_sequence_png(
        tmp_path / "norm.png",
        kp / np.array([960.0, 540.0]) - 1,
        BODY14,
        normalized=True,
        num_frames=2,
        dpi=60,
    )
    _non_trivial(pn)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind


def test_plot_functions_return_axes_and_draw_bones(walk):
    ax = plot_skeleton_2d(walk.positions[0, :, :2], BODY14, image_size=(1920, 1080))
    assert len(ax.lines) >= len(BODY14.bones)
    ax3 = plot_skeleton_3d(walk.positions, BODY14, frames=[0, -1])
    assert len(ax3.lines) >= 2 * len(BODY14.bones)
    q = generate_motion("trot", 20, 30, seed=0, skeleton="quadruped")
    axq = plot_skeleton_3d(q.positions[5], QUADRUPED17, trajectory=False, floor=False)
    assert len(axq.lines) == len(QUADRUPED17.bones)


@pytest.mark.skipif(not gif_available(), reason="Pillow is not installed")
def test_gif(tmp_path, walk):
    out = save_gif(tmp_path / "walk.gif", walk.positions[:6], BODY14, fps=30, stride=2)
    data = out.read_bytes()
    assert data[:6] in (b"GIF87a", b"GIF89a") and len(data) > 1000
    from PIL import Image

    with Image.open(out) as im:
        assert im.n_frames == 3


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        save_sequence_png(tmp_path / "x.png", np.zeros((3, 4)), None)
    with pytest.raises(ValueError, match="joints"):
        plot_skeleton_2d(np.random.default_rng(0).normal(size=(5, 2)), BODY14)
    with pytest.raises(ValueError, match="out of range"):
        plot_skeleton_2d(np.random.default_rng(0).normal(size=(2, 14, 2)), BODY14, frames=[5])


def test_viewpoints_png(tmp_path, walk):
    from mvlift.viz import VIEWPOINTS, save_viewpoints_png

    p = save_viewpoints_png(
        tmp_path / "views.png", walk.positions, BODY14, num_frames=3, title="walk", dpi=50
    )
    _non_trivial(p)
    custom = save_viewpoints_png(
        tmp_path / "two.png", walk.positions, BODY14, viewpoints={"a": (0, 0), "b": (90, 0)}, dpi=50
    )
    _non_trivial(custom)
    assert imread(p).shape[1] == 2 * imread(custom).shape[1]  # one panel per viewpoint
    assert set(VIEWPOINTS) >= {"front", "side", "top"}
    with pytest.raises(ValueError, match="unknown names \\['back'\\]"):
        save_viewpoints_png(tmp_path / "x.png", walk.positions, viewpoints=("front", "back"))
    with pytest.raises(ValueError, match="positions"):
        save_viewpoints_png(tmp_path / "x.png", walk.positions[..., :2])
    with pytest.raises(ValueError, match="no finite joint"):
        save_viewpoints_png(tmp_path / "x.png", np.full((3, 14, 3), np.nan))
