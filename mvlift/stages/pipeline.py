"""The whole MVLift method as composable steps over one run folder and one config.

Steps (each reads what the previous wrote in ``config.out_dir``, and each resumes):

1. :func:`prepare_data`  - 3D clips (procedural or a mocap folder) -> single-view 2D training windows
   (``data/train``) and held-out evaluation windows with hidden 3D ground truth (``data/eval``).
2. :func:`train_stage1`  - the line-conditioned 2D diffusion model on the single-view 2D only.
3. :func:`run_stage2_3`  - stage 2 (multi-view optimisation) + stage 3 (triangulation, fit, reprojection)
   per shard of training windows -> consistent 4-view synthetic data (``synthetic/``).
4. :func:`train_stage4`  - the multi-view diffusion model on the synthetic data.
5. :func:`evaluate`      - lift the evaluation windows' 2D to 3D and score them against the hidden ground
   truth (the paper's protocol), with the stage-2-only ablation and the single-view baseline.

No step ever reads 3D ground truth except :func:`evaluate`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from mvlift._fields import (
    ConfigError,
    at_least,
    check_device_name,
    check_fields,
    checked_fields,
    greater_than,
    in_range,
)
from mvlift._runtime import check_output_dir, resolve_device
from mvlift.atomic import atomic_write_json, atomic_write_text
from mvlift.baselines.single_view_smpl import SingleViewSMPLConfig
from mvlift.models import DenoiserConfig, build_model
from mvlift.schedulers import CosineSchedule
from mvlift.stages.fusion import Stage2Fusion, camera0_mismatch
from mvlift.stages.lift import LiftConfig, lift, triangulate_repaired
from mvlift.stages.shards import ShardedWriter, load_shards, merge_manifests
from mvlift.stages.stage2 import Stage2Config, optimize_views, sample_views_stage1_only
from mvlift.stages.stage3 import Stage3Config, synthesize
from mvlift.training import (
    MultiViewDataset,
    MultiViewMotionDataset,
    Stage1Dataset,
    Stage1Objective,
    Stage4Objective,
    TrainConfig,
    Trainer,
)
from mvlift.training.checkpoint import load_model


@dataclass
class DataConfig:
    """Where the 3D clips come from and how the 2D windows are made.

    Attributes:
        source: ``"procedural"`` (the built-in synthetic motion source, no download) or a folder of mocap
            files (``.amc``/``.bvh``/``.npz``, e.g. the CMU clips).
        skeleton: ``"body14"`` (humans), ``"quadruped17"`` (procedural animals) or ``"body14_object5"``
            (procedural humans with a carried box: 14 body joints + 5 object keypoints).
        train_clips, eval_clips: procedural clip counts (a mocap folder is split by file instead).
        clip_frames: frames per procedural clip (at ``fps``).
        eval_files: mocap only: file stems held out for evaluation (default: every ``eval_every``-th file).
        eval_every: mocap only: hold out every n-th file (sorted by name), starting with the second.
        max_frames: mocap only: read at most this many frames per file (None = all).
        window, min_length, fps: windowing (the paper: 120 frames at 30 fps, shorter than 60 dropped).
        stride: training windows only: frames between window starts (None = ``window``, no overlap);
            a smaller stride gives more, overlapping single-view windows per clip.
        cameras_per_window: training windows only: random cameras each window is seen from (each view is
            one more single-view 2D sequence; the evaluation set always uses one camera per window).
        noise_px, drop_prob: detector-like noise on the 2D (pixels, joint drop probability).
        seed: seeds clip generation, cameras and noise.
    """

    source: str = "procedural"
    skeleton: str = "body14"
    train_clips: int = 64
    eval_clips: int = 8
    clip_frames: int = 120
    eval_files: list[str] | None = None
    eval_every: int = 4
    max_frames: int | None = None
    window: int = 120
    min_length: int = 60
    fps: float = 30.0
    stride: int | None = None
    cameras_per_window: int = 1
    noise_px: float = 0.0
    drop_prob: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        one = at_least(1)
        rules = {
            "train_clips": one,
            "eval_clips": one,
            "clip_frames": at_least(2),
            "eval_every": at_least(2),
            "max_frames": one,
            "window": at_least(2),
            "min_length": one,
            "fps": greater_than(0),
            "noise_px": at_least(0),
            "drop_prob": in_range(0.0, 1.0, hi_open=True),
            "seed": at_least(0),
            "stride": one,
            "cameras_per_window": one,
        }
        check_fields(self, rules)
        try:
            _skeleton(self.skeleton)
        except ValueError as exc:
            raise ConfigError("DataConfig", "skeleton", str(exc)) from None
        if self.min_length > self.window:
            raise ConfigError(
                "DataConfig",
                "min_length",
                f"expected an int <= window ({self.window}), got {self.min_length}",
            )
        if self.source == "procedural" and self.clip_frames < self.min_length:
            raise ConfigError(
                "DataConfig",
                "clip_frames",
                f"procedural clips of {self.clip_frames} frames give no window of min_length "
                f"({self.min_length}) frames: expected an int >= {self.min_length}",
            )


@dataclass
class VPoserBaselineConfig:
    """The evaluation's ``single_view_vposer`` row: :func:`mvlift.baselines.fit_single_view_smpl`, SMPL under
    the VPoser prior fitted to the input view, started from the ``single_view`` row's joints.

    The row is evaluated (when ``PipelineConfig.baselines`` is true) once an SMPL model is configured:
    ``smpl_model`` here, else stage 3's (``stage3.smpl_model`` with ``stage3.vposer_weights``). Without
    either the table has no such row. It needs ``mvlift[smpl]`` and human-body-prior, and a skeleton SMPL
    maps to (``body14``).

    Attributes:
        smpl_model: path to an SMPL model ``.pkl`` (official or chumpy-pickled); None = ``stage3.smpl_model``.
        vposer_weights: VPoser v1 weights (folder or ``.pt``) going with ``smpl_model`` (with stage 3's
            model: ``stage3.vposer_weights``); None = a randomly initialised VPoser (tests only: it is no
            pose prior).
        seed: seeds the random VPoser.
        fit: :class:`mvlift.baselines.SingleViewSMPLConfig` (a mapping of its fields is converted).
    """

    smpl_model: str | None = None
    vposer_weights: str | None = None
    seed: int = 0
    fit: SingleViewSMPLConfig = field(default_factory=SingleViewSMPLConfig)

    def __post_init__(self) -> None:
        check_fields(self, {"seed": at_least(0)})  # ``fit`` may be a mapping of its fields

    def to_dict(self) -> dict[str, Any]:
        return {
            "smpl_model": self.smpl_model,
            "vposer_weights": self.vposer_weights,
            "seed": self.seed,
            "fit": self.fit.to_dict(),
        }


@dataclass
class PipelineConfig:
    """Everything one run needs; saved as ``config.json`` in the run folder.

    Attributes:
        out_dir: the run folder.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        data: :class:`DataConfig`.
        model: :class:`mvlift.models.DenoiserConfig` fields shared by both models (without num_joints/kind).
        stage1, stage4: :class:`mvlift.training.TrainConfig` of the two trainings (``out_dir`` is set by
            the pipeline).
        stage2: :class:`mvlift.stages.stage2.Stage2Config`.
        stage2_batch: sequences optimised together (one shard of synthetic data).
        stage2_windows: how many training windows stages 2 and 3 turn into synthetic data (evenly spaced
            over the training set; None = all). Stage 1 still trains on every window.
        threads: torch intra-op CPU threads for the whole run; 0 = automatic: every core when the machine
            is otherwise idle, else one (on a shared 2-core machine two threads were 7x slower per
            training step than one).
        diagnostics: after evaluation, write the per-stage diagnostics (``diagnostics.json``/``.md``,
            :mod:`mvlift.stages.diagnostics`; the data source must have 3D, as mocap and procedural do).
        stage3: :class:`mvlift.stages.stage3.Stage3Config`.
        lift: :class:`mvlift.stages.lift.LiftConfig` for evaluation.
        baselines: also evaluate the stage-1-only and stage-2-only ablations and the single-view optimisation
            baseline (and its SMPL + VPoser variant when an SMPL model is configured).
        single_view_vposer: :class:`VPoserBaselineConfig`, the SMPL + VPoser single-view baseline.
    """

    out_dir: str = "runs/mvlift"
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=dict)
    stage1: TrainConfig = field(default_factory=lambda: TrainConfig(max_steps=600_000))
    stage2: Stage2Config = field(default_factory=Stage2Config)
    stage2_batch: int = 64
    stage2_windows: int | None = None
    threads: int = 0
    diagnostics: bool = True
    stage3: Stage3Config = field(default_factory=Stage3Config)
    stage4: TrainConfig = field(default_factory=lambda: TrainConfig(max_steps=50_000))
    lift: LiftConfig = field(default_factory=LiftConfig)
    baselines: bool = True
    single_view_vposer: VPoserBaselineConfig = field(default_factory=VPoserBaselineConfig)

    def __post_init__(self) -> None:
        check_fields(
            self, {"stage2_batch": at_least(1), "stage2_windows": at_least(1), "threads": at_least(0)}
        )
        if check_device_name(self.device) is not None:
            raise ConfigError(
                "PipelineConfig", "device", f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}"
            )
        self._check_model_section()
        if self.model.get("max_frames", 512) < self.data.window:
            raise ConfigError(
                "PipelineConfig",
                "model.max_frames",
                f"expected an int >= data.window ({self.data.window}), the frames of every window the models "
                f"see, got {self.model.get('max_frames', 512)}",
            )
        if self.lift.num_views != self.stage3.out_views:
            raise ConfigError(
                "PipelineConfig",
                "lift.num_views",
                f"expected stage3.out_views ({self.stage3.out_views}), the views the stage-4 model is "
                f"trained on, got {self.lift.num_views}",
            )
        if self.lift.stage2_weight > 0:
            self._check_stage2_fusion()

    def _check_stage2_fusion(self) -> None:
        """``lift.stage2_weight > 0`` fuses stage 2 into lifting (:mod:`mvlift.stages.fusion`): its 3D must
        be direct (depth parameterisation) and in the lifting ring's frame (camera 0 shared)."""
        if self.stage2.parameterization != "depth":
            raise ConfigError(
                "PipelineConfig",
                "lift.stage2_weight",
                "fuses the stage-2 3D into lifting, which needs stage2.parameterization: depth, got "
                f"{self.stage2.parameterization!r} (or set lift.stage2_weight: 0)",
            )
        name = camera0_mismatch(self.stage2, self.lift)
        if name is not None:
            a, b = getattr(self.stage2, name), getattr(self.lift, name)
            raise ConfigError(
                "PipelineConfig",
                f"lift.{name}",
                f"expected stage2.{name} ({a!r}): lift.stage2_weight > 0 mixes the two rings' 3D, which "
                f"must share camera 0; got {b!r}",
            )

    def _check_model_section(self) -> None:
        """``model`` holds :class:`DenoiserConfig` fields other than those the pipeline sets, valid ones."""
        set_here = sorted(set(self.model) & {"num_joints", "kind", "num_views"})
        if set_here:
            raise ConfigError(
                "PipelineConfig",
                f"model.{set_here[0]}",
                "is set by the pipeline (num_joints from data.skeleton, kind by the stage, num_views from "
                "stage3.out_views): remove it",
            )
        try:
            DenoiserConfig(num_joints=1, kind="stage1", **checked_fields(DenoiserConfig, self.model, "keys"))
        except ConfigError as exc:
            raise exc.within("PipelineConfig", "model") from None

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir)

    def resolved_device(self) -> torch.device:
        """The device of this process (under torchrun: ``cuda:LOCAL_RANK``).

        Raises:
            ValueError: the configured device does not exist here (``device: cuda`` without CUDA).
        """
        import os

        device = resolve_device(self.device, where="device")
        if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
            device = resolve_device(f"cuda:{int(os.environ['LOCAL_RANK'])}", where="device (LOCAL_RANK)")
        return device

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": self.out_dir,
            "device": self.device,
            "data": dataclasses.asdict(self.data),
            "model": dict(self.model),
            "stage1": self.stage1.to_dict(),
            "stage2": self.stage2.to_dict(),
            "stage2_batch": self.stage2_batch,
            "stage2_windows": self.stage2_windows,
            "threads": self.threads,
            "diagnostics": self.diagnostics,
            "stage3": self.stage3.to_dict(),
            "stage4": self.stage4.to_dict(),
            "lift": self.lift.to_dict(),
            "baselines": self.baselines,
            "single_view_vposer": self.single_view_vposer.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PipelineConfig:
        """The config a (YAML-like) mapping describes; sections may be mappings of their fields.

        Raises:
            mvlift._fields.ConfigError: (a ValueError) naming the first bad setting by its path in the
                mapping, e.g. ``"stage2.steps: expected an int >= 1, got -10"``.
        """
        try:
            return cls(**checked_fields(cls, d, "pipeline config keys"))
        except ConfigError as exc:
            raise exc.within("") from None


# Sections a config file must hold: without them a run would silently get the paper's data source and
# training lengths (a 600,000-step stage 1).
REQUIRED = {"data": (), "stage1": ("max_steps",), "stage4": ("max_steps",)}


def load_pipeline_config(
    path: str | Path, *, settings: list[str] | tuple[str, ...] = (), **overrides: Any
) -> PipelineConfig:
    """Read a YAML (or JSON) pipeline config.

    Args:
        path: the config file.
        settings: ``"dotted.key=value"`` strings applied in order, the value parsed as YAML
            (e.g. ``"stage1.max_steps=100"``, ``"data.source=/data/cmu/asfamc"``).
        overrides: top-level keys to replace when not None (e.g. ``out_dir``, ``device``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path} (start from {_DEMO_CONFIG})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text (UTF-8) file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: a pipeline config must be a mapping of sections, got {type(data).__name__}"
        )
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"a setting must look like section.key=value, got {item!r}")
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"setting {item!r}: {part!r} is not a section")
        try:
            node[leaf] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"setting {item!r}: the value is not valid YAML: {exc}") from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        checked_fields(PipelineConfig, data, "pipeline config keys")  # a misspelt section first
    except ConfigError as exc:
        raise exc.within("") from None
    missing = [f"'{name}'" for name in REQUIRED if name not in data]
    missing += [
        f"'{name}.{key}'"
        for name, keys in REQUIRED.items()
        if isinstance(data.get(name), dict)
        for key in keys
        if key not in data[name]
    ]
    if missing:
        raise ValueError(
            f"{path}: missing {', '.join(missing)}: a config must say where the data comes from and how long "
            f"each model trains (the defaults are the paper's: a 600,000-step stage 1); start from "
            f"{_DEMO_CONFIG} and edit it"
        )
    return PipelineConfig.from_dict(data)


_DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"  # what `mvlift demo` runs


# ------------------------------------------------------------------------------------------------ steps


def _skeleton(name: str):  # noqa: ANN202 - returns a Skeleton
    """The registered skeleton ``name``, or a procedural one: ``"quadruped17"`` (procedural animals) or
    ``"body14_object5"`` (procedural human + object, :mod:`mvlift.data.procedural_object`)."""
    from mvlift.data.procedural import QUADRUPED17
    from mvlift.data.procedural_object import BODY14_OBJECT5
    from mvlift.data.skeletons import get_skeleton

    procedural = {s.name: s for s in (QUADRUPED17, BODY14_OBJECT5)}
    if name.lower() in procedural:
        return procedural[name.lower()]
    return get_skeleton(name)


def _motions(cfg: DataConfig) -> tuple[list[Any], list[Any]]:
    """(train motions, eval motions)."""
    if cfg.source == "procedural":
        from mvlift.data.procedural import random_motion
        from mvlift.data.procedural_object import BODY14_OBJECT5, random_object_motion

        skel = _skeleton(cfg.skeleton)
        seeds = [cfg.seed * 100_003 + i for i in range(cfg.train_clips + cfg.eval_clips)]
        if skel is BODY14_OBJECT5:
            make = [random_object_motion(s, cfg.clip_frames, cfg.fps) for s in seeds]
        else:
            make = [random_motion(s, cfg.clip_frames, cfg.fps, skeleton=skel) for s in seeds]
        return make[: cfg.train_clips], make[cfg.train_clips :]
    from mvlift.data.loading import find_mocap_files, load_mocap

    folder = Path(cfg.source)
    if not folder.is_dir():
        raise FileNotFoundError(f"data.source: {folder} is not a folder of mocap files (or 'procedural')")
    files = find_mocap_files(folder)
    if not files:
        raise FileNotFoundError(f"data.source: no .amc/.bvh/.npz files in {folder}")
    if cfg.eval_files is not None:
        held = set(cfg.eval_files)
        is_eval = [Path(f).stem in held for f in files]
    else:
        is_eval = [i % cfg.eval_every == 1 for i in range(len(files))]
    train, evals = [], []
    for f, e in zip(files, is_eval, strict=True):
        m = load_mocap(f, max_frames=cfg.max_frames)
        (evals if e else train).append(m)
    return train, evals


def prepare_data(config: PipelineConfig) -> dict[str, Any]:
    """Step 1: write ``data/train`` (2D only) and ``data/eval`` (2D + hidden 3D) single-view datasets."""
    from mvlift.data.singleview import build_singleview_dataset

    cfg = config.data
    out = config.run_dir / "data"
    if (out / "train" / "manifest.json").exists() and (out / "eval" / "manifest.json").exists():
        return json.loads((out / "train" / "manifest.json").read_text())
    train, evals = _motions(cfg)
    if not train or not evals:
        raise ValueError(f"need training and evaluation clips, got {len(train)} and {len(evals)}")
    skel = _skeleton(cfg.skeleton)
    common = dict(
        skeleton=skel,
        fps=cfg.fps,
        window=cfg.window,
        min_length=cfg.min_length,
        noise_px=cfg.noise_px,
        drop_prob=cfg.drop_prob,
    )
    manifest = build_singleview_dataset(
        train,
        out / "train",
        seed=cfg.seed,
        stride=cfg.stride,
        cameras_per_window=cfg.cameras_per_window,
        **common,
    )
    build_singleview_dataset(evals, out / "eval", seed=cfg.seed + 1, **common)
    return manifest


def _train_config(base: TrainConfig, out_dir: Path, device: torch.device) -> TrainConfig:
    return base.replace(out_dir=str(out_dir), device=str(device))


def _model_config(config: PipelineConfig, num_joints: int, kind: str, num_views: int = 4) -> DenoiserConfig:
    return DenoiserConfig(num_joints=num_joints, kind=kind, num_views=num_views, **config.model)


def train_stage1(config: PipelineConfig) -> torch.nn.Module:
    """Step 2: train the stage-1 model on ``data/train`` (resumes); returns the EMA model."""
    from mvlift.data.singleview import load_singleview_dataset

    data = load_singleview_dataset(_needed(config, "data/train", "stage1"))
    device = config.resolved_device()
    out = config.run_dir / "stage1"
    tc = _train_config(config.stage1, out, device)
    ds = Stage1Dataset(data.keypoints, data.mask, data.conf, seed=config.data.seed)
    model = build_model(_model_config(config, data.keypoints.shape[2], "stage1"), seed=config.stage1.seed)
    Trainer(model, Stage1Objective(CosineSchedule()), ds, tc).fit(resume=True)  # no-op when finished
    return load_model(out, device=device)


def stage2_window_indices(n: int, limit: int | None) -> np.ndarray:
    """The training windows stages 2 and 3 use: ``limit`` evenly spaced indices of ``range(n)`` (all when
    ``limit`` is None or >= n), sorted, int64."""
    if limit is None or limit >= n:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def run_stage2_3(config: PipelineConfig, stage1_model: torch.nn.Module | None = None) -> Path:
    """Step 3: stages 2 and 3 over the training windows, one shard per ``stage2_batch`` windows (resumes).

    Each shard holds ``views`` (B, 4, T, J, 2), ``F`` (B, 4, 4, 3, 3), ``joints3d`` (B, T, J, 3), ``mask``
    (B, T), ``stage2_views`` (B, 6, T, J, 2) and ``window_index`` (B,) (the training window each row was
    made from; ``config.stage2_windows`` picks an evenly spaced subset).
    """
    from mvlift.data.singleview import load_singleview_dataset

    data = load_singleview_dataset(_needed(config, "data/train", "stage2_3"))
    device = config.resolved_device()
    if stage1_model is None:
        stage1_model = load_model(_needed(config, "stage1", "stage2_3"), device=device)
    model = stage1_model.to(device).eval()
    skel = _skeleton(config.data.skeleton)
    windows = stage2_window_indices(len(data), config.stage2_windows)
    n = len(windows)
    bs = config.stage2_batch
    num_shards = math.ceil(n / bs)
    job = {"stage2": config.stage2.to_dict(), "stage3": config.stage3.to_dict(), "batch": bs, "n": n}
    if config.stage2_windows is not None:
        job["windows"] = config.stage2_windows
    out = config.run_dir / "synthetic"
    rank, world = _rank_and_world()
    writer = ShardedWriter(out, num_shards, job, rank=rank, world_size=world)
    x_all = torch.as_tensor(data.keypoints[windows], dtype=torch.float32)
    m_all = torch.as_tensor(data.mask[windows])
    c_all = torch.as_tensor(data.conf[windows], dtype=torch.float32)
    w_all = torch.as_tensor(windows, dtype=torch.int64)
    schedule = CosineSchedule()

    def make_shard(index: int) -> dict[str, torch.Tensor]:
        sl = slice(index * bs, min(n, (index + 1) * bs))
        x, m, c = x_all[sl].to(device), m_all[sl].to(device), c_all[sl].to(device)
        s2 = dataclasses.replace(config.stage2, seed=config.stage2.seed + index)
        res = optimize_views(model, schedule, x, s2, mask=m, conf=c, skeleton=skel)
        s3 = dataclasses.replace(config.stage3, seed=config.stage3.seed + index)
        gen = torch.Generator().manual_seed(s3.seed)
        syn = synthesize(
            res.views.double(), res.cameras, skel.parents, skel.root, s3, mask=m, generator=gen, skeleton=skel
        )
        return {
            "views": syn["views"].float(),
            "F": syn["F"].float(),
            "joints3d": syn["joints3d"].float(),
            "mask": syn["mask"],
            "stage2_views": res.views.float(),
            "window_index": w_all[sl],
        }

    writer.run(make_shard, desc=f"stage2+3 (rank {rank}/{world})" if world > 1 else "stage2+3")
    return out


# What each step reads from the run folder: (folder, what it holds, the step that writes it).
_INPUTS = {
    "data/train": ("data/train", "single-view training windows (manifest.json)", "data"),
    "data/eval": ("data/eval", "evaluation windows (manifest.json)", "data"),
    "stage1": ("stage1", "stage-1 checkpoint", "stage1"),
    "synthetic": ("synthetic", "synthetic multi-view data (manifest.json)", "stage2_3"),
    "stage4": ("stage4", "stage-4 checkpoint", "stage4"),
}
_STEP_COMMANDS = {
    "data": "mvlift run CONFIG --steps data",
    "stage1": "mvlift stage1 CONFIG",
    "stage2_3": "mvlift stage2 CONFIG",
    "stage4": "mvlift stage4 CONFIG",
}


def _needed(config: PipelineConfig, name: str, step: str) -> Path:
    """The run folder's ``name`` input (:data:`_INPUTS`) of ``step``.

    Raises:
        FileNotFoundError: it is not there, naming the step that writes it and the command that runs it.
    """
    from mvlift.training.checkpoint import list_checkpoints

    rel, what, producer = _INPUTS[name]
    path = config.run_dir / rel
    if what.endswith("checkpoint"):
        found = bool(list_checkpoints(path / "checkpoints"))
    else:
        found = (path / "manifest.json").is_file() or any(path.glob("manifest.rank*.json"))
    if not found:
        raise FileNotFoundError(
            f"step {step!r} needs the {what} in {path}, which the {producer!r} step writes: run "
            f"`{_STEP_COMMANDS[producer]}` first (`mvlift run CONFIG` runs every step in order)"
        )
    return path


def _rank_and_world() -> tuple[int, int]:
    """This process's rank and the process count under ``torchrun`` (RANK / WORLD_SIZE), else (0, 1).

    Under torchrun each rank computes the shards ``index % world_size == rank`` on its own GPU
    (``LOCAL_RANK``); :func:`train_stage4` merges the per-rank manifests."""
    import os

    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def train_stage4(config: PipelineConfig) -> torch.nn.Module:
    """Step 4: train the multi-view model on the synthetic data (resumes); returns the EMA model."""
    device = config.resolved_device()
    merge_manifests(_needed(config, "synthetic", "stage4"))  # joins the per-rank manifests of torchrun
    s3 = config.stage3
    syn = load_shards(config.run_dir / "synthetic", keys=("views", "F", "mask", "joints3d"))
    views = syn["views"]
    # the views are projections of joints3d: a sample is usable when what stage 4 trains on is finite
    keep = torch.isfinite(syn["joints3d"] if s3.rerender else views).flatten(1).all(dim=1)
    if not bool(keep.any()):
        raise ValueError("stage 4: no finite synthetic sample (stage 2/3 failed on every window)")
    if s3.rerender:
        skel = _skeleton(config.data.skeleton)
        ds: MultiViewDataset | MultiViewMotionDataset = MultiViewMotionDataset(
            syn["joints3d"][keep],
            syn["mask"][keep],
            num_views=s3.out_views,
            radius=s3.out_radius,
            focal=s3.focal,
            image_size=s3.image_size,
            root_joints=skel.root,
            swap=skel.left_right_swap if s3.mirror else None,
            mirror=s3.mirror,
            seed=config.data.seed,
        )
    else:
        ds = MultiViewDataset(views[keep], syn["mask"][keep], syn["F"][keep], seed=config.data.seed)
    out = config.run_dir / "stage4"
    tc = _train_config(config.stage4, out, device)
    model = build_model(
        _model_config(config, views.shape[3], "multiview", views.shape[1]), seed=config.stage4.seed
    )
    Trainer(model, Stage4Objective(CosineSchedule()), ds, tc).fit(resume=True)  # no-op when finished
    return load_model(out, device=device)


def _vposer_baseline_models(
    config: PipelineConfig, skeleton: Any, device: torch.device
) -> tuple[Any, Any] | None:
    """The SMPL layer and VPoser of the ``single_view_vposer`` row (float32, on ``device``), or None when the
    row is not configured (:class:`VPoserBaselineConfig`)."""
    section = config.single_view_vposer
    if section.smpl_model is not None:
        smpl_path, vposer_path, where = section.smpl_model, section.vposer_weights, "single_view_vposer"
    elif config.stage3.smpl_model is not None:
        smpl_path, vposer_path, where = config.stage3.smpl_model, config.stage3.vposer_weights, "stage3"
    else:
        return None
    from mvlift.body import load_body_models

    return load_body_models(
        smpl_path, vposer_path, skeleton=skeleton, where=f"{where}.", seed=section.seed, device=device
    )


def evaluate(
    config: PipelineConfig,
    stage4_model: torch.nn.Module | None = None,
    stage1_model: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Step 5: lift the evaluation windows and score them (paper protocol); writes ``metrics.json``/``.md``.

    Methods: ``mvlift`` (stage-4 model + triangulation; with ``lift.stage2_weight > 0`` fused with the
    stage-2 estimate of the same input, :mod:`mvlift.stages.fusion`, whose time it includes),
    ``stage1_only`` (each unseen view sampled independently from the stage-1 model given the input's
    epipolar lines, then triangulated; when
    ``config.baselines``), ``stage2_only`` (stage-2 views of the stage-1 model triangulated directly; when
    ``config.baselines``), ``single_view`` (the single-view optimisation baseline of
    :mod:`mvlift.baselines`; when ``config.baselines``) and ``single_view_vposer`` (its SMPL + VPoser
    variant, started from the ``single_view`` joints, whose time it includes; when ``config.baselines`` and
    an SMPL model is configured, :class:`VPoserBaselineConfig`). The SMPL and VPoser files are loaded
    before anything runs, so a missing file fails at once.
    """
    from mvlift.data.singleview import load_singleview_dataset, load_singleview_eval
    from mvlift.metrics import MetricTable, evaluate_sequence

    device = config.resolved_device()
    data = load_singleview_dataset(_needed(config, "data/eval", "eval"))
    gt = load_singleview_eval(config.run_dir / "data" / "eval")
    skel = _skeleton(config.data.skeleton)
    body_models = _vposer_baseline_models(config, skel, device) if config.baselines else None
    x = torch.as_tensor(data.keypoints, dtype=torch.float32, device=device)
    mask = torch.as_tensor(data.mask, device=device)
    preds: dict[str, torch.Tensor] = {}
    timings: dict[str, float] = {}
    if stage4_model is None:
        stage4_model = load_model(_needed(config, "stage4", "eval"), device=device)
    m4 = stage4_model
    if stage1_model is None and (config.baselines or config.lift.stage2_weight > 0):
        stage1_model = load_model(_needed(config, "stage1", "eval"), device=device)
    fusion = None
    if config.lift.stage2_weight > 0:
        assert stage1_model is not None
        fusion = Stage2Fusion(stage1_model.to(device), config.stage2, skel)
    t0 = time.perf_counter()
    conf_in = torch.as_tensor(data.conf, dtype=torch.float32, device=device)  # dropped joints: not observed
    res = lift(
        m4.to(device),
        x,
        config.lift,
        mask=mask,
        conf=conf_in,
        root=skel.root,
        parents=skel.parents,
        stage2=fusion,
    )
    preds["mvlift"] = res.joints3d
    timings["mvlift"] = time.perf_counter() - t0
    if config.baselines:
        assert stage1_model is not None
        m1 = stage1_model
        refine = config.stage3.refine_iters
        t0 = time.perf_counter()
        s1 = sample_views_stage1_only(m1.to(device), x, config.stage2, mask=mask, steps=config.lift.steps)
        # flagged points (behind a camera, unconverged, reprojection outliers) repaired or NaN, as for mvlift
        X1 = triangulate_repaired(s1.views, s1.cameras, config.lift, mask=mask, refine_iters=refine)[0]
        preds["stage1_only"] = X1.float()
        timings["stage1_only"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        s2 = optimize_views(
            m1.to(device),
            CosineSchedule(),
            x,
            config.stage2,
            mask=mask,
            conf=torch.as_tensor(data.conf, dtype=torch.float32, device=device),
            skeleton=skel,
        )
        X = triangulate_repaired(s2.views, s2.cameras, config.lift, mask=mask, refine_iters=refine)[0]
        preds["stage2_only"] = X.float()
        timings["stage2_only"] = time.perf_counter() - t0
        from mvlift.baselines import SingleViewFitConfig, fit_single_view

        t0 = time.perf_counter()
        conf = torch.as_tensor(data.conf, dtype=torch.float32, device=device)
        preds["single_view"] = fit_single_view(x, skel, SingleViewFitConfig(), mask=mask, conf=conf)
        timings["single_view"] = time.perf_counter() - t0
        if body_models is not None:
            from mvlift.baselines import fit_single_view_smpl

            t0 = time.perf_counter()
            fit = fit_single_view_smpl(
                x,
                skel,
                *body_models,
                config.single_view_vposer.fit,
                mask=mask,
                conf=conf,
                init=preds["single_view"],
            )
            preds["single_view_vposer"] = fit.joints.float()
            timings["single_view_vposer"] = timings["single_view"] + time.perf_counter() - t0

    from mvlift.geometry import normalized_to_pixels

    cam0 = res.cameras.select([0])
    x_px = normalized_to_pixels(x.double().cpu(), config.lift.image_size)
    tables = {}
    for name, P in preds.items():
        table = MetricTable()
        for i in range(P.shape[0]):
            valid = gt.window_mask[i] & data.mask[i]
            pred_i = P[i].double().cpu().numpy()
            if not np.isfinite(pred_i[valid]).all():
                table.add({"failed": 1.0}, name=f"window{i}")
                continue
            m = evaluate_sequence(
                pred_i,
                gt.positions[i],
                skeleton=skel,
                mask=valid,
                input_2d=x_px[i].numpy(),
                camera=cam0.P[0],
                conf_2d=data.conf[i],
                facing_frames=max(1, round(0.5 * config.data.fps)),  # 0.5 s
                # bone_ratio on the triangulation before lift's joint fit; the other methods' own output
                triangulated=res.triangulated[i].double().cpu().numpy() if name == "mvlift" else None,
            )
            table.add(m, name=f"window{i}")
        tables[name] = table
    summary = {name: t.mean() for name, t in tables.items()}
    for name in summary:
        summary[name]["seconds"] = timings[name]
        summary[name]["windows"] = float(len(tables[name].rows))
        # the fraction of failed windows (MetricTable.mean averages "failed" over the failed rows only)
        rows = tables[name].rows
        summary[name]["failed"] = sum("failed" in m for _, m in rows) / max(1, len(rows))
    atomic_write_json(config.run_dir / "metrics.json", summary)
    atomic_write_text(config.run_dir / "metrics.md", format_metrics(summary) + "\n")
    return summary


METRIC_COLUMNS = (
    "t_root",
    "t_root_paper",
    "mpjpe",
    "pa_mpjpe",
    "global_mpjpe",
    "j2d",
    "j2d_paper",
    "bone_std",
    "bone_ratio",
)
"""Columns of :func:`format_metrics`: ours and, suffixed ``_paper`` (and ``bone_ratio``), the official
evaluation code's definitions (:func:`mvlift.metrics.evaluate_sequence`, docs/conventions.md)."""


def format_metrics(summary: dict[str, dict[str, float]]) -> str:
    """A Markdown table of the evaluation summary (mm; J_2D in canvas pixels; bone_ratio unitless)."""
    from mvlift.metrics import METRIC_DIGITS

    cols = [c for c in METRIC_COLUMNS if any(c in s for s in summary.values())]
    head = "| method | " + " | ".join(cols) + " | windows | failed | seconds |"
    lines = [head, "|" + "---|" * (len(cols) + 4)]
    for name, s in summary.items():
        cells = " | ".join(f"{s[c]:.{METRIC_DIGITS.get(c, 1)}f}" if c in s else "-" for c in cols)
        failed = s.get("failed", 0.0) * s.get("windows", 0.0)
        lines.append(
            f"| {name} | {cells} | {int(s.get('windows', 0))} | {int(round(failed))} | {s['seconds']:.1f} |"
        )
    return "\n".join(lines)


def set_threads(threads: int = 0) -> int:
    """Set torch's intra-op CPU threads and return the count.

    ``threads > 0`` is taken as given. ``0`` picks automatically: every core when the 1-minute load
    average says the machine is otherwise idle (< 0.5), else one thread, since on a shared machine torch's
    threads wait for each other at every parallel region (a stage-1 training step on 2 cores was 7x slower
    with two threads than with one while another process ran)."""
    import os

    if threads <= 0:
        cores = os.cpu_count() or 1
        try:
            busy = os.getloadavg()[0] >= 0.5
        except OSError:  # no load average on this platform
            busy = False
        threads = 1 if busy else cores
    torch.set_num_threads(threads)
    return threads


def run_pipeline(config: PipelineConfig, *, steps: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Run the steps in order (all by default): data, stage1, stage2_3, stage4, eval, diagnose.

    ``diagnose`` (:func:`mvlift.stages.diagnostics.diagnose`) runs by default when ``config.diagnostics``;
    named explicitly in ``steps`` it always runs."""
    all_steps = ("data", "stage1", "stage2_3", "stage4", "eval", "diagnose")
    explicit = steps is not None
    if steps is None:
        steps = all_steps if config.diagnostics else all_steps[:-1]
    bad = [s for s in steps if s not in all_steps]
    if bad:
        raise ValueError(f"unknown steps {bad}; known: {all_steps}")
    config.resolved_device()  # a missing device (cuda without CUDA) fails here, before any work
    check_output_dir(config.run_dir, where="out_dir")
    atomic_write_json(config.run_dir / "config.json", config.to_dict())
    previous_threads = torch.get_num_threads()
    set_threads(config.threads)
    try:
        return _run_steps(config, steps, explicit)
    finally:
        torch.set_num_threads(previous_threads)  # a library call leaves the caller's setting as it was


def _run_steps(config: PipelineConfig, steps: tuple[str, ...], explicit: bool) -> dict[str, Any]:
    """Run the steps, timing each; the wall seconds of every step run are merged into ``timings.json``."""
    out: dict[str, Any] = {}
    models: dict[str, torch.nn.Module | None] = {"m1": None, "m4": None}
    timings_path = config.run_dir / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}

    def timed(name: str, fn: Any) -> Any:
        t0 = time.perf_counter()
        result = fn()
        timings[name] = {"seconds": round(time.perf_counter() - t0, 1), "threads": torch.get_num_threads()}
        atomic_write_json(timings_path, timings)
        return result

    if "data" in steps:
        out["data"] = timed("data", lambda: prepare_data(config))
    if "stage1" in steps:
        models["m1"] = timed("stage1", lambda: train_stage1(config))
    if "stage2_3" in steps:
        out["synthetic"] = str(timed("stage2_3", lambda: run_stage2_3(config, models["m1"])))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()  # every rank's shards are written before stage 4 reads them
    if "stage4" in steps:
        models["m4"] = timed("stage4", lambda: train_stage4(config))
    if "eval" in steps:
        out["metrics"] = timed("eval", lambda: evaluate(config, models["m4"], models["m1"]))
    if "diagnose" in steps and (explicit or config.diagnostics):
        from mvlift.stages.diagnostics import diagnose

        out["diagnostics"] = timed("diagnose", lambda: diagnose(config))
    return out
