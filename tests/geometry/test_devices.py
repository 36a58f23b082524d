"""Device-agnostic geometry: the differentiable paths create every tensor on their inputs' device.

On the CPU-only CI machine this is checked with "meta" tensors (any tensor made on a fixed device would
fail to mix with them); with a GPU the CUDA results are compared with the CPU ones.
"""

from __future__ import annotations

import pytest
import torch

from mvlift.geometry import (
    all_pairs,
    camera_epipoles,
    epipolar_line_conditions,
    epipoles,
    fundamental_from_cameras,
    fundamental_matrices,
    line_conditions,
    project,
    ring_cameras,
    sample_virtual_epipoles,
    sampson_distance,
    symmetric_epipolar_distance,
)

F64 = torch.float64


def test_meta_tensors_stay_on_their_device():
    cams = ring_cameras(4, start_azimuth=torch.tensor([0.1, 0.7], dtype=F64))
    P = cams.P.to("meta")
    F = fundamental_matrices(P, check=False)
    assert F.device.type == "meta" and F.shape == (2, 4, 4, 3, 3)
    assert camera_epipoles(P).shape == (2, 4, 4, 3)
    assert epipoles(F)[1].shape == (2, 4, 4, 3)
    x = torch.empty(2, 3, 5, 2, dtype=F64, device="meta")
    assert line_conditions(x, torch.empty(2, 2, dtype=F64, device="meta")).device.type == "meta"
    assert epipolar_line_conditions(x, F[:, 0, 1]).shape == (2, 3, 5, 3)
    Fij = F[:, 0, 1, None, None]
    assert symmetric_epipolar_distance(x, x, Fij).shape == sampson_distance(x, x, Fij).shape == (2, 3, 5)
    X = torch.empty(2, 5, 3, dtype=F64, device="meta")
    assert project(X[:, None], P[:, :, None]).shape == (2, 4, 5, 2)
    assert all_pairs(4, device="meta").device.type == "meta"


@pytest.mark.cuda
def test_cuda_matches_cpu(seed):
    start = torch.rand(3, dtype=F64)
    cpu = ring_cameras(6, start_azimuth=start)
    gpu = ring_cameras(6, start_azimuth=start.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.P.cpu(), cpu.P)
    F_cpu = fundamental_from_cameras(cpu, normalized=True)
    F_gpu = fundamental_from_cameras(gpu, normalized=True)
    torch.testing.assert_close(F_gpu.cpu(), F_cpu, rtol=0, atol=1e-12)
    X = torch.randn(3, 8, 5, 3, dtype=F64) * 0.3 + torch.tensor([0.0, 1.0, 0.0], dtype=F64)
    x_cpu = cpu.project(X, normalized=True)
    x_gpu = gpu.project(X.cuda(), normalized=True)
    torch.testing.assert_close(x_gpu.cpu(), x_cpu)
    e = sample_virtual_epipoles(3, generator=torch.Generator(device="cuda").manual_seed(0), device="cuda")
    assert e.device.type == "cuda"
    torch.testing.assert_close(
        line_conditions(x_gpu[:, 1], e).cpu(), line_conditions(x_cpu[:, 1], e.cpu()), rtol=1e-9, atol=1e-12
    )
