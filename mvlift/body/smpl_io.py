"""Reading SMPL model files without chumpy, and building an ``smplx.SMPL`` layer from memory.

The official SMPL model pickles (``SMPL_NEUTRAL.pkl``, ``basicModel_*.pkl``, ...) were written with Python 2
and hold some arrays (e.g. ``shapedirs``) as *chumpy* objects and ``J_regressor`` as a scipy sparse matrix.
chumpy does not import on current Python, so :class:`ChumpyFreeUnpickler` maps every ``chumpy.*`` class to
a stand-in that only keeps the pickled state, and :func:`load_smpl_model` turns those stand-ins into numpy
arrays. A chumpy object pickles its ``__dict__`` (minus caches); a plain ``chumpy.ch.Ch`` keeps its value
under the key ``'x'``. The reordering classes that wrap another object under ``'a'`` are evaluated for
``Reshape`` (``newshape``), ``Select`` (``idxs``, ``preferred_shape``) and ``transpose`` (``axes``); any
other chumpy class raises a ValueError naming it.

:func:`smplx_layer` builds ``smplx.SMPL`` (an optional dependency: ``pip install mvlift[smpl]``) from a
model dict through its ``data_struct`` argument, so smplx never reads the file itself. smplx selects extra
"vertex joints" (nose, eyes, ears, toes, heels, finger tips) by vertex index; the default indices are
those of the 6890-vertex SMPL mesh, so a model with another vertex count (e.g.
:func:`mvlift.body.smpl_model.make_synthetic_smpl`) must supply ``vertex_ids``.

Model dict keys (official SMPL layout; V vertices, 24 joints, K shape components):

==================  ==============  ================================================================
key                 shape           meaning
==================  ==============  ================================================================
``v_template``      (V, 3)          rest-pose template vertices, metres, Y up, facing +Z
``shapedirs``       (V, 3, K)       shape blend shapes
``posedirs``        (V, 3, 207)     pose-corrective blend shapes (23 joints x 9)
``J_regressor``     (24, V)         joint regressor (rows sum to 1)
``weights``         (V, 24)         linear-blend-skinning weights (rows sum to 1)
``kintree_table``   (2, 24)         row 0: parent of each joint (root: any value), row 1: joint ids
``f``               (F, 3)          triangle faces (vertex indices)
==================  ==============  ================================================================

An optional ``vertex_ids`` entry (a dict name -> vertex index, smplx's keys) travels with the model.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

__all__ = [
    "SMPL_KEYS",
    "SMPL_NUM_JOINTS",
    "VERTEX_ID_KEYS",
    "ChumpyFreeUnpickler",
    "load_smpl_model",
    "validate_smpl_model",
    "smplx_layer",
]

SMPL_NUM_JOINTS = 24
"""Joints of the SMPL kinematic tree (pelvis + 23)."""

SMPL_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
"""The model entries smplx needs."""

VERTEX_ID_KEYS = (
    "nose",
    "reye",
    "leye",
    "rear",
    "lear",
    "LBigToe",
    "LSmallToe",
    "LHeel",
    "RBigToe",
    "RSmallToe",
    "RHeel",
    "lthumb",
    "lindex",
    "lmiddle",
    "lring",
    "lpinky",
    "rthumb",
    "rindex",
    "rmiddle",
    "rring",
    "rpinky",
)
"""The vertex names smplx's ``VertexJointSelector`` reads (face, feet, finger tips), in its order for the
face and feet; smplx appends them after the 24 joints as nose, reye, leye, rear, lear, feet, tips."""

_OFFICIAL_NUM_VERTICES = 6890


def import_optional(name: str) -> Any:
    """Import an optional dependency of the SMPL path, with an install hint when it is missing."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ImportError(
            f"{name!r} is needed for the SMPL fit: pip install 'mvlift[smpl]' and "
            "pip install --no-deps human-body-prior==0.8.5.0"
        ) from e


class _ChumpyStandIn:
    """What a pickled chumpy object becomes: its class name and its pickled state, nothing else."""

    chumpy_class = "chumpy.ch.Ch"

    def __init__(self) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<pickled {self.chumpy_class}>"


_STAND_INS: dict[str, type[_ChumpyStandIn]] = {}


def _stand_in(module: str, name: str) -> type[_ChumpyStandIn]:
    full = f"{module}.{name}"
    if full not in _STAND_INS:
        _STAND_INS[full] = type(f"Pickled_{name}", (_ChumpyStandIn,), {"chumpy_class": full})
    return _STAND_INS[full]


class ChumpyFreeUnpickler(pickle.Unpickler):
    """Unpickler for SMPL model files that needs neither chumpy nor the old scipy module paths.

    - ``chumpy.*`` classes become stand-ins holding the pickled state (:func:`load_smpl_model` turns
      them into numpy arrays).
    - ``scipy.sparse.<private module>.<cls>`` (e.g. the Python-2-era ``scipy.sparse.csc.csc_matrix``)
      resolves to ``scipy.sparse.<cls>``, avoiding scipy's deprecated module paths.

    Open Python 2 files with ``encoding="latin1"`` (what :func:`load_smpl_model` does) so that numpy's
    pickled byte strings decode unchanged.
    """

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return _stand_in(module, name)
        if module.startswith("scipy.sparse.") and hasattr(scipy.sparse, name):
            return getattr(scipy.sparse, name)
        return super().find_class(module, name)


def _evaluate_chumpy(obj: _ChumpyStandIn) -> np.ndarray:
    """The numpy value of a pickled chumpy object."""
    state = obj.state
    cls = obj.chumpy_class.rsplit(".", 1)[-1]
    if not isinstance(state, dict):
        raise ValueError(f"pickled {obj.chumpy_class}: expected a state dict, got {type(state).__name__}")
    if "x" in state and "a" not in state:
        return np.asarray(_to_numpy(state["x"]))
    if "a" in state:
        a = np.asarray(_to_numpy(state["a"]))
        if cls == "Reshape":
            return a.reshape(state["newshape"])
        if cls == "Select":
            out = a.ravel()[np.asarray(state["idxs"])]
            shape = state.get("preferred_shape")
            return out.reshape(shape) if shape is not None else out
        if cls == "transpose":
            return np.ascontiguousarray(np.transpose(a, axes=state.get("axes")))
    raise ValueError(
        f"cannot convert a pickled {obj.chumpy_class} (state keys {sorted(state)}) to numpy; supported: "
        "chumpy.ch.Ch (value under 'x'), Reshape, Select, transpose"
    )


def _to_numpy(obj: Any) -> Any:
    """Replace chumpy stand-ins by numpy arrays and scipy sparse matrices by dense arrays, recursively
    through dicts, lists and tuples; other objects are returned unchanged."""
    if isinstance(obj, _ChumpyStandIn):
        return _evaluate_chumpy(obj)
    if scipy.sparse.issparse(obj):
        return np.asarray(obj.toarray())
    if isinstance(obj, dict):
        return {k: _to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_numpy(v) for v in obj)
    return obj


def validate_smpl_model(model: Mapping[str, Any]) -> dict[str, Any]:
    """Check a model dict's required entries and return a copy with them as numpy arrays.

    Floating entries become float64 arrays, ``kintree_table`` int64, ``f`` int64 (see the module docstring
    for the shapes). Other entries are kept as they are.

    Raises:
        TypeError: ``model`` is not a mapping.
        ValueError: a missing entry, a wrong shape, or faces out of range (the message names the key).
    """
    if not isinstance(model, Mapping):
        raise TypeError(f"model: expected a mapping of SMPL arrays, got {type(model).__name__}")
    missing = [k for k in SMPL_KEYS if k not in model]
    if missing:
        raise ValueError(f"SMPL model: missing entries {missing}; required: {list(SMPL_KEYS)}")
    out = dict(model)
    for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        out[k] = np.asarray(_to_numpy(model[k]), dtype=np.float64)
    out["kintree_table"] = np.asarray(_to_numpy(model["kintree_table"])).astype(np.int64)
    out["f"] = np.asarray(_to_numpy(model["f"])).astype(np.int64)
    v = out["v_template"]
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] < 1:
        raise ValueError(f"SMPL model: v_template must have shape (V, 3), got {v.shape}")
    nv, nj = v.shape[0], SMPL_NUM_JOINTS
    expected = {
        "shapedirs": (nv, 3, None),
        "posedirs": (nv, 3, (nj - 1) * 9),
        "J_regressor": (nj, nv),
        "weights": (nv, nj),
        "kintree_table": (2, nj),
        "f": (None, 3),
    }
    for k, shape in expected.items():
        got = out[k].shape
        if len(got) != len(shape) or any(e is not None and e != g for e, g in zip(shape, got, strict=True)):
            want = "(" + ", ".join("*" if e is None else str(e) for e in shape) + ")"
            raise ValueError(f"SMPL model: {k} must have shape {want} for V={nv} vertices, got {got}")
    if out["shapedirs"].shape[2] < 1:
        raise ValueError("SMPL model: shapedirs has no shape components")
    f = out["f"]
    if f.size and (f.min() < 0 or f.max() >= nv):
        raise ValueError(f"SMPL model: faces f index vertices in [{f.min()}, {f.max()}], valid [0, {nv})")
    return out


def load_smpl_model(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load an SMPL model pickle (official Python 2 files included) without chumpy.

    Args:
        path: a ``.pkl`` SMPL model file (e.g. ``SMPL_NEUTRAL.pkl``).

    Returns:
        The file's dict with chumpy objects and sparse matrices turned into numpy arrays; the entries in
        :data:`SMPL_KEYS` are validated (float64 / int64 arrays, shapes in the module docstring).

    Raises:
        FileNotFoundError: no such file. ValueError: not an SMPL model dict, or an unsupported chumpy
        object.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"SMPL model file not found: {p}")
    with p.open("rb") as fh:
        raw = ChumpyFreeUnpickler(fh, encoding="latin1").load()
    if not isinstance(raw, dict):
        raise ValueError(f"{p}: expected a pickled dict of SMPL arrays, got {type(raw).__name__}")
    return validate_smpl_model(_to_numpy(raw))


def smplx_layer(
    model: str | os.PathLike[str] | Mapping[str, Any],
    *,
    num_betas: int = 10,
    vertex_ids: Mapping[str, int] | None = None,
    dtype: Any = None,
    device: Any = None,
    gender: str = "neutral",
) -> Any:
    """Build an ``smplx.SMPL`` layer from an SMPL model file or an in-memory model dict.

    The model is loaded with :func:`load_smpl_model` (no chumpy) and handed to smplx through
    ``data_struct``. smplx prints a notice for models with fewer than 300 shape components; it is
    silenced here.

    Args:
        model: a model pickle path or a dict with the entries of :data:`SMPL_KEYS`.
        num_betas: shape components to use (at most the model's).
        vertex_ids: vertex indices of smplx's extra joints (keys :data:`VERTEX_ID_KEYS`). Default: the
            model's own ``vertex_ids`` entry, else smplx's SMPL indices, which need the 6890-vertex mesh.
        dtype: torch dtype of the layer (default float32). device: where to put it.
        gender: recorded on the layer (smplx attribute).

    Returns:
        ``smplx.SMPL`` whose forward gives 24 SMPL joints followed by the extra vertex joints (nose,
        right eye, left eye, right ear, left ear, feet, finger tips).

    Raises:
        ValueError: a bad model, or a mesh without 6890 vertices and no ``vertex_ids`` / indices out of
        range. ImportError: smplx is not installed.
    """
    import torch

    smplx = import_optional("smplx")
    from smplx.utils import Struct

    data = load_smpl_model(model) if isinstance(model, (str, os.PathLike)) else validate_smpl_model(model)
    nv = data["v_template"].shape[0]
    if vertex_ids is None:
        vertex_ids = data.get("vertex_ids")
    if vertex_ids is None:
        if nv != _OFFICIAL_NUM_VERTICES:
            raise ValueError(
                f"vertex_ids: required for a mesh with {nv} vertices (smplx's default extra-joint vertex "
                f"indices are for the {_OFFICIAL_NUM_VERTICES}-vertex SMPL mesh); pass a dict with keys "
                f"{list(VERTEX_ID_KEYS)}"
            )
    else:
        missing = [k for k in VERTEX_ID_KEYS if k not in vertex_ids]
        if missing:
            raise ValueError(f"vertex_ids: missing keys {missing}")
        bad = {k: int(vertex_ids[k]) for k in VERTEX_ID_KEYS if not 0 <= int(vertex_ids[k]) < nv}
        if bad:
            raise ValueError(f"vertex_ids: indices out of range [0, {nv}): {bad}")
        vertex_ids = {k: int(vertex_ids[k]) for k in VERTEX_ID_KEYS}
    if not isinstance(num_betas, int) or num_betas < 1:
        raise ValueError(f"num_betas: expected a positive int, got {num_betas!r}")
    dtype = torch.float32 if dtype is None else dtype
    struct = Struct(**{k: data[k] for k in SMPL_KEYS})
    with contextlib.redirect_stdout(io.StringIO()):
        layer = smplx.SMPL(
            model_path="",
            data_struct=struct,
            num_betas=num_betas,
            vertex_ids=vertex_ids,
            dtype=dtype,
            gender=gender,
        )
    return layer.to(device=device) if device is not None else layer
