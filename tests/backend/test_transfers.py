"""anyfc._backend, moving arrays: any layout, any library, any device gives a correct array,
never a crash; ``copy=True`` never shares memory; round trips between every pair; integer
data keeps its dtype, and JAX without 64-bit mode gets int32 indices, silently (no
warning) but never wrapped around; only real numbers are taken.

Cases that used to abort or segfault the interpreter run in a subprocess, so a crash
fails the test instead of killing pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import anyfc
from anyfc import _backend
from tests.helpers.transfers import AVAILABLE, BASE, _needs

# ---------------------------------------------------------------- sources and targets


def _memmap(tmp_path: Path) -> np.ndarray:
    path = tmp_path / "x.dat"
    writable = np.memmap(path, dtype=BASE.dtype, mode="w+", shape=BASE.shape)
    writable[...] = BASE
    writable.flush()
    del writable
    return np.memmap(path, dtype=BASE.dtype, mode="r", shape=BASE.shape)


def _read_only(tmp_path: Path) -> np.ndarray:
    a = BASE.copy()
    a.flags.writeable = False
    return a


def _torch_grad(tmp_path: Path) -> Any:
    import torch

    return torch.tensor(BASE, requires_grad=True)


def _torch_transposed(tmp_path: Path) -> Any:
    import torch

    return torch.tensor(np.ascontiguousarray(BASE.T)).T  # non-contiguous view


def _jax(tmp_path: Path) -> Any:
    import jax.numpy as jnp

    return jnp.asarray(BASE)


def _strict_device1(tmp_path: Path) -> Any:
    import array_api_strict as strict

    return strict.asarray(BASE).to_device(strict.Device("device1"))


def _dask(tmp_path: Path) -> Any:
    import dask.array as da

    return da.from_array(BASE, chunks=(2, 3))


# name -> (make(tmp_path) -> source, expected host values, backends it needs)
SOURCES: dict[str, tuple[Callable[[Path], Any], np.ndarray, tuple[str, ...]]] = {
    "contiguous": (lambda p: BASE.copy(), BASE, ()),
    "negative_stride": (lambda p: BASE.copy()[::-1], BASE[::-1], ()),
    "column_slice": (lambda p: BASE.copy()[:, ::2], BASE[:, ::2], ()),
    "fortran": (lambda p: np.asfortranarray(BASE), BASE, ()),
    "read_only": (_read_only, BASE, ()),
    "memmap_r": (_memmap, BASE, ()),
    "zero_rows": (lambda p: np.zeros((0, 3), np.float32), np.zeros((0, 3)), ()),
    "list": (lambda p: BASE.tolist(), BASE, ()),
    "torch_requires_grad": (_torch_grad, BASE, ("torch",)),
    "torch_transposed": (_torch_transposed, BASE, ("torch",)),
    "jax": (_jax, BASE, ("jax",)),
    "strict_device1": (_strict_device1, BASE, ("array_api_strict",)),
    "dask": (_dask, BASE, ("dask",)),
}

TARGETS: list[tuple[str, str | None]] = [
    ("numpy", None), ("torch", None), ("jax", None), ("dask", None),
    ("array_api_strict", None), ("array_api_strict", "device1"), ("cupy", None),
]


def _source_params() -> list[Any]:
    return [pytest.param(name, id=name, marks=_needs(*needs))
            for name, (_, _, needs) in SOURCES.items()]


def _target_params() -> list[Any]:
    return [pytest.param(name, device, id=name + (f":{device}" if device else ""),
                         marks=_needs(name)) for name, device in TARGETS]


def _memory(x: Any) -> np.ndarray | None:
    """A NumPy view of the memory behind ``x`` (no copy), or ``None`` if it has none
    on the host."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, list):
        return None
    if _backend.is_lazy(x):
        return np.asarray(x.compute())  # from_array chunks may be the caller's memory
    name = _backend.backend_name(_backend.namespace_of(x))
    if name == "torch":
        return x.detach().numpy() if x.device.type == "cpu" else None
    if name == "jax":
        return np.asarray(x)  # zero-copy view of the CPU buffer
    if name == "array_api_strict":
        return x._array  # the NumPy array it wraps (private, but this is a test)
    return None  # cupy: device memory


def _shares(a: Any, b: Any) -> bool:
    ma, mb = _memory(a), _memory(b)
    return ma is not None and mb is not None and bool(np.shares_memory(ma, mb))


# (source, target) pairs that aborted the interpreter: checked in a subprocess
CRASH_PRONE = {("negative_stride", "torch")}


def check_transfer(source: str, target: str, device: str | None, copy: bool,
                   dtype: str | None, tmp_path: Path) -> None:
    make, expected, _ = SOURCES[source]
    a = make(tmp_path)
    out = anyfc.to_backend(a, target, device, dtype, copy=copy)
    xp = _backend.get_namespace(target)
    assert _backend.namespace_of(out) is xp
    assert _backend.device_of(out) == _backend.resolve_device(xp, device)
    assert tuple(out.shape) == expected.shape
    if dtype is not None:
        assert out.dtype == xp.float32
    if target == "torch":
        assert not out.requires_grad and out.grad_fn is None
    np.testing.assert_array_equal(anyfc.to_numpy(out), expected)
    if copy:
        assert not _shares(out, a), "copy=True result shares memory with its source"


@pytest.mark.hostile
@pytest.mark.cross
@pytest.mark.parametrize("target, device", _target_params())
@pytest.mark.parametrize("source", _source_params())
@pytest.mark.parametrize("copy", [False, True], ids=["view_ok", "copy"])
@pytest.mark.parametrize("dtype", [None, "float32"])
def test_every_source_reaches_every_target(source: str, target: str, device: str | None,
                                           copy: bool, dtype: str | None,
                                           tmp_path: Path) -> None:
    if (source, target) not in CRASH_PRONE:
        check_transfer(source, target, device, copy, dtype, tmp_path)
        return
    _assert_survives(f"""
        import pathlib
        from tests.backend.test_transfers import check_transfer
        check_transfer({source!r}, {target!r}, {device!r}, {copy!r}, {dtype!r},
                       pathlib.Path({str(tmp_path)!r}))
    """)


@pytest.mark.hostile
@pytest.mark.cross
@pytest.mark.parametrize("source", _source_params())
def test_to_numpy_and_from_host_take_every_source(source: str, tmp_path: Path) -> None:
    make, expected, _ = SOURCES[source]
    a = make(tmp_path)
    host = anyfc.to_numpy(a)
    assert type(host) is np.ndarray and not _shares(host, a)
    np.testing.assert_array_equal(host, expected)
    for target in [t for t in ("numpy", "torch", "jax", "array_api_strict") if t in AVAILABLE]:
        xp = _backend.get_namespace(target)
        out = _backend.from_host(a, xp, _backend.resolve_device(xp), xp.float32)
        np.testing.assert_array_equal(anyfc.to_numpy(out), expected)


@pytest.mark.hostile
@pytest.mark.cross
def test_the_fast_path_returns_the_array_itself() -> None:
    a = BASE.copy()
    assert anyfc.to_backend(a, "numpy") is a
    assert anyfc.to_backend(a, "numpy", dtype="float32") is a
    assert anyfc.to_backend(a, "numpy", copy=True) is not a


@pytest.mark.hostile
@pytest.mark.cross
@pytest.mark.parametrize("source", ["torch", "torch_requires_grad"])
@pytest.mark.skipif("torch" not in AVAILABLE, reason="torch not available here")
def test_torch_to_torch_is_detached_and_shares_only_without_copy(source: str) -> None:
    import torch

    t = torch.tensor(BASE, requires_grad=source == "torch_requires_grad")
    same = anyfc.to_backend(t, "torch")
    assert same.data_ptr() == t.data_ptr() and not same.requires_grad
    if not t.requires_grad:
        assert same is t
    copied = anyfc.to_backend(t, "torch", copy=True)
    assert copied.data_ptr() != t.data_ptr() and not copied.requires_grad


# ---------------------------------------------------------------- crashes, in a subprocess


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, env=env, cwd=Path(__file__).parents[2])


def _assert_survives(code: str) -> None:
    done = _run(code)
    assert done.returncode == 0, (
        f"exit status {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n"
        f"{done.stderr[-3000:]}")


@pytest.mark.hostile
@pytest.mark.cross
@pytest.mark.skipif("torch" not in AVAILABLE, reason="torch not available here")
def test_negative_strides_reach_torch_without_aborting() -> None:
    _assert_survives("""
        import numpy as np, anyfc
        X = np.random.default_rng(0).random((40, 4))
        y = np.arange(40) % 3
        for a in (X[::-1], X[::-1, ::-1], X[::2][::-1], X[-1:][::-1]):
            for copy in (False, True):
                t = anyfc.to_backend(a, "torch", copy=copy)
                np.testing.assert_array_equal(t.numpy(), a)
        model = anyfc.Sequential([anyfc.Dense(4, 8), anyfc.Dense(8, 3, "identity")],
                                 loss="softmax_cross_entropy", backend="torch")
        p = anyfc.to_numpy(model.predict(X[::-1]))
        np.testing.assert_allclose(p[::-1], anyfc.to_numpy(model.predict(X)), rtol=1e-5)
        model.fit(X[::-1], y[::-1], epochs=1, batch_size=8)
    """)


@pytest.mark.hostile
@pytest.mark.cross
@pytest.mark.skipif("torch" not in AVAILABLE, reason="torch not available here")
def test_read_only_memmap_into_torch_then_updated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "x.dat"
    np.arange(12, dtype=np.float32).tofile(path)
    _assert_survives(f"""
        import numpy as np, anyfc
        mm = np.memmap({str(path)!r}, dtype=np.float32, mode="r", shape=(4, 3))
        out = anyfc.to_backend(mm, "torch", copy=True)
        out += 1
        view = anyfc.to_backend(mm, "torch")  # no copy asked: still never the mapping
        view += 1
        assert float(mm[0, 0]) == 0.0, "the file's mapping was written"
        np.testing.assert_array_equal(out.numpy(), np.arange(12).reshape(4, 3) + 1)
    """)
    np.testing.assert_array_equal(np.fromfile(path, np.float32), np.arange(12))


@pytest.mark.hostile
@pytest.mark.cross
@pytest.mark.skipif("torch" not in AVAILABLE, reason="torch not available here")
def test_requires_grad_data_never_enters_the_model() -> None:
    import torch

    X = torch.tensor(np.random.default_rng(1).random((32, 4)), requires_grad=True)
    y = torch.tensor(np.arange(32) % 3)
    model = anyfc.Sequential([anyfc.Dense(4, 8, "relu"), anyfc.Dense(8, 3, "identity")],
                             loss="softmax_cross_entropy", backend="torch", dtype="float64")
    for _ in range(2):  # the second fit broke when the first left a graph behind
        model.fit(X, y, epochs=1, batch_size=8)
    for p in model.state_dict().values():
        assert p.is_leaf and not p.requires_grad and p.grad_fn is None
    assert model.predict(X).grad_fn is None


@pytest.mark.hostile
@pytest.mark.cross
@pytest.mark.skipif("torch" not in AVAILABLE, reason="torch not available here")
def test_training_never_writes_into_the_callers_arrays() -> None:
    model = anyfc.Sequential([anyfc.Dense(4, 3, "identity")], loss="mean_squared_error",
                             backend="torch", dtype="float32")
    mine = {k: anyfc.to_numpy(v) for k, v in model.state_dict().items()}
    before = {k: v.copy() for k, v in mine.items()}
    model.load_state_dict(mine)
    X = np.random.default_rng(2).random((16, 4)).astype(np.float32)
    model.fit(X, np.zeros((16, 3), np.float32), epochs=2, batch_size=4)
    for k in mine:
        np.testing.assert_array_equal(mine[k], before[k])


# ---------------------------------------------------------------- integer dtypes, JAX


@pytest.fixture
def jax_x64() -> Iterator[Callable[[bool], None]]:
    """Sets JAX's 64-bit mode for one test and restores it afterwards."""
    import jax

    before = jax.config.read("jax_enable_x64")
    yield lambda on: jax.config.update("jax_enable_x64", on)
    jax.config.update("jax_enable_x64", before)


@pytest.mark.hostile
@pytest.mark.cross
@pytest.mark.parametrize("backend", [pytest.param(b, marks=_needs(b)) for b in
                                     ("numpy", "torch", "dask", "array_api_strict", "cupy")])
def test_index_dtype_is_int64(backend: str) -> None:
    xp = _backend.get_namespace(backend)
    assert _backend.index_dtype(xp) == xp.int64
    perm = _backend.from_host(np.random.default_rng(0).permutation(5), xp,
                              _backend.resolve_device(xp), None)
    assert perm.dtype == xp.int64


@pytest.mark.hostile
@pytest.mark.cross
@pytest.mark.skipif("jax" not in AVAILABLE, reason="jax not available here")
@pytest.mark.parametrize("x64", [False, True], ids=["x64_off", "x64_on"])
def test_jax_indices_without_warnings_or_wrap_around(x64: bool, jax_x64: Any) -> None:
    jax_x64(x64)
    xp = _backend.get_namespace("jax")
    wide = xp.int64 if x64 else xp.int32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _backend.index_dtype(xp) == wide
        perm = _backend.from_host(np.random.default_rng(0).permutation(7), xp, None)
        assert perm.dtype == wide
        np.testing.assert_array_equal(np.sort(np.asarray(perm)), np.arange(7))
        labels = anyfc.to_backend(np.array([0, 2, 1], np.int64), "jax")
        assert labels.dtype == wide
        big = np.array([0, 2**31 + 5])
        if x64:
            np.testing.assert_array_equal(np.asarray(anyfc.to_backend(big, "jax")), big)
        else:
            with pytest.raises(ValueError, match="int32"):
                anyfc.to_backend(big, "jax")
            with pytest.raises(ValueError, match="int32"):
                _backend.from_host(big, xp, None)
            as_float = anyfc.to_backend(big, "jax", dtype="float32")  # no int32 detour
            assert float(as_float[1]) == pytest.approx(2**31 + 5, rel=1e-6)
        if "torch" in AVAILABLE:
            import torch

            from_torch = anyfc.to_backend(torch.tensor([1, 2**31 + 5]), "jax") if x64 else None
            if from_torch is not None:
                assert int(from_torch[1]) == 2**31 + 5
            else:
                with pytest.raises(ValueError, match="int32"):
                    anyfc.to_backend(torch.tensor([1, 2**31 + 5]), "jax")


# ---------------------------------------------------------------- round trips, copies, dtypes


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
