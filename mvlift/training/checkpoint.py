"""Training checkpoints: one safetensors file of tensors + one JSON sidecar of everything else.

A checkpoint of step ``s`` is the pair ``step_<s:08d>.safetensors`` / ``step_<s:08d>.json`` in a run's
``checkpoints/`` folder. Both are written atomically (temporary file + ``os.replace``), tensors first: a
checkpoint counts as complete once its JSON exists, so a kill during a write never leaves a checkpoint
that looks valid but is not.

Tensor keys (safetensors):
    ``model/<name>``             the model's state dict (the trained weights)
    ``ema/<name>``               the EMA copy's state dict (the weights used for sampling)
    ``optim/<index>/<name>``     optimizer per-parameter state tensors (e.g. AdamW ``exp_avg``)
    ``rng/<rank>/<name>``        RNG states of every rank (torch CPU, CUDA, the trainer's generator)

JSON sidecar: ``format``, ``step``, ``model_config`` (``DenoiserConfig.to_dict()``), ``train_config``,
the data-stream position, optimizer hyper-parameters (``param_groups``) and non-tensor state, timing, and
the tensors file's size and SHA-256 (``tensors_bytes``, ``tensors_sha256``), checked on every load: a
truncated or damaged tensors file raises :class:`CheckpointError` naming it instead of loading wrong
weights (a checkpoint written before the checksum existed loads with a warning).
:func:`load_model` rebuilds the model from a checkpoint alone.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from mvlift.atomic import atomic_write_bytes, atomic_write_text

FORMAT = "mvlift-train-checkpoint/1"
_STEM = re.compile(r"^step_(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as written: a truncated or damaged file, a checksum mismatch, a
    sidecar that is not an mvlift checkpoint's. The message names the file and what to do."""


_WHAT_TO_DO = (
    "delete this checkpoint's .json and .safetensors to resume from the previous checkpoint, or copy the "
    "run folder again from a good source"
)


def checkpoint_stem(step: int) -> str:
    """File stem of step ``step``'s checkpoint, e.g. ``step_00001000``."""
    return f"step_{int(step):08d}"


def _to_cpu_tensors(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Own, contiguous CPU copies: safetensors refuses tensors that share storage (e.g. tied weights).
    return {f"{prefix}/{k}": v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def flatten_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``optim/<index>/<name>``) and a JSON-able rest.

    Returns:
        ``(tensors, meta)`` with ``meta = {"param_groups": [...], "scalars": {index: {name: value}}}``.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in state["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{index}/{name}"] = value.detach().to("cpu", copy=True).contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state` (tuples such as ``betas`` restored)."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split("/", 2)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    ckpt_dir: str | Path,
    step: int,
    *,
    model_state: dict[str, torch.Tensor],
    ema_state: dict[str, torch.Tensor] | None,
    optimizer_state: dict[str, Any] | None,
    rng_states: list[dict[str, torch.Tensor]] | None,
    meta: dict[str, Any],
) -> Path:
    """Write step ``step``'s checkpoint into ``ckpt_dir``; returns the JSON sidecar's path.

    Args:
        model_state: the model's state dict.
        ema_state: the EMA copy's state dict, or None.
        optimizer_state: ``optimizer.state_dict()``, or None.
        rng_states: one dict of RNG state tensors per rank, or None.
        meta: JSON-serialisable extras (must include ``model_config``), merged into the sidecar.
    """
    if "model_config" not in meta:
        raise ValueError(
            "save_checkpoint: meta must hold 'model_config' (the model cannot be rebuilt without it)"
        )
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tensors = _to_cpu_tensors("model", model_state)
    if ema_state is not None:
        tensors.update(_to_cpu_tensors("ema", ema_state))
    sidecar: dict[str, Any] = {"format": FORMAT, "step": int(step), **meta}
    if optimizer_state is not None:
        opt_tensors, opt_meta = flatten_optimizer_state(optimizer_state)
        tensors.update(opt_tensors)
        sidecar["optimizer"] = opt_meta
    if rng_states is not None:
        for rank, states in enumerate(rng_states):
            tensors.update(_to_cpu_tensors(f"rng/{rank}", states))
        sidecar["rng_world_size"] = len(rng_states)
    stem = checkpoint_stem(step)
    st_path = ckpt_dir / f"{stem}.safetensors"
    json_path = ckpt_dir / f"{stem}.json"
    sidecar["tensors_file"] = st_path.name
    # Serialised in memory: the checksum is taken of exactly the bytes written, and the file gets the
    # permissions of every other output (safetensors' own writer creates files readable by the owner only).
    data = save_safetensors(tensors, metadata={"format": FORMAT})
    sidecar["tensors_bytes"] = len(data)
    sidecar["tensors_sha256"] = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(st_path, data)
    atomic_write_text(json_path, json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    return json_path


def list_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """Complete checkpoints (JSON sidecar and tensors both present) in ``ckpt_dir``, oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = []
    for p in ckpt_dir.glob("step_*.json"):
        m = _STEM.match(p.stem)
        if m and p.with_suffix(".safetensors").is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def prune_checkpoints(ckpt_dir: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` most recent complete checkpoints (sidecar first, then tensors)."""
    if keep < 1:
        raise ValueError(f"prune_checkpoints: keep must be >= 1, got {keep}")
    for p in list_checkpoints(ckpt_dir)[:-keep]:
        p.unlink(missing_ok=True)
        p.with_suffix(".safetensors").unlink(missing_ok=True)


def resolve_checkpoint(path: str | Path) -> Path:
    """The JSON sidecar a path names.

    Accepts a sidecar ``.json``, its ``.safetensors``, a ``checkpoints/`` folder (its latest checkpoint)
    or a run folder holding ``checkpoints/`` (its latest checkpoint).
    """
    path = Path(path)
    if path.is_file():
        if path.suffix == ".safetensors":
            path = path.with_suffix(".json")
        if path.suffix != ".json" or not path.is_file():
            raise FileNotFoundError(
                f"checkpoint {path}: expected a step_*.json sidecar next to the tensors file"
            )
        return path
    if path.is_dir():
        for folder in (path, path / "checkpoints"):
            found = list_checkpoints(folder)
            if found:
                return found[-1]
        raise FileNotFoundError(f"no complete checkpoint (step_*.json + step_*.safetensors) under {path}")
    raise FileNotFoundError(f"checkpoint path does not exist: {path}")


def read_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load a checkpoint.

    Returns:
        ``(meta, sections)``: the JSON sidecar, and the tensors grouped by prefix:
        ``sections["model"]``, ``sections["ema"]`` (state dicts), ``sections["optim"]`` (flat
        ``optim/...`` keys), ``sections["rng"]`` (list of per-rank dicts).
    """
    json_path = resolve_checkpoint(path)
    meta = _read_sidecar(json_path)
    st_path = json_path.with_name(str(meta.get("tensors_file", json_path.stem + ".safetensors")))
    flat = {k: v.to(device) for k, v in _read_tensors(st_path, meta, json_path).items()}
    sections: dict[str, Any] = {"model": {}, "ema": {}, "optim": {}, "rng": []}
    rng: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        prefix, rest = key.split("/", 1)
        if prefix in ("model", "ema"):
            sections[prefix][rest] = value
        elif prefix == "optim":
            sections["optim"][key] = value
        elif prefix == "rng":
            rank, name = rest.split("/", 1)
            rng.setdefault(int(rank), {})[name] = value
        else:
            raise ValueError(f"{st_path}: unexpected tensor key {key!r}")
    sections["rng"] = [rng[r] for r in sorted(rng)]
    meta["_path"] = str(json_path)
    return meta, sections


def _read_sidecar(json_path: Path) -> dict[str, Any]:
    """The JSON sidecar, checked to be an mvlift checkpoint's."""
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"checkpoint {json_path} is damaged (not valid JSON: {exc}); {_WHAT_TO_DO}"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{json_path}: not an mvlift training checkpoint (format {found!r})")
    return meta


def _read_tensors(st_path: Path, meta: dict[str, Any], json_path: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``st_path`` (CPU), after checking its size and SHA-256 against the sidecar's."""
    try:
        data = st_path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint {json_path}: its tensors file {st_path} is missing; {_WHAT_TO_DO}"
        ) from None
    size, digest = meta.get("tensors_bytes"), meta.get("tensors_sha256")
    if digest is None:
        warnings.warn(
            f"checkpoint {st_path} was written without a checksum (by an older mvlift): loaded unverified",
            stacklevel=3,
        )
    elif len(data) != size:
        raise CheckpointError(
            f"checkpoint {st_path} is truncated or damaged: {len(data)} bytes, {size} were written; "
            f"{_WHAT_TO_DO}"
        )
    elif hashlib.sha256(data).hexdigest() != digest:
        raise CheckpointError(
            f"checkpoint {st_path} is damaged: its SHA-256 differs from the one recorded in {json_path.name} "
            f"when it was written; {_WHAT_TO_DO}"
        )
    try:
        return load_safetensors(data)
    except Exception as exc:  # safetensors raises its own SafetensorError (and others) on bad bytes
        raise CheckpointError(f"checkpoint {st_path} cannot be read ({exc}); {_WHAT_TO_DO}") from None


def load_model(path: str | Path, *, weights: str = "ema", device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a trained denoiser from a checkpoint alone (no code-side config needed).

    Args:
        path: a checkpoint sidecar/tensors file, a ``checkpoints/`` folder or a run folder (the latest
            checkpoint is taken from a folder).
        weights: ``"ema"`` (the averaged weights, used for sampling) or ``"model"`` (the raw weights).
        device: where to put the model.

    Returns:
        The model (``mvlift.models.build_model(DenoiserConfig.from_dict(meta["model_config"]))``) with
        the chosen weights loaded strictly, in eval mode.
    """
    from mvlift.models import DenoiserConfig, build_model

    if weights not in ("ema", "model"):
        raise ValueError(f"load_model: weights must be 'ema' or 'model', got {weights!r}")
    meta, sections = read_checkpoint(path, device="cpu")
    state = sections[weights]
    if not state:
        raise ValueError(f"load_model: checkpoint {meta['_path']} holds no {weights!r} weights")
    try:
        model = build_model(DenoiserConfig.from_dict(meta["model_config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {meta['_path']}: bad model_config ({exc}); {_WHAT_TO_DO}"
        ) from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {meta['_path']}: the weights do not fit its model_config ({exc}); {_WHAT_TO_DO}"
        ) from None
    return model.to(device).eval()


def export_weights(src: str | Path, dst_dir: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """Write a compact copy of a training checkpoint: its EMA weights only (no raw weights, optimizer or RNG
    state), in the same checksummed format, so :func:`load_model` reads it. Used to ship trained models.

    Args:
        src: a checkpoint (file, ``checkpoints/`` folder or run folder; the latest is taken from a folder).
        dst_dir: the folder to write into (created).
        extra: JSON-serialisable provenance merged into the sidecar (e.g. the run's config).

    Returns:
        The new sidecar's path.
    """
    meta, sections = read_checkpoint(src)
    if not sections["ema"]:
        raise ValueError(f"export_weights: {meta['_path']} holds no EMA weights")
    keep = {k: v for k, v in meta.items() if k in ("model_config", "train_config")}
    keep["exported_from_step"] = int(meta["step"])
    keep.update(extra or {})
    return save_checkpoint(
        dst_dir,
        int(meta["step"]),
        model_state={},
        ema_state=sections["ema"],
        optimizer_state=None,
        rng_states=None,
        meta=keep,
    )
