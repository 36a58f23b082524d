"""mvlift.ops.line_matching_loss and mvlift.ops.stage1_loss: the Triton kernels (interpreter on CPU) against
the float64 references, the CPU reference path, torch.library checks, edge cases, input checks and line
conditions of real CMU motion."""

from __future__ import annotations

import importlib

import pytest
import torch

from mvlift.ops import _backend, line_matching_loss, stage1_loss
from mvlift.reference import losses as ref

line_mod = importlib.import_module("mvlift.ops.line_loss")

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
kernel_only = pytest.mark.skipif(
    not _backend.use_triton(torch.empty(0, device=DEVICE)),
    reason="Triton kernels not runnable here (no CUDA and TRITON_INTERPRET unset)",
)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|, in float64."""
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).abs().max() / b.abs().max()).item()


def make_inputs(B, T, J, *, mask=False, dtype=torch.float32, device=DEVICE):
    """x0_pred, x0 in [-1, 1]^2, lines with a random (not normalized) scale, a mask with a valid frame."""
    xp = (2 * torch.rand(B, T, J, 2, dtype=torch.float64) - 1).to(device, dtype)
    x0 = (2 * torch.rand(B, T, J, 2, dtype=torch.float64) - 1).to(device, dtype)
    lines = torch.randn(B, T, J, 3, dtype=torch.float64).to(device, dtype)
    m = None
    if mask:
        m = torch.rand(B, T) < 0.7
        m[:, -1] = True
        m = m.to(device)
    return xp, x0, lines, m


def leaves64(*ts):
    return [t.detach().double().requires_grad_() for t in ts]


# (B, T, J, mask, reduction): T * J never a multiple of the tile.
LINE_CASES = [
    (1, 7, 13, False, "mean"),
    (3, 11, 18, True, "mean"),
    (2, 5, 31, True, "sum"),
    (4, 3, 24, True, "per_sequence"),
    (2, 9, 7, False, "none"),
]


@kernel_only
@pytest.mark.parametrize("case", LINE_CASES, ids=[f"B{c[0]}-{c[4]}-mask{int(c[3])}" for c in LINE_CASES])
def test_line_loss_fp32_matches_reference(seed, case):
    B, T, J, has_m, reduction = case
    x, _, lines, m = make_inputs(B, T, J, mask=has_m)
    x.requires_grad_(), lines.requires_grad_()
    out = line_matching_loss(x, lines, mask=m, reduction=reduction)
    assert out.dtype == torch.float32 and out.shape == ((B,) if reduction in ("per_sequence", "none") else ())
    g = torch.rand_like(out) + 0.5
    grads = torch.autograd.grad(out, (x, lines), g)
    x64, l64 = leaves64(x, lines)
    want = ref.line_matching_loss(x64, l64, mask=m, reduction=reduction)
    want_grads = torch.autograd.grad(want, (x64, l64), g.double())
    assert rel_err(out, want) < 1e-4
    for got, exp in zip(grads, want_grads, strict=True):
        assert rel_err(got, exp) < 1e-4


@kernel_only
@pytest.mark.parametrize(
    "B, T, J, has_m, line_weight", [(1, 7, 13, False, 1.0), (3, 11, 18, True, 0.37), (2, 5, 31, True, 4.0)]
)
def test_stage1_fp32_matches_reference(seed, B, T, J, has_m, line_weight):
    xp, x0, lines, m = make_inputs(B, T, J, mask=has_m)
    leaves = [t.requires_grad_() for t in (xp, x0, lines)]
    out = stage1_loss(xp, x0, lines, mask=m, line_weight=line_weight)
    assert len(out) == 3 and all(o.shape == () and o.dtype == torch.float32 for o in out)
    gs = torch.rand(3) + 0.5  # upstream gradients of total, l1 and line
    grads = torch.autograd.grad(sum(g * o for g, o in zip(gs, out, strict=True)), leaves)
    l64 = leaves64(xp, x0, lines)
    want = ref.stage1_loss(*l64, mask=m, line_weight=line_weight)
    want_grads = torch.autograd.grad(sum(g * o for g, o in zip(gs.double(), want, strict=True)), l64)
    for got, exp in zip(out, want, strict=True):
        assert rel_err(got, exp) < 1e-4
    for got, exp in zip(grads, want_grads, strict=True):
        assert rel_err(got, exp) < 1e-4


@kernel_only
def test_fp64_kernels_match_reference(seed):
    xp, x0, lines, m = make_inputs(2, 5, 11, mask=True, dtype=torch.float64)
    leaves = [t.requires_grad_() for t in (xp, x0, lines)]
    out = line_matching_loss(xp, lines, mask=m)
    assert out.dtype == torch.float64
    assert rel_err(out, ref.line_matching_loss(xp, lines, mask=m)) < 1e-12
    total, l1, line = stage1_loss(xp, x0, lines, mask=m, line_weight=1.0)
    want = ref.stage1_loss(xp, x0, lines, mask=m, line_weight=1.0)
    for got, exp in zip((total, l1, line), want, strict=True):
        assert rel_err(got, exp) < 1e-12
    for got, exp in zip(
        torch.autograd.grad(total, leaves), torch.autograd.grad(want[0], leaves), strict=True
    ):
        assert rel_err(got, exp) < 1e-12


@kernel_only
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_accumulate_in_fp32(seed, dtype):
    xp, x0, lines, m = make_inputs(2, 7, 9, mask=True, dtype=dtype)
    xp.requires_grad_()
    out = line_matching_loss(xp, lines, mask=m)
    total, _, _ = stage1_loss(xp, x0, lines, mask=m)
    assert out.dtype == total.dtype == torch.float32
    (dx,) = torch.autograd.grad(total, xp)
    assert dx.dtype == dtype
    xp64, x064, l64 = leaves64(xp, x0, lines)  # the same rounded inputs
    assert rel_err(out, ref.line_matching_loss(xp64, l64, mask=m)) < 1e-5
    want = ref.stage1_loss(xp64, x064, l64, mask=m)[0]
    assert rel_err(total, want) < 1e-5
    assert rel_err(dx, torch.autograd.grad(want, xp64)[0]) < 1e-2  # dx is rounded to the half dtype


# --- the references ---------------------------------------------------------------------------------------


def test_reference_gradcheck(seed):
    xp, x0, lines, m = make_inputs(2, 3, 4, mask=True, dtype=torch.float64, device="cpu")
    leaves = [t.requires_grad_() for t in (xp, x0, lines)]
    for reduction in ("mean", "per_sequence"):
        assert torch.autograd.gradcheck(
            lambda a, c, r=reduction: ref.line_matching_loss(a, c, mask=m, reduction=r),
            (leaves[0], leaves[2]),
        )
    assert torch.autograd.gradcheck(
        lambda a, b, c: torch.stack(ref.stage1_loss(a, b, c, mask=m, line_weight=0.5)), leaves
    )


def test_reference_stage1_is_l1_plus_weighted_line(seed):
    xp, x0, lines, m = make_inputs(3, 4, 5, mask=True, dtype=torch.float64, device="cpu")
    total, l1, line = ref.stage1_loss(xp, x0, lines, mask=m, line_weight=2.5)
    valid = m[:, :, None, None].expand_as(xp)
    torch.testing.assert_close(l1, (xp - x0).abs()[valid].mean())
    torch.testing.assert_close(line, ref.line_matching_loss(xp, lines, mask=m))
    torch.testing.assert_close(total, l1 + 2.5 * line)


# --- dispatch, torch.library --------------------------------------------------------------------------------


def test_reference_path_when_kernels_are_off(seed, monkeypatch):
    monkeypatch.setattr(_backend, "use_triton", lambda t: False)
    xp, x0, lines, m = make_inputs(2, 5, 7, mask=True, device="cpu")
    leaves = [t.requires_grad_() for t in (xp, x0, lines)]
    l64 = leaves64(xp, x0, lines)
    out = line_matching_loss(xp, lines, mask=m, reduction="per_sequence")
    want = ref.line_matching_loss(l64[0], l64[2], mask=m, reduction="per_sequence")
    assert rel_err(out, want) < 1e-5
    for got, exp in zip(
        torch.autograd.grad(out.sum(), (xp, lines)),
        torch.autograd.grad(want.sum(), (l64[0], l64[2])),
        strict=True,
    ):
        assert rel_err(got, exp) < 1e-5
    total, _, line = stage1_loss(xp, x0, lines, mask=m, line_weight=0.3)
    w_total, _, w_line = ref.stage1_loss(*l64, mask=m, line_weight=0.3)
    assert rel_err(total, w_total) < 1e-5
    grads = torch.autograd.grad(total + line, leaves)
    for got, exp in zip(grads, torch.autograd.grad(w_total + w_line, l64), strict=True):
        assert rel_err(got, exp) < 1e-5
    # only x0_pred differentiated: the unused gradients are distinct empty outputs (custom ops may not alias)
    total = stage1_loss(xp, x0.detach(), lines.detach(), mask=m)[0]
    want = ref.stage1_loss(l64[0], l64[1].detach(), l64[2].detach(), mask=m)[0]
    assert rel_err(torch.autograd.grad(total, xp)[0], torch.autograd.grad(want, l64[0])[0]) < 1e-5


@pytest.mark.parametrize("kernels", [True, False])
def test_opcheck(seed, monkeypatch, kernels):
    if kernels and not _backend.use_triton(torch.empty(0, device=DEVICE)):
        pytest.skip("Triton kernels not runnable here")
    if not kernels:
        monkeypatch.setattr(_backend, "use_triton", lambda t: False)
    xp, x0, lines, m = make_inputs(2, 3, 5, mask=True)
    xp.requires_grad_(), x0.requires_grad_(), lines.requires_grad_()
    torch.library.opcheck(line_mod._line_matching_loss, (xp, lines, m, "mean"))
    torch.library.opcheck(line_mod._line_matching_loss, (xp, lines, None, "per_sequence"))
    torch.library.opcheck(line_mod._stage1_loss, (xp, x0, lines, m, 0.5))


# --- edge cases -------------------------------------------------------------------------------------------


@kernel_only
def test_points_on_their_lines_and_masked_frames(seed):
    """Zero residuals (|r| not differentiable: gradient 0, as torch.abs) and all-masked input are finite."""
    xp, x0, lines, m = make_inputs(2, 4, 6, mask=True)
    lines[..., 2] = -(lines[..., 0] * xp[..., 0] + lines[..., 1] * xp[..., 1])  # every point on its line
    x0 = xp.clone()  # and on its target
    leaves = [t.requires_grad_() for t in (xp, x0, lines)]
    total, l1, line = stage1_loss(xp, x0, lines, mask=m)
    assert l1 == 0 and line.abs() < 1e-6
    assert all(torch.isfinite(g).all() for g in torch.autograd.grad(total, leaves))
    none = torch.zeros_like(m)
    for reduction in ("mean", "sum", "per_sequence"):
        out = line_matching_loss(xp, lines, mask=none, reduction=reduction)
        grads = torch.autograd.grad(out.sum(), (xp, lines))
        assert (out == 0).all() and all((g == 0).all() for g in grads)
    outs = stage1_loss(xp, x0, lines, mask=none)
    grads = torch.autograd.grad(sum(outs), leaves)
    assert all(o == 0 for o in outs) and all((g == 0).all() for g in grads)


@kernel_only
def test_empty_sequences(seed):
    xp, x0, lines, _ = make_inputs(2, 0, 5)
    xp.requires_grad_()
    out = line_matching_loss(xp, lines, reduction="per_sequence")
    assert out.shape == (2,) and (out == 0).all()
    total, l1, line = stage1_loss(xp, x0, lines)
    assert total == l1 == line == 0
    assert torch.autograd.grad(total, xp)[0].shape == xp.shape


@kernel_only
def test_deterministic_and_fully_written(seed, monkeypatch):
    xp, x0, lines, m = make_inputs(3, 9, 17, mask=True)
    leaves = [t.requires_grad_() for t in (xp, x0, lines)]

    def run():
        a = line_matching_loss(xp, lines, mask=m, reduction="per_sequence")
        b = stage1_loss(xp, x0, lines, mask=m, line_weight=0.5)
        return (a, *b, *torch.autograd.grad(a.sum(), (xp, lines)), *torch.autograd.grad(sum(b), leaves))

    first, second = run(), run()
    empty, empty_like = torch.empty, torch.empty_like
    monkeypatch.setattr(torch, "empty", lambda *a, **k: empty(*a, **k).fill_(float("nan")))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: empty_like(*a, **k).fill_(float("nan")))
    poisoned = run()
    for a, b, c in zip(first, second, poisoned, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


@kernel_only
def test_non_contiguous_inputs(seed):
    xp, x0, lines, m = make_inputs(2, 5, 7, mask=True)
    xt = xp.transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
    lt = lines.transpose(1, 2).contiguous().transpose(1, 2)
    assert not (xt.is_contiguous() or lt.is_contiguous())
    out = line_matching_loss(xt, lt, mask=m)
    x64, l64 = leaves64(xp, lines)
    want = ref.line_matching_loss(x64, l64, mask=m)
    assert rel_err(out, want) < 1e-4
    assert rel_err(torch.autograd.grad(out, xt)[0], torch.autograd.grad(want, x64)[0]) < 1e-4


# --- input checks -----------------------------------------------------------------------------------------

# (op, overrides of the valid arguments, exception, message)
BAD = [
    ("line", lambda a: dict(x=a["x0_pred"].numpy()), TypeError, "x must be a torch.Tensor"),
    ("line", lambda a: dict(x=a["x0_pred"][..., :1]), ValueError, r"x must have shape \(B, T, J, 2\)"),
    ("line", lambda a: dict(x=a["x0_pred"].int()), TypeError, "x must be float16, bfloat16, float32"),
    ("line", lambda a: dict(lines=a["lines"][..., :2]), ValueError, r"lines must have shape \(B, T, J, 3\)"),
    ("line", lambda a: dict(lines=a["lines"].double()[:1]), ValueError, r"= \(2, 5, 7, 3\)"),
    ("line", lambda a: dict(mask=a["mask"].int()), TypeError, "mask must be a bool tensor"),
    ("line", lambda a: dict(mask=a["mask"][:, :2]), ValueError, r"mask must have shape \(B, T\)"),
    ("line", lambda a: dict(mask=[True]), TypeError, "mask must be None or a bool torch.Tensor"),
    ("line", lambda a: dict(reduction="median"), ValueError, "reduction must be one of"),
    (
        "stage1",
        lambda a: dict(x0_pred=a["x0_pred"][0]),
        ValueError,
        r"x0_pred must have shape \(B, T, J, 2\)",
    ),
    ("stage1", lambda a: dict(x0=a["x0"][:, :4]), ValueError, r"x0 must have shape \(B, T, J, 2\)"),
    ("stage1", lambda a: dict(x0=a["x0"].long()), TypeError, "x0 must be float16"),
    ("stage1", lambda a: dict(lines=None), TypeError, "lines must be a torch.Tensor"),
    ("stage1", lambda a: dict(line_weight="1"), TypeError, "line_weight must be a real number"),
    ("stage1", lambda a: dict(line_weight=float("inf")), ValueError, "line_weight must be finite"),
    ("stage1", lambda a: dict(mask=a["mask"].float()), TypeError, "stage1_loss: mask must be a bool tensor"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[3] for c in BAD])
def test_bad_inputs_raise(case):
    op, override, exc, match = case
    xp, x0, lines, m = make_inputs(2, 5, 7, mask=True, device="cpu")
    args = dict(x0_pred=xp, x0=x0, lines=lines, mask=m) | override(
        dict(x0_pred=xp, x0=x0, lines=lines, mask=m)
    )
    with pytest.raises(exc, match=match):
        if op == "line":
            x = args.pop("x", args["x0_pred"])
            line_matching_loss(
                x, args["lines"], **{k: v for k, v in args.items() if k in ("mask", "reduction")}
            )
        else:
            stage1_loss(
                args["x0_pred"], args["x0"], args["lines"],
                **{k: v for k, v in args.items() if k in ("mask", "line_weight")},
            )  # fmt: skip


@pytest.mark.cuda
def test_device_mismatch_raises():
    xp, x0, lines, m = make_inputs(2, 5, 7, mask=True, device="cpu")
    with pytest.raises(ValueError, match="lines must be on the device of the points"):
        line_matching_loss(xp, lines.cuda())
    with pytest.raises(ValueError, match="x0 must be on the device of the points"):
        stage1_loss(xp, x0.cuda(), lines)


# --- real motion ------------------------------------------------------------------------------------------


@kernel_only
def test_real_cmu_line_conditions(cmu_dir, seed):
    """Lines through the joints of a real clip (05_01, one camera of a ring, normalized frame) and a virtual
    epipole: the loss is ~0 on the joints themselves and grows like the noise added to them."""
    from mvlift.data import load_mocap
    from mvlift.geometry import line_conditions, ring_cameras

    motion = load_mocap(cmu_dir / "asfamc" / "05_01.amc", max_frames=60)
    X = torch.as_tensor(motion.positions, dtype=torch.float64)[::4]  # (15, 31, 3)
    root = X[0].mean(dim=0)
    cams = ring_cameras(6, radius=3.0, height=1.0, look_at=(float(root[0]), 1.0, float(root[2])))
    x = cams.project(X, normalized=True)[:2]  # two views as two sequences: (2, 15, 31, 2)
    lines = line_conditions(x, torch.tensor([[2.5, -1.0], [-0.4, 2.0]], dtype=torch.float64))
    x, lines = x.float().to(DEVICE), lines.float().to(DEVICE)
    assert line_matching_loss(x, lines) < 1e-6
    prev = 0.0
    for sigma in (1e-3, 1e-2, 1e-1):
        noisy = x + sigma * torch.randn_like(x)
        total, l1, line = stage1_loss(noisy, x, lines)
        assert 0.5 * sigma < l1 < 1.0 * sigma  # E|N(0, s^2)| = 0.8 s
        assert 0.5 * sigma < line < 1.0 * sigma  # normalized lines: the point-to-line distance
        assert line > 3 * prev
        prev = line
