"""The trainer: overfitting, exact resume, checkpoints that rebuild the model, loss log and plot."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from torch.utils.data import Dataset

from mvlift.models import build_model
from mvlift.schedulers import CosineSchedule
from mvlift.training import (
    Stage1Dataset,
    Stage1Objective,
    TrainConfig,
    Trainer,
    list_checkpoints,
    load_model,
    read_checkpoint,
)
from mvlift.training.checkpoint import flatten_optimizer_state, unflatten_optimizer_state

from ._helpers import J, smooth_motions_2d, tiny_config

pytestmark = pytest.mark.usefixtures("cpu_training")


class FixedEpoch(Dataset):
    """Serves every epoch's key as epoch 0: the same epipoles, steps and noise every time (a fixed batch)."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key):
        return self.ds[(0, key[1])]


def _stage1_data(n: int = 6, frames: int = 8, seed: int = 0) -> Stage1Dataset:
    return Stage1Dataset(smooth_motions_2d(n, frames, torch.Generator().manual_seed(seed)), seed=seed)


def _config(out_dir, **kw) -> TrainConfig:
    base = dict(
        lr=1e-3, batch_size=2, grad_accum=1, max_steps=4, log_every=1, ckpt_every=0, out_dir=str(out_dir),
        device="cpu", progress=False, ema_every=1, ema_decay=0.9,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def _trainer(out_dir, *, model_seed: int = 0, dropout: float = 0.0, data=None, **kw) -> Trainer:
    torch.manual_seed(model_seed)
    model = build_model(tiny_config(dropout=dropout))
    data = data if data is not None else _stage1_data()
    return Trainer(model, Stage1Objective(CosineSchedule()), data, _config(out_dir, **kw))


def test_overfits_a_tiny_batch(tmp_path):
    data = FixedEpoch(_stage1_data(n=4, frames=16))
    tr = _trainer(
        tmp_path / "run", data=data, lr=1e-3, batch_size=4, max_steps=300, log_every=10, ema_every=10
    )
    result = tr.fit()
    losses = [row["loss"] for row in tr.log.rows]
    assert len(losses) == 30 and result.step == 300
    assert losses[-1] < losses[0] / 10, losses


def test_resume_after_a_kill_replays_the_same_losses(tmp_path):
    kw = dict(dropout=0.1, batch_size=2, grad_accum=2, max_steps=8, ckpt_every=3, keep_checkpoints=5)
    data = _stage1_data(n=6)  # 6 // 2 = 3 micro-batches per epoch: the checkpoint falls mid-epoch
    full = _trainer(tmp_path / "full", data=data, **kw)
    full.fit()
    killed = _trainer(tmp_path / "killed", data=data, **kw)
    killed.fit(stop_at=5)  # steps 4 and 5 are lost: the last checkpoint is step 3
    assert [p.name for p in list_checkpoints(tmp_path / "killed" / "checkpoints")] == ["step_00000003.json"]
    resumed = _trainer(tmp_path / "killed", data=data, model_seed=99, **kw)  # other init: must be overwritten
    result = resumed.fit(resume=True)
    assert result.step == 8
    cols = ("loss", "l1", "line", "grad_norm", "lr")
    expected = {int(r["step"]): [r[c] for c in cols] for r in full.log.rows}
    got = {int(r["step"]): [r[c] for c in cols] for r in resumed.log.rows}
    assert sorted(got) == list(range(1, 9))  # CSV rows 1-3 kept, 4-5 of the killed run replaced
    for step in range(4, 9):
        assert got[step] == expected[step], f"step {step}: {got[step]} != {expected[step]}"
    for (name, a), b in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    for a, b in zip(full.ema.state_dict().values(), resumed.ema.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with open(tmp_path / "killed" / "loss_log.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in csv_rows] == list(range(1, 9))
    assert float(csv_rows[-1]["loss"]) == expected[8][0]  # full float precision in the CSV


def test_checkpoint_rebuilds_the_model_alone(tmp_path):
    tr = _trainer(tmp_path / "run", max_steps=6, ckpt_every=2, keep_checkpoints=2)
    result = tr.fit()
    ckpts = list_checkpoints(tmp_path / "run" / "checkpoints")
    assert [p.name for p in ckpts] == ["step_00000004.json", "step_00000006.json"]  # pruned to 2
    assert result.checkpoint == ckpts[-1]
    assert not [p for p in (tmp_path / "run").rglob("*tmp*")]  # atomic writes leave nothing behind
    meta = json.loads(ckpts[-1].read_text())
    assert meta["step"] == 6 and meta["model_config"] == tr.model.config.to_dict()
    assert meta["train_config"] == tr.config.to_dict() and meta["micro_batches"] == 6

    g = torch.Generator().manual_seed(3)
    x_t, lines = torch.randn(2, 8, J, 2, generator=g), torch.randn(2, 8, J, 3, generator=g)
    t, mask = torch.tensor([3, 700]), torch.ones(2, 8, dtype=torch.bool)
    for path in (tmp_path / "run", ckpts[-1], ckpts[-1].with_suffix(".safetensors")):
        ema_model = load_model(path)
        assert not ema_model.training
        with torch.no_grad():
            assert torch.equal(ema_model(x_t, t, lines, mask), tr.ema.module(x_t, t, lines, mask))
    raw = load_model(ckpts[-1], weights="model")
    tr.model.eval()
    with torch.no_grad():
        assert torch.equal(raw(x_t, t, lines, mask), tr.model(x_t, t, lines, mask))
        assert not torch.equal(raw(x_t, t, lines, mask), tr.ema.module(x_t, t, lines, mask))

    meta, sections = read_checkpoint(tmp_path / "run")
    state = unflatten_optimizer_state(sections["optim"], meta["optimizer"])
    reference = tr.optimizer.state_dict()
    assert state["param_groups"] == reference["param_groups"]
    for k, per_param in reference["state"].items():
        for name, value in per_param.items():
            assert torch.equal(state["state"][k][name], value)
    tensors, rest = flatten_optimizer_state(reference)
    assert all(key.startswith("optim/") for key in tensors) and json.dumps(rest)


def test_an_incomplete_checkpoint_is_ignored(tmp_path):
    tr = _trainer(tmp_path / "run", max_steps=4, ckpt_every=2, keep_checkpoints=5)
    tr.fit(stop_at=3)
    ckpt_dir = tmp_path / "run" / "checkpoints"
    (ckpt_dir / "step_00000004.safetensors").write_bytes(b"truncated")  # killed before its JSON was written
    resumed = _trainer(tmp_path / "run", max_steps=4, ckpt_every=2, keep_checkpoints=5)
    resumed.fit(resume=True)
    assert resumed.log.rows[0]["step"] == 1 and [int(r["step"]) for r in resumed.log.rows] == [1, 2, 3, 4]
    assert resumed.last_checkpoint == ckpt_dir / "step_00000004.json"


def test_loss_log_and_plot_are_written(tmp_path):
    tr = _trainer(tmp_path / "run", max_steps=6, log_every=2, ckpt_every=3)
    tr.fit()
    with open(tmp_path / "run" / "loss_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "loss", "l1", "line", "lr", "grad_norm", "time_s"]
    assert [int(r["step"]) for r in rows] == [2, 4, 6]
    for r in rows:
        assert abs(float(r["loss"]) - float(r["l1"]) - float(r["line"])) < 1e-5
        assert float(r["lr"]) == 1e-3 and float(r["grad_norm"]) > 0
    assert float(rows[0]["time_s"]) <= float(rows[-1]["time_s"])
    png = (tmp_path / "run" / "loss_plot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["max_steps"] == 6


def test_warmup_and_clipping(tmp_path):
    tr = _trainer(tmp_path / "run", max_steps=3, warmup_steps=4, grad_clip=1e-3, lr=1e-2)
    tr.fit()
    assert [r["lr"] for r in tr.log.rows] == pytest.approx([2.5e-3, 5e-3, 7.5e-3])
    norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in tr.model.parameters() if p.grad is not None))
    assert norm.item() == pytest.approx(1e-3, rel=1e-3)  # the last step's gradients were clipped to 1e-3


def test_trainer_errors(tmp_path):
    with pytest.raises(ValueError, match="fewer than one global micro-batch"):
        _trainer(tmp_path / "a", data=_stage1_data(n=3), batch_size=4)
    with pytest.raises(ValueError, match="no .config"):
        Trainer(
            torch.nn.Linear(2, 2), Stage1Objective(CosineSchedule()), _stage1_data(), _config(tmp_path / "b")
        )
    with pytest.raises(TypeError, match="TrainConfig"):
        Trainer(build_model(tiny_config()), Stage1Objective(CosineSchedule()), _stage1_data(), {"lr": 1.0})
    with pytest.raises(FileNotFoundError):
        _trainer(tmp_path / "c").fit(resume=tmp_path / "nowhere")
    _trainer(tmp_path / "d", max_steps=2, ckpt_every=2).fit()
    torch.manual_seed(0)
    other = build_model(tiny_config(dropout=0.2))
    tr = Trainer(
        other, Stage1Objective(CosineSchedule()), _stage1_data(), _config(tmp_path / "d", max_steps=2)
    )
    with pytest.raises(ValueError, match="model config"):
        tr.fit(resume=True)


def test_checkpoint_from_before_a_model_config_field_resumes(tmp_path):
    """A sidecar without a later-added DenoiserConfig field (its default) still matches the model."""
    _trainer(tmp_path / "run", max_steps=4, ckpt_every=2).fit(stop_at=2)
    sidecar = tmp_path / "run" / "checkpoints" / "step_00000002.json"
    meta = json.loads(sidecar.read_text())
    assert meta["model_config"].pop("cross_view_backend") is None
    sidecar.write_text(json.dumps(meta))
    resumed = _trainer(tmp_path / "run", max_steps=4, ckpt_every=2)
    resumed.fit(resume=True)
    assert resumed.step == 4 and [int(r["step"]) for r in resumed.log.rows] == [1, 2, 3, 4]


def test_worker_processes_do_not_change_the_run(tmp_path):
    rows = []
    for workers in (0, 2):
        tr = _trainer(tmp_path / f"w{workers}", max_steps=3, num_workers=workers, grad_accum=2)
        tr.fit()
        rows.append([(r["loss"], r["l1"], r["line"]) for r in tr.log.rows])
    assert rows[0] == rows[1]
