"""Fused multi-view epipolar consistency loss (stage 2 of MVLift).

For every view pair (i, j) and every frame t and joint j', the distance between the point in view j and the
epipolar line of the matching point of view i (and vice versa), averaged with per-point confidences. Eager
PyTorch computes it through a dozen (B, P, T, J) intermediates; the Triton kernels of
:mod:`mvlift.kernels.epipolar_loss` read every point once per pass and keep all V views of a tile in
registers (one forward launch + one tiny reduction launch; one backward launch).

Dispatch (see :mod:`mvlift.ops._backend`): CUDA tensors -> the Triton kernels; CPU tensors -> the reference
:func:`mvlift.reference.losses.epipolar_loss`, or the Triton kernels in the interpreter when
``TRITON_INTERPRET=1``. Registered as ``torch.library.custom_op("mvlift::epipolar_loss")`` (with fake and
autograd implementations and a ``mvlift::epipolar_loss_backward`` op), so ``torch.compile(fullgraph=True)``
traces it without graph breaks. First-order gradients only (no double backward).
"""

from __future__ import annotations

import numbers
import weakref
from collections.abc import Sequence

import torch
from torch import Tensor

from mvlift.ops import _backend
from mvlift.reference import losses as _ref

__all__ = ["MAX_VIEWS", "epipolar_loss"]

#: Largest supported number of views: the kernels unroll all pairs of a tile in registers (V = 16 means
#: 120 pairs; its first compilation takes minutes, V <= 8 a few seconds). Register spills start at V = 15
#: (a few hundred bytes per thread at V = 16); V <= 14 compiles spill-free (benchmarks/RESULTS.md).
MAX_VIEWS = 16
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_DISTANCES = ("symmetric", "sampson")
_EMPTY = (0,)


# ----------------------------------------------------------------------------------------------- custom ops
def reference_vjp(
    fn, tensors: tuple[Tensor | None, ...], needs: tuple[bool, ...], grad: Tensor
) -> tuple[Tensor, ...]:
    """The CPU backward of the ops: gradients of the reference ``fn(*tensors)`` w.r.t. the tensors flagged
    in ``needs``, by ``torch.func.vjp`` (which works inside a custom op, where autograd is not recorded);
    an empty (0,) tensor for every other input."""
    idx = [k for k, (t, n) in enumerate(zip(tensors, needs, strict=True)) if n and t is not None]
    grads: list[Tensor | None] = [None] * len(tensors)
    if idx:

        def f(*primals: Tensor) -> Tensor:
            args = list(tensors)
            for k, p in zip(idx, primals, strict=True):
                args[k] = p
            return fn(*args)

        _, pull = torch.func.vjp(f, *(tensors[k] for k in idx))
        for k, g in zip(idx, pull(grad), strict=True):
            grads[k] = g.contiguous()
    like = next(t for t in tensors if t is not None)
    return tuple(like.new_empty(_EMPTY) if g is None else g for g in grads)  # distinct: outputs may not alias


def _pair_tuple(pairs: list[int]) -> tuple[tuple[int, int], ...]:
    return tuple((pairs[k], pairs[k + 1]) for k in range(0, len(pairs), 2))


@torch.library.custom_op("mvlift::epipolar_loss", mutates_args=())
def _epipolar_loss(
    x: Tensor,
    F: Tensor,
    weights: Tensor | None,
    mask: Tensor | None,
    pairs: list[int],
    distance: str,
    reduction: str,
) -> tuple[Tensor, Tensor]:
    """Returns ``(loss, stats)``; stats (B + 1, 2) = per-sequence (sum w d, sum w), then the totals."""
    if _backend.use_triton(x):
        from mvlift.kernels.epipolar_loss import epipolar_loss_forward

        return epipolar_loss_forward(x, F, weights, mask, _pair_tuple(pairs), distance, reduction)
    S, W = _ref.epipolar_loss_terms(
        x, F, weights=weights, mask=mask, pairs=_pair_tuple(pairs), distance=distance
    )
    stats = torch.stack([torch.cat([S, S.sum()[None]]), torch.cat([W, W.sum()[None]])], dim=-1)
    return _ref.reduce_terms(S, W, reduction), stats


@_epipolar_loss.register_fake
def _(x, F, weights, mask, pairs, distance, reduction):
    B = x.shape[0]
    loss = F.new_empty((B,) if reduction == "per_sequence" else ())
    return loss, F.new_empty((B + 1, 2))


@torch.library.custom_op("mvlift::epipolar_loss_backward", mutates_args=())
def _epipolar_loss_backward(
    grad: Tensor,
    x: Tensor,
    F: Tensor,
    weights: Tensor | None,
    mask: Tensor | None,
    loss: Tensor,
    stats: Tensor,
    pairs: list[int],
    distance: str,
    reduction: str,
    need_x: bool,
    need_F: bool,
    need_weights: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Returns ``(dx, dF, dweights)``; a gradient that is not needed is an empty (0,) tensor."""
    need_weights = need_weights and weights is not None
    if _backend.use_triton(x):
        from mvlift.kernels.epipolar_loss import epipolar_loss_backward

        grads = epipolar_loss_backward(
            grad, x, F, weights, mask, loss, stats, _pair_tuple(pairs), distance, reduction,
            need_x, need_F, need_weights,
        )  # fmt: skip
        return tuple(x.new_empty(_EMPTY) if g is None else g for g in grads)

    def fn(xr: Tensor, Fr: Tensor, wr: Tensor | None) -> Tensor:
        return _ref.epipolar_loss(
            xr, Fr, weights=wr, mask=mask, pairs=_pair_tuple(pairs), distance=distance, reduction=reduction
        )

    return reference_vjp(fn, (x, F, weights), (need_x, need_F, need_weights), grad)


@_epipolar_loss_backward.register_fake
def _(grad, x, F, weights, mask, loss, stats, pairs, distance, reduction, need_x, need_F, need_weights):
    need_weights = need_weights and weights is not None
    return (
        x.new_empty(x.shape if need_x else _EMPTY),
        F.new_empty(F.shape if need_F else _EMPTY),
        (weights if need_weights else x).new_empty(weights.shape if need_weights else _EMPTY),
    )


def _setup_context(ctx, inputs: tuple, output: tuple[Tensor, Tensor]) -> None:
    x, F, weights, mask, pairs, distance, reduction = inputs
    loss, stats = output
    ctx.save_for_backward(x, F, weights, mask, loss, stats)
    ctx.args = (pairs, distance, reduction)


def _backward(ctx, grad_loss: Tensor, grad_stats: Tensor | None) -> tuple[Tensor | None, ...]:
    x, F, weights, mask, loss, stats = ctx.saved_tensors
    need_x, need_F, need_w = ctx.needs_input_grad[:3]
    need_w = need_w and weights is not None
    if not (need_x or need_F or need_w):
        return (None,) * 7
    dx, dF, dw = _epipolar_loss_backward(
        grad_loss.contiguous(), x, F, weights, mask, loss, stats, *ctx.args, need_x, need_F, need_w
    )
    return (dx if need_x else None, dF if need_F else None, dw if need_w else None) + (None,) * 4


_epipolar_loss.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------------------------- checks
def _fail_type(name: str, expected: str, got: object) -> TypeError:
    return TypeError(f"epipolar_loss: {name} must be {expected}, got {got}")


def _check_tensor(name: str, t: object, shape: tuple[int, ...], shape_doc: str, device: torch.device) -> None:
    if not isinstance(t, Tensor):
        raise _fail_type(name, f"a torch.Tensor of shape {shape_doc}", type(t).__name__)
    if tuple(t.shape) != shape:
        raise ValueError(f"epipolar_loss: {name} must have shape {shape_doc} = {shape}, got {tuple(t.shape)}")
    if t.device != device:
        raise ValueError(f"epipolar_loss: {name} must be on x's device {device}, got {t.device}")


#: Validated pair tensors: id(tensor) -> (weak reference, version counter, V, flat pairs). Stage 2 passes
#: the same (P, 2) GPU tensor every iteration; reading it on the host each time would be a device->host sync
#: per step, so it is read once and re-read only when the tensor is modified in place (its version changes).
_PAIR_CACHE: dict[int, tuple[weakref.ref, int, int, list[int]]] = {}


def _cached_pairs(pairs: Tensor, num_views: int) -> list[int] | None:
    hit = _PAIR_CACHE.get(id(pairs))
    if hit is not None and hit[0]() is pairs and hit[1] == pairs._version and hit[2] == num_views:
        return list(hit[3])  # a copy: the cached list is never handed out
    return None


def _cache_pairs(pairs: Tensor, num_views: int, flat: list[int]) -> None:
    key = id(pairs)
    ref = weakref.ref(pairs, lambda _, k=key: _PAIR_CACHE.pop(k, None))
    _PAIR_CACHE[key] = (ref, pairs._version, num_views, flat)


def _normalize_pairs(pairs: object, num_views: int) -> list[int]:
    """Validated pairs as a flat list [i0, j0, i1, j1, ...].

    A tensor is read on the host (for a GPU tensor, one device->host sync) the first time it is seen; the
    validated result is cached for that tensor object until it is modified in place or freed, so a loop
    that passes the same tensor every step syncs once, not per step. (Not under torch.compile, where the
    tensor is traced: pass a list there.)
    """
    if pairs is None:
        return [k for p in _ref.default_pairs(num_views) for k in p]
    cache = False
    if isinstance(pairs, Tensor):
        if pairs.dtype.is_floating_point or pairs.dtype.is_complex or pairs.dtype == torch.bool:
            raise _fail_type("pairs", "an integer tensor of shape (P, 2)", f"dtype {pairs.dtype}")
        if pairs.dim() != 2 or pairs.shape[1] != 2:
            raise ValueError(f"epipolar_loss: pairs must have shape (P, 2), got {tuple(pairs.shape)}")
        cache = not torch.compiler.is_compiling()
        if cache and (flat := _cached_pairs(pairs, num_views)) is not None:
            return flat
        items = [tuple(p) for p in pairs.tolist()]
    elif isinstance(pairs, Sequence) and not isinstance(pairs, str):
        items = []
        for p in pairs:
            if (
                not isinstance(p, Sequence)
                or len(p) != 2
                or not all(isinstance(k, numbers.Integral) and not isinstance(k, bool) for k in p)
            ):
                raise _fail_type(
                    "pairs", "a sequence of (i, j) int pairs or a (P, 2) tensor", f"element {p!r}"
                )
            items.append((int(p[0]), int(p[1])))
    else:
        raise _fail_type(
            "pairs", "None, a sequence of (i, j) int pairs or a (P, 2) tensor", type(pairs).__name__
        )
    if not items:
        raise ValueError("epipolar_loss: pairs must hold at least one (i, j) pair, got none")
    seen = set()
    for i, j in items:
        if not (0 <= i < num_views and 0 <= j < num_views) or i == j:
            raise ValueError(
                f"epipolar_loss: each pair (i, j) needs 0 <= i, j < V = {num_views} and i != j, "
                f"got ({i}, {j})"
            )
        key = (min(i, j), max(i, j))
        if key in seen:
            raise ValueError(f"epipolar_loss: pairs must be distinct (unordered), got ({i}, {j}) twice")
        seen.add(key)
    flat = [k for p in items for k in p]
    if cache:
        _cache_pairs(pairs, num_views, flat)
    return flat


def _check_values(F: Tensor, weights: Tensor | None) -> None:
    """Data-dependent checks (one host sync on a GPU); skipped under torch.compile."""
    if not bool(torch.isfinite(F).all()):
        raise ValueError("epipolar_loss: F must be finite, got NaN or inf entries")
    if weights is not None and not bool(((weights >= 0) & torch.isfinite(weights)).all()):
        raise ValueError("epipolar_loss: weights must be finite and >= 0, got negative, NaN or inf entries")


# ----------------------------------------------------------------------------------------------- public op
def epipolar_loss(
    x: Tensor,
    F: Tensor,
    *,
    weights: Tensor | None = None,
    mask: Tensor | None = None,
    pairs: Sequence[Sequence[int]] | Tensor | None = None,
    distance: str = "symmetric",
    reduction: str = "mean",
    check_values: bool = True,
) -> Tensor:
    """Multi-view epipolar consistency loss of V views of B sequences.

    For each view pair p = (i, j), frame t and joint k the distance ``d`` between ``x[b, j, t, k]`` and the
    epipolar line ``F[b, i, j] @ x~[b, i, t, k]`` (and symmetrically), weighted by
    ``w = weights[b, i, t, k] * weights[b, j, t, k] * mask[b, t]``:

    - ``distance="symmetric"``: ``0.5 (d(x_j, F_ij x~_i) + d(x_i, F_ij^T x~_j))`` with
      ``d(p, l) = |a p_x + b p_y + c| / sqrt(a^2 + b^2 + 1e-12)`` (the mean point-to-epipolar-line distance,
      in the points' unit, e.g. pixels; = :func:`mvlift.geometry.symmetric_epipolar_distance`);
    - ``distance="sampson"``: ``|x~_j^T F_ij x~_i| / sqrt((F x~_i)_0^2 + (F x~_i)_1^2 + (F^T x~_j)_0^2 +
      (F^T x~_j)_1^2 + 1e-12)`` (= :func:`mvlift.geometry.sampson_distance`).

    The 1e-12 keeps points at an epipole (a zero-length line) finite, with finite gradients; the gradient
    of |r| at r = 0 is 0 (as for ``torch.abs``).

    Args:
        x: (B, V, T, J, 2) points of V views (2 <= V <= :data:`MAX_VIEWS`); view order as in F. float16,
            bfloat16, float32 or float64. Must be finite where its weight is non-zero.
        F: fundamental matrices (V, V, 3, 3) shared by the batch or (B, V, V, 3, 3) per sequence, in the
            ``docs/conventions.md`` convention (``F[..., i, j] @ x~_i`` is the epipolar line of x_i in view
            j); any float dtype; only the entries ``F[..., i, j]`` of the used pairs are read.
        weights: optional (B, V, T, J) per-point confidences >= 0 (0 = ignored); any float dtype.
        mask: optional (B, T) bool, True = valid frame.
        pairs: the view pairs (i, j), i != j, as a sequence of int pairs or an integer (P, 2) tensor;
            default all V (V - 1) / 2 pairs i < j. Pair (i, j) uses ``F[..., i, j]``; a pair may not appear
            twice (in either order). A tensor is read on the host once (a device sync for a GPU tensor)
            and its validated pairs are cached until it is modified in place, so passing the same tensor
            every step costs no further sync; pass a list under ``torch.compile``.
        distance: ``"symmetric"`` or ``"sampson"``.
        reduction: ``"mean"``: ``sum(w d) / sum(w)`` over b, pairs, t, k (the plain mean without weights
            and mask; 0, with zero gradients, when ``sum(w) == 0``); ``"sum"``: ``sum(w d)``;
            ``"per_sequence"`` (alias ``"none"``): the per-sequence weighted means, shape (B,).
        check_values: check that F is finite and the weights finite and >= 0. Costs one device->host sync
            on a GPU (pass False in hot loops); always skipped under ``torch.compile``.

    Returns:
        The loss, shape () or (B,), float64 for float64 x, else float32.

    Gradients (first order) flow to x, F and weights. Non-contiguous inputs are made contiguous (a copy);
    F is used in the loss's dtype (a cast when it differs).

    Raises:
        TypeError: a non-tensor argument or a wrong dtype. ValueError: a wrong shape, device or value.
    """
    if not isinstance(x, Tensor):
        raise _fail_type("x", "a torch.Tensor of shape (B, V, T, J, 2)", type(x).__name__)
    if x.dim() != 5 or x.shape[-1] != 2:
        raise ValueError(f"epipolar_loss: x must have shape (B, V, T, J, 2), got {tuple(x.shape)}")
    if x.dtype not in _DTYPES:
        raise _fail_type("x", "float16, bfloat16, float32 or float64", f"dtype {x.dtype}")
    B, V, T, J = x.shape[:4]
    if not 2 <= V <= MAX_VIEWS:
        raise ValueError(f"epipolar_loss: the view count V = x.shape[1] must be in [2, {MAX_VIEWS}], got {V}")
    if not isinstance(F, Tensor):
        raise _fail_type("F", "a torch.Tensor of shape (V, V, 3, 3) or (B, V, V, 3, 3)", type(F).__name__)
    if tuple(F.shape) not in ((V, V, 3, 3), (B, V, V, 3, 3)):
        raise ValueError(
            f"epipolar_loss: F must have shape (V, V, 3, 3) = {(V, V, 3, 3)} or (B, V, V, 3, 3) = "
            f"{(B, V, V, 3, 3)}, got {tuple(F.shape)}"
        )
    if F.dtype not in _DTYPES:
        raise _fail_type("F", "float16, bfloat16, float32 or float64", f"dtype {F.dtype}")
    if F.device != x.device:
        raise ValueError(f"epipolar_loss: F must be on x's device {x.device}, got {F.device}")
    if weights is not None:
        _check_tensor("weights", weights, (B, V, T, J), "(B, V, T, J)", x.device)
        if weights.dtype not in _DTYPES:
            raise _fail_type("weights", "float16, bfloat16, float32 or float64", f"dtype {weights.dtype}")
    if mask is not None:
        _check_tensor("mask", mask, (B, T), "(B, T)", x.device)
        if mask.dtype != torch.bool:
            raise _fail_type("mask", "a bool tensor", f"dtype {mask.dtype}")
    if distance not in _DISTANCES:
        raise ValueError(f"epipolar_loss: distance must be one of {_DISTANCES}, got {distance!r}")
    if reduction not in _ref.REDUCTIONS:
        raise ValueError(f"epipolar_loss: reduction must be one of {_ref.REDUCTIONS}, got {reduction!r}")
    if not isinstance(check_values, bool):
        raise _fail_type("check_values", "a bool", type(check_values).__name__)
    flat_pairs = _normalize_pairs(pairs, V)
    if check_values and not torch.compiler.is_compiling():
        _check_values(F, weights)

    cd = _ref.compute_dtype(x.dtype)
    red = "per_sequence" if reduction == "none" else reduction
    if not _backend.use_triton(x):
        # No kernel here: the reference in plain torch ops, differentiated by autograd itself (no second
        # forward pass in the backward) and traced by torch.compile like any torch code.
        pair_list = list(zip(flat_pairs[0::2], flat_pairs[1::2], strict=True))
        return _ref.epipolar_loss(
            x, F.to(cd), weights=weights, mask=mask, pairs=pair_list, distance=distance, reduction=red
        )
    loss, _ = _epipolar_loss(
        x.contiguous(),
        F.to(cd).contiguous(),
        None if weights is None else weights.contiguous(),
        None if mask is None else mask.contiguous(),
        flat_pairs,
        distance,
        red,
    )
    return loss
