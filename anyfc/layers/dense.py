"""The fully-connected layer, written once against the Array API.

For a batch ``X`` of ``h`` rows (one sample per row), weights ``W`` (n_in × n_out) and
bias ``b`` (n_out), the forward pass is

    U = X·W + B            (B: b repeated on every row; broadcasting does this)
    Y = f(U)

and, given ``∂E/∂Y`` from the layer above, the backward pass is

    Δ     = ∂E/∂U = ∂E/∂Y ⊙ f'(U)
    ∂E/∂W = Xᵀ·Δ           (the sum over the batch of each sample's x_kᵀ δ_k)
    ∂E/∂b = Σ_rows Δ
    ∂E/∂X = Δ·Wᵀ           (handed to the layer below as its ∂E/∂Y)
"""

from __future__ import annotations

import numbers
from types import ModuleType
from typing import Any

from . import _backend, activations, initializers

Array = Any


def _describe(a: Array) -> str:
    return f"{_backend.backend_name(_backend.namespace_of(a))} {a.dtype} on {_backend.device_of(a)}"


def _size(name: str, value: Any) -> int:
    """A layer size: a positive integer (Python or NumPy), else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Dense needs a positive integer {name}, got {value!r}")
    return int(value)


class Dense:
    """A fully-connected layer ``y = f(x·w + b)`` — the article's MiddleLayer,
    generalised to any activation, initialiser, backend, device and dtype.

    Parameters
    ----------
    n_in, n_out : number of inputs and of neurons.
    activation : ``"relu"`` (default), ``"leaky_relu"``, ``"sigmoid"``, ``"tanh"`` or
        ``"identity"`` (use identity for logits fed to a softmax/sigmoid loss).
    init : initialiser name (``"he"``, ``"xavier"``, ``"he_uniform"``, ...); default He
        for the ReLU family, Xavier otherwise.
    backend, device, dtype : where the parameters live (default: the default backend,
        its default device, float32).
    seed : seed of the host random generator, so one seed gives the same ``w`` on every
        backend.

    ``w`` and ``b`` are plain attributes and may be reassigned. After ``backward``,
    ``grad_w`` and ``grad_b`` hold ``∂E/∂W`` and ``∂E/∂b``; the next ``backward`` writes
    ``grad_w`` into the same buffer where the library allows it (copy it to keep it).

    >>> layer = Dense(3, 2, seed=0, backend="numpy")
    >>> import numpy as np
    >>> layer.forward(np.ones((4, 3), dtype=np.float32)).shape
    (4, 2)
    """

    param_names: tuple[str, ...] = ("w", "b")

    def __init__(
        self,
        n_in: int,
        n_out: int,
        activation: str | activations.Activation | None = "relu",
        *,
        init: str | initializers.Initializer | None = None,
        backend: str | ModuleType | None = None,
        device: Any = None,
        dtype: Any = "float32",
        seed: int | None = None,
    ) -> None:
        self.n_in, self.n_out = _size("n_in", n_in), _size("n_out", n_out)
        self.activation = activations.get(activation)
        self.init = init if init is not None else initializers.default_for(self.activation.name)
        draw = initializers.get(self.init)
        xp = _backend.get_namespace(backend)
        dev = _backend.resolve_device(xp, device)
        dt = _backend.resolve_dtype(xp, dtype)
        self.w: Array = _backend.from_host(draw(_backend.host_rng(seed), n_in, n_out), xp, dev, dt)
        self.b: Array = xp.zeros((n_out,), dtype=dt, device=dev)
        self.grad_w: Array | None = None
        self.grad_b: Array | None = None
        self.x: Array | None = None  # kept by forward for backward
        self.y: Array | None = None

    @classmethod
    def from_params(cls, w: Array, b: Array,
                    activation: str | activations.Activation | None = "relu") -> Dense:
        """A layer around copies of existing parameters (no random draw): ``w`` of shape
        (n_in, n_out) and ``b`` of shape (n_out,), floating arrays of the same library,
        device and dtype. The layer owns its copies: training never writes into the
        caller's arrays (which may be read-only, memory-mapped or shared elsewhere).

        >>> import numpy as np
        >>> Dense.from_params(np.ones((3, 2)), np.zeros(2), "identity").n_out
        2
        """
        for name, value in (("w", w), ("b", b)):
            if not _backend.is_array(value):
                raise TypeError(f"from_params needs arrays, got {type(value).__name__} for "
                                f"{name}")
            if _backend.check_numeric(value, name) != "real floating":
                raise TypeError(f"from_params needs floating-point parameters, got {name} of "
                                f"dtype {value.dtype}")
        if w.ndim != 2 or tuple(b.shape) != (w.shape[1],):
            raise ValueError(f"from_params needs w of shape (n_in, n_out) and b of shape "
                             f"(n_out,), got {tuple(w.shape)} and {tuple(b.shape)}")
        if (_backend.namespace_of(w) is not _backend.namespace_of(b)
                or _backend.device_of(w) != _backend.device_of(b) or w.dtype != b.dtype):
            raise TypeError("from_params needs w and b of the same library, device and dtype, "
                            f"got {_describe(w)} and {_describe(b)}")
        act = activations.get(activation)
        xp, dev = _backend.namespace_of(w), _backend.device_of(w)
        owned = [_backend.to_backend(p, xp, dev, w.dtype, copy=True) for p in (w, b)]
        layer = cls.__new__(cls)
        layer.n_in, layer.n_out = int(w.shape[0]), int(w.shape[1])
        layer.activation = act
        layer.init = initializers.default_for(act.name)
        layer.w, layer.b = owned
        layer.grad_w = layer.grad_b = layer.x = layer.y = None
        return layer

    # ------------------------------------------------------------ where it lives

    @property
    def xp(self) -> ModuleType:
        """The Array API namespace of the parameters."""
        return _backend.namespace_of(self.w)

    @property
    def backend(self) -> str:
        return _backend.backend_name(self.xp)

    @property
    def device(self) -> Any:
        return _backend.device_of(self.w)

    @property
    def dtype(self) -> Any:
        return self.w.dtype

    def to(
        self, backend: str | ModuleType | None = None, device: Any = None, dtype: Any = None
    ) -> Dense:
        """Move the parameters (and gradients) to another backend/device/dtype, in place;
        returns ``self``. ``None`` keeps the current backend, its default device, and
        the current dtype. All or nothing: every array is converted before any is set."""
        self._commit(self.moved(backend, device, dtype))
        return self

    def moved(self, backend: str | ModuleType | None = None, device: Any = None,
              dtype: Any = None) -> dict[str, Array]:
        """The layer's arrays (parameters and gradients) converted as ``to`` would, without
        changing the layer: ``{attribute: new array}``."""
        target = self.backend if backend is None else backend
        dtype = _backend.dtype_name(self.dtype) if dtype is None else dtype
        out = {}
        for name in self.param_names:
            for attr in (name, "grad_" + name):
                value = getattr(self, attr)
                if value is not None:
                    out[attr] = _backend.to_backend(value, target, device, dtype)
        return out

    def _commit(self, values: dict[str, Array]) -> None:
        for attr, value in values.items():
            setattr(self, attr, value)
        self.x = self.y = None

    # ------------------------------------------------------------ the math

    def _check_input(self, x: Array, what: str) -> None:
        if not _backend.is_array(x) or _backend.namespace_of(x) is not self.xp:
            raise TypeError(
                f"Dense.{what} got {type(x).__module__}.{type(x).__name__}, but the layer's "
                f"parameters are {self.backend} arrays; convert with anyfc.to_backend(x, "
                f"{self.backend!r}) (Sequential.fit/predict do this for you)"
            )
        if _backend.device_of(x) != self.device:
            raise TypeError(
                f"Dense.{what} got an array on device {_backend.device_of(x)!r}, but the "
                f"layer's parameters are on {self.device!r}"
            )
        if x.dtype != self.dtype:
            raise TypeError(
                f"Dense.{what} got an array of dtype {_backend.dtype_name(x.dtype)}, but the "
                f"layer's parameters are {_backend.dtype_name(self.dtype)}; convert with "
                f"anyfc.to_backend(x, {self.backend!r}, "
                f"dtype={_backend.dtype_name(self.dtype)!r}) (Sequential.fit/predict do this "
                "for you)"
            )

    def forward(self, x: Array, training: bool = True) -> Array:
        """``y = f(x·w + b)``. In training (the default, as in the article's loop) it
        keeps ``x`` and ``y`` for ``backward``; with ``training=False`` it keeps nothing
        on the layer, so inference is safe from many threads at once."""
        self._check_input(x, "forward")
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(
                f"Dense({self.n_in}, {self.n_out}).forward expects a 2-D batch with "
                f"{self.n_in} features per row, got shape {tuple(x.shape)}"
            )
        y = self.activation.forward(self.xp, x @ self.w + self.b)
        if training:
            self.x, self.y = x, y
        return y

    def backward(self, grad_y: Array, need_grad_x: bool = True) -> Array | None:
        """Given ``grad_y = ∂E/∂y``, set ``grad_w = xᵀ·δ`` and ``grad_b = Σ_rows δ``
        with ``δ = grad_y ⊙ f'(u)``, and return ``∂E/∂x = δ·wᵀ`` (``None`` when
        ``need_grad_x`` is false, which saves the first layer a matrix product)."""
        if self.x is None or self.y is None:
            raise RuntimeError("Dense.backward called before forward")
        self._check_input(grad_y, "backward")
        if tuple(grad_y.shape) != tuple(self.y.shape):
            raise ValueError(
                f"Dense.backward expects grad_y of shape {tuple(self.y.shape)} (the "
                f"forward output), got {tuple(grad_y.shape)}"
            )
        delta = self.activation.backward(self.xp, self.y, grad_y)
        self.grad_w = _backend.matmul(self.x.T, delta, out=self.grad_w)  # reuses its buffer
        self.grad_b = self.xp.sum(delta, axis=0)
        return delta @ self.w.T if need_grad_x else None

    def update(self, eta: float) -> None:
        """Plain gradient descent, the article's ``w -= eta * grad_w; b -= eta * grad_b``.

        For momentum, Adam and friends use an optimizer from ``anyfc.optimizers``.
        """
        if self.grad_w is None or self.grad_b is None:
            raise RuntimeError("Dense.update called before backward")
        self.w = _backend.subtract_scaled_(self.w, eta, self.grad_w)
        self.b = _backend.subtract_scaled_(self.b, eta, self.grad_b)
        self.w, self.b = _backend.materialize([self.w, self.b])

    def __repr__(self) -> str:
        return (
            f"Dense({self.n_in}, {self.n_out}, activation={self.activation.name!r}, "
            f"backend={self.backend!r}, dtype={_backend.dtype_name(self.dtype)!r})"
        )
