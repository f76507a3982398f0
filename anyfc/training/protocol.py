"""What the training modules need of a model: a ``Protocol`` of public methods, which
``anyfc.Sequential`` implements. Training never imports the model class, and never calls
anything private on it."""

from __future__ import annotations

from types import ModuleType
from typing import Any, Protocol

from ..layers import Layer
from ..losses import Loss
from ..optimizers import Optimizer
from ..state import ModelState

Array = Any


class Model(Protocol):
    """A stack of layers with a loss, its state as one value (``anyfc.state``), and the
    checks that run before anything changes."""

    layers: list[Layer]
    loss: Loss
    optimizer: Optimizer | None

    @property
    def xp(self) -> ModuleType: ...

    @property
    def backend(self) -> str: ...

    @property
    def device(self) -> Any: ...

    @property
    def dtype(self) -> Any: ...

    @property
    def n_in(self) -> int: ...

    @property
    def n_out(self) -> int: ...

    def forward(self, x: Array, training: bool = True) -> Array: ...

    def backward(self, grad_y: Array) -> None: ...

    def state(self, *, rng: bool = True) -> ModelState: ...

    def set_state(self, state: ModelState) -> None: ...

    def generators(self) -> dict[str, Any]: ...

    def state_dict(self, copy: bool = False) -> dict[str, Array]: ...

    def load_state_dict(self, state_dict: Any) -> None: ...

    def architecture(self) -> dict[str, Any]: ...

    def adopt(self, opt: Optimizer) -> dict[str, Any]: ...

    def check(self, placement: bool = True) -> None: ...

    def check_settings(self) -> None: ...

    def check_values(self) -> None: ...

    def check_min_batch(self, smallest: int, why: str) -> None: ...

    def forget(self) -> None: ...

    def save(self, path: Any) -> None: ...
