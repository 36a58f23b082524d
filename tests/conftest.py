"""Shared test setup.

TRITON_INTERPRET=1 must be set before any Triton kernel module is imported: without a GPU the kernels are
tested in Triton's CPU interpreter.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
CMU_DIR = Path(os.environ.get("MVLIFT_CMU_DIR", REPO.parent / "shared" / "data" / "cmu_mocap"))


@pytest.fixture(scope="session")
def cmu_dir() -> Path:
    """The shared CMU mocap folder. Under CI (CI=true) a missing folder fails the test instead of skipping."""
    if not CMU_DIR.is_dir():
        msg = f"CMU mocap folder not found at {CMU_DIR} (set MVLIFT_CMU_DIR)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return CMU_DIR


@pytest.fixture
def seed() -> int:
    """Fresh random inputs each run, but reproducible from the printed seed on failure."""
    s = int.from_bytes(os.urandom(4), "little")
    torch.manual_seed(s)
    print(f"seed={s}")
    return s


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def cpu_training(monkeypatch):
    """Long CPU loops (training, stage 2): the CPU path of :mod:`mvlift.ops`, one intra-op thread.

    ``tests/conftest.py`` sets ``TRITON_INTERPRET=1`` so that the Triton kernels are tested on CPU; a training
    run makes hundreds of loss calls, which the interpreter makes about 100x slower, so here the ops take the
    plain-PyTorch path a CPU user gets. The kernels themselves are checked against the references in
    ``tests/ops``, and ``test_objectives.py`` runs the objectives through the interpreted kernels.
    The tiny models gain nothing from a second thread, and one thread keeps the timings steady on a busy
    machine.
    """
    from mvlift.ops import _backend

    monkeypatch.setattr(_backend, "triton_interpret", lambda: False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
