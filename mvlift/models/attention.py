"""Multi-head attention behind one function, with pluggable backends.

Backends:

- ``"xformers"``: ``xformers.ops.memory_efficient_attention`` (layout [B, M, H, K]; padding masks become an
  additive float ``attn_bias`` of shape [B, H, M, N], allocated with its last dimension padded to a multiple
  of 8 as its kernels require). Used only where its kernels really work for the device and dtype: the first
  use on a (device type, dtype) runs a tiny probe call (import + kernel + comparison against a plain
  softmax); the answer is cached for the process. A broken install (e.g. xformers built for another torch)
  therefore costs one probe and then falls back.
- ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention`` (layout [B, H, M, K]; padding masks become
  a boolean ``attn_mask`` broadcast as [B, 1, 1, N], True = attend). Always available.

``backend="auto"`` picks xformers where the probe passed, else SDPA; which backend ran first on each
(device type, dtype) is logged once (logger ``mvlift.models.attention``), and :func:`last_backend` reports the
backend of the latest call.

Layouts: ``"BMHK"`` means q (B, M, H, D), k/v (B, N, H, D) -> out (B, M, H, Dv) (xformers' layout);
``"BHMK"`` means q (B, H, M, D), k/v (B, H, N, D) -> out (B, H, M, Dv) (SDPA's layout). B batch, M queries,
N keys, H heads, D head width.

:func:`cross_view_attention` is the few-token (K views per frame, no mask) attention of the multi-view model:
it uses :func:`mvlift.ops.cross_view_attention` (a Triton kernel) on CUDA when that op exists, else
:func:`attention`.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Callable
from types import ModuleType

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

BACKENDS = ("xformers", "sdpa")
LAYOUTS = ("BMHK", "BHMK")
CROSS_VIEW_BACKENDS = ("auto", "kernel", "xformers", "sdpa")
_CROSS_VIEW_KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# Probe tolerances: the probe's result must match a float32 softmax reference this closely.
_PROBE_TOL = {torch.float16: 2e-2, torch.bfloat16: 5e-2, torch.float32: 1e-4, torch.float64: 1e-8}

_probe_cache: dict[tuple[str, torch.dtype], tuple[bool, str]] = {}
_logged: set[tuple[str, str, torch.dtype]] = set()
_last_backend: str | None = None


def _import_xformers_ops() -> ModuleType:
    """Import ``xformers.ops`` (a separate function so tests can simulate a failing install)."""
    import xformers.ops

    return xformers.ops


def probe_xformers(device: torch.device | str, dtype: torch.dtype) -> tuple[bool, str]:
    """Whether xformers' memory-efficient attention works on ``device``'s type and ``dtype``, and why not.

    Runs once per (device type, dtype): imports ``xformers.ops``, calls ``memory_efficient_attention`` on a
    tiny masked problem and compares it with a plain softmax. Every exception counts as "unusable". The
    probe uses its own random generator, so it does not disturb the global RNG stream.

    Returns:
        ``(usable, reason)``; ``reason`` is ``"ok"`` or the failure in words.
    """
    device = torch.device(device)
    key = (device.type, dtype)
    if key in _probe_cache:
        return _probe_cache[key]
    try:
        xops = _import_xformers_ops()
        gen = torch.Generator(device="cpu").manual_seed(0)
        q, k, v = (torch.randn(2, 5, 2, 8, generator=gen).to(device=device, dtype=dtype) for _ in range(3))
        valid = torch.tensor([[True] * 5, [True, True, True, False, False]], device=device)
        out = xops.memory_efficient_attention(q, k, v, attn_bias=_xformers_bias(valid, q, 5))
        ref = _softmax_reference(q.float(), k.float(), v.float(), valid)
        if out.shape != ref.shape:
            raise RuntimeError(f"probe output has shape {tuple(out.shape)}, expected {tuple(ref.shape)}")
        err = (out.float() - ref).abs().max().item()
        if not math.isfinite(err) or err > _PROBE_TOL.get(dtype, 5e-2):
            raise RuntimeError(f"probe output differs from a softmax reference by {err:.3g}")
        answer = (True, "ok")
    except Exception as exc:  # any failure (import, missing kernel, ABI mismatch, wrong result) -> unusable
        answer = (False, f"{type(exc).__name__}: {exc}".strip())
    _probe_cache[key] = answer
    if not answer[0]:
        logger.info("xformers unusable on %s/%s: %s", device.type, dtype, answer[1])
    return answer


def available_backends(
    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[str, ...]:
    """The backends :func:`attention` can run on ``device``'s type and ``dtype``, best first."""
    usable, _ = probe_xformers(device, dtype)
    return ("xformers", "sdpa") if usable else ("sdpa",)


def last_backend() -> str | None:
    """The backend of the most recent :func:`attention` / :func:`cross_view_attention` call (None before any):
    ``"xformers"``, ``"sdpa"`` or ``"kernel"`` (:func:`mvlift.ops.cross_view_attention`)."""
    return _last_backend


def _xformers_usable(device: torch.device, dtype: torch.dtype) -> bool:
    """The cached probe answer; while ``torch.compile`` traces, an unprobed pair counts as unusable (the probe
    is not traceable: run one eager call first to let compiled code use xformers)."""
    cached = _probe_cache.get((device.type, dtype))
    if cached is not None:
        return cached[0]
    if torch.compiler.is_compiling():
        return False
    return probe_xformers(device, dtype)[0]


def _record(backend: str, t: torch.Tensor) -> None:
    global _last_backend
    if torch.compiler.is_compiling():
        return
    _last_backend = backend
    key = (backend, t.device.type, t.dtype)
    if key not in _logged:
        _logged.add(key)
        logger.info("attention backend %s on %s/%s", backend, t.device.type, t.dtype)


def _softmax_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor | None
) -> torch.Tensor:
    """Plain softmax attention in layout BMHK (used by the probe)."""
    scores = torch.einsum("bmhd,bnhd->bhmn", q, k) / math.sqrt(q.shape[-1])
    if valid is not None:
        scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
    return torch.einsum("bhmn,bnhd->bmhd", scores.softmax(dim=-1), v)


def _xformers_bias(valid: torch.Tensor, q_bmhk: torch.Tensor, num_keys: int) -> torch.Tensor:
    """Additive bias (B, H, M, N) in q's dtype: 0 where the key is valid, -inf where it is padding.

    Allocated with the last dimension rounded up to a multiple of 8 and sliced back, because xformers'
    kernels require an aligned row stride.
    """
    b, m, h, _ = q_bmhk.shape
    padded = (num_keys + 7) // 8 * 8
    bias = torch.zeros(b, h, m, padded, device=q_bmhk.device, dtype=q_bmhk.dtype)
    bias[..., :num_keys].masked_fill_(~valid[:, None, None, :], float("-inf"))
    return bias[..., :num_keys]


def _check_qkv(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: str, key_padding_mask: torch.Tensor | None
) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"attention: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"attention: {name} must be 4-D in layout {layout}, got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"attention: {name} must be floating point, got {t.dtype}")
        if t.dtype != q.dtype or t.device != q.device:
            raise TypeError(
                f"attention: {name} must match q's dtype/device ({q.dtype}, {q.device}), "
                f"got ({t.dtype}, {t.device})"
            )
    # canonical axes: batch, sequence, heads, width
    seq_axis, head_axis = (1, 2) if layout == "BMHK" else (2, 1)
    b, n, h = k.shape[0], k.shape[seq_axis], k.shape[head_axis]
    if q.shape[0] != b or q.shape[head_axis] != h or q.shape[3] != k.shape[3]:
        raise ValueError(
            f"attention: q {tuple(q.shape)} and k {tuple(k.shape)} disagree on batch, heads or width "
            f"(layout {layout})"
        )
    if v.shape[0] != b or v.shape[seq_axis] != n or v.shape[head_axis] != h:
        raise ValueError(
            f"attention: v {tuple(v.shape)} must match k {tuple(k.shape)} in batch, keys and heads "
            f"(layout {layout})"
        )
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.dtype != torch.bool:
            raise TypeError("attention: key_padding_mask must be a bool tensor (True = valid key)")
        if tuple(key_padding_mask.shape) != (b, n):
            raise ValueError(
                f"attention: key_padding_mask must have shape (B, N) = ({b}, {n}), "
                f"got {tuple(key_padding_mask.shape)}"
            )
        if key_padding_mask.device != q.device:
            raise ValueError(
                f"attention: key_padding_mask is on {key_padding_mask.device}, the inputs on {q.device}"
            )


def _run_xformers(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None,
    dropout_p: float,
    layout: str,
    scale: float | None,
) -> torch.Tensor:
    xops = _import_xformers_ops()
    if layout == "BHMK":
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    bias = None if key_padding_mask is None else _xformers_bias(key_padding_mask, q, k.shape[1])
    out = xops.memory_efficient_attention(q, k, v, attn_bias=bias, p=dropout_p, scale=scale)
    return out.transpose(1, 2) if layout == "BHMK" else out


def _run_sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None,
    dropout_p: float,
    layout: str,
    scale: float | None,
) -> torch.Tensor:
    if layout == "BMHK":
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    mask = None if key_padding_mask is None else key_padding_mask[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    return out.transpose(1, 2) if layout == "BMHK" else out


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    key_padding_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    layout: str = "BMHK",
    backend: str = "auto",
    scale: float | None = None,
) -> torch.Tensor:
    """Scaled dot-product multi-head attention ``softmax(q k^T * scale + mask) v``.

    Args:
        q: queries, (B, M, H, D) for layout ``"BMHK"`` or (B, H, M, D) for ``"BHMK"``.
        k: keys, (B, N, H, D) or (B, H, N, D); same dtype and device as q.
        v: values, (B, N, H, Dv) or (B, H, N, Dv).
        key_padding_mask: optional (B, N) bool, True = valid key; invalid keys get zero weight. Every query
            needs at least one valid key (a fully masked row gives NaN).
        dropout_p: dropout on the attention weights (pass 0 in eval mode).
        layout: ``"BMHK"`` or ``"BHMK"``; the output uses the same layout.
        backend: ``"auto"``, ``"xformers"`` or ``"sdpa"`` (see the module docstring). Forcing ``"xformers"``
            where it is unusable raises RuntimeError with the probe's reason.
        scale: logit scale; default ``1 / sqrt(D)``.

    Returns:
        (B, M, H, Dv) or (B, H, M, Dv), q's dtype.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"attention: layout must be one of {LAYOUTS}, got {layout!r}")
    if backend not in ("auto", *BACKENDS):
        raise ValueError(f"attention: backend must be 'auto' or one of {BACKENDS}, got {backend!r}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"attention: dropout_p must be in [0, 1), got {dropout_p}")
    _check_qkv(q, k, v, layout, key_padding_mask)

    use_xformers = False
    if backend == "xformers":
        if not _xformers_usable(q.device, q.dtype):
            _, reason = _probe_cache.get((q.device.type, q.dtype), (False, "not probed while compiling"))
            raise RuntimeError(
                f"attention: backend='xformers' is unusable on {q.device.type}/{q.dtype} ({reason}); "
                "install a build of xformers matching this torch (pip install 'mvlift[xformers]') or use "
                "backend='sdpa'"
            )
        use_xformers = True
    elif backend == "auto":
        use_xformers = _xformers_usable(q.device, q.dtype)

    if use_xformers:
        try:
            out = _run_xformers(q, k, v, key_padding_mask, dropout_p, layout, scale)
        except NotImplementedError as exc:  # xformers found no kernel for this particular shape
            if backend == "xformers":
                raise
            key = ("xformers-shape", q.device.type, q.dtype)
            if key not in _logged and not torch.compiler.is_compiling():
                _logged.add(key)
                logger.warning("xformers has no kernel for q %s (%s); using SDPA", tuple(q.shape), exc)
        else:
            _record("xformers", q)
            return out
    out = _run_sdpa(q, k, v, key_padding_mask, dropout_p, layout, scale)
    _record("sdpa", q)
    return out


_UNRESOLVED = object()
_cross_view_op_cache: object = _UNRESOLVED


def _cross_view_op() -> tuple[Callable[..., torch.Tensor], int, int] | None:
    """``(mvlift.ops.cross_view_attention, max tokens, max head dim)`` when the op exists, else None.

    Imported lazily, once. While ``torch.compile`` traces, an unresolved op counts as missing (importing is
    not traceable); the models resolve it eagerly when they are built.
    """
    global _cross_view_op_cache
    if _cross_view_op_cache is _UNRESOLVED:
        if torch.compiler.is_compiling():
            return None
        try:
            module = importlib.import_module("mvlift.ops.cross_view_attention")
            op = module.cross_view_attention
            limits = int(getattr(module, "MAX_TOKENS", 16)), int(getattr(module, "MAX_HEAD_DIM", 128))
            _cross_view_op_cache = (op, *limits)
        except Exception:  # the op is optional: a missing or broken module means "use SDPA"
            _cross_view_op_cache = None
    return _cross_view_op_cache  # type: ignore[return-value]


def cross_view_kernel_available() -> bool:
    """Whether :func:`mvlift.ops.cross_view_attention` exists here (resolves the lazy import, once)."""
    return _cross_view_op() is not None


def _kernel_suits(q: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether the cross-view kernel serves these inputs (CUDA, its dtypes, K and D within its limits)."""
    if not (q.is_cuda and q.dtype in _CROSS_VIEW_KERNEL_DTYPES and v.shape == q.shape):
        return False
    found = _cross_view_op()
    return found is not None and q.shape[1] <= found[1] and q.shape[3] <= found[2]


def cross_view_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, backend: str = "auto"
) -> torch.Tensor:
    """Attention across the K views of each frame: q, k, v (N, K, H, D) -> (N, K, H, D), no mask, no dropout.

    N = B·T frames; each frame's K view tokens attend to each other. Backends: ``"auto"`` uses
    :func:`mvlift.ops.cross_view_attention` for CUDA tensors (fp16/bf16/fp32, K and D within the op's limits,
    16 and 128) when that op exists, else :func:`attention` with ``backend="auto"``; ``"kernel"`` forces
    the op (RuntimeError when missing); ``"xformers"`` / ``"sdpa"`` go to :func:`attention` with that
    backend.
    """
    if backend not in CROSS_VIEW_BACKENDS:
        raise ValueError(
            f"cross_view_attention: backend must be one of {CROSS_VIEW_BACKENDS}, got {backend!r}"
        )
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"cross_view_attention: {name} must be a 4-D tensor (N, K, H, D), got {got}")
    if k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"cross_view_attention: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} must agree "
            "as (N, K, H, D)"
        )
    if backend == "kernel" or (backend == "auto" and _kernel_suits(q, v)):
        found = _cross_view_op()
        if found is None:
            raise RuntimeError("cross_view_attention: backend='kernel' needs mvlift.ops.cross_view_attention")
        out = found[0](q, k, v)
        _record("kernel", q)
        return out
    return attention(q, k, v, layout="BMHK", backend="auto" if backend == "auto" else backend)
