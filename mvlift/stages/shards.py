"""Sharded, resumable output for long jobs (stage-3 synthetic data at scale).

A job is a fixed list of shards ``0 .. num_shards-1``. Each shard is written atomically as
``shard_{index:05d}.safetensors`` (write to a temporary file in the same folder, then ``os.replace``),
then recorded in ``manifest.json`` (also replaced atomically). A killed job resumes by skipping the shards
that the manifest lists *and* whose file exists, so nothing is lost or written twice. Under ``torchrun``
each rank takes the shards ``index % world_size == rank``; each rank writes its own manifest part
(``manifest.rank{r}.json``) and :func:`merge_manifests` joins them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from mvlift.atomic import atomic_write, atomic_write_json


def save_tensors_atomic(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Save a dict of tensors as safetensors, atomically."""
    cpu = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(cpu, str(tmp), metadata=metadata))


class ShardedWriter:
    """Writes the shards of one job into ``out_dir`` and keeps its manifest.

    Args:
        out_dir: output folder.
        num_shards: total shards of the job.
        config: the job's settings, stored in the manifest; a resumed job must have the same config.
        rank, world_size: this process's share of the shards (``index % world_size == rank``).
    """

    def __init__(
        self,
        out_dir: str | Path,
        num_shards: int,
        config: dict[str, Any],
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_shards < 0:
            raise ValueError(f"num_shards must be >= 0, got {num_shards}")
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.out_dir = Path(out_dir)
        self.num_shards = num_shards
        self.config = config
        self.rank = rank
        self.world_size = world_size
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.out_dir / (
            "manifest.json" if world_size == 1 else f"manifest.rank{rank}.json"
        )
        self.manifest = self._load_manifest()

    def _load_manifest(self) -> dict[str, Any]:
        if self.manifest_path.exists():
            manifest = json.loads(self.manifest_path.read_text())
            if manifest.get("config") != json.loads(json.dumps(self.config)):
                raise ValueError(
                    f"{self.manifest_path} was written with a different config; use a new output folder "
                    "or delete the old one to start over"
                )
            if manifest.get("num_shards") != self.num_shards:
                found = manifest.get("num_shards")
                raise ValueError(f"{self.manifest_path} has num_shards={found}, this job {self.num_shards}")
            return manifest
        return {"config": self.config, "num_shards": self.num_shards, "shards": {}}

    def shard_path(self, index: int) -> Path:
        return self.out_dir / f"shard_{index:05d}.safetensors"

    def my_shards(self) -> list[int]:
        return [i for i in range(self.num_shards) if i % self.world_size == self.rank]

    def is_done(self, index: int) -> bool:
        return str(index) in self.manifest["shards"] and self.shard_path(index).exists()

    def pending(self) -> list[int]:
        return [i for i in self.my_shards() if not self.is_done(i)]

    def write(self, index: int, tensors: dict[str, torch.Tensor], info: dict[str, Any] | None = None) -> Path:
        """Write shard ``index`` and record it in the manifest (both atomic)."""
        path = self.shard_path(index)
        save_tensors_atomic(path, tensors)
        self.manifest["shards"][str(index)] = {
            "file": path.name,
            "items": int(next(iter(tensors.values())).shape[0]) if tensors else 0,
            "written": time.time(),
            **(info or {}),
        }
        atomic_write_json(self.manifest_path, self.manifest)
        return path

    def run(
        self,
        make_shard: Callable[[int], dict[str, torch.Tensor]],
        *,
        progress: bool = True,
        desc: str = "shards",
    ) -> list[int]:
        """Compute and write every pending shard of this rank with ``make_shard(index) -> tensors``.

        Returns the indices written by this call.
        """
        todo = self.pending()
        done: list[int] = []
        bar = tqdm(todo, desc=desc, disable=not progress, unit="shard")
        t0 = time.perf_counter()
        items = 0
        for index in bar:
            tensors = make_shard(index)
            self.write(index, tensors)
            done.append(index)
            items += int(next(iter(tensors.values())).shape[0]) if tensors else 0
            bar.set_postfix(items_per_s=f"{items / max(time.perf_counter() - t0, 1e-9):.1f}")
        return done


def merge_manifests(out_dir: str | Path) -> dict[str, Any]:
    """Join ``manifest.rank*.json`` parts (from a torchrun job) into ``manifest.json``; returns it."""
    out_dir = Path(out_dir)
    parts = sorted(out_dir.glob("manifest.rank*.json"))
    if not parts:
        return json.loads((out_dir / "manifest.json").read_text())
    merged: dict[str, Any] | None = None
    for p in parts:
        m = json.loads(p.read_text())
        if merged is None:
            merged = {"config": m["config"], "num_shards": m["num_shards"], "shards": {}}
        merged["shards"].update(m["shards"])
    assert merged is not None
    atomic_write_json(out_dir / "manifest.json", merged)
    return merged


def load_shards(out_dir: str | Path, keys: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """Concatenate the shards listed in ``out_dir``'s manifest (in shard order) along dim 0."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"no manifest.json in {out_dir}: run the job (or merge_manifests) first")
    manifest = json.loads(manifest_path.read_text())
    indices = sorted(int(i) for i in manifest["shards"])
    if not indices:
        raise ValueError(f"{manifest_path} lists no shards")
    parts = [load_file(str(out_dir / manifest["shards"][str(i)]["file"])) for i in indices]
    names = list(keys) if keys is not None else list(parts[0])
    return {k: torch.cat([p[k] for p in parts], dim=0) for k in names}
