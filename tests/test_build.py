"""Build facts of the native extension mvlift._C: it imports, reports how it was built, exposes the CUDA
entry points exactly when built with CUDA, and its typed DLPack signatures refuse (never silently copy)
arrays of the wrong dtype, layout, shape or device."""

from __future__ import annotations

import pytest
import torch

from mvlift.ops import _backend

_C = pytest.importorskip("mvlift._C", reason="native extension not built")

NATIVE_OPS = ("project_points", "triangulate")


def test_module_imports_and_reports_build():
    assert _backend.native() is _C
    assert isinstance(_C.with_cuda, bool)
    assert _backend.native_cuda() is _C.with_cuda
    for name in NATIVE_OPS:
        assert callable(getattr(_C, name))
        assert hasattr(_C, f"{name}_cuda") is _C.with_cuda


def test_thread_count_round_trip():
    before = _C.get_num_threads()
    assert before >= 1
    try:
        _C.set_num_threads(3)
        assert _C.get_num_threads() == 3
        _C.set_num_threads(0)  # back to hardware concurrency
        assert _C.get_num_threads() >= 1
    finally:
        _C.set_num_threads(before)


def _project_args(n=4, dtype=torch.float64):
    X = torch.randn(n, 3, dtype=dtype)
    X[:, 2] += 5
    P = torch.eye(3, 4, dtype=dtype)[None]
    return X, P, torch.empty(n, 2, dtype=dtype), torch.empty(n, dtype=dtype)


def test_project_writes_outputs_in_place():
    X, P, out, depth = _project_args()
    assert _C.project_points(X, P, out, depth) is None
    torch.testing.assert_close(out, X[:, :2] / X[:, 2:])
    torch.testing.assert_close(depth, X[:, 2])


def test_project_noconvert_strictness():
    X, P, out, depth = _project_args()
    with pytest.raises(TypeError):  # float32 X with float64 outputs: no silent cast
        _C.project_points(X.float(), P, out, depth)
    with pytest.raises(TypeError):  # non-contiguous X: no silent copy
        _C.project_points(torch.randn(3, 4, dtype=torch.float64).T, P, out, depth)
    with pytest.raises(TypeError):  # wrong trailing shape
        _C.project_points(X[:, :2].contiguous(), P, out, depth)
    with pytest.raises(TypeError):  # integer tensors
        _C.project_points(X.long(), P.long(), out.long(), depth.long())
    with pytest.raises(TypeError):  # a Python list is not a DLPack array
        _C.project_points(X.tolist(), P, out, depth)
    with pytest.raises(ValueError, match="N rows"):  # shapes checked by the binding
        _C.project_points(X, P, out[:2], depth)


def _triangulate_args(B=2, V=3, M=5, dtype=torch.float64):
    x = torch.randn(B, V, M, 2, dtype=dtype)
    P = torch.randn(1, V, 3, 4, dtype=dtype)
    outs = (
        torch.empty(B, M, 3, dtype=dtype),
        torch.empty(B, M, dtype=dtype),
        torch.empty(B, M, dtype=torch.int32),
        torch.empty(B, M, dtype=torch.int32),
    )
    return x, P, outs


def test_triangulate_noconvert_strictness():
    x, P, outs = _triangulate_args()
    outs[2].fill_(-1)
    _C.triangulate(x, P, None, 0, *outs)  # valid call: every output written in place
    assert (outs[2] == 3).all()
    w = torch.rand(2, 3, 5, dtype=torch.float64)
    w[0, 0] = 0.0
    _C.triangulate(x, P, w, 1, *outs)
    assert (outs[2][0] == 2).all() and (outs[2][1] == 3).all()
    with pytest.raises(TypeError):  # float32 weights with float64 points
        _C.triangulate(x, P, w.float(), 0, *outs)
    with pytest.raises(TypeError):  # non-contiguous x
        _C.triangulate(x.transpose(0, 2).contiguous().transpose(0, 2), P, None, 0, *outs)
    with pytest.raises(TypeError):  # int64 instead of int32 flags
        _C.triangulate(x, P, None, 0, *outs[:3], outs[3].long())
    with pytest.raises(TypeError):  # P not (., V, 3, 4)
        _C.triangulate(x, P[..., :3].contiguous(), None, 0, *outs)
    with pytest.raises(ValueError, match="V views"):
        _C.triangulate(x, P[:, :2].contiguous(), None, 0, *outs)
    with pytest.raises(ValueError, match="weights must be"):
        _C.triangulate(x, P, w[:, :, :4].contiguous(), 0, *outs)
    with pytest.raises(ValueError, match="outputs must be"):
        _C.triangulate(x, P, None, 0, outs[0][:1].contiguous(), *outs[1:])
    with pytest.raises(ValueError, match="refine_iters"):
        _C.triangulate(x, P, None, -1, *outs)


def test_cpu_isa_selection():
    before = _C.cpu_isa()
    assert before in ("baseline", "avx2")
    assert isinstance(_C.cpu_supports_avx2(), bool)
    try:
        _C.set_cpu_isa("baseline")
        assert _C.cpu_isa() == "baseline"
        _C.set_cpu_isa("auto")
        assert _C.cpu_isa() == ("avx2" if _C.cpu_supports_avx2() else "baseline")
        with pytest.raises(ValueError, match="'auto', 'baseline' or 'avx2', got 'sse9'"):
            _C.set_cpu_isa("sse9")
        if not _C.cpu_supports_avx2():
            with pytest.raises(RuntimeError, match="'avx2' is unavailable"):
                _C.set_cpu_isa("avx2")
    finally:
        _C.set_cpu_isa(before)


@pytest.mark.parametrize("value", ["baseline", "auto", "bogus"])
def test_cpu_isa_environment_variable(value, tmp_path):
    """MVLIFT_CPU_ISA sets the initial choice; a bad value fails at the first use, naming the variable."""
    import subprocess
    import sys

    code = "import mvlift._C as c; print(c.cpu_isa())"
    env = {**__import__("os").environ, "MVLIFT_CPU_ISA": value}
    # cwd away from the checkout: there `import mvlift` would find the source folder, not the installed build.
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    if value == "bogus":
        assert run.returncode != 0
        assert "MVLIFT_CPU_ISA='bogus'" in run.stderr and "'auto', 'baseline' or 'avx2'" in run.stderr
    else:
        assert run.returncode == 0, run.stderr
        expected = "baseline" if value == "baseline" else ("avx2" if _C.cpu_supports_avx2() else "baseline")
        assert run.stdout.strip() == expected
