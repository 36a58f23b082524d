"""Skeletons, motion-capture readers (ASF/AMC, BVH, AIST++, COCO JSON, npz), resampling and windows, and the
2D training datasets."""

from mvlift.data.loading import load_mocap

__all__ = ["load_mocap"]
