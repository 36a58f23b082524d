"""mvlift.ops.cross_view_attention: the Triton kernels (interpreter on CPU) against the float64 reference,
torch's SDPA, the CPU reference path, torch.library/torch.compile integration and input checks."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from mvlift.ops import cross_view_attention
from mvlift.reference import attention as ref

# the module (``mvlift.ops.cross_view_attention`` the attribute is the function of the same name)
cva_mod = importlib.import_module("mvlift.ops.cross_view_attention")

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
kernel_only = pytest.mark.skipif(
    not cva_mod._use_kernel(torch.empty(0, device=DEVICE)),
    reason="Triton kernels not runnable here (no CUDA and TRITON_INTERPRET unset)",
)
requires_cuda = pytest.mark.cuda  # skipped without a GPU (tests/conftest.py)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|, in float64."""
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).abs().max() / b.abs().max()).item()


def make_qkv(n: int, k: int, h: int, d: int, dtype=torch.float32, device=DEVICE) -> list[torch.Tensor]:
    """Random q, k, v (N, K, H, D); q scaled up so the softmax is far from uniform."""
    q = 2.0 * torch.randn(n, k, h, d, dtype=torch.float64)
    k_ = torch.randn(n, k, h, d, dtype=torch.float64)
    v = torch.randn(n, k, h, d, dtype=torch.float64)
    return [t.to(device=device, dtype=dtype).requires_grad_() for t in (q, k_, v)]


def ref_fwd_bwd(q, k, v, g, scale=None):
    """Float64 reference output and gradients (through autograd) for upstream gradient g."""
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    out = ref.cross_view_attention(q64, k64, v64, scale=scale)
    out.backward(g.double())
    return out, q64.grad, k64.grad, v64.grad


def sdpa_bmhk(q, k, v, scale=None):
    """torch's SDPA on the (N, K, H, D) layout: transpose to (N, H, K, D) and back."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale=scale)
    return out.transpose(1, 2)


# --- the reference itself -------------------------------------------------------------------------------


def test_reference_matches_sdpa_float64(seed):
    q, k, v = make_qkv(7, 5, 2, 12, torch.float64, "cpu")
    for scale in (None, 0.3):
        torch.testing.assert_close(
            ref.cross_view_attention(q, k, v, scale=scale), sdpa_bmhk(q, k, v, scale), rtol=1e-12, atol=1e-12
        )


def test_reference_gradcheck_and_closed_form_backward(seed):
    q, k, v = make_qkv(3, 3, 2, 5, torch.float64, "cpu")
    assert torch.autograd.gradcheck(lambda a, b, c: ref.cross_view_attention(a, b, c, scale=0.7), (q, k, v))
    g = torch.randn(3, 3, 2, 5, dtype=torch.float64)
    _, dq, dk, dv = ref_fwd_bwd(q, k, v, g, scale=0.7)
    closed = ref.cross_view_attention_backward(g, q.detach(), k.detach(), v.detach(), scale=0.7)
    for got, want in zip(closed, (dq, dk, dv), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


# --- the kernels against the float64 reference -------------------------------------------------------------


@kernel_only
@pytest.mark.parametrize("d", [16, 24, 64])
@pytest.mark.parametrize("h", [1, 3])
@pytest.mark.parametrize("k", [2, 3, 4, 6, 8])
def test_fp32_forward_and_grads_match_reference(seed, k, h, d):
    n = 37 if h == 1 else 5  # odd frame counts: the last tile is partly masked
    q, k_, v = make_qkv(n, k, h, d)
    out = cross_view_attention(q, k_, v)
    g = torch.randn_like(out)
    out.backward(g)
    want = ref_fwd_bwd(q, k_, v, g)
    for got, exp in zip((out, q.grad, k_.grad, v.grad), want, strict=True):
        assert got.dtype == torch.float32 and got.shape == exp.shape
        assert rel_err(got, exp) < 1e-4


@kernel_only
def test_custom_scale_and_sixteen_tokens(seed):
    q, k, v = make_qkv(9, 16, 2, 40)
    out = cross_view_attention(q, k, v, scale=0.05)
    g = torch.randn_like(out)
    out.backward(g)
    for got, exp in zip((out, q.grad, k.grad, v.grad), ref_fwd_bwd(q, k, v, g, scale=0.05), strict=True):
        assert rel_err(got, exp) < 1e-4


@kernel_only
def test_fp32_matches_sdpa(seed):
    q, k, v = make_qkv(21, 6, 3, 32)
    out = cross_view_attention(q, k, v)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), g)
    out_s = sdpa_bmhk(q, k, v)
    grads_s = torch.autograd.grad(out_s, (q, k, v), g)
    for got, exp in zip((out, *grads), (out_s, *grads_s), strict=True):
        assert rel_err(got, exp) < 1e-4


@kernel_only
def test_fp64_kernel_matches_reference(seed):
    q, k, v = make_qkv(11, 5, 2, 24, torch.float64)
    if q.is_cuda:
        pytest.skip("float64 on CUDA takes the reference path")
    out = cross_view_attention(q, k, v)
    g = torch.randn_like(out)
    out.backward(g)
    for got, exp in zip((out, q.grad, k.grad, v.grad), ref_fwd_bwd(q, k, v, g), strict=True):
        assert got.dtype == torch.float64
        assert rel_err(got, exp) < 1e-6  # the scale travels as a float32 scalar


@kernel_only
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_matches_fp32_reference(seed, dtype):
    q, k, v = make_qkv(13, 6, 3, 64, dtype)
    out = cross_view_attention(q, k, v)
    g = torch.randn_like(out)
    out.backward(g)
    want = ref_fwd_bwd(q, k, v, g)  # the same (rounded) inputs, in float64
    for got, exp in zip((out, q.grad, k.grad, v.grad), want, strict=True):
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), exp, rtol=1e-2, atol=1e-2 * exp.abs().max().item())


@kernel_only
def test_strided_inputs_are_read_in_place(seed):
    n, k, h, d = 9, 5, 3, 20
    qkv = torch.randn(n, k, 3, h, d, device=DEVICE, requires_grad=True)
    q, _, v = qkv.unbind(2)  # slices of a fused projection: stride(1) = 3 H D
    k_bhkd = torch.randn(n, h, k, d, device=DEVICE, requires_grad=True)
    k_ = k_bhkd.transpose(1, 2)  # a permuted layout
    assert not (q.is_contiguous() or k_.is_contiguous() or v.is_contiguous())
    out = cross_view_attention(q, k_, v)
    assert out.is_contiguous()
    out.sum().backward()  # an expanded, stride-0 upstream gradient
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k_, v))
    out64 = ref.cross_view_attention(q64, k64, v64)
    out64.sum().backward()
    assert rel_err(out, out64) < 1e-4
    assert rel_err(qkv.grad[:, :, 0], q64.grad) < 1e-4
    assert rel_err(qkv.grad[:, :, 2], v64.grad) < 1e-4
    assert qkv.grad[:, :, 1].abs().max() == 0
    assert rel_err(k_bhkd.grad.transpose(1, 2), k64.grad) < 1e-4


@kernel_only
@pytest.mark.parametrize(
    "n_tok,block_m,num_warps,chunk", [(6, 1, 1, 4), (8, 2, 1, 4), (5, 4, 2, 2), (3, 16, 4, 3), (7, 2, 1, 7)]
)
def test_autotuner_launch_configs(seed, n_tok, block_m, num_warps, chunk):
    """Fixed launch parameters of the kind the GPU autotuner picks: row blocks that leave a partial last
    block, and a backward that unrolls ``chunk`` < K queries per loop step (masked tail)."""
    from mvlift.kernels import cross_view_attention as kern

    q, k, v = make_qkv(7, n_tok, 3, 24)
    g = torch.randn(7, n_tok, 3, 24, device=DEVICE)
    out = kern.cross_view_attention_forward(q, k, v, 0.3, block_m=block_m, num_warps=num_warps)
    grads = kern.cross_view_attention_backward(
        g, q, k, v, 0.3, block_m=block_m, num_warps=num_warps, chunk=chunk
    )
    for got, exp in zip((out, *grads), ref_fwd_bwd(q, k, v, g, scale=0.3), strict=True):
        assert rel_err(got, exp) < 1e-4


def test_autotuner_candidates():
    """Every supported (K, D, dtype) keeps at least one launch config; on the issue's shapes all candidates
    keep each row's K x D tile inside one warp and within the register budget."""
    from mvlift.kernels import cross_view_attention as kern

    for which, configs in (("fwd", kern._FWD_CONFIGS), ("bwd", kern._BWD_CONFIGS)):
        prune = kern._prune(which)
        for dtype in (torch.bfloat16, torch.float16, torch.float32):
            q = torch.empty(0, dtype=dtype)
            for n_tok in range(1, 17):
                for d in (1, 3, 16, 24, 64, 100, 128):
                    kept = prune(configs, {"q_ptr": q}, K=n_tok, D=d)
                    assert kept and all(c.kwargs.get("CHUNK", n_tok) <= n_tok for c in kept)
            for n_tok in (4, 6, 8):
                for c in prune(configs, {"q_ptr": q}, K=n_tok, D=64):
                    in_warp, per_thread, vec = kern._layout(
                        c.kwargs["BLOCK_M"], c.num_warps, n_tok, 64, q.element_size()
                    )
                    chunk = c.kwargs.get("CHUNK", n_tok)
                    assert in_warp and per_thread >= vec
                    assert kern._registers_ok(which, per_thread, n_tok, chunk, q.element_size())


@kernel_only
def test_deterministic(seed):
    q, k, v = make_qkv(17, 4, 2, 16)
    g = torch.randn(17, 4, 2, 16, device=DEVICE)
    runs = []
    for _ in range(2):
        out = cross_view_attention(q, k, v)
        runs.append((out, *torch.autograd.grad(out, (q, k, v), g)))
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def test_zero_frames():
    q, k, v = make_qkv(0, 4, 2, 8)
    out = cross_view_attention(q, k, v)
    assert out.shape == (0, 4, 2, 8)
    out.sum().backward()
    assert q.grad.shape == (0, 4, 2, 8)


# --- dispatch, torch.library and torch.compile ------------------------------------------------------------


def test_reference_path_when_kernels_are_off(seed, monkeypatch):
    monkeypatch.setattr(cva_mod, "_use_kernel", lambda t: False)
    q, k, v = make_qkv(7, 3, 2, 10, device="cpu")
    out = cross_view_attention(q, k, v, scale=0.4)
    g = torch.randn_like(out)
    out.backward(g)
    for got, exp in zip((out, q.grad, k.grad, v.grad), ref_fwd_bwd(q, k, v, g, scale=0.4), strict=True):
        assert rel_err(got, exp) < 1e-5


@pytest.mark.parametrize("kernels", [True, False])
def test_opcheck(seed, monkeypatch, kernels):
    if kernels and not cva_mod._use_kernel(torch.empty(0, device=DEVICE)):
        pytest.skip("Triton kernels not runnable here")
    if not kernels:
        monkeypatch.setattr(cva_mod, "_use_kernel", lambda t: False)
    q, k, v = make_qkv(5, 3, 2, 8)
    torch.library.opcheck(torch.ops.mvlift.cross_view_attention.default, (q, k, v, 0.5))
    g = torch.randn(5, 3, 2, 8, device=DEVICE)
    args = (g, q.detach(), k.detach(), v.detach(), 0.5)
    torch.library.opcheck(torch.ops.mvlift.cross_view_attention_backward.default, args)


def test_torch_compile_fullgraph(seed):
    torch._dynamo.reset()
    q, k, v = make_qkv(6, 4, 2, 8)

    def loss(a, b, c):
        return (cross_view_attention(a, b, c) * torch.linspace(-1.0, 2.0, 8, device=a.device)).sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    got = compiled(q, k, v)
    got_grads = torch.autograd.grad(got, (q, k, v))
    want = loss(q, k, v)
    want_grads = torch.autograd.grad(want, (q, k, v))
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b)


# --- input checks ---------------------------------------------------------------------------------------


def _bad_cases():
    t = torch.randn(3, 4, 2, 8)
    return [
        ("q", ([1.0], t, t), {}, TypeError, "q must be a torch.Tensor"),
        ("rank", (t[0], t[0], t[0]), {}, ValueError, r"q must have shape \(N, K, H, D\)"),
        ("k shape", (t, t[:, :3], t), {}, ValueError, "k must have the shape of q"),
        ("v shape", (t, t, t[..., :4]), {}, ValueError, "v must have the shape of q"),
        (
            "K too large",
            (torch.randn(2, 17, 1, 4),) * 3,
            {},
            ValueError,
            r"K = q.shape\[1\] must be in \[1, 16\]",
        ),
        ("D too large", (torch.randn(2, 3, 1, 129),) * 3, {}, ValueError, r"D = q.shape\[3\] must be in"),
        ("int dtype", (t.long(), t.long(), t.long()), {}, TypeError, "q must be float16"),
        ("k dtype", (t, t.double(), t), {}, TypeError, "k must have q's dtype"),
        ("v dtype", (t, t, t.half()), {}, TypeError, "v must have q's dtype"),
        ("v device", (t, t, t.to("meta")), {}, ValueError, "v must be on q's device"),
        ("scale type", (t, t, t), {"scale": "big"}, TypeError, "scale must be a real number"),
        ("scale nan", (t, t, t), {"scale": float("nan")}, ValueError, "scale must be finite"),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
def test_bad_inputs(case):
    _, args, kwargs, exc, match = case
    with pytest.raises(exc, match=match):
        cross_view_attention(*args, **kwargs)


# --- GPU ------------------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("n_views", [4, 6, 8])
def test_cuda_bf16_parity_with_sdpa(seed, n_views):
    q, k, v = make_qkv(1023, n_views, 8, 64, torch.bfloat16, "cuda")
    out = cross_view_attention(q, k, v)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), g)
    out_s = sdpa_bmhk(q, k, v)
    grads_s = torch.autograd.grad(out_s, (q, k, v), g)
    want = ref_fwd_bwd(q, k, v, g)
    for ours, theirs, exp in zip((out, *grads), (out_s, *grads_s), want, strict=True):
        tol = 1e-2 * exp.abs().max().item()
        torch.testing.assert_close(ours.double(), theirs.double(), rtol=2e-2, atol=2 * tol)
        # no worse than SDPA against the float64 reference, up to one bf16 rounding
        assert (ours.double() - exp).abs().max() <= (theirs.double() - exp).abs().max() + tol


def test_prune_drops_the_configs_that_spilled():
    """Configs that ptxas spilled on sm_90 (benchmarks/compile_kernels.py --set full) are no longer kept:
    backward K = 16, D = 64 fp32 with BLOCK_M 2 / 4 warps / CHUNK 4; K = 8, D = 128 bf16 with CHUNK 8 at
    (BLOCK_M, warps) = (1, 2) and (2, 4); rows across warps with CHUNK > 4 (K = 12 and 16, D = 64, 16-bit;
    K = 6, D = 128 fp16); forward K = 16, D = 128 fp32 at 4 warps (8 warps now); the two ptxas quirks of
    K = 3, D = 32 fp32."""
    from mvlift.kernels import cross_view_attention as kern

    def kept(which, k, d, elem):
        configs = kern._FWD_CONFIGS if which == "fwd" else kern._BWD_CONFIGS
        return {
            (c.kwargs["BLOCK_M"], c.num_warps, c.kwargs.get("CHUNK"))
            for c in kern._kept_configs(which, configs, k, d, elem)
        }

    assert (2, 4, 4) not in kept("bwd", 16, 64, 4) and kept("bwd", 16, 64, 4)
    assert not {(1, 2, 8), (2, 4, 8)} & kept("bwd", 8, 128, 2) and kept("bwd", 8, 128, 2)
    assert (1, 4, 12) not in kept("bwd", 12, 64, 2) and (1, 4, 16) not in kept("bwd", 16, 64, 2)
    assert (2, 4, 6) not in kept("bwd", 6, 128, 2)
    assert (1, 4, None) not in kept("fwd", 16, 128, 4) and {w for _, w, _ in kept("fwd", 16, 128, 4)} == {8}
    assert not {(4, 2, None), (8, 4, None)} & kept("fwd", 3, 32, 4) and kept("fwd", 3, 32, 4)
    assert 8 not in {w for _, w, _ in kept("fwd", 6, 64, 2)}  # 8 warps only where nothing else fits


def test_fixed_launch_parameters_are_completed_and_checked():
    """Compiled launches with some launch parameters fixed: the missing ones come from the prune's kept
    configs; a config outside the register budget warns that it will spill."""
    import warnings

    from mvlift.kernels import cross_view_attention as kern

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for these
        first = kern._kept_configs("bwd", kern._BWD_CONFIGS, 8, 64, 2)[0]
        assert kern._complete_fixed("bwd", {}, 8, 64, 2) == {"num_warps": first.num_warps, **first.kwargs}
        got = kern._complete_fixed("fwd", {"num_warps": 1}, 6, 64, 2)
        assert got["num_warps"] == 1 and got["BLOCK_M"] >= 1
        assert kern._complete_fixed("bwd", {"CHUNK": 32}, 4, 64, 2)["CHUNK"] == 4  # capped at K
    with pytest.warns(
        kern.LaunchConfigWarning,
        match=r"block_m=16, num_warps=1, chunk=4 for K=16, D=128 .* will likely spill",
    ):
        kern._complete_fixed("bwd", {"BLOCK_M": 16, "num_warps": 1}, 16, 128, 4)
