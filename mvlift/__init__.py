"""mvlift: lift 2D motion to 3D world motion via 2D diffusion (MVLift, CVPR 2025).

Subpackages: ``geometry`` (cameras, epipolar math), ``data`` (skeletons, mocap readers, 2D datasets),
``metrics`` (MPJPE, PA-MPJPE, T_root, J_2D), ``ops`` (the public fused/native operations),
``reference`` (plain-PyTorch references of every op: test oracle and fallback).
"""

__version__ = "0.1.0"
