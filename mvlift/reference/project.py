"""Plain-PyTorch pinhole projection: the oracle and fallback of :func:`mvlift.ops.project_points`."""

from __future__ import annotations

from torch import Tensor

__all__ = ["project_points"]


def project_points(X: Tensor, P: Tensor) -> tuple[Tensor, Tensor]:
    """Project 3D points with projection matrices ``P = K [R | t]`` (``docs/conventions.md``).

    Args:
        X: points (..., 3), world units (metres).
        P: projection matrices (3, 4) or (..., 3, 4); batch dims broadcast against X's.

    Returns:
        ``uv`` (..., 2): ``(P_0 . X~, P_1 . X~) / (P_2 . X~)`` with ``X~ = (X, 1)``, in P's image units
        (pixels for ``K`` in pixels); ``depth`` (...): ``P_2 . X~`` (the camera-frame z for a metric
        ``P = K [R | t]`` with ``K[2] = (0, 0, 1)``; positive in front of the camera). Differentiable in X
        and P; a point with depth 0 gives inf/NaN like IEEE division.
    """
    proj = (P[..., :3] @ X[..., None])[..., 0] + P[..., 3]  # (..., 3)
    depth = proj[..., 2]
    return proj[..., :2] / depth[..., None], depth
