"""mvlift.models.attention: backends agree with a float64 softmax reference; xformers probe and fallback."""

from __future__ import annotations

import logging
import math
import types

import pytest
import torch

from mvlift.models import attention as attn


def reference(q, k, v, valid=None, layout="BMHK"):
    """Naive float64 softmax attention (loops over heads), in ``layout``."""
    q, k, v = q.double(), k.double(), v.double()
    if layout == "BHMK":
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    b, m, h, d = q.shape
    out = torch.empty(b, m, h, v.shape[-1], dtype=torch.float64)
    for head in range(h):
        scores = q[:, :, head] @ k[:, :, head].transpose(1, 2) / math.sqrt(d)  # (B, M, N)
        if valid is not None:
            scores = scores.masked_fill(~valid[:, None, :], float("-inf"))
        out[:, :, head] = torch.softmax(scores, dim=-1) @ v[:, :, head]
    return out.transpose(1, 2) if layout == "BHMK" else out


def make_inputs(layout, dtype=torch.float32, b=3, m=7, n=11, h=3, d=5, dv=6):
    q = torch.randn(b, m, h, d, dtype=dtype)
    k = torch.randn(b, n, h, d, dtype=dtype)
    v = torch.randn(b, n, h, dv, dtype=dtype)
    if layout == "BHMK":
        q, k, v = (
            q.transpose(1, 2).contiguous(),
            k.transpose(1, 2).contiguous(),
            v.transpose(1, 2).contiguous(),
        )
    valid = torch.rand(b, n) > 0.4
    valid[:, 0] = True  # every query keeps at least one key
    return q, k, v, valid


class FakeXformersOps(types.ModuleType):
    """Stands in for ``xformers.ops`` with its documented semantics (BMHK, additive tensor bias (B, H, M, N)
    whose rows are 8-aligned), so the xformers path's layout and mask conversion are testable on CPU."""

    def __init__(self, fail: Exception | None = None, wrong: bool = False):
        super().__init__("xformers.ops")
        self.fail, self.wrong, self.calls = fail, wrong, 0

    def memory_efficient_attention(self, q, k, v, attn_bias=None, p=0.0, scale=None):
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        b, m, h, d = q.shape
        scores = torch.einsum("bmhd,bnhd->bhmn", q, k) * (scale if scale is not None else d**-0.5)
        if attn_bias is not None:
            assert attn_bias.shape == (b, h, m, k.shape[1]) and attn_bias.dtype == q.dtype
            assert attn_bias.stride(-2) % 8 == 0, "xformers needs 8-aligned bias rows"
            scores = scores + attn_bias
        out = torch.einsum("bhmn,bnhd->bmhd", scores.softmax(-1), v)
        return torch.zeros_like(out) if self.wrong else out


@pytest.fixture
def fresh(monkeypatch):
    """Empty probe cache and log memory for the test (restored afterwards)."""
    monkeypatch.setattr(attn, "_probe_cache", {})
    monkeypatch.setattr(attn, "_logged", set())
    return monkeypatch


def use_fake_xformers(monkeypatch, fake):
    monkeypatch.setattr(attn, "_import_xformers_ops", lambda: fake)


@pytest.mark.parametrize("layout", ["BMHK", "BHMK"])
@pytest.mark.parametrize("masked", [False, True])
def test_sdpa_matches_reference(seed, layout, masked):
    q, k, v, valid = make_inputs(layout)
    mask = valid if masked else None
    out = attn.attention(q, k, v, key_padding_mask=mask, layout=layout, backend="sdpa")
    assert attn.last_backend() == "sdpa"
    ref = reference(q, k, v, mask, layout)
    assert out.shape == ref.shape and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-5)
    out64 = attn.attention(q.double(), k.double(), v.double(), key_padding_mask=mask, layout=layout)
    torch.testing.assert_close(out64, ref, rtol=1e-10, atol=1e-12)


def test_masked_keys_have_no_influence(seed):
    q, k, v, valid = make_inputs("BMHK")
    out = attn.attention(q, k, v, key_padding_mask=valid)
    k2, v2 = k.clone(), v.clone()
    k2[~valid] = torch.randn_like(k2[~valid]) * 10
    v2[~valid] = torch.randn_like(v2[~valid]) * 10
    torch.testing.assert_close(attn.attention(q, k2, v2, key_padding_mask=valid), out, rtol=0, atol=1e-6)
    assert not torch.allclose(attn.attention(q, k2, v2), out, atol=1e-3)


def test_gradcheck_sdpa_masked(seed):
    q, k, v, valid = make_inputs("BMHK", torch.float64, b=2, m=3, n=4, h=2, d=3, dv=2)
    q, k, v = (t.requires_grad_() for t in (q, k, v))

    def fn(q, k, v):
        return attn.attention(q, k, v, key_padding_mask=valid, backend="sdpa")

    assert torch.autograd.gradcheck(fn, (q, k, v))
    # and the gradients equal the reference's
    grad = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    got = torch.autograd.grad(fn(q, k, v), (q, k, v), grad)
    want = torch.autograd.grad(reference(q, k, v, valid), (q, k, v), grad)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("layout", ["BMHK", "BHMK"])
@pytest.mark.parametrize("masked", [False, True])
def test_xformers_path_layout_and_mask(fresh, seed, layout, masked):
    fake = FakeXformersOps()
    use_fake_xformers(fresh, fake)
    assert attn.available_backends("cpu", torch.float32) == ("xformers", "sdpa")
    q, k, v, valid = make_inputs(layout)
    mask = valid if masked else None
    ref = reference(q, k, v, mask, layout)
    out = attn.attention(q, k, v, key_padding_mask=mask, layout=layout, backend="auto")
    assert attn.last_backend() == "xformers"
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-5)
    forced = attn.attention(q, k, v, key_padding_mask=mask, layout=layout, backend="xformers")
    sdpa = attn.attention(q, k, v, key_padding_mask=mask, layout=layout, backend="sdpa")
    torch.testing.assert_close(forced, sdpa, rtol=1e-4, atol=1e-5)


def test_probe_runs_once_and_keeps_global_rng(fresh):
    fake = FakeXformersOps()
    imports = []
    fresh.setattr(attn, "_import_xformers_ops", lambda: imports.append(1) or fake)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    assert attn.probe_xformers("cpu", torch.float32) == (True, "ok")
    assert torch.equal(torch.rand(3), expected), "the probe must not consume the global RNG"
    calls = fake.calls
    for _ in range(3):
        attn.probe_xformers(torch.device("cpu"), torch.float32)
    assert fake.calls == calls and len(imports) == 1
    attn.probe_xformers("cpu", torch.float64)  # another dtype probes again
    assert len(imports) == 2


@pytest.mark.parametrize(
    "importer",
    [
        pytest.param(lambda: (_ for _ in ()).throw(ImportError("No module named 'xformers'")), id="import"),
        pytest.param(
            lambda: (_ for _ in ()).throw(OSError("undefined symbol: _ZN3c10 (built for torch 2.10)")),
            id="abi",
        ),
        pytest.param(lambda: FakeXformersOps(fail=RuntimeError("no kernel image for device")), id="kernel"),
        pytest.param(lambda: FakeXformersOps(fail=NotImplementedError("No operator found")), id="no-op"),
        pytest.param(lambda: FakeXformersOps(wrong=True), id="wrong-result"),
    ],
)
def test_fallback_when_xformers_unusable(fresh, seed, importer, caplog):
    fresh.setattr(attn, "_import_xformers_ops", importer)
    q, k, v, valid = make_inputs("BMHK")
    with caplog.at_level(logging.INFO, logger="mvlift.models.attention"):
        out = attn.attention(q, k, v, key_padding_mask=valid)
    assert attn.last_backend() == "sdpa"
    torch.testing.assert_close(out.double(), reference(q, k, v, valid), rtol=1e-4, atol=1e-5)
    usable, reason = attn.probe_xformers("cpu", torch.float32)
    assert not usable and reason
    assert attn.available_backends("cpu", torch.float32) == ("sdpa",)
    assert any("xformers unusable" in r.getMessage() for r in caplog.records)
    assert any("attention backend sdpa" in r.getMessage() for r in caplog.records)
    with pytest.raises(RuntimeError, match="xformers"):
        attn.attention(q, k, v, backend="xformers")


def test_backend_logged_once(fresh, caplog):
    use_fake_xformers(fresh, FakeXformersOps(fail=ImportError("missing")))
    q, k, v, _ = make_inputs("BMHK")
    with caplog.at_level(logging.INFO, logger="mvlift.models.attention"):
        for _ in range(3):
            attn.attention(q, k, v)
    assert sum("attention backend sdpa" in r.getMessage() for r in caplog.records) == 1


def test_shape_without_xformers_kernel_falls_back(fresh, seed):
    fake = FakeXformersOps()
    use_fake_xformers(fresh, fake)
    assert attn.probe_xformers("cpu", torch.float32)[0]
    fake.fail = NotImplementedError("No operator found for this head size")
    q, k, v, valid = make_inputs("BMHK")
    out = attn.attention(q, k, v, key_padding_mask=valid)
    assert attn.last_backend() == "sdpa"
    torch.testing.assert_close(out.double(), reference(q, k, v, valid), rtol=1e-4, atol=1e-5)
    with pytest.raises(NotImplementedError):
        attn.attention(q, k, v, backend="xformers")


def test_cross_view_attention_cpu_uses_sdpa_and_matches(monkeypatch, seed):
    calls = []

    def spy(q, k, v):
        calls.append(1)
        return q

    monkeypatch.setattr(attn, "_cross_view_op", lambda: (spy, 16, 128))
    q, k, v = (torch.randn(13, 4, 3, 8) for _ in range(3))
    out = attn.cross_view_attention(q, k, v)
    assert not calls, "CPU tensors must not go to the CUDA kernel path"
    assert attn.last_backend() == "sdpa"
    torch.testing.assert_close(out.double(), reference(q, k, v), rtol=1e-4, atol=1e-5)
    forced = attn.cross_view_attention(q, k, v, backend="kernel")
    assert calls and forced is q and attn.last_backend() == "kernel"


def test_cross_view_kernel_matches_when_available(seed):
    if attn._cross_view_op() is None:
        pytest.skip("mvlift.ops.cross_view_attention is not available")
    q, k, v = (torch.randn(5, 4, 2, 8, dtype=torch.float64) for _ in range(3))
    out = attn.cross_view_attention(q, k, v, backend="kernel")
    torch.testing.assert_close(out, reference(q, k, v))


def test_cross_view_kernel_missing_raises(monkeypatch, seed):
    monkeypatch.setattr(attn, "_cross_view_op", lambda: None)
    q = torch.randn(2, 4, 1, 8)
    with pytest.raises(RuntimeError, match="mvlift.ops.cross_view_attention"):
        attn.cross_view_attention(q, q, q, backend="kernel")
    out = attn.cross_view_attention(q, q, q)
    torch.testing.assert_close(out.double(), reference(q, q, q), rtol=1e-4, atol=1e-5)


def test_bad_inputs_raise():
    q, k, v, valid = make_inputs("BMHK")
    with pytest.raises(ValueError, match="layout"):
        attn.attention(q, k, v, layout="BTHD")
    with pytest.raises(ValueError, match="backend"):
        attn.attention(q, k, v, backend="flash")
    with pytest.raises(ValueError, match="4-D"):
        attn.attention(q[0], k, v)
    with pytest.raises(ValueError, match="v "):
        attn.attention(q, k, v[:, :-1])
    with pytest.raises(ValueError, match="disagree"):
        attn.attention(q[..., :-1], k, v)
    with pytest.raises(TypeError, match="dtype"):
        attn.attention(q, k.double(), v)
    with pytest.raises(TypeError, match="bool"):
        attn.attention(q, k, v, key_padding_mask=valid.float())
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        attn.attention(q, k, v, key_padding_mask=valid[:, :-1])
    with pytest.raises(ValueError, match="dropout_p"):
        attn.attention(q, k, v, dropout_p=1.0)
    with pytest.raises(ValueError, match=r"\(N, K, H, D\)"):
        attn.cross_view_attention(q, k, v)
    with pytest.raises(ValueError, match="backend"):
        attn.cross_view_attention(q, q, q, backend="flash")
