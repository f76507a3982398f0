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

With an L2 penalty ``l2 = α`` (scikit-learn's ``alpha``) the loss of a batch gains
``α/(2N)·‖W‖²`` over the weights (never the bias), ``N`` the batch's rows (the sum of
its row weights under a loss's ``reduction="mean_with_sample_weight"``), so

    ∂E/∂W = Xᵀ·Δ + (α/N)·W

added by ``penalty`` after ``backward``, with the weights before the update.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .. import _backend, _validation, activations, initializers
from .base import Layer, describe, size

Array = Any


class Dense(Layer):
    """A fully-connected layer ``y = f(x·w + b)``.

    The article's MiddleLayer, generalised to any activation, initialiser, backend,
    device and dtype. For a batch ``X`` of ``h`` rows::

        U = X·W + B,   Y = f(U)                        (forward)
        Δ = ∂E/∂U = ∂E/∂Y ⊙ f'(U)                      (backward, given ∂E/∂Y)
        ∂E/∂W = Xᵀ·Δ,   ∂E/∂b = Σ_rows Δ,   ∂E/∂X = Δ·Wᵀ

    With ``l2 = α`` the batch's loss gains ``α/(2N)·‖W‖²`` and ``∂E/∂W`` gains
    ``(α/N)·W`` (``penalty``).

    Parameters
    ----------
    n_in, n_out : int
        The number of inputs and of neurons.
    activation : str, dict, anyfc.activations.Activation or None, default "identity"
        The function ``f``: ``"identity"`` (the default, also ``"linear"`` and ``None``:
        no function, ``y = x·w + b``, as Keras's ``Dense`` and torch's ``Linear``; what a
        last layer feeding a softmax/sigmoid loss needs), ``"relu"``, ``"leaky_relu"``,
        ``"sigmoid"``, ``"tanh"``, ``"gelu"``, ``"silu"`` (``"swish"``), ``"elu"``,
        ``"softplus"`` or ``"softsign"``; a dict ``{"name": "leaky_relu", "alpha": 0.2}``
        for settings, or an ``anyfc.activations.Activation`` object (your own registered
        subclass too).
    init : str, optional
        The initialiser's name (``"he"``, ``"xavier"``, ``"he_uniform"``, ...); default
        He for the ReLU family, Xavier otherwise.
    backend, device, dtype : optional
        Where the parameters live (default: the default backend, its default device,
        float32).
    seed : int, optional
        The seed of the host random generator, so one seed gives the same ``w`` on every
        backend (default: drawn from ``anyfc.set_seed``'s stream).
    l2 : float, default 0
        ``α ≥ 0``, the L2 penalty ``α/(2N)·‖W‖²`` on the weights of each training batch
        (``N``: its rows, or its weights' sum, see the module docstring), scikit-learn's
        ``alpha``; 0: none.

    Attributes
    ----------
    w, b : array
        The weights (n_in × n_out) and the bias (n_out): plain attributes, which may be
        reassigned.
    grad_w, grad_b : array
        After ``backward``, ``∂E/∂W`` and ``∂E/∂b``; the next ``backward`` writes
        ``grad_w`` into the same buffer where the library allows it (copy it to keep
        it).

    Examples
    --------
    >>> layer = Dense(3, 2, seed=0, backend="numpy")
    >>> import numpy as np
    >>> layer.forward(np.ones((4, 3), dtype=np.float32)).shape
    (4, 2)
    """

    param_names = ("w", "b")
    n_in: int
    n_out: int
    cache_names = ("x", "u", "y")

    def __init__(
        self,
        n_in: int,
        n_out: int,
        activation: str | activations.Activation | None = "identity",
        *,
        init: str | initializers.Initializer | None = None,
        backend: str | ModuleType | None = None,
        device: Any = None,
        dtype: Any = "float32",
        seed: int | None = None,
        l2: float = 0.0,
    ) -> None:
        self.n_in, self.n_out = size("Dense", "n_in", n_in), size("Dense", "n_out", n_out)
        self.l2 = _validation.real("Dense l2", l2)
        self.activation = activations.get(activation)
        self.init = init if init is not None else initializers.default_for(self.activation.name)
        draw = initializers.get(self.init)
        xp, dev, dt = self.place(backend, device, dtype)
        self.w: Array = _backend.from_host(draw(_backend.host_rng(seed), self.n_in, self.n_out),
                                           xp, dev, dt)
        self.b: Array = xp.zeros((self.n_out,), dtype=dt, device=dev)
        self.grad_w: Array | None = None
        self.grad_b: Array | None = None
        self.x: Array | None = None  # kept by a training forward for backward
        self.u: Array | None = None  # only for activations whose derivative needs u
        self.y: Array | None = None

    @classmethod
    def from_params(cls, w: Array, b: Array,
                    activation: str | activations.Activation | None = "identity",
                    l2: float = 0.0) -> Dense:
        """Build a layer around copies of existing parameters (no random draw).

        The layer owns its copies: training never writes into the caller's arrays
        (which may be read-only, memory-mapped or shared elsewhere). It lives where
        ``w`` lives.

        Parameters
        ----------
        w : array
            The weights, of shape (n_in, n_out), floating.
        b : array
            The bias, of shape (n_out,), of ``w``'s library, device and dtype.
        activation : str, dict, anyfc.activations.Activation or None, default "identity"
            As for ``Dense``.
        l2 : float, default 0
            As for ``Dense``.

        Returns
        -------
        Dense
            The new layer.

        Raises
        ------
        TypeError
            ``w`` or ``b`` not a floating array, or of different libraries, devices or
            dtypes.
        ValueError
            Shapes that do not fit together.

        Examples
        --------
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
                            f"got {describe(w)} and {describe(b)}")
        xp, dev = _backend.namespace_of(w), _backend.device_of(w)
        owned = [_backend.to_backend(p, xp, dev, w.dtype, copy=True) for p in (w, b)]
        # the one construction path; seed=0 only fills w until the copies replace it
        layer = cls(int(w.shape[0]), int(w.shape[1]), activation, backend=xp, device=dev,
                    dtype=w.dtype, seed=0, l2=l2)
        layer.w, layer.b = owned
        return layer

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"w": (self.n_in, self.n_out), "b": (self.n_out,)}

    @classmethod
    def array_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        unknown = set(config) - {"n_in", "n_out", "activation", "init", "l2"}
        if unknown:
            raise TypeError(f"Dense takes no setting {sorted(unknown)[0]!r}")
        n_in, n_out = size("Dense", "n_in", config.get("n_in")), size(
            "Dense", "n_out", config.get("n_out"))
        activations.get(config.get("activation", "relu"))  # short name, config, spec, object
        if "init" in config:
            if not isinstance(config["init"], str):
                raise ValueError(f"Dense needs an initializer name, got {config['init']!r}")
            initializers.get(config["init"])
        if "l2" in config:
            _validation.real("Dense l2", config["l2"])
        return {"w": (n_in, n_out), "b": (n_out,)}

    def config(self) -> dict[str, Any]:
        # the activation in a form naming its exact class (activations.to_config)
        out: dict[str, Any] = {"n_in": self.n_in, "n_out": self.n_out,
                               "activation": activations.to_config(self.activation)}
        if isinstance(self.init, str):
            out["init"] = self.init
        if getattr(self, "l2", 0.0):  # left out when 0: the architecture of 0.1
            out["l2"] = self.l2
        return out

    # ------------------------------------------------------------ the math

    def forward(self, x: Array, training: bool = True) -> Array:
        """Compute ``y = f(x·w + b)``.

        Parameters
        ----------
        x : array
            A batch of ``n_in`` features per row, of the layer's library, device and
            dtype (``anyfc.to_backend`` converts; ``Sequential.fit`` and ``predict`` do
            it for you).
        training : bool, default True
            In training (the default, as in the article's loop) keep ``x`` and ``y``
            (and ``u`` where ``f'`` needs it) for ``backward``; with ``False`` keep
            nothing on the layer, so inference is safe from many threads at once.

        Returns
        -------
        array
            ``y``, of shape (rows, n_out).

        Raises
        ------
        TypeError
            ``x`` of another library, device or dtype.
        ValueError
            ``x`` not 2-D, or not of ``n_in`` features.
        """
        self._check_input(x, "forward")
        u = x @ self.w + self.b
        y = self.activation.forward(self.xp, u)
        if training:
            self.x, self.y = x, y
            self.u = u if self.activation.uses_u else None
        return y

    def infer(self, x: Array) -> Array:
        """Compute ``forward(x, training=False)`` without the input checks.

        The model made them; a subclass with its own ``forward`` runs that. The bias is
        added into the product's own (new) array, which the activation may reuse.

        Parameters
        ----------
        x : array
            The checked input, ``(h, n_in)``; never written.

        Returns
        -------
        array
            ``f(x·W + b)``.
        """
        if type(self).forward is not Dense.forward:
            return self.forward(x, training=False)
        u = _backend.affine(x, self.w, self.b)  # a new array: the activation may reuse it
        return self.activation.infer(_backend.namespace_of(x), u)

    def backward(self, grad_y: Array, need_grad_x: bool = True) -> Array | None:
        """Set ``grad_w = xᵀ·δ`` and ``grad_b = Σ_rows δ``, with ``δ = grad_y ⊙ f'(u)``.

        Parameters
        ----------
        grad_y : array
            ``∂E/∂y`` for the last training ``forward``'s output.
        need_grad_x : bool, default True
            Whether to compute ``∂E/∂x``; ``False`` saves the first layer a matrix
            product.

        Returns
        -------
        array or None
            ``∂E/∂x = δ·wᵀ``, or ``None`` when ``need_grad_x`` is false.

        Raises
        ------
        RuntimeError
            No training ``forward`` came before.
        """
        self._check_backward(grad_y, self.y)
        delta = self.activation.backward(self.xp, self.y, grad_y, self.u)
        x: Any = self.x
        self.grad_w = _backend.matmul(x.T, delta, out=self.grad_w)  # reuses its buffer
        self.grad_b = self.xp.sum(delta, axis=0)
        return delta @ self.w.T if need_grad_x else None

    def penalty(self, scale: Any) -> Array | None:
        """Add the L2 term: with ``l2 = α > 0``, add ``α·scale·W`` to ``grad_w``.

        Called after ``backward``, with the weights before the update.

        Parameters
        ----------
        scale : float or 0-d array
            ``1/N``, the loss's normalizer.

        Returns
        -------
        array or None
            The batch's penalty ``½·α·scale·‖W‖²`` (a 0-d array), or ``None`` without a
            penalty (``l2 = 0``).
        """
        alpha = getattr(self, "l2", 0.0)
        if not alpha:
            return None
        c = alpha * scale
        g: Any = self.grad_w
        if g is None:
            raise RuntimeError("Dense.penalty called before backward")
        # in the layer's own gradient buffer where the library updates in place; a new
        # array where it cannot (JAX) or where += rebinds (Dask)
        g += c * self.w
        self.grad_w = g
        return (0.5 * c) * self.xp.sum(self.w * self.w)

    def update(self, eta: float) -> None:
        """Take a plain gradient-descent step: ``w -= eta * grad_w; b -= eta * grad_b``.

        The article's update. For momentum, Adam and friends use an optimizer from
        ``anyfc.optimizers``.

        Parameters
        ----------
        eta : float
            The learning rate ``η``.

        Raises
        ------
        RuntimeError
            No ``backward`` came before.
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
