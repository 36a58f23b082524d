"""Configs are checked completely before any work starts: every field's type and range, by its YAML path.

Issue #12's rows: ``stage1.lr: fast``, ``data.train_clips: many``, ``stage2.steps: "three hundred"``,
``stage2.steps: -10``, ``stage2_batch: -4``, ``data.train_clips: -3``, ``stage3.fit_steps: -1``,
``lift.steps: -3`` and the empty YAML each failed late (after training), with a traceback or silently.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import typing
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

import pytest
import yaml

from mvlift._fields import ConfigError, at_least, check_fields, one_of
from mvlift.baselines.single_view_smpl import SingleViewSMPLConfig
from mvlift.cli import main
from mvlift.models import DenoiserConfig
from mvlift.stages.lift import LiftConfig
from mvlift.stages.pipeline import (
    DataConfig,
    PipelineConfig,
    VPoserBaselineConfig,
    load_pipeline_config,
)
from mvlift.stages.stage2 import Stage2Config
from mvlift.stages.stage3 import Stage3Config
from mvlift.training import TrainConfig

DEMO = resources.files("mvlift") / "configs" / "demo.yaml"


def _demo() -> dict[str, Any]:
    return yaml.safe_load(DEMO.read_text())


def _write(tmp_path, data: Any, name: str = "config.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _set(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return data


# ------------------------------------------------------------------------------------ the rows


@pytest.mark.parametrize(
    "dotted, value, message",
    [
        ("stage1.lr", "fast", "stage1.lr: expected a number > 0, got 'fast'"),
        ("data.train_clips", "many", "data.train_clips: expected an int >= 1, got 'many'"),
        ("stage2.steps", "three hundred", "stage2.steps: expected an int >= 1, got 'three hundred'"),
        ("stage2.steps", -10, "stage2.steps: expected an int >= 1, got -10"),
        ("stage2_batch", -4, "stage2_batch: expected an int >= 1, got -4"),
        ("data.train_clips", -3, "data.train_clips: expected an int >= 1, got -3"),
        ("stage3.fit_steps", -1, "stage3.fit_steps: expected an int >= 0, got -1"),
        ("lift.steps", -3, "lift.steps: expected an int >= 1, got -3"),
    ],
)
def test_a_bad_setting_fails_at_load_naming_its_yaml_path(tmp_path, dotted, value, message):
    path = _write(tmp_path, _set(_demo(), dotted, value))
    with pytest.raises(ConfigError) as info:
        load_pipeline_config(path)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)  # the CLI's clean-error path
    # and through the CLI: exit 2, one line on stderr, nothing run
    run = tmp_path / "run"
    assert main(["run", str(path), "--out", str(run)]) == 2
    assert not run.exists()


def test_an_empty_or_partial_config_is_an_error_not_the_papers_defaults(tmp_path, capsys):
    for text, missing in [
        ("", "'data', 'stage1', 'stage4'"),
        ("# nothing but a comment\n", "'data', 'stage1', 'stage4'"),
        ("data: {source: procedural}\nstage1: {max_steps: 5}\n", "'stage4'"),
        ("data: {}\nstage1: {lr: 1.0e-3}\nstage4: {max_steps: 5}\n", "'stage1.max_steps'"),
    ]:
        path = _write(tmp_path, text)
        with pytest.raises(ValueError, match="missing") as info:
            load_pipeline_config(path)
        assert missing in str(info.value) and "demo.yaml" in str(info.value)
        assert "600,000" in str(info.value)
    assert main(["stage1", str(_write(tmp_path, "")), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "missing 'data', 'stage1', 'stage4'" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_shipped_and_test_configs_still_load():
    for path in resources.files("mvlift").joinpath("configs").iterdir():
        if path.name.endswith(".yaml"):
            cfg = load_pipeline_config(str(path))
            assert PipelineConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


def test_run_check_prints_the_resolved_config_and_exits(tmp_path, capsys):
    path = _write(tmp_path, _set(_demo(), "out_dir", str(tmp_path / "run")))
    assert main(["run", str(path), "--check", "--set", "stage2.steps=7"]) == 0
    out = capsys.readouterr().out
    resolved = yaml.safe_load(out)
    assert resolved["stage2"]["steps"] == 7
    assert resolved["stage2"]["lr"] == 1.0e-2 and resolved["stage3"]["out_views"] == 4  # defaults filled in
    assert resolved == yaml.safe_load(
        yaml.safe_dump(load_pipeline_config(path, settings=["stage2.steps=7"]).to_dict())
    )
    assert not (tmp_path / "run").exists()  # nothing ran
    assert main(["run", str(path), "--check", "--set", "stage2.steps=-1"]) == 2
    assert "stage2.steps: expected an int >= 1, got -1" in capsys.readouterr().err


# ------------------------------------------------------------------------------- the one mechanism


@pytest.mark.parametrize(
    "dotted, value, message",
    [
        ("stage2.steps", True, "stage2.steps: expected an int >= 1, got True"),  # a bool is not an int
        ("stage1.lr", "1e-3", "stage1.lr: expected a number > 0, got '1e-3' (a string: YAML reads"),
        ("stage1.lr", math.nan, "stage1.lr: expected a number > 0, got nan (not finite)"),
        (
            "stage1.betas",
            [0.9, 1.5],
            "stage1.betas: expected a list of 2 numbers in [0.0, 1.0), got [0.9, 1.5]",
        ),
        (
            "stage2.image_size",
            [1920],
            "stage2.image_size: expected a list of 2 ints > 0, got [1920] (1 items)",
        ),
        ("stage2.pairs", 3, "stage2.pairs: expected a string, got 3"),
        (
            "stage2.distance",
            "euclid",
            "stage2.distance: expected one of 'symmetric', 'sampson', got 'euclid'",
        ),
        ("lift.sampler", "ddx", "lift.sampler: expected one of 'ddim', 'ddpm', got 'ddx'"),
        ("data.max_frames", 0, "data.max_frames: expected null or an int >= 1, got 0"),
        ("data.eval_files", "05_02", "data.eval_files: expected null or a list of strings, got '05_02'"),
        ("data.skeleton", "body15", "data.skeleton: unknown skeleton 'body15'"),
        ("data.min_length", 100, "data.min_length: expected an int <= window (64), got 100"),
        ("data", "many", "data: expected a mapping of DataConfig fields, got 'many'"),
        ("baselines", "yes", "baselines: expected true or false, got 'yes'"),
        ("device", "gpu", "device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
        ("stage4.device", "gpu", "stage4.device: expected 'auto' or a torch device"),
        ("model.d_model", 0, "model.d_model: expected an int >= 1, got 0"),
        ("model.d_model", 90, "model.d_model: d_model (90) must be divisible by num_heads (4)"),
        ("model.num_joints", 14, "model.num_joints: is set by the pipeline"),
        ("model.max_frames", 32, "model.max_frames: expected an int >= data.window (64)"),
        ("lift.num_views", 6, "lift.num_views: expected stage3.out_views (4)"),
        ("stage2.stepz", 3, "stage2: unknown keys ['stepz'] (did you mean 'steps' for 'stepz'?)"),
        ("single_view_vposer.fit.steps", -1, "single_view_vposer.fit: SingleViewSMPLConfig.steps must be"),
        ("single_view_vposer.seed", -1, "single_view_vposer.seed: expected an int >= 0, got -1"),
    ],
)
def test_types_ranges_and_choices(tmp_path, dotted, value, message):
    with pytest.raises(ConfigError) as info:
        load_pipeline_config(_write(tmp_path, _set(_demo(), dotted, value)))
    assert str(info.value).startswith(message), str(info.value)


def test_accepted_values_are_stored_as_their_annotation_says(tmp_path):
    data = _set(_demo(), "stage1.lr", 1)  # an int for a float
    data = _set(data, "stage2.image_size", [640, 480])  # a list for a tuple
    data = _set(data, "data.max_frames", None)
    cfg = load_pipeline_config(_write(tmp_path, data))
    assert cfg.stage1.lr == 1.0 and isinstance(cfg.stage1.lr, float)
    assert cfg.stage2.image_size == (640, 480)
    assert cfg.data.max_frames is None


def test_direct_construction_is_checked_too():
    cases = [
        (lambda: Stage2Config(steps=-10), "Stage2Config.steps: expected an int >= 1, got -10"),
        (lambda: TrainConfig(lr="fast"), "TrainConfig.lr: expected a number > 0, got 'fast'"),
        (lambda: TrainConfig(max_steps=0), "TrainConfig.max_steps: expected an int >= 1, got 0"),
        (lambda: DataConfig(train_clips=True), "DataConfig.train_clips: expected an int >= 1, got True"),
        (lambda: Stage3Config(fit_steps=-1), "Stage3Config.fit_steps: expected an int >= 0, got -1"),
        (lambda: LiftConfig(steps=0), "LiftConfig.steps: expected an int >= 1, got 0"),
        (
            lambda: DenoiserConfig(num_joints="14"),
            "DenoiserConfig.num_joints: expected an int >= 1, got '14'",
        ),
        (
            lambda: PipelineConfig(stage2={"steps": -10}),
            "PipelineConfig.stage2.steps: expected an int >= 1, got -10",
        ),
    ]
    for make, message in cases:
        with pytest.raises(ConfigError) as info:
            make()
        assert str(info.value) == message


_CLASSES = [
    DataConfig,
    TrainConfig,
    Stage2Config,
    Stage3Config,
    LiftConfig,
    SingleViewSMPLConfig,
    VPoserBaselineConfig,
    PipelineConfig,
]
_WRONG = {int: "x", float: "x", bool: "x", str: 3}


def _scalar(tp: Any) -> Any:
    """The scalar type of ``X`` or ``X | None`` (else None)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if tp in _WRONG:
        return tp
    return args[0] if len(args) == 1 and args[0] in _WRONG else None


@pytest.mark.parametrize("klass", _CLASSES, ids=lambda k: k.__name__)
def test_every_field_is_type_checked_including_fields_added_later(klass):
    """Every scalar field of every config class, whatever fields the class has now (a field added later is
    covered by its annotation alone)."""
    hints = typing.get_type_hints(klass)
    checked = 0
    for f in dataclasses.fields(klass):
        tp = _scalar(hints[f.name])
        if tp is None:
            continue
        with pytest.raises((ConfigError, TypeError, ValueError)) as info:
            klass(**{f.name: _WRONG[tp]})
        assert f.name in str(info.value), (klass.__name__, f.name, str(info.value))
        checked += 1
    assert checked >= 3


def test_check_fields_by_annotation():
    @dataclass
    class Future:
        count: int = 1
        ratio: float = 0.5
        name: str | None = None
        pair: tuple[float, float] = (0.0, 1.0)
        tags: list[str] = field(default_factory=list)
        mode: Literal["a", "b"] = "a"
        extra: dict[str, Any] = field(default_factory=dict)
        flag: bool = False

        def __post_init__(self) -> None:
            check_fields(self, {"count": at_least(1), "name": one_of("x", "y")})

    ok = Future(count=3, ratio=2, name="x", pair=[1, 2], tags=("a",), mode="b", extra={"k": 1}, flag=True)
    assert ok.ratio == 2.0 and isinstance(ok.ratio, float)
    assert ok.pair == (1.0, 2.0) and ok.tags == ["a"]
    for kwargs, message in [
        ({"count": 0}, "Future.count: expected an int >= 1, got 0"),
        ({"count": 2.0}, "Future.count: expected an int >= 1, got 2.0"),
        ({"ratio": True}, "Future.ratio: expected a number, got True"),
        ({"name": "z"}, "Future.name: expected one of 'x', 'y', got 'z'"),
        ({"pair": [1, 2, 3]}, "Future.pair: expected a list of 2 numbers, got [1, 2, 3] (3 items)"),
        ({"tags": [1]}, "Future.tags: expected a list of strings, got [1]"),
        ({"mode": "c"}, "Future.mode: expected one of 'a', 'b', got 'c'"),
        ({"extra": [1]}, "Future.extra: expected a mapping, got [1]"),
        ({"flag": 1}, "Future.flag: expected true or false, got 1"),
    ]:
        with pytest.raises(ConfigError) as info:
            Future(**kwargs)
        assert str(info.value) == message


# --------------------------------------------------------------------------------------------- fuzz

_TOKENS = [
    "-1",
    "0",
    "1",
    "-10",
    "fast",
    "'12'",
    "[1, 2]",
    "[]",
    "{a: 1}",
    "{}",
    "null",
    "true",
    "1e-3",
    ".nan",
    ".inf",
    "''",
    "3.5",
    "-0.5",
    "99999999999999999999",
    "cuda",
    "gpu",
]


def _corrupt(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    kind = rng.randrange(6)
    i = rng.randrange(len(lines))
    if kind == 0:  # a value replaced
        head, sep, _ = lines[i].partition(":")
        if sep:
            lines[i] = f"{head}: {rng.choice(_TOKENS)}"
    elif kind == 1:  # a line deleted
        del lines[i]
    elif kind == 2:  # a line duplicated elsewhere
        lines.insert(rng.randrange(len(lines)), lines[i])
    elif kind == 3:  # characters changed
        chars = list(text)
        for _ in range(rng.randint(1, 4)):
            chars[rng.randrange(len(chars))] = rng.choice("x:- \n[]{}'0.9#\t")
        return "".join(chars)
    elif kind == 4:  # truncated
        return text[: rng.randrange(len(text))]
    else:  # an indentation changed
        lines[i] = (" " * rng.choice([0, 1, 2, 4])) + lines[i].lstrip()
    return "\n".join(lines) + "\n"


def _normal(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_normal(v) for v in value)
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return value


def test_fuzz_corrupted_yaml_gives_a_clean_error_or_exactly_what_it_says(tmp_path):
    """Random corruptions of demo.yaml: each load either fails with a ValueError (the CLI's one-line error)
    or gives a config holding exactly the values the corrupted YAML holds (defaults elsewhere)."""
    rng = random.Random(12)
    text = DEMO.read_text()
    outcomes = {"error": 0, "loaded": 0}
    for _ in range(300):
        bad = _corrupt(text, rng)
        path = _write(tmp_path, bad)
        try:
            cfg = load_pipeline_config(path)
        except ValueError as exc:  # ConfigError is one; so is the YAML syntax error message
            assert str(exc)
            outcomes["error"] += 1
            continue
        outcomes["loaded"] += 1
        parsed = yaml.safe_load(bad)
        resolved = _normal(cfg.to_dict())
        for section, values in parsed.items():
            if isinstance(values, dict) and section != "model":
                for key, value in values.items():
                    if isinstance(value, dict):
                        continue
                    assert resolved[section][key] == _normal(value), (section, key, bad)
            else:
                assert resolved[section] == _normal(values), (section, bad)
    assert outcomes["error"] > 50 and outcomes["loaded"] > 50, outcomes
