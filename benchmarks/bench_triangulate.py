"""pytest-benchmark timings of multi-view triangulation on the CPU, per provider.

Providers: ``ours_dlt`` / ``ours_lm3`` (:func:`mvlift.ops.triangulate`: the native C++ kernel, threads
over points; DLT only, and with 3 Levenberg-Marquardt steps), ``torch_svd`` (a textbook DLT: rows
``u P_2 - P_0``, ``v P_2 - P_1``, batched ``torch.linalg.svd``, dehomogenise - the least torch needs),
``reference`` (:func:`mvlift.reference.triangulate.triangulate`: our exact method, normalisation and
flags included, with ``torch.linalg.svd``) and ``numpy_svd`` (the textbook DLT with ``numpy.linalg.svd``).
Scene: N points around the look-at point of a 6-camera ring (3 m radius, 1 m high, f = 1000 px), observed
with 1 px Gaussian noise, float32 and float64. The mean 3D error (mm) of each provider is stored in the
benchmark's ``extra_info``.

    pytest benchmarks/bench_triangulate.py --benchmark-only --benchmark-group-by=param:dtype \
        --benchmark-columns=min,median,mean,rounds

The GPU table (2.9M points, Adam baseline, byte floor) is ``benchmarks/gpu_triangulate.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from mvlift.geometry import ring_cameras
from mvlift.ops import triangulate
from mvlift.reference import triangulate as ref
from mvlift.reference.project import project_points

N_POINTS = 20_000
N_VIEWS = 6


def make_scene(n: int, dtype: torch.dtype, noise: float = 1.0, seed: int = 0):
    """Points X (n, 3) within ~0.5 m of (0, 1, 0), cameras P (6, 3, 4) and pixels x (n, 6, 2)."""
    g = torch.Generator().manual_seed(seed)
    P = ring_cameras(N_VIEWS, radius=3.0, height=1.0, look_at=(0.0, 1.0, 0.0)).P
    X = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64) + 0.3 * torch.randn(
        n, 3, generator=g, dtype=torch.float64
    )
    uv, _ = project_points(X[:, None], P)
    x = uv + noise * torch.randn(uv.shape, generator=g, dtype=torch.float64)
    return X, P.to(dtype), x.to(dtype)


def torch_dlt(x: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """Textbook DLT in torch: rows u P_2 - P_0, v P_2 - P_1, smallest right singular vector."""
    A = x[..., :, None] * P[:, 2:3, :] - P[:, :2, :]  # (n, V, 2, 4)
    _, _, vh = torch.linalg.svd(A.reshape(x.shape[0], -1, 4), full_matrices=False)
    Xh = vh[:, -1]
    return Xh[:, :3] / Xh[:, 3:]


def numpy_dlt(x: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Textbook DLT: rows u P_2 - P_0, v P_2 - P_1, smallest right singular vector, dehomogenised."""
    A = x[..., :, None] * P[None, :, 2:3, :] - P[None, :, :2, :]  # (n, V, 2, 4)
    _, _, vh = np.linalg.svd(A.reshape(x.shape[0], -1, 4), full_matrices=False)
    Xh = vh[:, -1]
    return Xh[:, :3] / Xh[:, 3:]


PROVIDERS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ours_dlt": lambda x, P: triangulate(x, P)[0],
    "ours_lm3": lambda x, P: triangulate(x, P, refine_iters=3)[0],
    "torch_svd": torch_dlt,
    "reference": lambda x, P: ref.triangulate(x, P)[0],
    "numpy_svd": lambda x, P: torch.from_numpy(numpy_dlt(x.numpy(), P.numpy())),
}


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_triangulate_cpu(benchmark, provider: str, dtype: torch.dtype) -> None:
    X, P, x = make_scene(N_POINTS, dtype)
    fn = PROVIDERS[provider]
    benchmark.group = f"triangulate N={N_POINTS} V={N_VIEWS} {str(dtype).replace('torch.', '')}"
    out = benchmark(fn, x, P)
    err_mm = 1000 * (out.double() - X).norm(dim=-1)
    benchmark.extra_info.update(
        points=N_POINTS, views=N_VIEWS, threads=torch.get_num_threads(), mean_err_mm=err_mm.mean().item()
    )
    assert out.shape == (N_POINTS, 3) and err_mm.mean() < 5.0
