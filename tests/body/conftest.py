"""Fixtures of the SMPL tests: the optional dependencies, a small synthetic SMPL model and a random VPoser.

smplx and human-body-prior are optional (``mvlift[smpl]``): locally a missing one skips the tests that
need it; under CI (CI=1/true/yes) it fails them, so CI always runs the SMPL path.

The fits here are tiny (a dozen frames, a 512-unit MLP): one intra-op thread is faster than several on a
shared machine, so every test in this folder runs with ``torch.set_num_threads(1)`` (restored after).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import pytest
import torch


def _require(name: str) -> Any:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return importlib.import_module(name)  # under CI a missing package is an error
    return pytest.importorskip(name)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def smplx_module() -> Any:
    return _require("smplx")


@pytest.fixture(scope="session")
def hbp_module() -> Any:
    return _require("human_body_prior")


@pytest.fixture(scope="session")
def synthetic_model() -> dict:
    from mvlift.body.smpl_model import make_synthetic_smpl

    return make_synthetic_smpl(120, seed=1)


@pytest.fixture(scope="session")
def smpl_layer(smplx_module, synthetic_model) -> Any:
    from mvlift.body.smpl_io import smplx_layer

    return smplx_layer(synthetic_model)


@pytest.fixture(scope="session")
def smpl_layer64(smplx_module, synthetic_model) -> Any:
    from mvlift.body.smpl_io import smplx_layer

    return smplx_layer(synthetic_model, dtype=torch.float64)


@pytest.fixture(scope="session")
def vposer(hbp_module) -> Any:
    from mvlift.body.vposer import load_vposer

    return load_vposer(seed=3)
