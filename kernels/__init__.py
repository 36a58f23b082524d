"""Triton kernels of mvlift, installed as ``mvlift.kernels``. Call them through ``mvlift.ops``."""
