"""Shared test setup.

TRITON_INTERPRET=1 must be set before any Triton kernel module is imported: without a GPU the kernels are
tested in Triton's CPU interpreter.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

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


requires_cuda = pytest.mark.cuda


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped without a CUDA device: ``pytest -m cuda`` selects exactly the
    tests that need one (the GPU session's command), and a plain ``pytest`` on a CPU machine skips them."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


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


# ------------------------------------------------------------------------------------------------ SMPL
# smplx and human-body-prior are optional (``mvlift[smpl]``): locally a missing one skips the tests that need
# it; under CI (CI=1/true/yes) it fails them, so CI always runs the SMPL path.


def _require(name: str) -> Any:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return importlib.import_module(name)  # under CI a missing package is an error
    return pytest.importorskip(name)


@pytest.fixture(scope="session")
def smplx_module() -> Any:
    return _require("smplx")


@pytest.fixture(scope="session")
def hbp_module() -> Any:
    return _require("human_body_prior")


@pytest.fixture(scope="session")
def synthetic_model() -> dict:
    """A small synthetic SMPL-format model (120 vertices; :func:`mvlift.body.make_synthetic_smpl`)."""
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
    """A randomly initialised VPoser v1 (seed 3; :func:`mvlift.body.load_vposer`)."""
    from mvlift.body.vposer import load_vposer

    return load_vposer(seed=3)
