"""Pinhole cameras: intrinsics, look-at extrinsics, camera rings, projection and back-projection.

Conventions (see ``docs/conventions.md``): world right-handed, Y up, metres; OpenCV camera (x right, y down,
z forward); ``X_c = R @ X + t``; ``P = K [R | t]``; camera centre ``C = -R^T t``; pixels with the origin at
the top-left corner; normalized frame ``x_n = 2 u / W - 1``, ``y_n = 2 v / H - 1``; azimuth 0 puts a ring
camera on the +Z axis of its look-at point, azimuth grows counter-clockwise seen from above.

Every function is batched over leading dimensions, works in float32 and float64, on any device, and is
differentiable (validation that needs concrete values happens outside the differentiable path).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "Cameras",
    "backproject",
    "intrinsics",
    "look_at",
    "normalization_matrix",
    "normalized_to_pixels",
    "pixels_to_normalized",
    "project",
    "project_with_depth",
    "random_cameras",
    "ring_cameras",
]

ScalarOrTensor = float | Tensor


# --------------------------------------------------------------------------------------------- helpers
def _check_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    try:
        w, h = (int(s) for s in image_size)
    except (TypeError, ValueError):
        raise TypeError(f"image_size must be a pair (W, H) of positive ints, got {image_size!r}") from None
    if w <= 0 or h <= 0 or (w, h) != tuple(image_size):
        raise ValueError(f"image_size must be a pair (W, H) of positive ints, got {image_size!r}")
    return w, h


def _check_last_dim(x: Tensor, size: int, name: str, shape_doc: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape_doc}, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] != size:
        raise ValueError(f"{name} must have shape {shape_doc}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def _check_matrix(x: Tensor, rows: int, cols: int, name: str, shape_doc: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape_doc}, got {type(x).__name__}")
    if x.ndim < 2 or x.shape[-2:] != (rows, cols):
        raise ValueError(f"{name} must have shape {shape_doc}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def _infer_dtype_device(
    dtype: torch.dtype | None, device: torch.device | str | None, *values: object
) -> tuple[torch.dtype, torch.device]:
    """Explicit dtype/device win; else those of the first floating tensor among ``values``; else
    float64 on the CPU."""
    for v in values:
        if isinstance(v, Tensor) and v.is_floating_point():
            return (dtype or v.dtype), torch.device(device) if device is not None else v.device
    return (dtype or torch.float64), torch.device(device) if device is not None else torch.device("cpu")


def _as_tensor(x: object, dtype: torch.dtype, device: torch.device) -> Tensor:
    if isinstance(x, Tensor):
        return x.to(dtype=dtype, device=device)
    return torch.as_tensor(x, dtype=dtype, device=device)


def _homogeneous(x: Tensor) -> Tensor:
    return torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)


# ------------------------------------------------------------------------------------ normalized frame
def normalization_matrix(
    image_size: Sequence[int] = (1920, 1080),
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """The 3x3 affine map N from homogeneous pixels to the homogeneous normalized frame.

    ``N @ (u, v, 1) = (2u/W - 1, 2v/H - 1, 1)``, so ``N @ P`` projects straight into the [-1, 1] frame.

    Args:
        image_size: (W, H) in pixels.

    Returns:
        (3, 3) tensor.
    """
    w, h = _check_image_size(image_size)
    return torch.tensor(
        [[2.0 / w, 0.0, -1.0], [0.0, 2.0 / h, -1.0], [0.0, 0.0, 1.0]], dtype=dtype, device=device
    )


def pixels_to_normalized(uv: Tensor, image_size: Sequence[int] = (1920, 1080)) -> Tensor:
    """Pixels (..., 2) -> normalized frame (..., 2): ``x_n = 2u/W - 1``, ``y_n = 2v/H - 1``."""
    _check_last_dim(uv, 2, "uv", "(..., 2)")
    w, h = _check_image_size(image_size)
    scale = uv.new_tensor([2.0 / w, 2.0 / h])
    return uv * scale - 1.0


def normalized_to_pixels(xy: Tensor, image_size: Sequence[int] = (1920, 1080)) -> Tensor:
    """Normalized frame (..., 2) -> pixels (..., 2): ``u = (x_n + 1) W / 2``, ``v = (y_n + 1) H / 2``."""
    _check_last_dim(xy, 2, "xy", "(..., 2)")
    w, h = _check_image_size(image_size)
    scale = xy.new_tensor([w / 2.0, h / 2.0])
    return (xy + 1.0) * scale


# ------------------------------------------------------------------------------------ camera matrices
def intrinsics(
    focal: ScalarOrTensor,
    image_size: Sequence[int] = (1920, 1080),
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Pinhole intrinsics with square pixels, no skew and the principal point at the image centre.

    Args:
        focal: focal length in pixels, a float or a tensor of shape (...).
        image_size: (W, H) in pixels; the principal point is (W/2, H/2).
        dtype, device: default: those of ``focal`` when it is a floating tensor, else float64 on the CPU.

    Returns:
        K of shape (..., 3, 3) (``(3, 3)`` for a scalar focal length).
    """
    w, h = _check_image_size(image_size)
    dtype, device = _infer_dtype_device(dtype, device, focal)
    f = _as_tensor(focal, dtype, device)
    zero, one = torch.zeros_like(f), torch.ones_like(f)
    rows = [
        torch.stack([f, zero, zero + w / 2.0], dim=-1),
        torch.stack([zero, f, zero + h / 2.0], dim=-1),
        torch.stack([zero, zero, one], dim=-1),
    ]
    return torch.stack(rows, dim=-2)


def look_at(
    eye: Tensor, target: Tensor, up: Sequence[float] | Tensor = (0.0, 1.0, 0.0), *, eps: float = 1e-9
) -> tuple[Tensor, Tensor]:
    """World-to-camera rotation and translation of an OpenCV camera at ``eye`` looking at ``target``.

    The camera z axis points from ``eye`` to ``target``; the image y axis points down, i.e. as close to
    ``-up`` as possible; x = y cross z points right. So ``R @ (target - eye)`` is along +z.

    Args:
        eye: camera centres (..., 3), metres.
        target: look-at points (..., 3), broadcastable against ``eye``.
        up: world up direction (3,) or (..., 3); default +Y.
        eps: relative tolerance of the degeneracy checks.

    Returns:
        R (..., 3, 3) and t (..., 3) with ``X_c = R @ X + t`` and ``t = -R @ eye``.

    Raises:
        ValueError: ``eye`` equals ``target``, or the view direction is parallel to ``up``.
    """
    _check_last_dim(eye, 3, "eye", "(..., 3)")
    _check_last_dim(target, 3, "target", "(..., 3)")
    up_t = _as_tensor(up, eye.dtype, eye.device)
    _check_last_dim(up_t, 3, "up", "(3,) or (..., 3)")
    eye, target, up_t = torch.broadcast_tensors(eye, target.to(eye.dtype), up_t)
    forward = target - eye
    dist = torch.linalg.vector_norm(forward, dim=-1)
    scale = torch.maximum(torch.linalg.vector_norm(eye, dim=-1), torch.linalg.vector_norm(target, dim=-1))
    if forward.numel() and bool((dist <= eps * scale.clamp_min(1.0)).any()):
        raise ValueError("look_at: eye and target coincide (no view direction)")
    z = forward / dist[..., None]
    x = torch.linalg.cross(z, up_t, dim=-1)
    x_norm = torch.linalg.vector_norm(x, dim=-1)
    up_norm = torch.linalg.vector_norm(up_t, dim=-1)
    if x.numel() and bool((x_norm <= max(eps, 1e3 * torch.finfo(x.dtype).eps) * up_norm).any()):
        raise ValueError("look_at: the view direction (target - eye) is parallel to up; choose another up")
    x = x / x_norm[..., None]
    y = torch.linalg.cross(z, x, dim=-1)
    R = torch.stack([x, y, z], dim=-2)
    t = -(R @ eye[..., None])[..., 0]
    return R, t


# ------------------------------------------------------------------------------------ plain projection
def project_with_depth(X: Tensor, P: Tensor) -> tuple[Tensor, Tensor]:
    """Project world points with 3x4 matrices: ``(u, v, w) = P @ (X, 1)``; returns ``(u/w, v/w)`` and w.

    For ``P = K [R | t]`` with K's last row (0, 0, 1) (and for ``N @ P``), w is the camera depth z.

    Args:
        X: points (..., 3); broadcast against P's leading dims.
        P: projection matrices (..., 3, 4).

    Returns:
        uv (..., 2) in P's image unit (pixels or normalized), w (...). Points with w == 0 give inf/NaN.
    """
    _check_last_dim(X, 3, "X", "(..., 3)")
    _check_matrix(P, 3, 4, "P", "(..., 3, 4)")
    x = (P @ _homogeneous(X)[..., None])[..., 0]
    w = x[..., 2]
    return x[..., :2] / w[..., None], w


def project(X: Tensor, P: Tensor) -> Tensor:
    """Project world points X (..., 3) with P (..., 3, 4) (broadcast) to image points (..., 2)."""
    return project_with_depth(X, P)[0]


def backproject(uv: Tensor, depth: Tensor, K: Tensor, R: Tensor, t: Tensor) -> Tensor:
    """Inverse of projection given the camera depth: image point + depth -> world point.

    ``X = R^T (depth * K^{-1} (u, v, 1) - t)``.

    Args:
        uv: pixels (..., 2) (use ``N @ K`` as K for normalized coordinates).
        depth: camera depth z (...), metres.
        K (..., 3, 3), R (..., 3, 3), t (..., 3): camera; everything broadcasts.

    Returns:
        World points (..., 3).
    """
    _check_last_dim(uv, 2, "uv", "(..., 2)")
    _check_matrix(K, 3, 3, "K", "(..., 3, 3)")
    _check_matrix(R, 3, 3, "R", "(..., 3, 3)")
    _check_last_dim(t, 3, "t", "(..., 3)")
    if not isinstance(depth, Tensor):
        depth = torch.as_tensor(depth, dtype=uv.dtype, device=uv.device)
    ray = torch.linalg.solve(K, _homogeneous(uv)[..., None])[..., 0]  # (..., 3), z = 1 for K[2] = (0,0,1)
    x_cam = ray * (depth / ray[..., 2])[..., None]
    return (R.transpose(-1, -2) @ (x_cam - t)[..., None])[..., 0]


# --------------------------------------------------------------------------------------------- Cameras
@dataclass(eq=False)
class Cameras:
    """A batch of V pinhole cameras sharing one image size.

    Attributes:
        K: intrinsics (..., V, 3, 3), pixels.
        R: world-to-camera rotations (..., V, 3, 3).
        t: translations (..., V, 3), metres; ``X_c = R @ X + t``.
        image_size: (W, H) in pixels.

    The leading dims ``(...)`` are the camera batch shape (:attr:`batch_shape`); K, R and t broadcast to a
    common one on construction. All three share one floating dtype and one device.

    Broadcasting rule of :meth:`project` and :meth:`depth`: for cameras of batch shape ``batch`` (nb dims),
    a point tensor X of shape ``(*xb, *pts, 3)`` has its first nb dims ``xb`` broadcast against ``batch``
    and the remaining dims ``pts`` are point dims; the result has shape ``(*broadcast(xb, batch), V, *pts,
    2)``. Examples: cameras (B, V), X (B, T, J, 3) -> (B, V, T, J, 2); unbatched cameras (V,), X (T, J, 3)
    -> (V, T, J, 2); unbatched cameras, X (N, 3) -> (V, N, 2).
    """

    K: Tensor
    R: Tensor
    t: Tensor
    image_size: tuple[int, int] = (1920, 1080)

    def __post_init__(self) -> None:
        self.image_size = _check_image_size(self.image_size)
        _check_matrix(self.K, 3, 3, "K", "(..., V, 3, 3)")
        _check_matrix(self.R, 3, 3, "R", "(..., V, 3, 3)")
        _check_last_dim(self.t, 3, "t", "(..., V, 3)")
        if self.R.ndim < 3:
            raise ValueError(f"R must have shape (..., V, 3, 3), got {tuple(self.R.shape)}")
        if self.t.ndim < 2:
            raise ValueError(f"t must have shape (..., V, 3), got {tuple(self.t.shape)}")
        if not (self.K.dtype == self.R.dtype == self.t.dtype):
            raise TypeError(
                f"K, R and t must share one dtype, got {self.K.dtype}, {self.R.dtype}, {self.t.dtype}"
            )
        if not (self.K.device == self.R.device == self.t.device):
            raise ValueError(
                f"K, R and t must be on one device, got {self.K.device}, {self.R.device}, {self.t.device}"
            )
        try:
            lead = torch.broadcast_shapes(self.K.shape[:-2], self.R.shape[:-2], self.t.shape[:-1])
        except RuntimeError:
            raise ValueError(
                "K (..., V, 3, 3), R (..., V, 3, 3) and t (..., V, 3) must broadcast, got "
                f"{tuple(self.K.shape)}, {tuple(self.R.shape)}, {tuple(self.t.shape)}"
            ) from None
        self.K = self.K.expand(*lead, 3, 3)
        self.R = self.R.expand(*lead, 3, 3)
        self.t = self.t.expand(*lead, 3)
        if self.K.numel():
            # |det K| relative to its Hadamard bound (the product of the row norms): 0 for singular K.
            det = torch.linalg.det(self.K.detach())
            bound = torch.linalg.vector_norm(self.K.detach(), dim=-1).prod(dim=-1)
            bad = det.abs() <= 10.0 * torch.finfo(self.K.dtype).eps * bound
            if bool(bad.any()):
                idx = tuple(torch.nonzero(bad)[0].tolist())
                raise ValueError(
                    f"K{list(idx)} is singular (det = {float(det[idx]):.3g}); K must be invertible"
                )

    # --- shape / dtype
    @property
    def batch_shape(self) -> torch.Size:
        """The leading (batch) dims of the cameras, before the view dim."""
        return self.R.shape[:-3]

    @property
    def num_views(self) -> int:
        """V, the number of views."""
        return self.R.shape[-3]

    @property
    def dtype(self) -> torch.dtype:
        return self.R.dtype

    @property
    def device(self) -> torch.device:
        return self.R.device

    # --- derived matrices
    @property
    def P(self) -> Tensor:
        """Pixel projection matrices ``K [R | t]``, (..., V, 3, 4)."""
        return self.K @ torch.cat([self.R, self.t[..., None]], dim=-1)

    @property
    def normalization(self) -> Tensor:
        """The pixel-to-normalized affine map N (3, 3) of this image size (:func:`normalization_matrix`)."""
        return normalization_matrix(self.image_size, dtype=self.dtype, device=self.device)

    @property
    def K_normalized(self) -> Tensor:
        """Intrinsics into the normalized frame, ``N @ K``, (..., V, 3, 3)."""
        return self.normalization @ self.K

    @property
    def P_normalized(self) -> Tensor:
        """Projection matrices into the normalized [-1, 1] frame, ``N @ P``, (..., V, 3, 4)."""
        return self.normalization @ self.P

    @property
    def centers(self) -> Tensor:
        """Camera centres ``C = -R^T t`` in world coordinates, (..., V, 3), metres."""
        return -(self.R.transpose(-1, -2) @ self.t[..., None])[..., 0]

    # --- projection
    def _points_to_camera(self, X: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """World points (*xb, *pts, 3) -> camera coordinates (*b, V, M, 3) and the point dims ``pts``."""
        _check_last_dim(X, 3, "X", "(*batch, *pts, 3)")
        nb = len(self.batch_shape)
        if X.ndim < nb + 1:
            raise ValueError(
                f"X must have shape (*batch, *pts, 3) with the camera batch {tuple(self.batch_shape)} "
                f"leading, got {tuple(X.shape)}"
            )
        if X.dtype != self.dtype or X.device != self.device:
            raise TypeError(
                f"X must match the cameras' dtype/device ({self.dtype}, {self.device}), "
                f"got ({X.dtype}, {X.device})"
            )
        xb, pts = tuple(X.shape[:nb]), tuple(X.shape[nb:-1])
        try:
            torch.broadcast_shapes(xb, tuple(self.batch_shape))
        except RuntimeError:
            raise ValueError(
                f"X's leading dims {xb} do not broadcast against the camera batch {tuple(self.batch_shape)}"
            ) from None
        m = math.prod(pts)
        Xf = X.reshape(*xb, 1, m, 3)  # (*xb, 1, M, 3)
        # (*b, V, 1, 3, 3) @ (*xb, 1, M, 3, 1) -> (*b, V, M, 3)
        Xc = (self.R[..., None, :, :] @ Xf[..., None])[..., 0] + self.t[..., None, :]
        return Xc, pts

    def project(self, X: Tensor, normalized: bool = False) -> Tensor:
        """Project world points into every view.

        Args:
            X: world points (*xb, *pts, 3), metres; see the class docstring for the broadcasting rule.
            normalized: return the normalized [-1, 1] frame instead of pixels.

        Returns:
            (*batch, V, *pts, 2). Points with depth 0 give inf/NaN; points behind a camera project
            through the centre (no clipping).
        """
        Xc, pts = self._points_to_camera(X)
        K = self.K_normalized if normalized else self.K
        x = (K[..., None, :, :] @ Xc[..., None])[..., 0]
        uv = x[..., :2] / x[..., 2:]
        return uv.reshape(*uv.shape[:-2], *pts, 2)

    def depth(self, X: Tensor) -> Tensor:
        """Camera depth z (metres, > 0 in front) of world points in every view, (*batch, V, *pts)."""
        Xc, pts = self._points_to_camera(X)
        z = Xc[..., 2]
        return z.reshape(*z.shape[:-1], *pts)

    # --- conversion / indexing
    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Cameras:
        """A copy in another dtype and/or on another device (differentiable)."""
        return Cameras(
            self.K.to(device=device, dtype=dtype),
            self.R.to(device=device, dtype=dtype),
            self.t.to(device=device, dtype=dtype),
            self.image_size,
        )

    def select(self, views: int | Sequence[int] | Tensor) -> Cameras:
        """The cameras of the given view indices (an int keeps the view dim, V = 1)."""
        if isinstance(views, int):
            views = [views]
        idx = torch.as_tensor(views, dtype=torch.long, device=self.device).reshape(-1)
        if idx.numel() and (int(idx.min()) < -self.num_views or int(idx.max()) >= self.num_views):
            raise IndexError(f"views {idx.tolist()} out of range for {self.num_views} views")
        nb = len(self.batch_shape)
        return Cameras(
            self.K.index_select(nb, idx % max(self.num_views, 1)),
            self.R.index_select(nb, idx % max(self.num_views, 1)),
            self.t.index_select(nb, idx % max(self.num_views, 1)),
            self.image_size,
        )

    def __getitem__(self, index: int | slice | Tensor | tuple) -> Cameras:
        """Index the batch dims (never the view dim): ``cams[b]`` of cameras (B, V) gives (V,) cameras.

        Supports ints, slices and index tensors (no Ellipsis / None).
        """
        items = index if isinstance(index, tuple) else (index,)
        used = 0
        for it in items:
            if it is Ellipsis or it is None:
                raise IndexError("Cameras indexing supports ints, slices and tensors, not Ellipsis/None")
            used += it.ndim if isinstance(it, Tensor) and it.dtype == torch.bool else 1
        if used > len(self.batch_shape):
            raise IndexError(
                f"too many indices ({used}) for the camera batch shape {tuple(self.batch_shape)}"
            )
        return Cameras(self.K[index], self.R[index], self.t[index], self.image_size)

    def __len__(self) -> int:
        if not self.batch_shape:
            raise TypeError("len() of unbatched Cameras; use num_views")
        return self.batch_shape[0]


# ------------------------------------------------------------------------------------- camera layouts
_look_at = look_at  # ``ring_cameras`` has a parameter named ``look_at``


def ring_cameras(
    num_views: int,
    *,
    radius: ScalarOrTensor = 3.0,
    height: ScalarOrTensor | None = None,
    start_azimuth: ScalarOrTensor = 0.0,
    focal: ScalarOrTensor = 1000.0,
    image_size: Sequence[int] = (1920, 1080),
    look_at: Sequence[float] | Tensor = (0.0, 1.0, 0.0),
    elevation: ScalarOrTensor = 0.0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Cameras:
    """``num_views`` cameras evenly spaced on a circle around the vertical axis through ``look_at``.

    Camera k sits at azimuth ``az_k = start_azimuth + 2 pi k / num_views`` (radians; 0 = on the +Z side
    of the look-at point, counter-clockwise seen from above) and looks at the look-at point with the image
    y axis pointing down (world up = +Y).

    Camera centre:
      - ``height`` given (absolute world y, metres): ``C = (lx + r sin az, height, lz + r cos az)``;
        ``radius`` is the horizontal distance; ``elevation`` must then be 0.
      - ``height`` None (default): ``C = look_at + r (cos el sin az, sin el, cos el cos az)``; ``radius``
        is the distance to the look-at point and ``elevation`` (radians, > 0 = above, looking down)
        tilts the ring. With elevation 0 the cameras are at the look-at point's height (a horizontal ring,
        optical axes horizontal), which is the paper's stage-2 setting with look_at = the first-frame root.

    Batched rings: ``radius``, ``height``, ``start_azimuth``, ``focal``, ``elevation`` may be tensors of
    shape (...) and ``look_at`` of shape (..., 3); they broadcast to a batch shape ``(...)`` and the cameras
    have shape (..., V) (e.g. ``start_azimuth`` (B,) -> cameras (B, V)).

    Args:
        num_views: V >= 1.
        focal: focal length in pixels; principal point at the image centre.
        image_size: (W, H) pixels.
        dtype, device: default: those of the first floating tensor argument, else float64 on the CPU.

    Returns:
        :class:`Cameras` with batch shape (...) and V = num_views views.
    """
    if not isinstance(num_views, int) or isinstance(num_views, bool) or num_views < 1:
        raise ValueError(f"num_views must be a positive int, got {num_views!r}")
    dtype, device = _infer_dtype_device(
        dtype, device, look_at, start_azimuth, radius, height, elevation, focal
    )
    if height is not None:
        if isinstance(elevation, Tensor) or float(elevation) != 0.0:
            raise ValueError("ring_cameras: give either height (absolute camera y) or elevation, not both")
    target = _as_tensor(look_at, dtype, device)
    _check_last_dim(target, 3, "look_at", "(3,) or (..., 3)")
    az0 = _as_tensor(start_azimuth, dtype, device)
    r = _as_tensor(radius, dtype, device)
    el = _as_tensor(elevation, dtype, device)
    f = _as_tensor(focal, dtype, device)
    steps = torch.arange(num_views, dtype=dtype, device=device) * (2.0 * math.pi / num_views)
    az = az0[..., None] + steps  # (..., V)
    if height is not None:
        h = _as_tensor(height, dtype, device)
        horiz, dy = r[..., None], (h - target[..., 1])[..., None]
    else:
        horiz, dy = (r * torch.cos(el))[..., None], (r * torch.sin(el))[..., None]
    offset = torch.stack(torch.broadcast_tensors(horiz * torch.sin(az), dy, horiz * torch.cos(az)), dim=-1)
    eye = target[..., None, :] + offset  # (..., V, 3)
    R, t = _look_at(eye, target[..., None, :].expand_as(eye))
    K = intrinsics(f[..., None].expand(eye.shape[:-1]), image_size, dtype=dtype, device=device)
    return Cameras(K, R, t, tuple(image_size))


def random_cameras(
    n: int,
    *,
    azimuth_range: tuple[float, float] = (0.0, 2.0 * math.pi),
    elevation_range: tuple[float, float] = (0.0, 0.0),
    distance_range: tuple[float, float] = (3.0, 3.0),
    focal_range: tuple[float, float] = (1000.0, 1000.0),
    target: Sequence[float] | Tensor = (0.0, 1.0, 0.0),
    image_size: Sequence[int] = (1920, 1080),
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Cameras:
    """``n`` independent random cameras looking at ``target`` (single-view datasets: one camera per sample).

    Each camera draws uniformly its azimuth (radians, convention above), elevation (radians, > 0 above
    the target, looking down), distance to the target (metres) and focal length (pixels) from the given
    ``[low, high]`` ranges, then sits at ``target + d (cos el sin az, sin el, cos el cos az)``.

    Args:
        n: number of cameras.
        target: (3,) or (n, 3) look-at points, metres.
        generator: torch.Generator for reproducible draws (its device is used for the draws).

    Returns:
        :class:`Cameras` of batch shape (n,) with one view each (K (n, 1, 3, 3)); ``cams.project(X)`` with
        X (n, T, J, 3) gives (n, 1, T, J, 2).
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    ranges = {
        "azimuth_range": azimuth_range,
        "elevation_range": elevation_range,
        "distance_range": distance_range,
        "focal_range": focal_range,
    }
    for name, (lo, hi) in ranges.items():
        if not lo <= hi:
            raise ValueError(f"{name} must be (low, high) with low <= high, got {(lo, hi)}")
    if not distance_range[0] > 0 or not focal_range[0] > 0:
        raise ValueError("distance_range and focal_range must be positive")
    if not (-math.pi / 2 < elevation_range[0] and elevation_range[1] < math.pi / 2):
        raise ValueError(f"elevation_range must lie inside (-pi/2, pi/2), got {elevation_range}")
    dtype, device = _infer_dtype_device(dtype, device, target)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(4, n, generator=generator, dtype=torch.float64, device=gen_device).to(device)
    lo = torch.tensor([r[0] for r in ranges.values()], dtype=torch.float64, device=device)[:, None]
    hi = torch.tensor([r[1] for r in ranges.values()], dtype=torch.float64, device=device)[:, None]
    az, el, d, f = (lo + (hi - lo) * u).to(dtype)
    tgt = _as_tensor(target, dtype, device)
    _check_last_dim(tgt, 3, "target", "(3,) or (n, 3)")
    tgt = tgt.expand(n, 3)
    offset = d[:, None] * torch.stack(
        [torch.cos(el) * torch.sin(az), torch.sin(el), torch.cos(el) * torch.cos(az)], dim=-1
    )
    R, t = look_at(tgt + offset, tgt)
    K = intrinsics(f, image_size, dtype=dtype, device=device)
    return Cameras(K[:, None], R[:, None], t[:, None], tuple(image_size))
