"""The backend matrix: every test that takes the ``bk`` fixture runs once per backend id.

Ids: numpy, array_api_strict, array_api_strict:device1 (a stand-in for a GPU: mixing
devices or converting to NumPy raises), torch, torch:cuda, jax, dask, cupy. A backend
that is not installed, or has no device here, is skipped with the reason shown.
``ANYFC_TEST_BACKENDS=numpy,cupy`` selects a subset; naming one that cannot run here is
an error, not a silent skip.
"""

from __future__ import annotations

import inspect
import os

# JAX would otherwise take 75 % of a GPU's memory at import, starving CuPy and torch,
# which share the GPU in the same test process.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from dataclasses import dataclass  # noqa: E402
from types import ModuleType
from typing import Any

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import anyfc  # noqa: E402
from anyfc import _backend  # noqa: E402
from anyfc.training import compilers  # noqa: E402

ALL_IDS = (
    "numpy",
    "array_api_strict",
    "array_api_strict:device1",
    "torch",
    "torch:cuda",
    "jax",
    "dask",
    "cupy",
)
CPU_IDS = ("numpy", "array_api_strict", "array_api_strict:device1", "torch", "jax", "dask")


@dataclass(frozen=True)
class Backend:
    """One cell of the matrix: a backend name and a device (``None``: its default)."""

    id: str
    name: str
    device_name: str | None

    @property
    def xp(self) -> ModuleType:
        return _backend.get_namespace(self.name)

    @property
    def device(self) -> Any:
        return _backend.resolve_device(self.xp, self.device_name)

    def asarray(self, a: Any, dtype: str | None = "float64") -> Any:
        """A host array (or list) on this backend and device."""
        return anyfc.to_backend(np.asarray(a), self.name, self.device_name, dtype)

    def dense(self, *args: Any, **kwargs: Any) -> anyfc.Dense:
        kwargs.setdefault("dtype", "float64")
        return anyfc.Dense(*args, backend=self.name, device=self.device_name, **kwargs)

    @property
    def is_lazy(self) -> bool:
        return self.name == "dask"

    def __str__(self) -> str:
        return self.id


def _why_unavailable(test_id: str) -> str | None:
    """``None`` if ``test_id`` can run here, else the reason it cannot."""
    name, _, device = test_id.partition(":")
    try:
        _backend.get_namespace(name)
    except ImportError as exc:
        return str(exc)
    if name == "cupy" and name not in anyfc.available_backends():
        return "cupy is installed but no CUDA device is usable"
    if test_id == "torch:cuda":
        import torch

        if not torch.cuda.is_available():
            return "torch has no CUDA device here"
    del device
    return None


def _selected() -> tuple[list[str], dict[str, str]]:
    """The ids to run and, for the others, why each is skipped."""
    wanted = os.environ.get("ANYFC_TEST_BACKENDS", "").strip()
    if wanted:
        ids = [w.strip() for w in wanted.split(",") if w.strip()]
        unknown = [i for i in ids if i not in ALL_IDS]
        if unknown:
            raise pytest.UsageError(
                f"ANYFC_TEST_BACKENDS names unknown ids {unknown}; valid: {', '.join(ALL_IDS)}")
        missing = {i: r for i in ids if (r := _why_unavailable(i))}
        if missing:
            raise pytest.UsageError(
                "ANYFC_TEST_BACKENDS asks for backends that cannot run here: "
                + "; ".join(f"{i}: {r}" for i, r in missing.items()))
        return ids, {}
    skips = {i: r for i in ALL_IDS if (r := _why_unavailable(i))}
    return list(ALL_IDS), skips


SELECTED: list[str] = []
SKIPPED: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    SELECTED[:], skipped = _selected()
    SKIPPED.update(skipped)


def _backend_params(ids: tuple[str, ...] = ALL_IDS) -> list[Any]:
    params = []
    for test_id in SELECTED:
        if test_id not in ids:
            continue
        name, _, device = test_id.partition(":")
        marks = [pytest.mark.skip(reason=SKIPPED[test_id])] if test_id in SKIPPED else []
        params.append(pytest.param(Backend(test_id, name, device or None), id=test_id,
                                   marks=marks))
    return params


BACKEND_FIXTURES = ("bk", "cpu_bk", "dask_bk")
# What a test's source or id says when it depends on which libraries are installed
LIBRARY_WORDS = ("torch", "jax", "dask", "array_api_strict", "cupy", "AVAILABLE",
                 "available_backends", "_needs")


def _depends_on_the_libraries(item: pytest.Item) -> bool:
    """Whether ``item`` can behave differently with other libraries installed: it runs
    on a backend fixture, names a library (source, decorators or id), or carries a
    skip condition (``_needs``'s marks)."""
    names = getattr(item, "fixturenames", ())
    if any(f in names for f in BACKEND_FIXTURES) or item.get_closest_marker("cross"):
        return True
    if any(m.name == "skipif" for m in item.iter_markers()):
        return True
    function = getattr(item, "function", None)
    try:
        source = inspect.getsource(function) if function is not None else ""
    except (OSError, TypeError):
        return True
    return any(word in source or word in item.nodeid for word in LIBRARY_WORDS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``ANYFC_TEST_AGNOSTIC=0`` (the nox sessions of one library other than NumPy):
    leave out the tests that do the same whatever the backend and the installed
    libraries — the NumPy session runs those; running them again in each library's
    session only costs CI time."""
    if os.environ.get("ANYFC_TEST_AGNOSTIC", "1") != "0":
        return
    keep = [item for item in items if _depends_on_the_libraries(item)]
    left = [item for item in items if not _depends_on_the_libraries(item)]
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = keep


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "bk" in metafunc.fixturenames:
        metafunc.parametrize("bk", _backend_params())
    if "cpu_bk" in metafunc.fixturenames:
        metafunc.parametrize("cpu_bk", _backend_params(CPU_IDS))
    if "dask_bk" in metafunc.fixturenames:  # tests of Dask data (out of core, clusters)
        metafunc.parametrize("dask_bk", _backend_params(("dask",)))


def pytest_report_header(config: pytest.Config) -> list[str]:
    run = [i for i in SELECTED if i not in SKIPPED]
    lines = [f"anyfc backends run: {', '.join(run)}"]
    lines += [f"anyfc backend skipped: {i} ({r})" for i, r in SKIPPED.items()]
    return lines


# ---------------------------------------------------------------- shared helpers


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 digits, scaled to [0, 1], split 75/25 (stratified)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16.0, y, test_size=0.25, random_state=0, stratify=y)
    return X_train, X_test, y_train, y_test


@pytest.fixture
def restore_settings():
    """Put the step compilers and the precision back as they were."""
    chosen = dict(compilers.CHOSEN)
    precision = _backend.get_precision()
    yield
    compilers.CHOSEN.clear()
    compilers.CHOSEN.update(chosen)
    _backend.set_precision(precision)
