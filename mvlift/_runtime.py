"""Checks of what a run needs from this machine, made before any work starts: the device and the output
folder. Both raise ``ValueError`` with a message naming the setting, what it asked for and what to do."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["check_output_dir", "resolve_device"]

_DEVICE_FORMS = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"


def resolve_device(name: Any, *, where: str = "device") -> Any:
    """The ``torch.device`` that ``name`` selects on this machine.

    Args:
        name: ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``
            or a ``torch.device``.
        where: the setting's name in the error message (``"--device"``, ``"device"``, ``"stage1.device"``).

    Raises:
        ValueError: an unknown device name, or a device this machine does not have (e.g. ``cuda`` on a
            PyTorch build without CUDA), naming ``where``.
    """
    import torch

    if isinstance(name, torch.device):
        dev = name
    elif not isinstance(name, str):
        raise ValueError(f"{where}: expected {_DEVICE_FORMS}, got {name!r}")
    elif name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(name)
        except (RuntimeError, TypeError, ValueError):
            raise ValueError(f"{where}: expected {_DEVICE_FORMS}, got {name!r}") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            reason = (
                f"this PyTorch build ({torch.__version__}) has no CUDA support"
                if torch.version.cuda is None
                else "no CUDA device is visible (driver, CUDA_VISIBLE_DEVICES)"
            )
            raise ValueError(f"{where}: {str(dev)!r} was asked for, but {reason}; use 'cpu' or 'auto'")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(
                f"{where}: {str(dev)!r} was asked for, but this machine has {count} CUDA device(s)"
            )
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(
                f"{where}: 'mps' was asked for, but MPS is not available here; use 'cpu' or 'auto'"
            )
        return dev
    raise ValueError(f"{where}: expected {_DEVICE_FORMS}, got {str(dev)!r}")


def check_output_dir(path: str | os.PathLike[str], *, where: str = "out_dir") -> Path:
    """Create the folder ``path`` (with its parents) and check that a file can be written into it.

    Returns:
        The folder as a ``Path``.

    Raises:
        ValueError: ``path`` (or a parent) is a file, or the folder cannot be created or written to, naming
            ``where`` and the path.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{where}: {p} exists and is not a folder; choose another output folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((a for a in p.parents if a.exists() and not a.is_dir()), None)
        what = f"{blocker} is a file" if blocker is not None else "a part of the path is not a folder"
        raise ValueError(f"{where}: cannot create the folder {p}: {what}") from None
    except OSError as exc:
        raise ValueError(f"{where}: cannot create the folder {p}: {exc.strerror or exc}") from None
    try:
        fd, tmp = tempfile.mkstemp(dir=p, prefix=".mvlift-write-check-")
    except OSError as exc:
        raise ValueError(f"{where}: cannot write into the folder {p}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(tmp)
    return p
