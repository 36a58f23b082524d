"""The GPU-facing parts of the ops that a CPU machine can check: the warned fallbacks when a compiled kernel
is unavailable for a CUDA tensor (and why), the flat launch grids and their limit, the coalesced layout that
``triangulate`` gives the CUDA kernel, and, on a machine with two GPUs, that every op runs on its tensors'
GPU whatever the current device is."""

from __future__ import annotations

import importlib
import types
import warnings

import pytest
import torch

from mvlift.ops import _backend, epipolar_loss, line_matching_loss, project_points, stage1_loss, triangulate

tri_mod = importlib.import_module("mvlift.ops.triangulate")
CUDA = torch.device("cuda", 0)


@pytest.fixture
def fresh_warnings():
    """Each test sees the once-per-reason warnings anew, and leaves the cached answers as it found them."""
    _backend._WARNED.clear()
    _backend.native_cuda_error.cache_clear()
    yield
    _backend._WARNED.clear()
    _backend.native_cuda_error.cache_clear()


def _fallback_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, _backend.SlowFallbackWarning)]


def test_native_cuda_fallback_warns_once_with_the_reason(fresh_warnings):
    """This machine's extension on a CUDA device: its kernels when the runtime starts, else one warning."""
    err = _backend.native_cuda_error()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        first = _backend.native_for(CUDA, "triangulate", "the reference")
        second = _backend.native_for(CUDA, "triangulate", "the reference")
    if not err:  # a GPU with a working driver: the native kernels, no warning
        assert first is _backend.native() and second is first
        assert not _fallback_warnings(record)
        return
    assert first is None and second is None
    msgs = _fallback_warnings(record)
    assert len(msgs) == 1, msgs
    assert msgs[0].startswith("triangulate: running the reference on CUDA tensors because ")
    assert err in msgs[0]


_DRIVER = (
    "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version (mvlift._C "
    "was built with the CUDA 13.0 runtime, which needs an NVIDIA driver ... r580 or newer for CUDA 13 ...)"
)


@pytest.mark.parametrize(
    "module, reason",
    [
        (None, "mvlift._C is not built"),
        (types.SimpleNamespace(with_cuda=False), r"built without CUDA \(no nvcc at build time"),
        (types.SimpleNamespace(with_cuda=True, cuda_runtime_error=lambda: _DRIVER), "r580 or newer"),
    ],
    ids=["no-extension", "cpu-only-build", "old-driver"],
)
def test_each_fallback_names_its_cause(fresh_warnings, monkeypatch, module, reason):
    monkeypatch.setattr(_backend, "native", lambda: module)
    with pytest.warns(
        _backend.SlowFallbackWarning, match=f"project_points: running the ref on CUDA.*{reason}"
    ):
        assert _backend.native_for(CUDA, "project_points", "the ref") is None


def test_cpu_without_the_extension_warns(fresh_warnings, monkeypatch):
    monkeypatch.setattr(_backend, "native", lambda: None)
    with pytest.warns(_backend.SlowFallbackWarning, match="triangulate: running the ref because .*not built"):
        assert _backend.native_for(torch.device("cpu"), "triangulate", "the ref") is None


def test_cuda_without_triton_warns(fresh_warnings, monkeypatch):
    monkeypatch.setattr(_backend, "_TRITON", False)
    with pytest.warns(_backend.SlowFallbackWarning, match="triton package is not installed"):
        assert _backend.use_triton_on(CUDA) is False
    assert _backend.use_triton_on(torch.device("cpu")) is False


def test_extension_reports_its_cuda_runtime():
    """The extension's own (static) CUDA runtime: its version, and on a machine without a usable driver a
    reason that names the driver."""
    mod = _backend.native()
    if mod is None or not mod.with_cuda:
        pytest.skip("mvlift._C was built without CUDA here")
    driver, runtime = mod.cuda_versions()
    assert runtime >= 12000 and driver >= 0
    err = mod.cuda_runtime_error()
    if torch.cuda.is_available() and driver >= runtime:
        assert err == ""
    elif driver == 0:
        assert "no NVIDIA driver" in err
    elif driver < runtime:
        assert "cudaErrorInsufficientDriver" in err and "r580" in err


# ------------------------------------------------------------------------------------------------ grids
kernels_here = pytest.mark.skipif(
    not _backend.use_triton(torch.empty(0, device="cuda" if torch.cuda.is_available() else "cpu")),
    reason="Triton kernels not runnable here (no CUDA and TRITON_INTERPRET unset)",
)


def test_flat_grid_limit():
    from mvlift.kernels.epipolar_loss import MAX_PROGRAMS, flat_grid

    assert MAX_PROGRAMS == 2**31 - 1
    assert flat_grid("op", "x", MAX_PROGRAMS) == (MAX_PROGRAMS,)
    with pytest.raises(ValueError, match=r"op: the inputs need 2147483648 programs \(B = 2 x 3\), more than"):
        flat_grid("op", "B = 2 x 3", 2**31)


@kernels_here
def test_every_loss_launch_checks_its_grid(monkeypatch):
    """With the limit lowered to 3 programs, each loss launch refuses a 4-program grid, naming its op; at
    the limit it runs (the grid is one flat axis: no 65535-tile limit per sequence)."""
    from mvlift.kernels import epipolar_loss as E
    from mvlift.kernels import line_loss as L

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    block = E._block()[0]
    x = torch.rand(2, 3, 1, block + 1, 2, device=dev)  # 2 sequences x 2 tiles = 4 programs
    F = torch.randn(3, 3, 3, 3, device=dev)
    monkeypatch.setattr(E, "MAX_PROGRAMS", 3)
    with pytest.raises(ValueError, match=r"epipolar_loss: the inputs need 4 programs \(B = 2 sequences x 2"):
        epipolar_loss(x, F)
    lblock = L._block()[0]
    xl = torch.rand(2, 1, lblock + 1, 2, device=dev)
    lines = torch.randn(2, 1, lblock + 1, 3, device=dev)
    with pytest.raises(ValueError, match="line_matching_loss: the inputs need 4 programs"):
        line_matching_loss(xl, lines)
    with pytest.raises(ValueError, match="stage1_loss: the inputs need 4 programs"):
        stage1_loss(xl, xl, lines)
    monkeypatch.setattr(E, "MAX_PROGRAMS", 4)
    assert torch.isfinite(epipolar_loss(x, F))
    assert torch.isfinite(line_matching_loss(xl, lines))


# ------------------------------------------------------------------------------------------------ layout
def test_triangulate_views_major_layout_gives_the_same_points(seed, monkeypatch):
    """The (1, V, N) layout that triangulate() hands the CUDA kernel for a shared P, run here through the
    CPU kernel: exactly the points, flags and views of the default (N, V, 1) layout."""
    if _backend.native() is None:
        pytest.skip("native extension not built")
    V = 4
    X = torch.randn(3, 5, 3, dtype=torch.float64)
    X[..., 2] += 6.0
    angles = torch.linspace(0, 1.5, V, dtype=torch.float64)
    P = torch.zeros(V, 3, 4, dtype=torch.float64)
    P[:, 0, 0] = torch.cos(angles)
    P[:, 0, 2] = torch.sin(angles)
    P[:, 1, 1] = 1.0
    P[:, 2, 0] = -torch.sin(angles)
    P[:, 2, 2] = torch.cos(angles)
    P[:, :, 3] = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    Xh = torch.cat([X, torch.ones_like(X[..., :1])], -1)
    proj = torch.einsum("vij,bnj->bnvi", P, Xh)
    x = proj[..., :2] / proj[..., 2:] + 1e-5 * torch.randn(3, 5, V, 2, dtype=torch.float64)
    w = 0.5 + 0.5 * torch.rand(3, 5, V, dtype=torch.float64)
    w[0, 0, :3] = 0.0  # one degenerate point (a single valid view)
    default = triangulate(x, P, weights=w, refine_iters=2)
    monkeypatch.setattr(tri_mod, "_views_major", lambda device: True)
    views_major = triangulate(x, P, weights=w, refine_iters=2)
    torch.testing.assert_close(views_major[0], default[0], rtol=0, atol=0, equal_nan=True)
    for got, want in zip(views_major[1], default[1], strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    assert default[1].flags[0, 0] & 1 and torch.isfinite(default[0][1:]).all()
    assert (default[0][1:] - X[1:]).norm(dim=-1).max() < 0.01


# ------------------------------------------------------------------------------------------------ devices
@pytest.mark.cuda
def test_ops_run_on_their_tensors_gpu_whatever_the_current_device(seed):
    """Tensors on cuda:1 while cuda:0 is current: every op launches on cuda:1 (the loss launchers enter
    torch.cuda.device, the native ops make the device current in their own CUDA runtime)."""
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    dev = torch.device("cuda", 1)
    torch.cuda.set_device(0)
    x = torch.rand(2, 3, 5, 7, 2, dtype=torch.float64)
    F = torch.randn(3, 3, 3, 3, dtype=torch.float64)
    got = epipolar_loss(x.to(dev), F.to(dev))
    assert got.device == dev and torch.cuda.current_device() == 0
    torch.testing.assert_close(got.cpu(), epipolar_loss(x, F), rtol=1e-10, atol=0)
    xl, lines = torch.rand(2, 5, 7, 2), torch.randn(2, 5, 7, 3)
    torch.testing.assert_close(
        line_matching_loss(xl.to(dev), lines.to(dev)).cpu(), line_matching_loss(xl, lines)
    )
    Xw = torch.randn(50, 3, dtype=torch.float64) + torch.tensor([0.0, 0.0, 6.0], dtype=torch.float64)
    Pm = torch.eye(3, 4, dtype=torch.float64)
    uv, depth = project_points(Xw.to(dev), Pm.to(dev))
    torch.testing.assert_close(uv.cpu(), project_points(Xw, Pm)[0])
    Ps = torch.stack(
        [Pm, Pm + torch.tensor([[0, 0, 0, 1.0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.float64)]
    )
    obs = torch.stack([project_points(Xw, Ps[v])[0] for v in range(2)], dim=-2)  # (50, 2, 2)
    Xg, _ = triangulate(obs.to(dev), Ps.to(dev))
    torch.testing.assert_close(Xg.cpu(), Xw, rtol=1e-6, atol=1e-6)
    assert torch.cuda.current_device() == 0
