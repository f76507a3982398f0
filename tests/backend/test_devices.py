"""anyfc._backend, devices and dtypes: bad devices are refused with the list of devices
that exist (anyfc's exception, not the library's own), good ones accepted in every form,
unknown dtypes refused."""

from __future__ import annotations

from typing import Any

import pytest

import anyfc
from anyfc import _backend
from tests.helpers.transfers import BASE, _needs


def test_unknown_dtype_and_device_are_refused():
    with pytest.raises(ValueError, match="float32, float64"):
        anyfc.Dense(2, 2, "relu", dtype="int8")
    with pytest.raises(ValueError, match="only the device 'cpu'"):
        anyfc.Dense(2, 2, "relu", backend="numpy", device="cuda:0")


BAD_DEVICES: list[tuple[str, Any, type[Exception], str]] = [
    ("numpy", "cuda:0", ValueError, "devices here: cpu"),
    ("numpy", 1, ValueError, "devices here: cpu"),
    ("numpy", 1.5, TypeError, "float"),
    ("dask", "gpu", ValueError, "devices here: cpu"),
    ("dask", ["cpu"], TypeError, "list"),
    ("torch", "cuda:3", ValueError, "devices here: cpu"),
    ("torch", "nonsense", ValueError, "devices here: cpu"),
    ("torch", 1.5, TypeError, "float"),
    ("torch", ["cpu"], TypeError, "list"),
    ("torch", -1, ValueError, "devices here: cpu"),
    ("jax", "gpu:7", ValueError, "devices here: cpu:0"),
    ("jax", "cpu:99", ValueError, "devices here: cpu:0"),
    ("jax", "cpu:x", ValueError, "devices here: cpu:0"),
    ("jax", 99, ValueError, "devices here: cpu:0"),
    ("jax", 0.5, TypeError, "float"),
    ("array_api_strict", "device9", ValueError, "CPU_DEVICE, device1, device2"),
    ("array_api_strict", "cpu", ValueError, "CPU_DEVICE, device1, device2"),
    ("array_api_strict", 1, TypeError, "int"),
    ("cupy", "cuda:99", ValueError, "devices here: cuda:0"),
    ("cupy", "cpu", ValueError, "devices here: cuda:0"),
    ("cupy", 2.0, TypeError, "float"),
]


@pytest.mark.hostile
@pytest.mark.cross
@pytest.mark.parametrize(
    "backend, device, error, listing",
    [pytest.param(*case, id=f"{case[0]}-{case[1]!r}", marks=_needs(case[0]))
     for case in BAD_DEVICES])
def test_bad_devices_are_refused_with_the_devices_that_exist(
        backend: str, device: Any, error: type[Exception], listing: str) -> None:
    if backend == "torch" and device == "cuda:3":
        import torch

        if torch.cuda.device_count() > 3:
            pytest.skip("this machine has a cuda:3")
    xp = _backend.get_namespace(backend)
    with pytest.raises(error) as info:
        _backend.resolve_device(xp, device)
    assert type(info.value) is error  # not torch's or JAX's own exception
    if error is ValueError:
        assert listing in str(info.value) and "devices here" in str(info.value)
    else:
        assert listing in str(info.value)
    with pytest.raises(error):
        anyfc.Dense(2, 2, "relu", backend=backend, device=device)


GOOD_DEVICES: list[tuple[str, Any]] = [
    ("numpy", "cpu"), ("dask", "cpu"), ("torch", "cpu"), ("jax", "cpu"), ("jax", "cpu:0"),
    ("jax", 0), ("array_api_strict", "CPU_DEVICE"), ("array_api_strict", "device1"),
]


@pytest.mark.hostile
@pytest.mark.cross
@pytest.mark.parametrize("backend, device", [
    pytest.param(b, d, id=f"{b}-{d!r}", marks=_needs(b)) for b, d in GOOD_DEVICES])
def test_good_devices_are_still_accepted(backend: str, device: Any) -> None:
    xp = _backend.get_namespace(backend)
    dev = _backend.resolve_device(xp, device)
    assert _backend.resolve_device(xp, dev) == dev  # a device object is accepted too
    assert _backend.device_of(anyfc.to_backend(BASE, backend, device)) == dev
