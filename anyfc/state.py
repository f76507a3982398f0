"""A model's state as one value: everything that changes when it trains, in typed groups
keyed by stable paths (as Flax NNX's ``split`` and Keras's state tuple)::

    path = "layers.<position>.<array name>"        e.g. "layers.0.w", "layers.1.running_var"

- ``params``: the trainable arrays (``layer.param_names``), which optimizers update;
- ``buffers``: the non-trainable arrays kept between calls (running statistics);
- ``rng``: each random layer's generator position (``"layers.<position>"``), opaque
  values of its ``DeviceRandom.snapshot()``.

An optimizer's per-parameter state is keyed by the same parameter paths
(``opt.state["layers.0.w"] = {"m": ..., "v": ...}``). ``Sequential.state()`` gives the
live arrays; ``ModelState.copy()`` device-side copies that later training never changes
(snapshots, ``EarlyStopping``'s best weights); ``Sequential.set_state`` assigns one,
checked and all or nothing. Snapshots and rollback of an epoch, ``state_dict``,
checkpoints, moves, pickling, Dask shipping and the compiled step all go through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from . import _backend

Array = Any


def path(position: int, name: str) -> str:
    """Return the path of an array of a layer: ``"layers.0.w"``.

    Parameters
    ----------
    position : int
        The layer's position in the model.
    name : str
        The array's name (``"w"``, ``"running_var"``).

    Returns
    -------
    str
        ``"layers.<position>.<name>"``.

    Examples
    --------
    >>> path(0, "w")
    'layers.0.w'
    """
    return f"layers.{position}.{name}"


def layer_path(position: int) -> str:
    """Return the path of a layer (its generator's key): ``"layers.2"``.

    Parameters
    ----------
    position : int
        The layer's position in the model.

    Returns
    -------
    str
        ``"layers.<position>"``.
    """
    return f"layers.{position}"


def split_path(key: str) -> tuple[int, str]:
    """Split an array's path into the layer's position and the array's name.

    Parameters
    ----------
    key : str
        What ``path`` returned.

    Returns
    -------
    tuple
        ``(position, name)``.

    Raises
    ------
    ValueError
        ``key`` is no array path, naming it.

    Examples
    --------
    >>> split_path("layers.1.running_var")
    (1, 'running_var')
    """
    parts = str(key).split(".")
    if len(parts) != 3 or parts[0] != "layers" or not parts[1].isdigit():
        raise ValueError(f"{key!r} is not a state path (layers.<position>.<name>)")
    return int(parts[1]), parts[2]


@dataclass(frozen=True)
class ModelState:
    """Parameters, buffers and random-generator positions of a model, by path.

    A value: the dictionaries hold the model's arrays (live, or copies after ``copy``),
    never the model itself. ``Sequential.state()`` gives one, ``Sequential.set_state``
    assigns one.

    Parameters
    ----------
    params : dict
        The trainable arrays by path (``"layers.0.w"``).
    buffers : dict
        The non-trainable arrays by path (``"layers.1.running_var"``).
    rng : dict
        Each random layer's generator position by layer path (``"layers.3"``).
    """

    params: dict[str, Array] = field(default_factory=dict)
    buffers: dict[str, Array] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)

    def arrays(self) -> dict[str, Array]:
        """Return the parameters and buffers together, in layer order.

        Returns
        -------
        dict
            ``{path: array}``: ``state_dict``'s entries.
        """
        merged = {**self.params, **self.buffers}
        return dict(sorted(merged.items(), key=lambda kv: _order(kv[0])))

    def copy(self) -> ModelState:
        """Copy every array on its device, so that later training never changes the copy.

        Generator positions are immutable snapshots already.

        Returns
        -------
        ModelState
            A state of copies, of the same library, device and dtype.
        """
        return ModelState(_copied(self.params), _copied(self.buffers), dict(self.rng))

    def __iter__(self) -> Iterator[Array]:
        """Every array, parameters first (for finiteness checks and transfers)."""
        yield from self.params.values()
        yield from self.buffers.values()


def _order(key: str) -> tuple[int, int]:
    position, _ = split_path(key)
    return position, 0


def _copied(arrays: dict[str, Array]) -> dict[str, Array]:
    return {k: _backend.namespace_of(v).asarray(v, copy=True) for k, v in arrays.items()}
