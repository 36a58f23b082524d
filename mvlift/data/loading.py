"""One entry point for 3D motion files: :func:`load_mocap` (by suffix) and :func:`find_mocap_files`."""

from __future__ import annotations

from pathlib import Path

from mvlift.data.asf_amc import CMU_FPS, load_amc
from mvlift.data.bvh import load_bvh
from mvlift.data.motion import Motion
from mvlift.data.npz import load_motion_npz

__all__ = ["load_mocap", "find_mocap_files", "find_asf", "MOCAP_SUFFIXES"]

MOCAP_SUFFIXES = (".amc", ".bvh", ".npz")


def find_asf(amc_path: str | Path) -> Path:
    """The ASF skeleton of an AMC file: the CMU naming ``<subject>_<trial>.amc`` -> ``<subject>.asf`` in the
    same folder, else ``<stem>.asf``, else the only ``.asf`` in the folder.

    Raises:
        FileNotFoundError: none of these exists, or the folder holds several ASF files and none matches.
    """
    amc_path = Path(amc_path)
    folder = amc_path.parent
    candidates = [folder / f"{amc_path.stem.split('_')[0]}.asf", folder / f"{amc_path.stem}.asf"]
    for c in candidates:
        if c.is_file():
            return c
    found = sorted(folder.glob("*.asf"))
    if len(found) == 1:
        return found[0]
    tried = ", ".join(str(c) for c in candidates)
    detail = f"the folder holds {len(found)} .asf files" if found else "the folder holds no .asf file"
    raise FileNotFoundError(f"no ASF skeleton for {amc_path}: tried {tried}; {detail}; pass skeleton_path")


def load_mocap(
    path: str | Path,
    skeleton_path: str | Path | None = None,
    *,
    bvh_units: str | float = "auto",
    max_frames: int | None = None,
) -> Motion:
    """Load a 3D motion file by suffix.

    ``.amc``: Acclaim motion; its ASF is ``skeleton_path`` or found beside it (:func:`find_asf`); 120 fps
    (CMU's nominal rate). ``.bvh``: BVH with ``bvh_units`` (see :mod:`mvlift.data.bvh`; ``'auto'`` picks the
    ASF length unit for the CMU BVH files). ``.npz``: mvlift's own format (:mod:`mvlift.data.npz`).

    Args:
        path: the motion file.
        skeleton_path: the ASF for an ``.amc`` (ignored otherwise).
        bvh_units: units of a ``.bvh`` file.
        max_frames: read only the first frames of an ``.amc`` / ``.bvh`` (None = all).
    Returns:
        :class:`Motion`: positions (T, J, 3) metres in the file's world frame, at the file's own frame rate
        (no resampling).
    Raises:
        ValueError: unknown suffix. FileNotFoundError: missing file or ASF.
        MocapFormatError: corrupt file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MOCAP_SUFFIXES:
        raise ValueError(f"{path}: unknown motion file suffix {path.suffix!r}; supported: {MOCAP_SUFFIXES}")
    if not path.is_file():
        raise FileNotFoundError(f"motion file not found: {path}")
    if suffix == ".amc":
        asf = Path(skeleton_path) if skeleton_path is not None else find_asf(path)
        if not asf.is_file():
            raise FileNotFoundError(f"ASF skeleton not found: {asf}")
        return load_amc(path, asf, fps=CMU_FPS, max_frames=max_frames)
    if suffix == ".bvh":
        return load_bvh(path, units=bvh_units, max_frames=max_frames)
    motion = load_motion_npz(path)
    if max_frames is not None:
        motion.positions = motion.positions[:max_frames]
    return motion


def find_mocap_files(folder: str | Path) -> list[Path]:
    """All ``.amc``, ``.bvh`` and ``.npz`` files under ``folder`` (recursively), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MOCAP_SUFFIXES)
