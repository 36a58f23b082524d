"""Fixtures of the training tests."""

from __future__ import annotations

import pytest
import torch

from mvlift.ops import _backend


@pytest.fixture
def cpu_training(monkeypatch):
    """Short CPU trainings: the CPU path of :mod:`mvlift.ops`, one intra-op thread.

    ``tests/conftest.py`` sets ``TRITON_INTERPRET=1`` so that the Triton kernels are tested on CPU; a training
    run makes hundreds of loss calls, which the interpreter makes about 100x slower, so here the ops take the
    plain-PyTorch path a CPU user gets. The kernels themselves are checked against the references in
    ``tests/ops``, and ``test_objectives.py`` runs the objectives through the interpreted kernels.
    The tiny models gain nothing from a second thread, and one thread keeps the timings steady on a busy
    machine.
    """
    monkeypatch.setattr(_backend, "triton_interpret", lambda: False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
