"""Backend plumbing: names, defaults, devices, and moving arrays between libraries."""

import importlib

import numpy as np
import pytest

import anyfc
from anyfc import _backend
from anyfc._backend import namespaces


def test_numpy_is_always_available():
    assert "numpy" in anyfc.available_backends()
    assert set(anyfc.available_backends()) <= set(anyfc.BACKENDS)


def test_default_backend_from_env_and_set_backend(monkeypatch):
    monkeypatch.setattr(namespaces, "chosen_backend", None)
    monkeypatch.setenv("ANYFC_BACKEND", "array_api_strict")
    assert anyfc.get_backend() == "array_api_strict"
    assert anyfc.Dense(2, 2).backend == "array_api_strict"
    anyfc.set_backend("numpy")
    assert anyfc.get_backend() == "numpy"
    monkeypatch.delenv("ANYFC_BACKEND")
    monkeypatch.setattr(namespaces, "chosen_backend", None)
    assert anyfc.get_backend() == "numpy"


def test_module_objects_are_accepted():
    import array_api_strict
    import numpy

    assert _backend.backend_name(numpy) == "numpy"
    assert _backend.backend_name(array_api_strict) == "array_api_strict"
    assert anyfc.Dense(2, 2, backend=numpy).backend == "numpy"


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(ValueError, match="numpy, cupy, torch, jax, dask, array_api_strict"):
        anyfc.Dense(2, 2, backend="tensorflow")


def test_missing_backend_names_the_extra(monkeypatch):
    real_import = importlib.import_module

    def fake_import(name):
        if name.startswith("array_api_compat.torch"):
            raise ImportError("No module named 'torch'")
        return real_import(name)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(ImportError, match=r"anyfc\[torch\]"):
        _backend.get_namespace("torch")


def test_unknown_dtype_and_device_are_refused():
    with pytest.raises(ValueError, match="float32, float64"):
        anyfc.Dense(2, 2, dtype="int8")
    with pytest.raises(ValueError, match="only the device 'cpu'"):
        anyfc.Dense(2, 2, backend="numpy", device="cuda:0")


def test_round_trip_between_every_pair(bk):
    host = np.arange(6, dtype=np.float64).reshape(2, 3)
    a = anyfc.to_backend(host, bk.name, bk.device_name)
    assert _backend.namespace_of(a) is bk.xp and _backend.device_of(a) == bk.device
    np.testing.assert_array_equal(anyfc.to_numpy(a), host)
    for other in ("numpy", "array_api_strict"):
        b = anyfc.to_backend(a, other, dtype="float32")
        assert b.dtype == _backend.get_namespace(other).float32
        np.testing.assert_array_equal(anyfc.to_numpy(b), host)
        back = anyfc.to_backend(b, bk.name, bk.device_name, "float64")
        assert _backend.device_of(back) == bk.device
        np.testing.assert_array_equal(anyfc.to_numpy(back), host)


def test_to_numpy_is_a_copy(bk):
    a = bk.asarray(np.zeros(3))
    host = anyfc.to_numpy(a)
    host[0] = 5.0
    assert anyfc.to_numpy(a)[0] == 0.0


def test_integer_data_keeps_its_dtype_unless_asked():
    a = anyfc.to_backend(np.arange(3), "array_api_strict")
    import array_api_strict as strict

    assert strict.isdtype(a.dtype, "integral")
    assert anyfc.to_backend(a, "numpy", dtype="float32").dtype == np.float32


@pytest.mark.parametrize("data", [np.array([1 + 2j]), np.array(["a"]), [[1, 2], [3]]])
def test_check_numeric_refuses_non_numbers(data):
    with pytest.raises(TypeError):
        _backend.check_numeric(data, "X")
