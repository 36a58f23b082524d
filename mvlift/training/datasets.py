"""Training datasets of the two learned priors, and multi-view training data from 3D motion.

Both datasets accept integer keys and ``(epoch, index)`` keys (what
:class:`~mvlift.training.distributed.ShardedBatchSampler` yields). Every random choice of an item —
the stage-1 virtual epipole and the per-item diffusion seed ``noise_seed`` the objectives draw the
step and the noise from — is a pure function of ``(seed, epoch, index)``: the data a run sees does not
depend on the number of processes, the worker count or on being resumed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from mvlift.geometry import fundamental_from_cameras, line_conditions, ring_cameras, sample_virtual_epipoles
from mvlift.training.distributed import derive_seed

# Salt separating the per-epoch epipole draw from the per-item noise seeds.
_EPIPOLE_SALT = 1
_NOISE_SALT = 2
# Salt of the per-item ring (start azimuth, mirror) of MultiViewMotionDataset.
_RING_SALT = 3


def _as_float_tensor(x: Any, name: str, shape_doc: str, ndim: int, last: tuple[int, ...]) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor or numpy array of shape {shape_doc}, got {type(x).__name__}"
        )
    if x.ndim != ndim or tuple(x.shape[x.ndim - len(last) :]) != last:
        raise ValueError(f"{name} must have shape {shape_doc}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} holds non-finite values")
    return x.detach().to("cpu", torch.float32).contiguous()


def _as_mask(mask: Any, n: int, t: int, name: str = "masks") -> Tensor:
    if mask is None:
        return torch.ones(n, t, dtype=torch.bool)
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    if not isinstance(mask, Tensor):
        raise TypeError(
            f"{name} must be a bool tensor of shape (N, T) = ({n}, {t}), got {type(mask).__name__}"
        )
    if tuple(mask.shape) != (n, t):
        raise ValueError(f"{name} must have shape (N, T) = ({n}, {t}), got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must have dtype torch.bool (True = valid frame), got {mask.dtype}")
    return mask.detach().to("cpu").contiguous()


def _check_seed(seed: Any) -> None:
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")


def _split_key(key: int | tuple[int, int], n: int) -> tuple[int, int]:
    if isinstance(key, tuple):
        if len(key) != 2:
            raise KeyError(f"dataset key must be an index or an (epoch, index) pair, got {key!r}")
        epoch, index = int(key[0]), int(key[1])
    else:
        epoch, index = 0, int(key)
    if index < 0:
        index += n
    if not 0 <= index < n:
        raise IndexError(f"index {index} out of range for a dataset of {n} items")
    if epoch < 0:
        raise KeyError(f"epoch must be >= 0, got {epoch}")
    return epoch, index


class Stage1Dataset(Dataset):
    """Single-view 2D windows with a fresh virtual epipole per item and epoch (stage-1 training data).

    Args:
        sequences: (N, T, J, 2) 2D windows in the normalized [-1, 1] frame.
        masks: (N, T) bool, True = valid frame; None = all valid.
        conf: optional (N, T, J) per-joint confidences (0 = ignored), passed through as ``conf``.
        p_ring: probability of an epipole from a real camera ring (else uniform in ``[-box, box]^2``),
            see :func:`mvlift.geometry.sample_virtual_epipoles`.
        box: half-width of the uniform epipole box, normalized units.
        seed: the dataset's randomness seed.

    Items (``ds[i]`` = epoch 0, or ``ds[(epoch, i)]``): a dict of
        ``x0`` (T, J, 2) float32, ``lines`` (T, J, 3) float32 (:func:`mvlift.geometry.line_conditions` of
        ``x0`` and the epipole), ``epipole`` (2,) float32, ``mask`` (T,) bool, ``noise_seed`` () int64
        and, when given, ``conf`` (T, J) float32.
    """

    def __init__(
        self,
        sequences: Tensor | np.ndarray,
        masks: Tensor | np.ndarray | None = None,
        conf: Tensor | np.ndarray | None = None,
        *,
        p_ring: float = 0.5,
        box: float = 3.0,
        seed: int = 0,
    ) -> None:
        self.sequences = _as_float_tensor(sequences, "sequences", "(N, T, J, 2)", 4, (2,))
        n, t, j, _ = self.sequences.shape
        if n == 0:
            raise ValueError("sequences must hold at least one window, got N = 0")
        self.masks = _as_mask(masks, n, t)
        self.conf = None
        if conf is not None:
            self.conf = _as_float_tensor(conf, "conf", f"(N, T, J) = ({n}, {t}, {j})", 3, (t, j))
            if self.conf.shape[0] != n:
                raise ValueError(
                    f"conf must have shape (N, T, J) = ({n}, {t}, {j}), got {tuple(self.conf.shape)}"
                )
        if not 0.0 <= p_ring <= 1.0:
            raise ValueError(f"p_ring must be in [0, 1], got {p_ring}")
        if not box > 0:
            raise ValueError(f"box must be > 0, got {box}")
        _check_seed(seed)
        self.p_ring = float(p_ring)
        self.box = float(box)
        self.seed = seed
        self._epipole_cache: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return self.sequences.shape[0]

    def epipoles(self, epoch: int) -> Tensor:
        """The virtual epipoles of every item in ``epoch``, (N, 2) float32 (one vectorised draw, cached)."""
        cached = self._epipole_cache.get(epoch)
        if cached is None:
            g = torch.Generator().manual_seed(derive_seed(self.seed, _EPIPOLE_SALT, epoch))
            cached = sample_virtual_epipoles(len(self), p_ring=self.p_ring, box=self.box, generator=g)
            cached = cached.to(torch.float32)
            if len(self._epipole_cache) >= 2:  # keep the current and the previous epoch
                self._epipole_cache.pop(min(self._epipole_cache))
            self._epipole_cache[epoch] = cached
        return cached

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor]:
        epoch, index = _split_key(key, len(self))
        x0 = self.sequences[index]
        epipole = self.epipoles(epoch)[index]
        item = {
            "x0": x0,
            "lines": line_conditions(x0, epipole),
            "epipole": epipole,
            "mask": self.masks[index],
            "noise_seed": torch.tensor(derive_seed(self.seed, _NOISE_SALT, epoch, index), dtype=torch.int64),
        }
        if self.conf is not None:
            item["conf"] = self.conf[index]
        return item


class MultiViewDataset(Dataset):
    """Multi-view 2D sequences for the stage-4 model; view 0 is the input view.

    Args:
        views: (N, K, T, J, 2) in the normalized [-1, 1] frame.
        masks: (N, T) bool, True = valid frame; None = all valid.
        F: optional (N, K, K, 3, 3) fundamental matrices of each sample's cameras in the normalized
            frame (``docs/conventions.md``); passed through for an epipolar loss or metric.
        seed: the dataset's randomness seed.

    Items: a dict of ``x0_views`` (K, T, J, 2), ``cond`` (T, J, 2) (= view 0, the clean input view),
    ``mask`` (T,) bool, ``noise_seed`` () int64 and, when given, ``F`` (K, K, 3, 3).
    """

    def __init__(
        self,
        views: Tensor | np.ndarray,
        masks: Tensor | np.ndarray | None = None,
        F: Tensor | np.ndarray | None = None,
        *,
        seed: int = 0,
    ) -> None:
        self.views = _as_float_tensor(views, "views", "(N, K, T, J, 2)", 5, (2,))
        n, k, t, _, _ = self.views.shape
        if n == 0:
            raise ValueError("views must hold at least one sample, got N = 0")
        if k < 2:
            raise ValueError(f"views must hold K >= 2 views, got shape {tuple(self.views.shape)}")
        self.masks = _as_mask(masks, n, t)
        self.F = None
        if F is not None:
            self.F = _as_float_tensor(F, "F", f"(N, K, K, 3, 3) = ({n}, {k}, {k}, 3, 3)", 5, (k, k, 3, 3))
            if self.F.shape[0] != n:
                raise ValueError(
                    f"F must have shape (N, K, K, 3, 3) = ({n}, {k}, {k}, 3, 3), got {tuple(self.F.shape)}"
                )
        _check_seed(seed)
        self.seed = seed

    def __len__(self) -> int:
        return self.views.shape[0]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor]:
        epoch, index = _split_key(key, len(self))
        views = self.views[index]
        item = {
            "x0_views": views,
            "cond": views[0],
            "mask": self.masks[index],
            "noise_seed": torch.tensor(derive_seed(self.seed, _NOISE_SALT, epoch, index), dtype=torch.int64),
        }
        if self.F is not None:
            item["F"] = self.F[index]
        return item


def multiview_from_motion(
    positions: Tensor | np.ndarray,
    *,
    num_views: int = 4,
    radius: float = 3.0,
    focal: float = 1000.0,
    image_size: Sequence[int] = (1920, 1080),
    root_joints: int | Sequence[int] | None = None,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Project 3D clips into a horizontal camera ring: strictly consistent multi-view 2D training data.

    Each clip gets its own ring of ``num_views`` cameras, ``360 / num_views`` degrees apart, starting at
    a random azimuth, at ``radius`` metres from the clip's first-frame root and at its height (elevation
    0), looking at it (the paper's stage-3/4 setting: 4 views 90 degrees apart).

    Frames are valid up to the first frame where a joint of any view leaves the [-1, 1] image or is not in
    front of a camera; later frames are masked and their coordinates set to 0.

    Args:
        positions: (N, T, J, 3) joint positions, metres, world frame Y up.
        num_views: K >= 2 cameras per clip; view 0 is the input view.
        radius: camera distance to the first-frame root, metres.
        focal: focal length, pixels.
        image_size: (W, H) pixels.
        root_joints: joint index (or indices, averaged) of the root, e.g. the two hips; None = centroid of
            all joints.
        seed: seeds the start azimuths.

    Returns:
        ``(views, F, masks)``: views (N, K, T, J, 2) float32 in the normalized frame; F (N, K, K, 3, 3)
        float32 in the normalized frame (``x~_j^T F[n, i, j] x~_i = 0`` for normalized homogeneous points);
        masks (N, T) bool.
    """
    if isinstance(positions, np.ndarray):
        positions = torch.from_numpy(positions)
    if not isinstance(positions, Tensor) or positions.ndim != 4 or positions.shape[-1] != 3:
        raise ValueError(
            "positions must be a tensor of shape (N, T, J, 3), "
            f"got {getattr(positions, 'shape', type(positions))}"
        )
    if not positions.is_floating_point():
        raise TypeError(f"positions must be floating point, got dtype {positions.dtype}")
    if not isinstance(num_views, int) or num_views < 2:
        raise ValueError(f"num_views must be an int >= 2, got {num_views!r}")
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    X = positions.detach().to("cpu", torch.float64)
    n, t, j, _ = X.shape
    if root_joints is None:
        root0 = X[:, 0].mean(dim=1)
    else:
        idx = [root_joints] if isinstance(root_joints, int) else list(root_joints)
        if not idx or any(not 0 <= i < j for i in idx):
            raise ValueError(f"root_joints must index the J = {j} joints, got {root_joints!r}")
        root0 = X[:, 0, idx].mean(dim=1)
    g = torch.Generator().manual_seed(derive_seed(seed))
    az = torch.rand(n, generator=g, dtype=torch.float64) * (2.0 * math.pi)
    cams = ring_cameras(
        num_views, radius=radius, start_azimuth=az, focal=focal, image_size=image_size, look_at=root0
    )
    views = cams.project(X, normalized=True)  # (N, K, T, J, 2)
    depth = cams.depth(X)  # (N, K, T, J)
    inside = (depth > 1e-6) & (views.abs() <= 1.0).all(dim=-1) & torch.isfinite(views).all(dim=-1)
    frame_ok = inside.all(dim=3).all(dim=1)  # (N, T)
    masks = torch.cumprod(frame_ok.to(torch.int64), dim=1).bool()
    views = torch.where(masks[:, None, :, None, None], views, torch.zeros((), dtype=views.dtype))
    F = fundamental_from_cameras(cams, normalized=True)
    return views.to(torch.float32), F.to(torch.float32), masks


class MultiViewMotionDataset(Dataset):
    """Stage-4 training data rendered from 3D motion on the fly: a fresh camera ring per item and epoch.

    Stage 3 writes each synthetic motion projected into *one* random ring. With few motions (a CPU-sized
    run has about 200) the multi-view model then learns those few renderings by heart. This dataset keeps
    the 3D motions instead and renders every item through :func:`multiview_from_motion` with a start
    azimuth drawn from ``(seed, epoch, index)``, and (``mirror``) flips the motion left-right on every
    other draw: the same motions, seen from every side. Still strictly consistent multi-view data.

    Args:
        positions: (N, T, J, 3) motions, metres, world frame Y up (stage 3's canonical ``joints3d``).
        masks: (N, T) bool valid frames (frames after the first invalid or off-image one are masked).
        num_views, radius, focal, image_size: the ring (:func:`multiview_from_motion`).
        root_joints: joint indices whose mean is the root (the ring looks at the first-frame root).
        swap: left-right joint permutation (:attr:`mvlift.data.skeletons.Skeleton.left_right_swap`);
            required when ``mirror`` is True.
        mirror: flip the motion left-right (x -> -x, joints swapped) with probability 1/2 per item and epoch.
        seed: the dataset's randomness seed.

    Items: as :class:`MultiViewDataset` (``x0_views`` (K, T, J, 2), ``cond`` (T, J, 2), ``mask`` (T,),
    ``noise_seed``, ``F`` (K, K, 3, 3)).
    """

    def __init__(
        self,
        positions: Tensor | np.ndarray,
        masks: Tensor | np.ndarray | None = None,
        *,
        num_views: int = 4,
        radius: float = 2.8,
        focal: float = 1000.0,
        image_size: Sequence[int] = (1920, 1080),
        root_joints: Sequence[int] | None = None,
        swap: Sequence[int] | None = None,
        mirror: bool = False,
        seed: int = 0,
    ) -> None:
        self.positions = _as_float_tensor(positions, "positions", "(N, T, J, 3)", 4, (3,))
        n, t, j, _ = self.positions.shape
        if n == 0:
            raise ValueError("positions must hold at least one motion, got N = 0")
        self.masks = _as_mask(masks, n, t)
        if not isinstance(num_views, int) or num_views < 2:
            raise ValueError(f"num_views must be an int >= 2, got {num_views!r}")
        if mirror:
            if swap is None or sorted(int(s) for s in swap) != list(range(j)):
                raise ValueError(f"mirror=True needs swap, a permutation of the J = {j} joints, got {swap!r}")
        _check_seed(seed)
        self.num_views, self.radius, self.focal = num_views, float(radius), float(focal)
        self.image_size = tuple(int(s) for s in image_size)
        self.root_joints = None if root_joints is None else [int(r) for r in root_joints]
        self.swap = None if swap is None else [int(s) for s in swap]
        self.mirror = bool(mirror)
        self.seed = seed

    def __len__(self) -> int:
        return self.positions.shape[0]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor]:
        epoch, index = _split_key(key, len(self))
        X = self.positions[index : index + 1]
        draw = derive_seed(self.seed, _RING_SALT, epoch, index)
        if self.mirror and draw % 2 == 1:
            X = X[:, :, self.swap] * X.new_tensor([-1.0, 1.0, 1.0])
        views, F, masks = multiview_from_motion(
            X,
            num_views=self.num_views,
            radius=self.radius,
            focal=self.focal,
            image_size=self.image_size,
            root_joints=self.root_joints,
            seed=draw,
        )
        return {
            "x0_views": views[0],
            "cond": views[0, 0],
            "mask": masks[0] & self.masks[index],
            "noise_seed": torch.tensor(derive_seed(self.seed, _NOISE_SALT, epoch, index), dtype=torch.int64),
            "F": F[0],
        }
