"""`mvlift data show` chooses a camera that sees the whole clip, and warns about joints behind a given one
(issue #12, part B)."""

from __future__ import annotations

import numpy as np
import pytest

from mvlift.cli import main


@pytest.fixture
def drawn(monkeypatch):
    """The keypoints `data show` draws (the picture is still written)."""
    import mvlift.viz as viz

    seen: dict = {}
    real = viz.save_sequence_png

    def spy(path, sequence, *args, **kwargs):
        seen["kp"], seen["image_size"] = np.asarray(sequence), kwargs.get("image_size")
        return real(path, sequence, *args, **kwargs)

    monkeypatch.setattr(viz, "save_sequence_png", spy)
    return seen


def test_default_camera_sees_the_whole_clip(tmp_path, cmu_dir, drawn, capsys):
    """Row: `mvlift data show 05_01.amc` (defaults) -> a dot on +-250,000 px axes: 60 of 150 frames behind
    the camera, projected anyway."""
    out = tmp_path / "clip.png"
    assert main(["data", "show", str(cmu_dir / "asfamc" / "05_01.amc"), "--out", str(out)]) == 0
    assert "fits the whole clip" in capsys.readouterr().out
    kp = drawn["kp"]
    W, H = drawn["image_size"]
    assert kp.shape[0] == 150 and np.isfinite(kp).all()
    assert (
        (kp[..., 0] > 0).all()
        and (kp[..., 0] < W).all()
        and (kp[..., 1] > 0).all()
        and (kp[..., 1] < H).all()
    )
    height = kp[..., 1].max(axis=1) - kp[..., 1].min(axis=1)
    assert height.min() > 0.1 * H  # a person, not a dot
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_camera_too_close_warns_and_leaves_those_frames_out(tmp_path, cmu_dir, drawn):
    out = tmp_path / "clip.png"
    argv = ["data", "show", str(cmu_dir / "asfamc" / "05_01.amc"), "--out", str(out), "--distance", "1"]
    with pytest.warns(UserWarning, match=r"\d+ of 150 frames have joints behind the camera"):
        assert main(argv) == 0
    kp = drawn["kp"]
    hidden = np.isnan(kp).all(axis=(1, 2))
    assert 0 < hidden.sum() < 150 and np.isfinite(kp[~hidden]).all()
    assert main([*argv[:-1], "-2"]) == 2  # a distance must be positive
