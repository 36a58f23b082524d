"""DenoiserConfig: validation, JSON round trip, build_model rebuilds identical models."""

from __future__ import annotations

import json

import pytest
import torch

from mvlift.models import DenoiserConfig, MultiViewDenoiser, Stage1Denoiser, build_model


def tiny(**kw) -> DenoiserConfig:
    base = dict(num_joints=5, d_model=32, num_layers=2, num_heads=4, ffn_dim=48, max_frames=24)
    base.update(kw)
    return DenoiserConfig(**base)


def test_defaults_follow_the_paper():
    c = DenoiserConfig(num_joints=18)
    assert (c.d_model, c.num_layers, c.num_heads, c.ffn_dim, c.dropout) == (512, 4, 4, 512, 0.1)
    assert c.kind == "stage1" and c.attention_backend == "auto" and c.resolved_head_dim == 128
    assert tiny(head_dim=7).resolved_head_dim == 7


@pytest.mark.parametrize("kind", ["stage1", "multiview"])
def test_round_trip(kind):
    c = tiny(kind=kind, num_views=3, head_dim=6, dropout=0.0, attention_backend="sdpa")
    d = c.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert DenoiserConfig.from_dict(d) == c
    assert DenoiserConfig.from_json(c.to_json()) == c


@pytest.mark.parametrize("kind, cls", [("stage1", Stage1Denoiser), ("multiview", MultiViewDenoiser)])
def test_build_model_rebuilds_from_config_alone(kind, cls, seed):
    c = tiny(kind=kind)
    model = build_model(c).eval()
    assert isinstance(model, cls) and model.config == c
    twin = build_model(json.loads(c.to_json())).eval()
    assert isinstance(twin, cls)
    state = model.state_dict()
    assert not any("positions.table" in key for key in state), "fixed positions must not be checkpointed"
    twin.load_state_dict(state, strict=True)
    t = torch.randint(0, 1000, (2,))
    if kind == "stage1":
        args = (torch.randn(2, 9, 5, 2), t, torch.randn(2, 9, 5, 3))
    else:
        args = (torch.randn(2, 4, 9, 5, 2), t, torch.randn(2, 9, 5, 2))
    torch.testing.assert_close(model(*args), twin(*args), rtol=0, atol=0)


@pytest.mark.parametrize(
    "kw, err, match",
    [
        (dict(num_joints=0), ValueError, "num_joints"),
        (dict(num_joints=5.0), TypeError, "num_joints"),
        (dict(num_layers=True), TypeError, "num_layers"),
        (dict(d_model=30, num_heads=4), ValueError, "divisible"),
        (dict(dropout=1.0), ValueError, "dropout"),
        (dict(dropout="0.1"), TypeError, "dropout"),
        (dict(kind="stage4"), ValueError, "kind"),
        (dict(attention_backend="flash"), ValueError, "attention_backend"),
        (dict(cross_view_backend="flash"), ValueError, "cross_view_backend"),
        (dict(cross_view_backend="kernel", attention_backend="kernel"), ValueError, "attention_backend"),
        (dict(head_dim=0), ValueError, "head_dim"),
        (dict(kind="multiview", num_views=1), ValueError, "num_views"),
    ],
)
def test_validation(kw, err, match):
    with pytest.raises(err, match=match):
        tiny(**kw)


def test_cross_view_backend_defaults_to_the_attention_backend():
    assert tiny().cross_view_backend is None and tiny().resolved_cross_view_backend == "auto"
    assert tiny(attention_backend="sdpa").resolved_cross_view_backend == "sdpa"
    c = tiny(kind="multiview", attention_backend="sdpa", cross_view_backend="kernel")
    assert c.resolved_cross_view_backend == "kernel"
    assert DenoiserConfig.from_json(c.to_json()) == c
    # a config written before the field existed loads with the old behaviour (follow attention_backend)
    old = tiny(kind="multiview", attention_backend="sdpa").to_dict()
    del old["cross_view_backend"]
    assert DenoiserConfig.from_dict(old).resolved_cross_view_backend == "sdpa"


def test_from_dict_rejects_unknown_keys_and_bad_input():
    d = tiny().to_dict()
    d["n_layers"] = 3
    with pytest.raises(ValueError, match="n_layers"):
        DenoiserConfig.from_dict(d)
    with pytest.raises(TypeError):
        DenoiserConfig.from_dict([("num_joints", 3)])
    with pytest.raises(TypeError, match="DenoiserConfig"):
        build_model("stage1")


def test_models_reject_wrong_kind():
    with pytest.raises(ValueError, match="stage1"):
        Stage1Denoiser(tiny(kind="multiview"))
    with pytest.raises(ValueError, match="multiview"):
        MultiViewDenoiser(tiny())
    with pytest.raises(TypeError, match="DenoiserConfig"):
        Stage1Denoiser(tiny().to_dict())
