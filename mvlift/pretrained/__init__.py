"""The trained models shipped inside the package (``MODEL_CARD.md`` beside this file describes them).

``cmu_cpu``: the stage-1 and stage-4 models of one run of ``mvlift/configs/cmu_cpu.yaml`` on the shared CMU
clips (EMA weights only, float32 safetensors with their checksummed sidecars). ``mvlift lift`` uses the
stage-4 model when no ``--model`` is given.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["PRETRAINED", "pretrained_path", "load_pretrained", "pretrained_stage2_config"]

PRETRAINED = "cmu_cpu"
_STAGES = ("stage1", "stage4")


def pretrained_path(stage: str = "stage4", name: str = PRETRAINED) -> Path:
    """The folder of a shipped model (``stage`` = ``"stage1"`` or ``"stage4"``); it holds one checkpoint
    that :func:`mvlift.training.checkpoint.load_model` reads.

    Raises:
        ValueError: an unknown stage or name; FileNotFoundError: the package was installed without it.
    """
    if stage not in _STAGES:
        raise ValueError(f"stage must be one of {_STAGES}, got {stage!r}")
    if name != PRETRAINED:
        raise ValueError(f"no shipped model named {name!r}; shipped: {PRETRAINED!r}")
    path = Path(str(resources.files("mvlift") / "pretrained" / name / stage))
    if not any(path.glob("*.json")):
        raise FileNotFoundError(f"the shipped model {name}/{stage} is missing from this install ({path})")
    return path


def load_pretrained(stage: str = "stage4", *, device: str = "cpu"):  # noqa: ANN201 - an nn.Module
    """The shipped model of ``stage`` (EMA weights, eval mode) on ``device``."""
    from mvlift.training.checkpoint import load_model

    return load_model(pretrained_path(stage), device=device)


def pretrained_stage2_config(name: str = PRETRAINED):  # noqa: ANN201 - a Stage2Config
    """The stage-2 settings of the run that trained the shipped models (``card.json``), which lifting fuses
    with the shipped stage-1 model (``LiftConfig.stage2_weight``, :mod:`mvlift.stages.fusion`)."""
    import json

    from mvlift.stages.stage2 import Stage2Config

    card = json.loads(Path(str(resources.files("mvlift") / "pretrained" / name / "card.json")).read_text())
    return Stage2Config(**card["stage2"]["config"])
