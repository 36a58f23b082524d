"""The ``mvlift`` command line (:func:`main`; ``mvlift --help`` prints :data:`DESCRIPTION`)."""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

DESCRIPTION = """\
MVLift: lift 2D motion to 3D with multi-view diffusion priors learned from single-view 2D.

  mvlift demo                          all four stages at toy scale on built-in synthetic motion
  mvlift run CONFIG.yaml               the whole pipeline from a config (same steps as the demo)
  mvlift run CONFIG.yaml --check       check the config and print it resolved, then exit
  mvlift data prepare SRC OUT          mocap folder (or 'procedural') -> single-view 2D dataset
  mvlift data show INPUT --out P.png   plot a clip (mocap file or 2D npz) from a chosen camera
  mvlift stage1|stage2|stage3|stage4|eval CONFIG.yaml   one pipeline step (stage2 and stage3 run together)
  mvlift lift INPUT --model RUN/stage4 --out DIR        one 2D sequence -> 3D joints + root trajectory
  mvlift profile stage2                per-phase timing of the stage-2 loop, fused vs eager

Configs: start from mvlift/configs/demo.yaml. Every long step shows a progress bar; every step resumes
where a killed run stopped. "mvlift COMMAND --help" describes a command's options.
"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout and appends every option's default (unless it has none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" not in text
            and not (default is None or default is False or default == [] or default == argparse.SUPPRESS)
            and (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
        ):
            text += " (default: %(default)s)"
        return text


def _int_at_least(lo: int):  # noqa: ANN202 - an argparse type
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an int >= {lo}, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"expected an int >= {lo}, got {value}")
        return value

    parse.__name__ = f"int >= {lo}"
    return parse


def _number(  # noqa: ANN202 - an argparse type
    lo: float, *, strict: bool = False, hi: float | None = None, hi_open: bool = True
):
    bound = f"> {lo}" if strict else f">= {lo}"
    if hi is not None:
        bound = f"in [{lo}, {hi})" if hi_open else f"in [{lo}, {hi}]"

    def parse(text: str) -> float:
        import math

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text!r}") from None
        ok = (
            math.isfinite(value)
            and (value > lo if strict else value >= lo)
            and (hi is None or value < hi or (not hi_open and value == hi))
        )
        if not ok:
            raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text}")
        return value

    parse.__name__ = f"number {bound}"
    return parse


def _config(args: argparse.Namespace):  # noqa: ANN202
    from mvlift.stages.pipeline import load_pipeline_config

    return load_pipeline_config(args.config, settings=args.set, out_dir=args.out, device=args.device)


def _demo_config_path() -> Path:
    return Path(str(resources.files("mvlift") / "configs" / "demo.yaml"))


def cmd_demo(args: argparse.Namespace) -> int:
    from mvlift.stages.pipeline import format_metrics, load_pipeline_config, run_pipeline

    cfg = load_pipeline_config(_demo_config_path(), settings=args.set, out_dir=args.out, device=args.device)
    print(f"mvlift demo: synthetic procedural motion (no download) -> run folder {cfg.out_dir}", flush=True)
    result = run_pipeline(cfg)
    print("\nEvaluation on held-out synthetic clips (mm; J_2D in canvas pixels):")
    print(format_metrics(result["metrics"]))
    print(_reproducibility_note(cfg.run_dir))
    print(f"\nWritten: {cfg.run_dir}/metrics.md, loss plots in {cfg.run_dir}/stage1 and {cfg.run_dir}/stage4")
    return 0


def _reproducibility_note(run_dir: Path) -> str:
    """Why another run of the demo may print other numbers: the CPU thread count of its training."""
    try:
        timings = json.loads((run_dir / "timings.json").read_text())
        threads = sorted({int(t["threads"]) for t in timings.values() if "threads" in t})
    except (OSError, ValueError, TypeError, AttributeError):
        threads = []
    used = f" (this run: {', '.join(map(str, threads))})" if threads else ""
    return (
        f"Every run with the same seeds and the same number of CPU threads{used} prints this table; another "
        "thread count sums floats in another order while training, so the numbers move a little. Points the "
        "triangulation flags (behind a camera, not converged, reprojection outliers) are repaired or their "
        "window counted as failed, never averaged in."
    )


def cmd_run(args: argparse.Namespace) -> int:
    import yaml

    from mvlift.stages.pipeline import format_metrics, run_pipeline

    cfg = _config(args)
    if args.check:
        print(f"# {args.config}: valid; resolved with every default filled in", flush=True)
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    steps = tuple(s.strip() for s in args.steps.split(",") if s.strip()) if args.steps else None
    result = run_pipeline(cfg, steps=steps)
    if "metrics" in result:
        print(format_metrics(result["metrics"]))
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    import json

    from mvlift.stages.diagnostics import diagnose, format_diagnostics
    from mvlift.stages.pipeline import PipelineConfig

    run = Path(args.run)
    saved = run / "config.json"
    if not saved.is_file():
        raise SystemExit(
            f"mvlift diagnose: {saved} not found: RUN must be a run folder that mvlift run wrote"
        )
    data = json.loads(saved.read_text())
    data["out_dir"] = str(run)
    cfg = PipelineConfig.from_dict(data)
    diag = diagnose(cfg, max_windows=args.windows)
    print(format_diagnostics(diag))
    print(f"\nWritten: {run}/diagnostics.json and {run}/diagnostics.md")
    return 0


def _step(name: str):  # noqa: ANN202
    def run(args: argparse.Namespace) -> int:
        from mvlift.stages.pipeline import format_metrics, run_pipeline

        cfg = _config(args)
        steps = {
            "stage1": ("stage1",),
            "stage2": ("stage2_3",),
            "stage3": ("stage2_3",),
            "stage4": ("stage4",),
            "eval": ("eval",),
        }[name]
        result = run_pipeline(cfg, steps=steps)
        if "metrics" in result:
            print(format_metrics(result["metrics"]))
        return 0

    return run


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from mvlift.stages.pipeline import DataConfig, PipelineConfig, prepare_data

    data = DataConfig(
        source=args.source,
        skeleton=args.skeleton,
        window=args.window,
        min_length=args.min_length,
        noise_px=args.noise_px,
        drop_prob=args.drop_prob,
        seed=args.seed,
        max_frames=args.max_frames,
        train_clips=args.clips,
        eval_clips=args.eval_clips,
    )
    cfg = PipelineConfig(out_dir=args.out, data=data)
    from mvlift._runtime import check_output_dir

    check_output_dir(args.out, where="OUT")
    manifest = prepare_data(cfg)
    print(json.dumps({k: manifest[k] for k in manifest if k != "clips"}, indent=2, default=str)[:2000])
    print(f"written: {Path(args.out) / 'data' / 'train'} (2D only) and {Path(args.out) / 'data' / 'eval'}")
    return 0


def cmd_data_show(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from mvlift.viz import save_sequence_png

    path = Path(args.input)
    if path.suffix == ".npz" and "keypoints" in np.load(path).files:
        from mvlift.data.npz import load_sequence2d_npz

        seq = load_sequence2d_npz(path)
        kp = np.asarray(seq.keypoints)
        skeleton = seq.skeleton if seq.skeleton is not None else seq.parents
        image_size = seq.image_size
    else:
        from mvlift.data import load_mocap

        motion = load_mocap(path)
        if args.skeleton != "native" and motion.skeleton is not None:
            from mvlift.data.skeletons import get_skeleton

            motion = motion.to_skeleton(get_skeleton(args.skeleton))
        skeleton = motion.skeleton if motion.skeleton is not None else motion.parents
        X = torch.as_tensor(motion.positions[:: max(1, round(motion.fps / 30))])
        kp, note = _show_projection(X, args.azimuth, args.distance, where=str(path))
        image_size = _SHOW_IMAGE
        print(note)
    save_sequence_png(args.out, kp, skeleton, num_frames=args.frames, title=path.name, image_size=image_size)
    print(f"wrote {args.out}")
    return 0


_SHOW_IMAGE = (1920, 1080)  # the `data show` camera: 1920 x 1080 pixels, focal 1000 px
_SHOW_NEAR = 0.1  # metres: joints closer to the camera plane (or behind it) are not drawn


def _show_projection(X, azimuth: float, distance: float | None, *, where: str):  # noqa: ANN001, ANN202
    """``data show``'s view of a 3D clip X (T, J, 3) metres: pixels (T, J, 2) and a line on the camera.

    A horizontal camera at ``azimuth`` (degrees) looks at the centre of the clip's bounding box (all frames).
    Without ``distance`` it stands far enough to see every joint of every frame in the image (at least 3 m).
    With ``distance`` (metres) frames with a joint behind the camera or within 0.1 m of its plane are left out
    of the picture (NaN) with a warning.
    """
    import math
    import warnings

    import torch

    from mvlift.geometry import ring_cameras

    X = torch.as_tensor(X, dtype=torch.float64)
    finite = torch.isfinite(X).all(-1)
    if not bool(finite.any()):
        raise ValueError(f"{where}: the clip has no finite joint position to show")
    pts = X[finite]
    centre = (pts.amin(0) + pts.amax(0)) / 2
    W, H = _SHOW_IMAGE
    focal = 1000.0
    if distance is None:
        r_h = float((pts[:, [0, 2]] - centre[[0, 2]]).norm(dim=-1).max())
        r_v = float((pts[:, 1] - centre[1]).abs().max())
        # every joint lies within r_h of the look-at axis horizontally: depth >= d - r_h, and its image
        # offset from the centre is at most focal * r / (d - r_h); keep it inside 90% of the half image.
        fit = r_h + max(focal * r_h / (0.45 * W), focal * r_v / (0.45 * H), _SHOW_NEAR)
        distance = max(3.0, fit)
        how = "fits the whole clip"
    else:
        how = "as given"
    if not (math.isfinite(distance) and distance > 0):
        raise ValueError(f"--distance must be a finite number of metres > 0, got {distance!r}")
    cams = ring_cameras(
        1,
        radius=distance,
        start_azimuth=math.radians(azimuth),
        look_at=centre,
        focal=focal,
        image_size=_SHOW_IMAGE,
        dtype=torch.float64,
    )
    kp = cams.project(X)[0]
    near = (cams.depth(X)[0] <= _SHOW_NEAR) & finite
    bad = near.any(-1)
    if bool(bad.any()):
        warnings.warn(
            f"{where}: {int(bad.sum())} of {X.shape[0]} frames have joints behind the camera (or within "
            f"{_SHOW_NEAR} m of it) at --distance {distance:g} m; they are left out of the picture (omit "
            f"--distance for a camera that sees the whole clip)",
            stacklevel=2,
        )
        kp[bad] = torch.nan
    note = f"camera: azimuth {azimuth:g} deg, {distance:.2f} m from the clip's centre ({how})"
    return kp.numpy(), note


def cmd_lift(args: argparse.Namespace) -> int:
    from mvlift.stages.lift_io import lift_file

    out = lift_file(
        args.input,
        args.model,
        args.out,
        steps=args.steps,
        device=args.device,
        seed=args.seed,
        smpl_model=args.smpl_model,
        vposer_weights=args.vposer_weights,
        smpl_steps=args.smpl_steps,
        input_skeleton=args.skeleton,
        max_gap=args.max_gap,
        samples=args.samples,
        input_view_weight=args.input_view_weight,
        smooth_steps=args.smooth_steps,
        stage2_weight=args.stage2_weight,
    )
    print(out.pop("summary"))
    for k, v in out.items():
        print(f"{k}: {v}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    import torch

    from mvlift._runtime import resolve_device
    from mvlift.models import DenoiserConfig
    from mvlift.stages.profile import format_profile, profile_stage2
    from mvlift.stages.stage2 import Stage2Config

    device = str(resolve_device(args.device, where="--device"))
    mc = DenoiserConfig(
        num_joints=args.joints,
        d_model=args.d_model,
        num_layers=args.layers,
        num_heads=args.heads,
        ffn_dim=args.d_model,
    )
    results = profile_stage2(
        batch=args.batch,
        frames=args.frames,
        joints=args.joints,
        model_config=mc,
        stage2=Stage2Config(pairs=args.pairs),
        iters=args.iters,
        device=device,
    )
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
    print(format_profile(results, device=f"on {name} (B={args.batch}, T={args.frames}, J={args.joints})"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    fmt = _HelpFormatter
    p = argparse.ArgumentParser(prog="mvlift", description=DESCRIPTION, formatter_class=fmt)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def parser(parent: Any, name: str, text: str) -> argparse.ArgumentParser:
        return parent.add_parser(name, help=text, description=text, formatter_class=fmt)

    def common(sp: argparse.ArgumentParser, config: bool = True, out: str | None = None) -> None:
        if config:
            sp.add_argument("config", help="pipeline config YAML (start from mvlift/configs/demo.yaml)")
        where = "the run folder" if out else "the run folder (default: the config's out_dir)"
        sp.add_argument("--out", default=out, help=where)
        sp.add_argument(
            "--device",
            default=None,
            help="auto, cpu, cuda or cuda:N (default: the config's device)",
        )
        sp.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config entry (repeatable), e.g. --set stage1.max_steps=100 "
            "--set data.source=/data/asfamc",
        )

    sp = parser(sub, "demo", "run all stages at toy scale on built-in synthetic motion")
    common(sp, config=False, out="runs/demo")
    sp.set_defaults(func=cmd_demo)

    sp = parser(sub, "run", "run the whole pipeline from a config")
    common(sp)
    sp.add_argument(
        "--check",
        action="store_true",
        help="check the config (every setting's type and range) and print it resolved, then exit",
    )
    sp.add_argument(
        "--steps",
        default=None,
        metavar="STEP,...",
        help="run only these steps, in pipeline order: data, stage1, stage2_3, stage4, eval, diagnose "
        "(default: all; diagnose when the config's diagnostics is true)",
    )
    sp.set_defaults(func=cmd_run)
    for name, text in (
        ("stage1", "train the line-conditioned 2D model"),
        ("stage2", "stage-2 multi-view optimisation (+ stage 3) on the training windows"),
        ("stage3", "same as stage2: stages 2 and 3 run together per shard"),
        ("stage4", "train the multi-view model on the synthetic data"),
        ("eval", "lift and score the held-out windows (paper protocol)"),
    ):
        sp = parser(sub, name, text)
        common(sp)
        sp.set_defaults(func=_step(name))

    sp = parser(sub, "diagnose", "per-stage diagnostics of a run whose data has 3D (diagnostics.json/.md)")
    sp.add_argument("run", help="a run folder written by mvlift run (holds config.json)")
    sp.add_argument(
        "--windows", type=_int_at_least(1), default=64, help="at most this many windows per stage"
    )
    sp.set_defaults(func=cmd_diagnose)

    data_parser = parser(sub, "data", "prepare or plot datasets")
    data = data_parser.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    sp = parser(data, "prepare", "mocap folder (or 'procedural') -> single-view 2D dataset")
    sp.add_argument("source", help="a folder of .amc/.bvh/.npz files, or 'procedural'")
    sp.add_argument("out", help="run folder; writes OUT/data/train and OUT/data/eval")
    sp.add_argument("--skeleton", default="body14", help="joint set of the 2D (body14, coco17, ...)")
    sp.add_argument("--window", type=_int_at_least(2), default=120, help="frames per window")
    sp.add_argument(
        "--min-length", type=_int_at_least(1), default=60, help="windows with fewer real frames are dropped"
    )
    sp.add_argument("--noise-px", type=_number(0), default=0.0, help="2D noise (std, pixels)")
    sp.add_argument("--drop-prob", type=_number(0, hi=1), default=0.0, help="joint drop probability")
    sp.add_argument("--seed", type=_int_at_least(0), default=0, help="seeds clips, cameras and noise")
    sp.add_argument(
        "--max-frames", type=_int_at_least(1), default=None, help="mocap: read at most this many frames"
    )
    sp.add_argument("--clips", type=_int_at_least(1), default=64, help="procedural: training clips")
    sp.add_argument("--eval-clips", type=_int_at_least(1), default=8, help="procedural: evaluation clips")
    sp.set_defaults(func=cmd_data_prepare)
    sp = parser(data, "show", "plot a clip's skeleton from a chosen camera to PNG")
    sp.add_argument("input", help="a mocap file (.amc/.bvh/.npz motion) or a 2D sequence .npz")
    sp.add_argument("--out", required=True, help="PNG path")
    sp.add_argument("--azimuth", type=float, default=0.0, help="camera azimuth, degrees")
    sp.add_argument(
        "--distance",
        type=float,
        default=None,
        help="camera distance from the clip's centre, metres (default: far enough to see the whole clip)",
    )
    sp.add_argument("--frames", type=int, default=6, help="frames in the strip")
    sp.add_argument(
        "--skeleton",
        default="body14",
        help="draw mocap on this joint set (body14, openpose18, ...) or 'native'",
    )
    sp.set_defaults(func=cmd_data_show)

    sp = parser(sub, "lift", "one 2D sequence -> 3D joints + root trajectory (+ pictures)")
    sp.add_argument("input", help="2D sequence: our .npz, COCO keypoint JSON or AIST++ keypoints2d pickle")
    sp.add_argument(
        "--model",
        default=None,
        help="the stage-4 (multi-view) model: RUN/stage4, or one of its checkpoints (default: the model "
        "shipped in the package, trained on CMU clips by mvlift/configs/cmu_cpu.yaml; see its MODEL_CARD.md)",
    )
    sp.add_argument("--out", required=True, help="output folder (created; checked before any work)")
    sp.add_argument("--steps", type=_int_at_least(1), default=20, help="DDIM steps")
    sp.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    sp.add_argument("--seed", type=_int_at_least(0), default=0, help="sampling seed")
    sp.add_argument(
        "--smpl-model", default=None, help="SMPL .pkl: also fit SMPL under VPoser (needs mvlift[smpl])"
    )
    sp.add_argument("--vposer-weights", default=None, help="VPoser v1 folder (vposer_v1_0) or .pt state dict")
    sp.add_argument("--smpl-steps", type=_int_at_least(1), default=1000, help="Adam steps of the SMPL fit")
    sp.add_argument(
        "--skeleton",
        default=None,
        help="the input's joint set (coco17, body14, ...) when the file does not name it; required then",
    )
    sp.add_argument(
        "--max-gap",
        type=_int_at_least(0),
        default=8,
        help="interpolate a joint's runs of missing frames up to this long (frames); longer ones stay masked",
    )
    sp.add_argument(
        "--samples",
        type=_int_at_least(1),
        default=8,
        help="samples of the generated views, triangulated together with the input view",
    )
    sp.add_argument(
        "--input-view-weight",
        type=_number(0, strict=True),
        default=100.0,
        help="weight of the input view in the triangulation (each generated view: 1); large keeps the 3D on "
        "the input's rays",
    )
    sp.add_argument(
        "--smooth-steps",
        type=_int_at_least(0),
        default=100,
        help="steps of the joint fit (constant bones, smooth motion) after triangulation; 0 = none",
    )
    sp.add_argument(
        "--stage2-weight",
        type=_number(0, hi=1, hi_open=False),
        default=0.5,
        help="weight of the stage-2 estimate (the stage-1 model of the --model's run) mixed with the "
        "triangulation before the joint fit; 0 = the stage-4 model alone (the paper)",
    )
    sp.set_defaults(func=cmd_lift)

    prof_parser = parser(sub, "profile", "profilers")
    prof = prof_parser.add_subparsers(dest="profile_command", required=True, metavar="COMMAND")
    sp = parser(prof, "stage2", "per-phase stage-2 timing, fused kernels vs eager references")
    sp.add_argument("--batch", type=_int_at_least(1), default=64, help="sequences optimised together")
    sp.add_argument("--frames", type=_int_at_least(2), default=120, help="frames per sequence")
    sp.add_argument("--joints", type=_int_at_least(1), default=18, help="joints per frame")
    sp.add_argument("--d-model", type=_int_at_least(1), default=512, help="the stage-1 model's width")
    sp.add_argument("--layers", type=_int_at_least(1), default=4, help="the stage-1 model's layers")
    sp.add_argument("--heads", type=_int_at_least(1), default=4, help="the stage-1 model's attention heads")
    sp.add_argument("--pairs", default="all", choices=("all", "ring"), help="epipolar view pairs")
    sp.add_argument("--iters", type=_int_at_least(1), default=20, help="timed stage-2 iterations")
    sp.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    sp.set_defaults(func=cmd_profile)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``mvlift ARGV``; returns the exit status (2 with a one-line message for a usage or input error)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (OSError, ValueError) as exc:  # FileNotFoundError, PermissionError, config/checkpoint errors
        print(f"mvlift {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
