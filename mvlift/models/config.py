"""The one configuration that describes a denoiser: a model rebuilds from it alone (:func:`build_model`)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from mvlift._fields import ConfigError, at_least, check_fields, checked_fields, greater_than, in_range, one_of
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
        skip: skip preconditioning of the x0 output (:mod:`mvlift.models.preconditioning`): at low noise the
            model returns its input plus a learned correction instead of learning the identity (off = the
            paper's plain x0 prediction).
        sigma_data: the data's standard deviation in normalised units, used by ``skip``.
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
    skip: bool = False
    sigma_data: float = 0.25

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
        """Raise :class:`mvlift._fields.ConfigError` (a ValueError and a TypeError) naming the first invalid
        field."""
        one = at_least(1)
        rules = {
            "num_joints": one,
            "d_model": one,
            "num_layers": one,
            "num_heads": one,
            "ffn_dim": one,
            "dropout": in_range(0.0, 1.0, hi_open=True),
            "max_frames": one,
            "kind": one_of(*KINDS),
            "num_views": one,
            "attention_backend": one_of(*ATTENTION_BACKENDS),
            "head_dim": one,
            "cross_view_backend": one_of(*CROSS_VIEW_BACKENDS),
            "sigma_data": greater_than(0.0),
        }
        check_fields(self, rules)
        if self.head_dim is None and self.d_model % self.num_heads != 0:
            raise ConfigError(
                "DenoiserConfig",
                "d_model",
                f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads}) when head_dim "
                "is None",
            )
        if self.kind == "multiview" and self.num_views < 2:
            raise ConfigError(
                "DenoiserConfig",
                "num_views",
                f"expected an int >= 2 for kind='multiview', got {self.num_views}",
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
