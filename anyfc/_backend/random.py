"""Random numbers: on the host (``host_rng``: one seed, the same numbers whatever the
backend, for weight initialisation and shuffling), and on the array's own device
(``DeviceRandom``, one small interface over each library's generator, for dropout).

The Array API standard has no random numbers. ``DeviceRandom(xp, device, seed)`` gives
``uniform(shape, dtype)`` in [0, 1) where the arrays live: NumPy's ``Generator``, a
``torch.Generator`` on the tensor's device, CuPy's ``cupy.random`` generator, and a JAX
key split at every draw. array_api_strict and Dask draw on the host (NumPy) and copy.

JAX's key is *state*: a compiled training step takes it as an argument and returns the
next one (``state``/``with_state``), so a jitted step never bakes one mask in.
"""

from __future__ import annotations

import numbers
import threading
from types import ModuleType
from typing import Any

import numpy as np

from .devices import device_token, resolve_device
from .dtypes import dtype_name
from .namespaces import backend_name, get_namespace
from .transfers import from_host, to_numpy

Array = Any  # an array of any Array API library


_SEEDS: list[np.random.Generator] = []  # set_seed's stream, when one is set
_SEEDS_LOCK = threading.Lock()


def set_seed(seed: int | None) -> None:
    """Make every random draw of anyfc that is given no seed of its own reproducible.

    Weight initialisation, shuffling in ``fit``, dropout masks (on every backend): each
    such draw takes its seed, in order, from a stream started at ``seed``. Explicit
    seeds (``Dense(..., seed=1)``, ``fit(seed=...)``) still win. anyfc's own draws only:
    NumPy's, Python's and each library's global generators are left alone (seed them
    yourself if your code draws from them).

    Parameters
    ----------
    seed : int or None
        An integer in ``[0, 2**63)``; ``None`` goes back to fresh entropy.

    Raises
    ------
    ValueError
        Another value.

    Examples
    --------
    >>> set_seed(0); a = fresh_seed(); set_seed(0); a == fresh_seed()
    True
    >>> set_seed(None)
    """
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                             or not 0 <= int(seed) < 2**63):
        raise ValueError(f"set_seed needs None or an integer in [0, 2**63), got {seed!r}")
    with _SEEDS_LOCK:
        _SEEDS[:] = [] if seed is None else [np.random.default_rng(int(seed))]


def fresh_seed() -> int:
    """A new seed: the next of ``set_seed``'s stream when one is set, else from the
    operating system's entropy."""
    with _SEEDS_LOCK:
        if _SEEDS:
            return int(_SEEDS[0].integers(2**31 - 1))
    return int(np.random.default_rng().integers(2**31 - 1))


def host_rng(seed: int | np.random.Generator | None = None) -> np.random.Generator:
    """A NumPy generator: random numbers are drawn on the host, so one seed gives the
    same numbers whatever the backend. ``None``: a fresh seed (``set_seed``'s stream
    when one is set).

    >>> int(host_rng(0).integers(10))
    8
    """
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(fresh_seed() if seed is None else seed)


class DeviceRandom:
    """Uniform random numbers in [0, 1) on ``device`` of ``xp``, from ``seed`` (``None``:
    a fresh one). The same seed gives the same stream on a given backend and device."""

    def __init__(self, xp: ModuleType, device: Any, seed: int | None = None) -> None:
        self.xp, self.device = xp, device
        self.seed = fresh_seed() if seed is None else int(seed)
        self.name = backend_name(xp)
        self.state: Any = None  # JAX: the key; the others keep a stateful generator
        if self.name == "torch":
            import torch

            self._gen: Any = torch.Generator(device=device)
            self._gen.manual_seed(self.seed)
        elif self.name == "cupy":
            import cupy

            with device:
                self._gen = cupy.random.default_rng(self.seed)
        elif self.name == "jax":
            import jax

            self.state = jax.device_put(jax.random.PRNGKey(self.seed), device)  # raw uint32
        else:  # numpy; array_api_strict and dask through the host
            self._gen = np.random.default_rng(self.seed)

    def matches(self, xp: ModuleType, device: Any) -> bool:
        return self.xp is xp and self.device == device

    def uniform(self, shape: tuple[int, ...], dtype: Any) -> Array:
        """An array of ``shape`` with uniform values in [0, 1), as ``dtype``."""
        if self.name == "torch":
            import torch

            return torch.rand(shape, generator=self._gen, device=self.device, dtype=dtype)
        if self.name == "cupy":
            with self.device:
                return self._gen.random(shape, dtype=dtype)
        if self.name == "jax":
            import jax

            key, sub = jax.random.split(self.state)
            self.state = key
            return jax.random.uniform(sub, shape, dtype=dtype)
        host = self._gen.random(shape, dtype=np.dtype(dtype_name(dtype)))
        return from_host(host, self.xp, self.device, dtype)

    def snapshot(self) -> Any:
        """The generator's position, for ``restore`` (an undone epoch draws its dropout
        masks again from where it started)."""
        if self.name == "jax":
            return self.state  # immutable
        if self.name == "torch":
            return self._gen.get_state()  # a copy
        if self.name == "cupy":
            return None  # CuPy's generator offers no state to copy: not restored
        return self._gen.bit_generator.state  # a copy (a dict of Python ints)

    def restore(self, snapshot: Any) -> None:
        if snapshot is None:
            return
        if self.name == "jax":
            self.state = snapshot
        elif self.name == "torch":
            self._gen.set_state(snapshot)
        else:
            self._gen.bit_generator.state = snapshot

    def kind(self) -> str:
        """Return which family of generator draws.

        A position is only meaningful to a generator of the same kind.

        Returns
        -------
        str
            ``"pcg64"`` (NumPy's, also behind array_api_strict and Dask),
            ``"torch:<device type>"``, ``"jax"`` or ``"cupy"``.
        """
        if self.name == "torch":
            return f"torch:{self._gen.device.type}"
        return self.name if self.name in ("jax", "cupy") else "pcg64"

    def position(self) -> dict[str, Any] | None:
        """Return the generator's position as plain JSON data (a checkpoint's).

        Returns
        -------
        dict or None
            ``{"kind": ..., "value": ...}``, or ``None`` where the library offers no
            position (CuPy).
        """
        snap = self.snapshot()
        if snap is None:
            return None
        if self.name in ("jax", "torch"):
            snap = [int(v) for v in to_numpy(snap).reshape(-1).tolist()]
        return {"kind": self.kind(), "value": snap}

    def set_position(self, data: Any) -> bool:
        """Go to a ``position()``, read from an untrusted file.

        Parameters
        ----------
        data : dict
            ``{"kind": ..., "value": ...}`` as ``position()`` gives it.

        Returns
        -------
        bool
            ``True`` once set; ``False`` (nothing changed) for another kind of generator.

        Raises
        ------
        ValueError
            A malformed position.
        """
        if not isinstance(data, dict) or set(data) != {"kind", "value"}:
            raise ValueError("a generator position is {'kind': ..., 'value': ...}")
        if data["kind"] != self.kind():
            return False
        value = data["value"]
        if self.name in ("jax", "torch"):
            size = len(to_numpy(self.snapshot()).reshape(-1))
            high = 2**32 if self.name == "jax" else 2**8
            if not (isinstance(value, list) and len(value) == size and all(
                    isinstance(v, int) and not isinstance(v, bool) and 0 <= v < high
                    for v in value)):
                raise ValueError(f"a {self.kind()} generator position is {size} integers "
                                 f"in [0, {high})")
            if self.name == "jax":
                import jax

                self.restore(jax.device_put(np.asarray(value, dtype=np.uint32), self.device))
            else:
                import torch

                try:  # torch checks the Mersenne Twister's fields ("Invalid mt19937 state")
                    self.restore(torch.tensor(value, dtype=torch.uint8))
                except RuntimeError as exc:
                    raise ValueError(f"not a torch generator state: {exc}") from None
            return True
        probe = np.random.PCG64()  # NumPy checks the state itself: try it on a scratch one
        try:
            probe.state = value
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise ValueError(f"not a PCG64 generator state: {exc}") from None
        self.restore(probe.state)
        return True

    def __getstate__(self) -> dict[str, Any]:
        """Plain data: the library, device, seed and position (a generator object of
        torch or CuPy does not pickle, nor does a JAX device)."""
        position = self.snapshot()
        if self.name == "jax":
            position = to_numpy(position)
        return {"backend": self.name, "device": device_token(self.xp, self.device),
                "seed": self.seed, "position": position}

    def __setstate__(self, state: dict[str, Any]) -> None:
        xp = get_namespace(state["backend"])
        self.__init__(xp, resolve_device(xp, state["device"]),  # type: ignore[misc]
                      state["seed"])
        position = state["position"]
        if self.name == "jax" and position is not None:
            import jax

            position = jax.device_put(position, self.device)
        self.restore(position)

    def with_state(self, state: Any) -> DeviceRandom:
        """A copy drawing from ``state`` (JAX: a traced key inside a compiled step)."""
        twin = object.__new__(DeviceRandom)
        twin.__dict__.update(self.__dict__)
        twin.state = state
        return twin
