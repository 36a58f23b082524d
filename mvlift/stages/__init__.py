"""The MVLift stages as composable modules, and the pipeline that chains them.

- :mod:`~mvlift.stages.stage2`: multi-view 2D optimisation (SDS from the stage-1 model + epipolar terms).
- :mod:`~mvlift.stages.stage3`: triangulation, joint or SMPL fit, reprojection to a 4-view ring.
- :mod:`~mvlift.stages.lift`: inference with the stage-4 model (one 2D sequence -> 3D motion).
- :mod:`~mvlift.stages.shards`: sharded, atomic, resumable output of long jobs.
- :mod:`~mvlift.stages.profile`: the stage-2 profiler.
- :mod:`~mvlift.stages.pipeline`: data -> stage 1 -> stages 2+3 -> stage 4 -> evaluation, one config.
"""

from mvlift.stages.lift import LiftConfig, LiftResult, lift
from mvlift.stages.stage2 import Stage2Config, Stage2Result, optimize_views
from mvlift.stages.stage3 import Stage3Config, synthesize

__all__ = [
    "LiftConfig",
    "LiftResult",
    "Stage2Config",
    "Stage2Result",
    "Stage3Config",
    "lift",
    "optimize_views",
    "synthesize",
]
