"""Fixtures of the SMPL tests.

The SMPL fixtures (optional dependencies, the small synthetic SMPL model, its layers and a random VPoser)
live in ``tests/conftest.py``, shared with the baseline and pipeline tests.

The fits here are tiny (a dozen frames, a 512-unit MLP): one intra-op thread is faster than several on a
shared machine, so every test in this folder runs with ``torch.set_num_threads(1)`` (restored after).
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
