"""The one configuration that describes a denoiser: a model rebuilds from it alone (:func:`build_model`)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from mvlift._fields import checked_fields
from mvlift.models.attention import CROSS_VIEW_BACKENDS

KINDS = ("stage1", "multiview")
ATTENTION_BACKENDS = ("auto", "sdpa", "xformers")


@dataclass
class DenoiserConfig:
    """Hyper-parameters of a 2D-motion transformer denoiser (x0 prediction).

    Defaults follow the MVLift paper's code: 4 post-LayerNorm layers, d_model 512, 4 heads, FFN 512,
    dropout 0.1.

    Attributes:
        num_joints: J, joints per frame of the skeleton the model is trained on.
        d_model: token width.
        num_layers: transformer blocks.
        num_heads: attention heads.
        ffn_dim: hidden width of each block's feed-forward network.
        dropout: dropout probability (embeddings, attention weights of the temporal attention, residual
            branches, FFN hidden layer).
        max_frames: longest sequence T the fixed sinusoidal positions cover.
        kind: ``"stage1"`` (line-conditioned single-view model, :class:`~mvlift.models.Stage1Denoiser`)
            or ``"multiview"`` (K-view model with cross-view attention,
            :class:`~mvlift.models.MultiViewDenoiser`).
        num_views: K, views per sample of the multi-view model (its view embedding has this many rows);
            ignored by ``"stage1"``.
        attention_backend: ``"auto"`` (xformers where its kernels work for the device and dtype, else
            PyTorch SDPA; the cross-view attention uses :func:`mvlift.ops.cross_view_attention` on CUDA when
            available), ``"sdpa"`` (PyTorch SDPA everywhere) or ``"xformers"`` (xformers everywhere; error
            where it is unusable). See :mod:`mvlift.models.attention`. The cross-view attention follows it
            unless ``cross_view_backend`` is set.
        head_dim: per-head width of queries, keys and values; ``None`` means ``d_model // num_heads``
            (the paper's code uses 256 with 4 heads).
        cross_view_backend: backend of the multi-view model's cross-view attention, set apart from the
            temporal attention's: ``None`` (follow ``attention_backend``), ``"auto"`` (the Triton kernel
            :func:`mvlift.ops.cross_view_attention` for CUDA tensors, else ``attention_backend="auto"``),
            ``"kernel"`` (always that op: the Triton kernel on CUDA; on CPU its PyTorch reference, or the
            kernel in Triton's interpreter under ``TRITON_INTERPRET=1``; error where the op is missing),
            ``"sdpa"`` or ``"xformers"``. See :func:`mvlift.models.attention.cross_view_attention`;
            ignored by ``"stage1"``.
    """

    num_joints: int
    d_model: int = 512
    num_layers: int = 4
    num_heads: int = 4
    ffn_dim: int = 512
    dropout: float = 0.1
    max_frames: int = 512
    kind: str = "stage1"
    num_views: int = 4
    attention_backend: str = "auto"
    head_dim: int | None = None
    cross_view_backend: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    @property
    def resolved_head_dim(self) -> int:
        """The per-head width actually used: ``head_dim`` or ``d_model // num_heads``."""
        return self.head_dim if self.head_dim is not None else self.d_model // self.num_heads

    @property
    def resolved_cross_view_backend(self) -> str:
        """The cross-view attention backend actually used: ``cross_view_backend`` or ``attention_backend``."""
        return self.cross_view_backend if self.cross_view_backend is not None else self.attention_backend

    def validate(self) -> None:
        """Raise ValueError/TypeError naming the first invalid field."""
        for name in (
            "num_joints",
            "d_model",
            "num_layers",
            "num_heads",
            "ffn_dim",
            "max_frames",
            "num_views",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"DenoiserConfig.{name} must be an int, got {type(value).__name__} {value!r}")
            if value < 1:
                raise ValueError(f"DenoiserConfig.{name} must be >= 1, got {value}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise TypeError(f"DenoiserConfig.dropout must be a float, got {type(self.dropout).__name__}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"DenoiserConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.kind not in KINDS:
            raise ValueError(f"DenoiserConfig.kind must be one of {KINDS}, got {self.kind!r}")
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(
                f"DenoiserConfig.attention_backend must be one of {ATTENTION_BACKENDS}, "
                f"got {self.attention_backend!r}"
            )
        if self.cross_view_backend is not None and self.cross_view_backend not in CROSS_VIEW_BACKENDS:
            raise ValueError(
                f"DenoiserConfig.cross_view_backend must be None or one of {CROSS_VIEW_BACKENDS}, "
                f"got {self.cross_view_backend!r}"
            )
        if self.head_dim is None:
            if self.d_model % self.num_heads != 0:
                raise ValueError(
                    f"DenoiserConfig.d_model ({self.d_model}) must be divisible by num_heads "
                    f"({self.num_heads}) when head_dim is None"
                )
        else:
            if isinstance(self.head_dim, bool) or not isinstance(self.head_dim, int):
                raise TypeError(f"DenoiserConfig.head_dim must be an int or None, got {self.head_dim!r}")
            if self.head_dim < 1:
                raise ValueError(f"DenoiserConfig.head_dim must be >= 1, got {self.head_dim}")
        if self.kind == "multiview" and self.num_views < 2:
            raise ValueError(
                f"DenoiserConfig.num_views must be >= 2 for kind='multiview', got {self.num_views}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (round-trips through :meth:`from_dict`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DenoiserConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys raise ValueError (a version mismatch)."""
        return cls(**checked_fields(cls, data, "DenoiserConfig keys"))

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DenoiserConfig:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))
