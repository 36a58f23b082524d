"""Which compiled backends are usable here: the Triton kernels and the native extension ``mvlift._C``.

Dispatch rule used by every op in :mod:`mvlift.ops`:

- CUDA tensors -> compiled Triton kernels (Triton ops) or the CUDA path of ``mvlift._C`` (native ops).
- CPU tensors  -> the C++ CPU path of ``mvlift._C`` (native ops); for Triton ops the plain-PyTorch
  reference in :mod:`mvlift.reference`, unless ``TRITON_INTERPRET=1`` was set before mvlift was imported,
  in which case the Triton kernels run in Triton's CPU interpreter (that is how CI tests them).

The answers are computed once and cached. A CUDA tensor that cannot get its compiled kernel (no triton, a
native extension built without CUDA, or a CUDA runtime that does not start, e.g. a driver older than the
build's CUDA) takes the reference path with a :class:`SlowFallbackWarning`, once per op and reason.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import warnings
from types import ModuleType

import torch

# Read once at import (plain module constants, so torch.compile traces the checks below without caches).
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
_TRITON = importlib.util.find_spec("triton") is not None


def triton_interpret() -> bool:
    """True when ``TRITON_INTERPRET=1`` was set before mvlift was imported: Triton kernels then run on CPU
    tensors in the interpreter."""
    return _INTERPRET


def triton_available() -> bool:
    """True when the ``triton`` package is installed."""
    return _TRITON


class SlowFallbackWarning(RuntimeWarning):
    """An op runs its plain-PyTorch reference on a CUDA tensor (or without the native extension on the CPU)
    because its compiled kernel is unavailable here; the message says why and how to fix it."""


_WARNED: set[tuple[str, str]] = set()


def warn_fallback(op: str, fallback: str, reason: str) -> None:
    """Warn (once per op and reason, a :class:`SlowFallbackWarning`) that ``op`` runs ``fallback``."""
    if (op, reason) in _WARNED:
        return
    _WARNED.add((op, reason))
    warnings.warn(f"{op}: running {fallback} because {reason}", SlowFallbackWarning, stacklevel=3)


def use_triton_on(device: torch.device) -> bool:
    """Whether a Triton op should run its kernel for tensors on ``device`` (else: the PyTorch reference).

    A CUDA device without the triton package warns (:func:`warn_fallback`) and returns False.
    """
    if device.type == "cuda":
        if triton_available():
            return True
        if not torch.compiler.is_compiling():
            warn_fallback(
                "mvlift.ops (losses, cross-view attention)",
                "the eager PyTorch reference on CUDA tensors",
                "the triton package is not installed (pip install 'mvlift[triton]')",
            )
        return False
    return device.type == "cpu" and triton_interpret() and triton_available()


def use_triton(t: torch.Tensor) -> bool:
    """Whether a Triton op should run its kernel on tensor ``t`` (else: the PyTorch reference)."""
    return use_triton_on(t.device)


@functools.cache
def native() -> ModuleType | None:
    """The native extension ``mvlift._C``, or None when it was not built (then ops fall back to torch)."""
    try:
        from mvlift import _C
    except ImportError:  # pragma: no cover - depends on the install
        return None
    return _C


def native_cuda() -> bool:
    """True when the native extension was compiled with its CUDA kernels."""
    mod = native()
    return bool(mod is not None and mod.with_cuda)


@functools.cache
def native_cuda_error() -> str:
    """``""`` when the CUDA kernels of ``mvlift._C`` can run here, else why not (asked once per process).

    Besides a missing extension or a build without nvcc, the extension's static CUDA runtime may fail to
    start although torch's works: a CUDA 13 build needs an NVIDIA driver r580 or newer.
    """
    mod = native()
    if mod is None:
        return "the native extension mvlift._C is not built (it needs a C++ compiler at install time)"
    if not mod.with_cuda:
        return (
            "mvlift._C was built without CUDA (no nvcc at build time; reinstall with nvcc on PATH, "
            "or MVLIFT_CUDA=ON to make that an error)"
        )
    err = mod.cuda_runtime_error()
    return f"mvlift._C's CUDA runtime does not start: {err}" if err else ""


def native_for(device: torch.device, op: str, fallback: str) -> ModuleType | None:
    """The native extension when it has ``op``'s kernel for ``device``, else None: the caller then runs
    its reference, ``fallback`` (a description for the warning). A CUDA device without usable CUDA kernels,
    and a CPU without the extension, warn (:func:`warn_fallback`); other devices return None silently."""
    mod = native()
    if device.type == "cpu":
        if mod is None:
            reason = "the native extension mvlift._C is not built (it needs a C++ compiler at install time)"
            warn_fallback(op, fallback, reason)
        return mod
    if device.type == "cuda":
        err = native_cuda_error()
        if not err:
            return mod
        warn_fallback(op, f"{fallback} on CUDA tensors", err)
    return None


def cuda_stream(t: torch.Tensor) -> int:
    """The raw handle of torch's current CUDA stream on ``t``'s device (kernels launch on it)."""
    return torch.cuda.current_stream(t.device).cuda_stream


def device_guard(t: torch.Tensor) -> contextlib.AbstractContextManager:
    """``torch.cuda.device(t.device)`` for a CUDA tensor, else a no-op context.

    Triton launches on the current CUDA device (and its current stream): without this guard a tensor on
    another GPU than the current one would be handed to a kernel loaded on the wrong device.
    """
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()
