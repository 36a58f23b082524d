"""export_weights: a compact, checksummed copy of a checkpoint's EMA weights that load_model reads."""

from __future__ import annotations

import torch

from mvlift.models import DenoiserConfig, build_model
from mvlift.training.checkpoint import export_weights, load_model, read_checkpoint, save_checkpoint


def test_export_keeps_only_the_ema_weights_and_loads(tmp_path, seed):
    cfg = DenoiserConfig(num_joints=5, d_model=16, num_layers=1, num_heads=2, ffn_dim=16)
    model, ema = build_model(cfg, seed=seed), build_model(cfg, seed=seed + 1)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 6, 5, 2), torch.tensor([3, 9]), torch.randn(2, 6, 5, 3)).sum().backward()
    opt.step()
    save_checkpoint(
        tmp_path / "ckpt",
        7,
        model_state=model.state_dict(),
        ema_state=ema.state_dict(),
        optimizer_state=opt.state_dict(),
        rng_states=[{"cpu": torch.get_rng_state()}],
        meta={"model_config": cfg.to_dict()},
    )
    sidecar = export_weights(tmp_path / "ckpt", tmp_path / "shipped", extra={"note": "test"})
    meta, sections = read_checkpoint(sidecar)
    assert meta["note"] == "test" and meta["exported_from_step"] == 7
    assert not sections["model"] and not sections["optim"] and not sections["rng"]
    loaded = load_model(tmp_path / "shipped")
    for k, v in ema.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)
    full = sum(p.stat().st_size for p in (tmp_path / "ckpt").iterdir())
    small = sum(p.stat().st_size for p in (tmp_path / "shipped").iterdir())
    assert small < full / 2
