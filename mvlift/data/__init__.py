"""Skeletons, motion readers and the 2D datasets of mvlift.

- :mod:`~mvlift.data.skeletons`: joint sets (OpenPose-18, COCO-17, SMPL-24, H36M-17, CMU-31, BODY14) and
  the mappings between them.
- Readers: :func:`load_mocap` (CMU ASF/AMC, BVH, our npz), AIST++ (:mod:`~mvlift.data.aistpp`), COCO
  keypoint JSON (:mod:`~mvlift.data.coco`), :mod:`~mvlift.data.npz`.
- :mod:`~mvlift.data.resample`: resampling to 30 fps and 120-frame windows with masks.
- :mod:`~mvlift.data.normalize`: the paper's 2D normalisation and its inverse.
- :mod:`~mvlift.data.procedural`: a built-in, download-free synthetic motion source (humans, quadrupeds);
  :mod:`~mvlift.data.procedural_object`: humans carrying, lifting or swinging an object (14 + 5 keypoints).
- :mod:`~mvlift.data.singleview`: the single-view 2D dataset builder (2D for training; 3D kept apart).
"""

from mvlift.data.loading import find_mocap_files, load_mocap
from mvlift.data.motion import MocapFormatError, Motion, Sequence2D
from mvlift.data.normalize import Normalization2D, denormalize_2d, normalize_2d, normalize_2d_batch
from mvlift.data.procedural import (
    HUMAN_KINDS,
    QUADRUPED17,
    QUADRUPED_KINDS,
    ProceduralMotion,
    generate,
    generate_motion,
    random_motion,
)
from mvlift.data.procedural_object import BODY14_OBJECT5, OBJECT_KINDS, generate_object, random_object_motion
from mvlift.data.resample import make_windows, resample
from mvlift.data.singleview import (
    CameraRanges,
    SingleView2DDataset,
    SingleViewData,
    SingleViewEval,
    build_singleview_dataset,
    load_singleview_dataset,
    load_singleview_eval,
)
from mvlift.data.skeletons import (
    BODY14,
    CMU31,
    COCO17,
    H36M17,
    OPENPOSE18,
    SKELETONS,
    SMPL24,
    Skeleton,
    convert,
    get_skeleton,
)

__all__ = [
    "BODY14",
    "BODY14_OBJECT5",
    "OBJECT_KINDS",
    "generate_object",
    "random_object_motion",
    "CMU31",
    "COCO17",
    "H36M17",
    "HUMAN_KINDS",
    "OPENPOSE18",
    "QUADRUPED17",
    "QUADRUPED_KINDS",
    "SKELETONS",
    "SMPL24",
    "CameraRanges",
    "MocapFormatError",
    "Motion",
    "Normalization2D",
    "ProceduralMotion",
    "Sequence2D",
    "SingleView2DDataset",
    "SingleViewData",
    "SingleViewEval",
    "Skeleton",
    "build_singleview_dataset",
    "convert",
    "denormalize_2d",
    "find_mocap_files",
    "generate",
    "generate_motion",
    "get_skeleton",
    "load_mocap",
    "load_singleview_dataset",
    "load_singleview_eval",
    "make_windows",
    "normalize_2d",
    "normalize_2d_batch",
    "random_motion",
    "resample",
]
