"""Chumpy-free SMPL model loading and the smplx layer built from memory."""

from __future__ import annotations

import io
import pickle
import struct
import sys
import types
import warnings

import numpy as np
import pytest
import scipy.sparse
import torch

from mvlift.body.smpl_io import (
    SMPL_KEYS,
    VERTEX_ID_KEYS,
    ChumpyFreeUnpickler,
    load_smpl_model,
    smplx_layer,
    validate_smpl_model,
)
from mvlift.body.smpl_model import make_synthetic_smpl, write_smpl_pickle


def _fake_chumpy() -> dict[str, types.ModuleType]:
    """Throwaway stand-ins of chumpy's pickled classes, pickling like chumpy: the instance ``__dict__``
    without caches, a plain ``Ch`` holding its value under 'x', reorderings wrapping another object
    under 'a'."""

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x, dtype=np.float64)
            self._dirty_vars = set()
            self._itr = None
            self._depends_on_deps = {}
            self._make_dense = False
            self._make_sparse = False

        def __getstate__(self):
            return dict(self.__dict__)

    class Reshape(Ch):
        def __init__(self, a, newshape):
            self.a, self.newshape = a, newshape

    class Select(Ch):
        def __init__(self, a, idxs, preferred_shape):
            self.a, self.idxs, self.preferred_shape = a, idxs, preferred_shape

    class transpose(Ch):  # noqa: N801 - chumpy's own class name
        def __init__(self, a, axes):
            self.a, self.axes = a, axes

    class add(Ch):  # noqa: N801 - an operation the loader does not evaluate
        def __init__(self, a, b):
            self.a, self.b = a, b

    pkg = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")
    reordering = types.ModuleType("chumpy.reordering")
    ops = types.ModuleType("chumpy.ch_ops")
    for mod, classes in ((ch, [Ch]), (reordering, [Reshape, Select, transpose]), (ops, [add])):
        for c in classes:
            c.__module__ = mod.__name__
            c.__qualname__ = c.__name__
            setattr(mod, c.__name__, c)
    return {"chumpy": pkg, "chumpy.ch": ch, "chumpy.reordering": reordering, "chumpy.ch_ops": ops}


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` opcodes, as the official SMPL files (cPickle, Python 2) hold them."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    raw = buf.getvalue()
    # Python-2-era module paths of numpy and scipy
    return raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n").replace(
        b"scipy.sparse._csc\ncsc_matrix", b"scipy.sparse.csc\ncsc_matrix"
    )


def _chumpy_model_file(tmp_path, monkeypatch, model, *, extra=None):
    """An SMPL pickle in the official layout: shapedirs and v_template as chumpy objects, J_regressor as a
    scipy CSC matrix, Python 2 byte strings and module paths. Written with the fake chumpy importable;
    returns the path once the fake chumpy is gone again."""
    with monkeypatch.context() as mp:
        mods = _fake_chumpy()
        for name, mod in mods.items():
            mp.setitem(sys.modules, name, mod)
        ch, re = mods["chumpy.ch"], mods["chumpy.reordering"]
        v = model["v_template"]
        raw = {
            "v_template": re.Reshape(ch.Ch(v.ravel()), v.shape),
            "shapedirs": ch.Ch(model["shapedirs"]),
            "posedirs": model["posedirs"],
            "J_regressor": scipy.sparse.csc_matrix(model["J_regressor"]),
            "weights": re.transpose(ch.Ch(model["weights"].T), None),
            "kintree_table": model["kintree_table"],
            "f": model["f"].astype(np.uint32),
            "bs_style": "lbs",
        }
        if extra is not None:
            raw.update(extra(mods))
        data = _py2_pickle(raw)
    path = tmp_path / "SMPL_FAKE.pkl"
    path.write_bytes(data)
    return path, data


def test_loads_fake_chumpy_py2_pickle_without_chumpy(tmp_path, monkeypatch):
    model = make_synthetic_smpl(60, seed=4)
    path, data = _chumpy_model_file(tmp_path, monkeypatch, model)
    assert b"chumpy.ch\nCh" in data and b"scipy.sparse.csc\n" in data
    monkeypatch.setitem(sys.modules, "chumpy", None)  # any import of chumpy now fails
    with pytest.raises(ImportError, match="chumpy"):
        pickle.loads(data, encoding="latin1")
    with pytest.raises(UnicodeDecodeError):  # Python 2 byte strings: only latin1 reads them
        ChumpyFreeUnpickler(io.BytesIO(data)).load()
    loaded = load_smpl_model(path)
    for k in SMPL_KEYS:
        assert isinstance(loaded[k], np.ndarray), k
        np.testing.assert_array_equal(loaded[k], model[k], err_msg=k)
    assert loaded["shapedirs"].dtype == np.float64 and loaded["f"].dtype == np.int64
    assert loaded["bs_style"] == "lbs"


def test_select_is_evaluated_and_unknown_chumpy_class_is_named(tmp_path, monkeypatch):
    model = make_synthetic_smpl(60, seed=5)

    def select(mods):
        ch, re = mods["chumpy.ch"], mods["chumpy.reordering"]
        flat = ch.Ch(np.arange(10.0))
        return {"J": re.Select(flat, np.array([7, 2, 5, 1]), (2, 2))}

    path, _ = _chumpy_model_file(tmp_path, monkeypatch, model, extra=select)
    np.testing.assert_array_equal(load_smpl_model(path)["J"], [[7.0, 2.0], [5.0, 1.0]])

    def unsupported(mods):
        ch, ops = mods["chumpy.ch"], mods["chumpy.ch_ops"]
        return {"J": ops.add(ch.Ch(np.ones(3)), ch.Ch(np.ones(3)))}

    path, _ = _chumpy_model_file(tmp_path, monkeypatch, model, extra=unsupported)
    with pytest.raises(ValueError, match="chumpy.ch_ops.add"):
        load_smpl_model(path)


def test_unpickler_maps_old_scipy_paths_without_warnings(tmp_path):
    m = scipy.sparse.csr_matrix(np.array([[0.0, 2.0], [3.0, 0.0]]))
    data = pickle.dumps(m, protocol=2).replace(b"scipy.sparse._csr\n", b"scipy.sparse.csr\n")
    assert b"scipy.sparse.csr\ncsr_matrix" in data

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ChumpyFreeUnpickler(io.BytesIO(data), encoding="latin1").load()
    np.testing.assert_array_equal(out.toarray(), m.toarray())


def test_write_then_load_roundtrip(tmp_path):
    model = make_synthetic_smpl(70, seed=2)
    path = write_smpl_pickle(tmp_path / "m.pkl", model)
    loaded = load_smpl_model(path)
    for k in SMPL_KEYS:
        np.testing.assert_array_equal(loaded[k], model[k])
    assert loaded["vertex_ids"] == model["vertex_ids"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.pkl"]  # no temporary file left


def test_validate_errors(tmp_path):
    model = make_synthetic_smpl(60, seed=0)
    with pytest.raises(TypeError, match="model"):
        validate_smpl_model([1, 2])
    with pytest.raises(ValueError, match="missing entries.*'weights'"):
        validate_smpl_model({k: v for k, v in model.items() if k != "weights"})
    with pytest.raises(ValueError, match=r"posedirs must have shape \(60, 3, 207\)"):
        validate_smpl_model({**model, "posedirs": model["posedirs"][:, :, :200]})
    with pytest.raises(ValueError, match=r"J_regressor must have shape \(24, 60\)"):
        validate_smpl_model({**model, "J_regressor": model["J_regressor"][:, :59]})
    with pytest.raises(ValueError, match="v_template must have shape"):
        validate_smpl_model({**model, "v_template": model["v_template"][:, :2]})
    bad_f = model["f"].copy()
    bad_f[3, 1] = 60
    with pytest.raises(ValueError, match="faces f index"):
        validate_smpl_model({**model, "f": bad_f})
    with pytest.raises(FileNotFoundError):
        load_smpl_model(tmp_path / "missing.pkl")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="expected a pickled dict"):
        load_smpl_model(tmp_path / "list.pkl")
    with pytest.raises(ValueError, match="num_vertices"):
        make_synthetic_smpl(44)


def test_smplx_layer_from_memory_matches_smplx_reading_the_file(smplx_module, tmp_path, seed):
    model = make_synthetic_smpl(90, seed=seed % 1000)
    layer = smplx_layer(model, dtype=torch.float64)
    assert isinstance(layer, smplx_module.SMPL)
    assert layer.get_num_verts() == 90 and layer.num_betas == 10
    path = write_smpl_pickle(tmp_path / "SMPL_NEUTRAL.pkl", model)
    ref = smplx_module.SMPL(model_path=str(path), vertex_ids=model["vertex_ids"], dtype=torch.float64)
    from_path = smplx_layer(path, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    kw = {
        "betas": torch.randn(3, 10, generator=g, dtype=torch.float64),
        "global_orient": torch.randn(3, 3, generator=g, dtype=torch.float64),
        "body_pose": 0.4 * torch.randn(3, 69, generator=g, dtype=torch.float64),
        "transl": torch.randn(3, 3, generator=g, dtype=torch.float64),
    }
    a, b, c = layer(**kw), ref(**kw), from_path(**kw)
    assert a.joints.shape == (3, 24 + len(VERTEX_ID_KEYS), 3)
    torch.testing.assert_close(a.vertices, b.vertices, rtol=0, atol=1e-12)
    torch.testing.assert_close(a.joints, b.joints, rtol=0, atol=1e-12)
    torch.testing.assert_close(c.joints, b.joints, rtol=0, atol=1e-12)
    # the extra joints are the chosen vertices
    nose = model["vertex_ids"]["nose"]
    torch.testing.assert_close(a.joints[:, 24], a.vertices[:, nose])


def test_smplx_layer_needs_vertex_ids_for_small_meshes(smplx_module):
    model = make_synthetic_smpl(60, seed=0)
    bare = {k: model[k] for k in SMPL_KEYS}
    with pytest.raises(ValueError, match="vertex_ids: required for a mesh with 60 vertices"):
        smplx_layer(bare)
    with pytest.raises(ValueError, match="out of range"):
        smplx_layer(bare, vertex_ids={**model["vertex_ids"], "nose": 60})
    with pytest.raises(ValueError, match="missing keys"):
        smplx_layer(bare, vertex_ids={"nose": 1})
    layer = smplx_layer(bare, vertex_ids=model["vertex_ids"], num_betas=4)
    assert layer.num_betas == 4
    with pytest.raises(ValueError, match="num_betas"):
        smplx_layer(model, num_betas=0)


def test_missing_optional_dependency_names_the_install(monkeypatch):
    from mvlift.body.fit import fit_smpl
    from mvlift.body.vposer import load_vposer

    model = make_synthetic_smpl(60, seed=0)
    monkeypatch.setitem(sys.modules, "smplx", None)
    monkeypatch.setitem(sys.modules, "human_body_prior", None)
    with pytest.raises(ImportError, match=r"mvlift\[smpl\]"):
        smplx_layer(model)
    with pytest.raises(ImportError, match="human-body-prior==0.8.5.0"):
        load_vposer(seed=0)
    with pytest.raises(ImportError, match=r"mvlift\[smpl\]"):
        fit_smpl(torch.zeros(1, 2, 14, 3), None, None, None)
