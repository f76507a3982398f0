"""anyfc._backend, backend names: what is available, the default backend (environment,
``set_backend``), module objects as backends, unknown and missing backends named with the
extra to install."""

import importlib

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
    assert anyfc.Dense(2, 2, "relu").backend == "array_api_strict"
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
    assert anyfc.Dense(2, 2, "relu", backend=numpy).backend == "numpy"


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(ValueError, match="numpy, cupy, torch, jax, dask, array_api_strict"):
        anyfc.Dense(2, 2, "relu", backend="tensorflow")


def test_missing_backend_names_the_extra(monkeypatch):
    real_import = importlib.import_module

    def fake_import(name):
        if name.startswith("array_api_compat.torch"):
            raise ImportError("No module named 'torch'")
        return real_import(name)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(ImportError, match=r"anyfc\[torch\]"):
        _backend.get_namespace("torch")
