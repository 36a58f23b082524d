"""Which compiled backends are usable here: the Triton kernels and the native extension ``mvlift._C``.

Dispatch rule used by every op in :mod:`mvlift.ops`:

- CUDA tensors -> compiled Triton kernels (Triton ops) or the CUDA path of ``mvlift._C`` (native ops).
- CPU tensors  -> the C++ CPU path of ``mvlift._C`` (native ops); for Triton ops the plain-PyTorch
  reference in :mod:`mvlift.reference`, unless ``TRITON_INTERPRET=1`` was set before mvlift was imported,
  in which case the Triton kernels run in Triton's CPU interpreter (that is how CI tests them).

The answers are computed once and cached.
"""

from __future__ import annotations

import functools
import importlib.util
import os
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


def use_triton(t: torch.Tensor) -> bool:
    """Whether a Triton op should run its kernel on tensor ``t`` (else: the PyTorch reference)."""
    if not triton_available():
        return False
    if t.is_cuda:
        return True
    return t.device.type == "cpu" and triton_interpret()


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


def cuda_stream(t: torch.Tensor) -> int:
    """The raw handle of torch's current CUDA stream on ``t``'s device (kernels launch on it)."""
    return torch.cuda.current_stream(t.device).cuda_stream
