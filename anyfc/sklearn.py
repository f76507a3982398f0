"""scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor`` trained by anyfc on any
backend (``pip install 'anyfc[sklearn]'``; ``import anyfc`` alone never imports
scikit-learn).

>>> from anyfc.sklearn import MLPClassifier
>>> from sklearn.datasets import load_iris
>>> X, y = load_iris(return_X_y=True)
>>> clf = MLPClassifier((16,), max_iter=300, learning_rate_init=0.01, random_state=0)
>>> clf.fit(X, y).score(X, y) > 0.9
True

They take scikit-learn's parameters, with scikit-learn's names, defaults and meaning, and
train the way ``sklearn.neural_network.MLPClassifier``/``MLPRegressor`` do with the
stochastic solvers — the same Glorot-uniform initial weights drawn from ``random_state``,
the same shuffling, mini-batches, loss scaling, L2 term, Adam/SGD update, convergence
rule, early stopping and warnings — so on ``backend="numpy", dtype="float64"`` they
follow scikit-learn's training trajectory to rounding error (``tests/test_sklearn.py``
checks this). On top of that they take ``backend``, ``device`` and ``dtype``: where the
network (an ``anyfc.Sequential``, ``model_``) lives and trains.

Choices, and how they differ from scikit-learn
-----------------------------------------------
- **L2 penalty** (``alpha``), as scikit-learn scales it: the loss of a batch of ``h``
  rows gains ``alpha/(2h)·Σ‖W‖²`` over the weight matrices (never the biases), so each
  weight gradient gains ``alpha·W/h``. anyfc's ``weight_decay`` cannot express this (it
  decays biases too and does not follow the batch size), so the term is added to each
  layer's ``grad_w`` after ``backward`` and before the update, inside the optimizer's
  ``step`` (for JAX it is part of the compiled step). ``loss_curve_`` includes the
  penalty as scikit-learn's does (weights as they were before each batch's update).
- **Loss scaling** as scikit-learn's: softmax cross-entropy and binary cross-entropy
  summed over outputs and averaged over rows; squared error halved (gradient
  ``(ŷ - y)/h``). These losses are registered (``anyfc.register``) as
  ``sklearn.SoftmaxLogLoss``, ``sklearn.LogisticLogLoss`` and ``sklearn.HalfSquaredError``,
  so ``model_.save(path)`` (or ``anyfc.io.save(model_, path)``) writes them and
  ``anyfc.load`` rebuilds them (in a process
  that imported ``anyfc.sklearn``), training on as scikit-learn would.
- **solver**: ``"adam"`` is scikit-learn's Adam (ε added to ``√v`` before the bias
  correction of the step size, as scikit-learn does); ``"sgd"`` is momentum/Nesterov SGD
  with a constant learning rate (``learning_rate="constant"``); anyfc's ``"adamw"``,
  ``"rmsprop"`` and ``"adagrad"`` are also accepted (with ``learning_rate_init`` and
  ``epsilon``; AdamW keeps its decoupled decay of 0.01 on top of ``alpha``).
  Not supported: ``solver="lbfgs"``, ``learning_rate="invscaling"/"adaptive"``,
  ``power_t``, ``max_fun``, ``sample_weight``, sparse input.
- **dtype** defaults to ``"float64"`` (anyfc's own default is float32) because
  scikit-learn's check suite needs it: ``check_methods_sample_order_invariance`` and
  ``check_methods_subset_invariance`` ask every row's prediction to be the same, to a
  relative 1e-7, whatever the order or the other rows of the batch, and in float32 (one
  unit in the last place is 1.2e-7) matrix-product kernels that treat a batch's last
  rows apart break that now and then (seen on JAX). It is also what scikit-learn's MLP
  computes in for float64 data. Pass ``dtype="float32"`` for speed (the benchmark
  does); outputs come in the estimator's dtype. On JAX,
  float64 turns on JAX's 64-bit mode for the process (as everywhere in anyfc).
- **Data**: NumPy arrays, pandas frames and lists go through scikit-learn's
  ``validate_data`` (``n_features_in_``, ``feature_names_in_``). Arrays of the other
  libraries (torch, JAX, CuPy, array-api-strict, Dask) are checked where they are and
  moved once to the model's backend and device, never through NumPy unless the model
  is on NumPy (a Dask array is computed into memory: for data larger than memory use
  ``Sequential.fit`` directly). Labels always go through the host (``LabelBinarizer``).
- **Outputs** are NumPy arrays by default, as scikit-learn expects. Under
  ``sklearn.set_config(array_api_dispatch=True)``, ``predict_proba``,
  ``predict_log_proba`` and ``predict`` return arrays of the input's namespace and
  device (in the model's dtype) when ``X`` is an array of such a library: a torch CUDA
  tensor in, a torch CUDA tensor out, whatever backend the model is on. ``predict`` does
  so for numeric classes (and the multilabel indicator matrix); with string (or other
  non-numeric) classes no array library can hold the labels, so ``predict`` returns a
  NumPy array of labels (``classes_`` is always NumPy) while ``predict_proba`` still
  follows the input. NumPy, pandas and list inputs give NumPy outputs either way.
- **dropout** and **batch_norm** (anyfc's, not scikit-learn's): ``dropout=p`` (in
  [0, 1); 0: none) puts an ``anyfc.Dropout(p)`` after each hidden layer's activation;
  ``batch_norm=True`` makes each hidden layer ``Dense`` (identity) → ``BatchNorm`` → the
  activation as a layer (``ReLU``, ``Tanh``, ``Sigmoid``; none for ``"identity"``). The
  output layer never gets either. The weights are drawn as without them (the same
  ``coefs_`` shapes and initial values); then one seed per dropout layer is drawn from
  ``random_state``, so a run is reproducible on a given backend and device. ``alpha``
  penalises the Dense weights only (never BatchNorm's scale and shift). Prediction,
  scoring and early stopping's validation score use inference mode (running
  statistics, no dropout). With ``batch_norm=True`` a training batch needs 2 rows: a
  last batch of one row is trained together with the batch before it, and fitting one
  sample (or ``batch_size=1``) is refused. A ``warm_start``/``partial_fit`` network keeps
  its layers: turning ``batch_norm`` or ``dropout`` on or off then raises (a new
  dropout rate is taken). Training with either no longer follows scikit-learn's
  trajectory (scikit-learn has neither).
- **Pickling**: parameters, BatchNorm's running statistics and optimizer state are
  stored as NumPy arrays, the dropout rates and seeds with the architecture (a dropout
  stream restarts from its seed after unpickling or moving); unpickling
  rebuilds the network on the estimator's backend and device (``backend=None``: the
  backend it was trained on). If that backend or device is missing where it is
  unpickled, the model lands on NumPy with a warning and ``backend``/``device`` say so.
- **Moving**: ``est.to("torch", device="cuda:0")`` moves a fitted estimator (and its
  optimizer state) and sets ``backend``/``device``/``dtype`` to match; predictions are
  unchanged up to the dtype's rounding.
"""

from __future__ import annotations

import copy
import numbers
import warnings
from types import ModuleType
from typing import Any

import numpy as np
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils import shuffle as sk_shuffle
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from . import _backend, activations, losses, optimizers, registry
from .layers import Activation, BatchNorm, Dense, Dropout, Layer, ReLU, Sigmoid, Tanh
from .model import Sequential
from .state import path
from .training import compilers

Array = Any

__all__ = ["MLPClassifier", "MLPRegressor"]

ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
"""scikit-learn's hidden-layer activation names → anyfc's."""

SOLVERS = ("adam", "sgd", "adamw", "rmsprop", "adagrad")

_ACTIVATION_LAYERS: dict[str, type[Activation]] = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}
"""anyfc's hidden activation name → the activation layer after a BatchNorm (none for
identity)."""


# ---------------------------------------------------------------- losses, scaled as in scikit-learn


@registry.register(name="sklearn.SoftmaxLogLoss")
class _SoftmaxLogLoss(losses.SoftmaxCrossEntropy):
    """scikit-learn's ``log_loss`` with a softmax output: anyfc's softmax cross-entropy is
    already ``-(1/h) Σ t·log p`` with gradient ``(p - t)/h``."""


@registry.register(name="sklearn.LogisticLogLoss")
class _LogisticLogLoss(losses.BinaryCrossEntropy):
    """scikit-learn's ``binary_log_loss`` on logits ``z``: summed over the ``k`` outputs,
    mean over the ``h`` rows (anyfc's binary cross-entropy is the mean over all ``h·k``
    entries), so ``∂E/∂z = (σ(z) - t)/h``:

        E = (1/h) Σ [ max(z, 0) - z·t + log(1 + e^{-|z|}) ]

    Row weights ``w`` (anyfc's convention, ``losses``) weight each row's terms:
    ``E = (1/h) Σ_k w_k Σ_j e_kj``, ``∂E/∂z_k = w_k (σ(z_k) - t_k)/h``.
    """

    def value(self, y: Array, t: Array, w: Array | None = None) -> Array:
        xp = _backend.namespace_of(y)
        t = self.targets(xp, t, y.shape[1], y.dtype)
        per_entry = xp.maximum(y, 0.0) - y * t + xp.log1p(xp.exp(-xp.abs(y)))
        if w is not None:
            per_entry = per_entry * xp.reshape(losses.row_weights(y, w), (-1, 1))
        return xp.sum(per_entry) / y.shape[0]

    def forward(self, y: Array, t: Array, w: Array | None = None) -> Array:
        xp = _backend.namespace_of(y)
        self.z, self.t = y, self.targets(xp, t, y.shape[1], y.dtype)
        self.w = None if w is None else xp.reshape(losses.row_weights(y, w), (-1, 1))
        return self.value(y, self.t, w)

    def backward(self) -> Array:
        xp = _backend.namespace_of(self.z)
        grad = (activations.sigmoid(xp, self.z) - self.t) / self.z.shape[0]
        return grad if self.w is None else grad * self.w


@registry.register(name="sklearn.HalfSquaredError")
class _HalfSquaredError(losses.MeanSquaredError):
    """scikit-learn's ``squared_error``: ``E = ½·mean over all h·k entries of (ŷ - y)²``
    with scikit-learn's gradient ``∂E/∂ŷ = (ŷ - y)/h`` (for one output the gradient of E
    itself; for ``k`` outputs ``k`` times it, as in scikit-learn). Row weights ``w``
    (anyfc's convention, ``losses``) weight each row's terms and gradient."""

    def value(self, y: Array, t: Array, w: Array | None = None) -> Array:
        diff = y - self.targets(_backend.namespace_of(y), t, y.shape[1], y.dtype)
        if w is None:
            return 0.5 * self._mean_square(diff)
        return 0.5 * self._weighted_mean_square(diff, losses.row_weights(y, w))

    def forward(self, y: Array, t: Array, w: Array | None = None) -> Array:
        xp = _backend.namespace_of(y)
        self.diff = y - self.targets(xp, t, y.shape[1], y.dtype)
        if w is None:
            self.w = None
            return 0.5 * self._mean_square(self.diff)
        w = losses.row_weights(y, w)
        self.w = xp.reshape(w, (-1, 1))
        return 0.5 * self._weighted_mean_square(self.diff, w)

    @staticmethod
    def _mean_square(diff: Array) -> Array:
        return _backend.namespace_of(diff).sum(diff * diff) / (diff.shape[0] * diff.shape[1])

    def backward(self) -> Array:
        grad = self.diff / self.diff.shape[0]
        return grad if self.w is None else grad * self.w


_LOSSES: dict[str, type[losses.Loss]] = {
    "softmax": _SoftmaxLogLoss, "logistic": _LogisticLogLoss, "identity": _HalfSquaredError}
"""Output activation (``out_activation_``) → the loss trained against."""


# ---------------------------------------------------------------- optimizers, with sklearn's L2


class _L2(optimizers.Optimizer):
    """Adds scikit-learn's L2 gradient ``alpha·W/h`` (``h``: rows in the batch) to every
    Dense layer's ``grad_w`` — never to biases or other layers' parameters — before the
    update. Under JAX this runs inside the compiled step, where ``h`` is the static batch
    shape."""

    alpha: float = 0.0

    def step(self, layers: Any, *args: Any, **kwargs: Any) -> None:
        if self.alpha:
            dense = [layer for layer in layers if isinstance(layer, Dense)]
            x: Any = dense[0].x  # the batch the gradients are of
            scale = self.alpha / x.shape[0]
            for layer in dense:  # BatchNorm's γ/β and parameter-free layers: no L2
                g = layer.grad_w
                # in the layer's own gradient buffer where the library updates in place;
                # a new array where it cannot (JAX) or where += rebinds (Dask)
                g += scale * layer.w
                layer.grad_w = g
        super().step(layers, *args, **kwargs)


class _Adam(_L2, optimizers.Adam):
    """scikit-learn's Adam: ``p ← p - η·√(1-β₂ᵗ)/(1-β₁ᵗ) · m/(√v + ε)`` (anyfc's Adam
    adds ε after the bias correction of ``v``; the two differ only where ``√v`` is
    comparable to ε)."""

    def _adam_step(self, xp: ModuleType, p: Array, g: Array, state: Any) -> Array:
        b1, b2 = self.beta1, self.beta2
        m = state["m"] = _backend.scale_add_(optimizers.slot(xp, state, "m", p), b1, g, 1.0 - b1)
        v = state["v"] = _backend.scale_add_(
            optimizers.slot(xp, state, "v", p), b2, g * g, 1.0 - b2)
        # lr_t: the rate of this step (set by Optimizer.step); t may be traced (JAX)
        step_size = self.lr_t * (1.0 - b2**self.t) ** 0.5 / (1.0 - b1**self.t)
        return _backend.subtract_(p, step_size * m / (xp.sqrt(v) + self.eps))


class _SGD(_L2, optimizers.SGD):
    """Momentum SGD; anyfc's ``v ← μv + g; p ← p - ηv`` (Nesterov ``p - η(g + μv)``) is
    scikit-learn's ``v ← μv - ηg; p ← p + v`` with ``v`` scaled by ``-η``."""


class _AdamW(_L2, optimizers.AdamW):
    """anyfc's AdamW (decoupled decay) plus scikit-learn's L2 gradient term."""


class _RMSProp(_L2, optimizers.RMSProp):
    """anyfc's RMSProp plus scikit-learn's L2 gradient term."""


class _AdaGrad(_L2, optimizers.AdaGrad):
    """anyfc's AdaGrad plus scikit-learn's L2 gradient term."""


# ---------------------------------------------------------------- helpers


def _is_foreign_array(X: Any) -> bool:
    """Whether ``X`` is an array of an Array API library other than NumPy (kept where it
    is instead of going through scikit-learn's NumPy validation)."""
    return _backend.is_array(X) and not isinstance(X, np.ndarray)


def _params(model: Sequential) -> list[Array]:
    """Every live array of the model — parameters and buffers (BatchNorm's running
    statistics), in ``state_dict`` and ``from_architecture`` order."""
    return list(model.state_dict().values())


def _dense(model: Sequential) -> list[Dense]:
    """The Dense layers, input first (the other layers: BatchNorm, activations, dropout)."""
    return [layer for layer in model.layers if isinstance(layer, Dense)]


def _weights(model: Sequential) -> list[Array]:
    """The live weight matrices of the Dense layers, input first."""
    return [layer.w for layer in _dense(model)]


def _all_finite(xp: ModuleType, arrays: list[Array]) -> bool:
    """Whether every array is finite: one reduction each, one read."""
    flags = [xp.all(xp.isfinite(a)) for a in arrays]
    return bool(_backend.to_float(xp.all(xp.stack(flags))))


def _forget(model: Sequential) -> None:
    """Drop the activations the last training step kept for its backward pass."""
    for layer in model.layers:
        layer.forget()


def _weight_penalty(weights: list[Array], half_alpha: Any) -> Array:
    """scikit-learn's L2 term ``½·alpha·Σ‖W‖²`` over the weight matrices."""
    xp = _backend.namespace_of(weights[0])
    total = xp.sum(weights[0] * weights[0])
    for w in weights[1:]:
        total = total + xp.sum(w * w)
    return half_alpha * total


_PENALTIES: dict[str, Any] = {}


def _penalty_fn(xp: ModuleType) -> Any:
    """``_weight_penalty`` for ``xp``: compiled once per process on JAX (``half_alpha``
    is an argument, so every estimator with the same layer shapes shares one compiled
    function), the plain function elsewhere."""
    name = _backend.backend_name(xp)
    if name not in _PENALTIES:
        _PENALTIES[name] = compilers.compile_step(xp, _weight_penalty) or _weight_penalty
    return _PENALTIES[name]


def _dispatching() -> bool:
    return bool(sklearn.get_config().get("array_api_dispatch", False))


def _real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _check_real(name: str, value: Any, low: float, high: float = np.inf,
                low_open: bool = False, high_open: bool = False) -> None:
    ok = _real(value) and not np.isnan(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
    if not ok:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(f"{name} must be a number in {lo}{low}, {high}{hi}, got {value!r}")


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or (
            value < low):
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")


# ---------------------------------------------------------------- the estimators


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, training, pickling."""

    _out_kind = "identity"  # overridden per estimator and per target type

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate_init: float = 0.001,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        dropout: float = 0.0,
        batch_norm: bool = False,
        backend: Any = None,
        device: Any = None,
        dtype: Any = "float64",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.backend = backend
        self.device = device
        self.dtype = dtype

    # ------------------------------------------------------------ parameters

    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        for s in sizes:
            if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral) or s < 1:
                raise ValueError(f"hidden_layer_sizes must be positive integers, got "
                                 f"{self.hidden_layer_sizes!r}")
        return [int(s) for s in sizes]

    def _check_params(self) -> None:
        """Every parameter checked before anything changes (scikit-learn's ranges)."""
        self._hidden_sizes()
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got "
                             f"{self.activation!r}")
        if self.solver == "lbfgs":
            raise ValueError("solver='lbfgs' is not supported by anyfc (it trains with "
                             f"mini-batches); use one of {', '.join(SOLVERS)}, or "
                             "scikit-learn's own MLP for L-BFGS")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        _check_real("alpha", self.alpha, 0.0)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            _check_int("batch_size", self.batch_size, 1)
        _check_real("learning_rate_init", self.learning_rate_init, 0.0, low_open=True)
        _check_int("max_iter", self.max_iter, 1)
        _check_bool("shuffle", self.shuffle)
        _check_real("tol", self.tol, 0.0)
        if not (isinstance(self.verbose, (bool, np.bool_)) or (
                isinstance(self.verbose, numbers.Integral) and self.verbose >= 0)):
            raise ValueError(f"verbose must be a boolean or a non-negative integer, got "
                             f"{self.verbose!r}")
        _check_bool("warm_start", self.warm_start)
        _check_real("momentum", self.momentum, 0.0, 1.0)
        _check_bool("nesterovs_momentum", self.nesterovs_momentum)
        _check_bool("early_stopping", self.early_stopping)
        _check_real("validation_fraction", self.validation_fraction, 0.0, 1.0, high_open=True)
        _check_real("beta_1", self.beta_1, 0.0, 1.0, high_open=True)
        _check_real("beta_2", self.beta_2, 0.0, 1.0, high_open=True)
        _check_real("epsilon", self.epsilon, 0.0, low_open=True)
        if not (_real(self.n_iter_no_change) and self.n_iter_no_change == np.inf):
            _check_int("n_iter_no_change", self.n_iter_no_change, 1)
        _check_real("dropout", self.dropout, 0.0, 1.0, high_open=True)
        _check_bool("batch_norm", self.batch_norm)
        if self.batch_norm and isinstance(self.batch_size, numbers.Integral) and (
                self.batch_size < 2):
            raise ValueError(f"batch_size must be at least 2 with batch_norm=True (BatchNorm "
                             f"normalises over a batch's rows), got {self.batch_size!r}")
        if _backend.dtype_name(self.dtype) not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

    def _placement(self) -> tuple[ModuleType, Any, Any]:
        """(namespace, device, dtype) the parameters ask for; ``backend=None`` keeps a
        fitted model's backend, else anyfc's default backend."""
        backend = self.backend
        if backend is None:
            model = self.__dict__.get("model_")
            backend = model.backend if model is not None else _backend.get_backend()
        xp = _backend.get_namespace(backend)
        return xp, _backend.resolve_device(xp, self.device), _backend.resolve_dtype(
            xp, _backend.dtype_name(self.dtype))

    def _make_optimizer(self) -> optimizers.Optimizer:
        lr, eps = self.learning_rate_init, self.epsilon
        opt: optimizers.Optimizer
        if self.solver == "sgd":
            nesterov = bool(self.nesterovs_momentum) and self.momentum > 0
            opt = _SGD(lr, momentum=self.momentum, nesterov=nesterov)
        elif self.solver == "adam":
            opt = _Adam(lr, beta1=self.beta_1, beta2=self.beta_2, eps=eps)
        elif self.solver == "adamw":
            opt = _AdamW(lr, beta1=self.beta_1, beta2=self.beta_2, eps=eps)
        elif self.solver == "rmsprop":
            opt = _RMSProp(lr, eps=eps)
        else:
            opt = _AdaGrad(lr, eps=eps)
        opt.alpha = float(self.alpha)  # type: ignore[attr-defined]
        return opt

    # ------------------------------------------------------------ data

    def _check_features(self, X: Any, reset: bool) -> None:
        """``n_features_in_`` and feature names for arrays that bypass ``validate_data``
        (they have no column names), with scikit-learn's messages."""
        n = int(X.shape[1])
        if reset:
            self.n_features_in_ = n
            self.__dict__.pop("feature_names_in_", None)
            return
        if n != self.n_features_in_:
            raise ValueError(f"X has {n} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input.")
        if hasattr(self, "feature_names_in_"):
            warnings.warn(f"X does not have valid feature names, but {type(self).__name__} "
                          "was fitted with feature names", UserWarning, stacklevel=4)

    def _check_X(self, X: Any, reset: bool) -> Array:
        """``X`` checked: NumPy-like input through scikit-learn (a NumPy array comes back),
        another library's array where it is (that array comes back)."""
        if not _is_foreign_array(X):
            return validate_data(self, X, reset=reset, dtype=(np.float64, np.float32))
        _backend.check_numeric(X, "X")
        if X.ndim != 2:
            raise ValueError(f"Expected 2D array, got {X.ndim}D array instead: reshape your "
                             "data (X.reshape(-1, 1) for one feature, X.reshape(1, -1) for "
                             "one sample)")
        if X.shape[0] < 1 or X.shape[1] < 1:
            raise ValueError(f"Found array with shape {tuple(X.shape)}: at least one sample "
                             "and one feature are required.")
        self._check_features(X, reset)
        return X

    def _check_Xy(self, X: Any, y: Any, reset: bool) -> tuple[Array, np.ndarray]:
        """``(X, y)`` checked; ``y`` as a NumPy array (labels and targets go through the
        host: they are small next to ``X``)."""
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target "
                             "y is None")
        numeric = not isinstance(self, ClassifierMixin)
        if not _is_foreign_array(X):
            if _is_foreign_array(y):
                y = _backend.to_numpy(y)
            X, y = validate_data(self, X, y, reset=reset, multi_output=True,
                                 y_numeric=numeric, dtype=(np.float64, np.float32))
        else:
            X = self._check_X(X, reset)
            y = _backend.to_numpy(y) if _is_foreign_array(y) else y
            y = check_array(y, ensure_2d=False, dtype="numeric" if numeric else None,
                            input_name="y")
            if y.shape[0] != X.shape[0]:
                raise ValueError(f"Found input variables with inconsistent numbers of "
                                 f"samples: [{X.shape[0]}, {y.shape[0]}]")
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _to_model(self, X: Any) -> Array:
        """``X`` on the model's backend, device and dtype (one transfer; none when it is
        there already), checked finite for arrays that bypassed scikit-learn."""
        model = self.model_
        out = _backend.to_backend(X, model.xp, model.device, model.dtype)
        if _is_foreign_array(X) and not _all_finite(model.xp, [out]):
            raise ValueError("Input X contains NaN or infinity.")
        return out

    # ------------------------------------------------------------ training

    def _encode(self, y: np.ndarray, incremental: bool) -> np.ndarray:
        """Targets as the float matrix the network trains against (``(n, k)``)."""
        y = np.asarray(y, dtype=np.float64)
        return y.reshape(-1, 1) if y.ndim == 1 else y

    def _initialize(self, T: np.ndarray, n_features: int, xp: ModuleType, dev: Any,
                    dt: Any, rng: np.random.RandomState) -> None:
        """A new network with scikit-learn's Glorot-uniform initial weights and biases,
        drawn from ``rng`` on the host in float64 (as scikit-learn does), then cast."""
        self.n_outputs_ = int(T.shape[1])
        units = [n_features, *self._hidden_sizes(), self.n_outputs_]
        self.n_layers_ = len(units)
        self.out_activation_ = self._out_kind
        hidden = ACTIVATIONS[self.activation]
        factor = 2.0 if self.activation == "logistic" else 6.0
        where = dict(backend=xp, device=dev, dtype=dt)
        blocks: list[list[Layer]] = []  # one per Dense: the Dense and the layers after it
        for i, (fan_in, fan_out) in enumerate(zip(units, units[1:])):
            bound = np.sqrt(factor / (fan_in + fan_out))
            w = rng.uniform(-bound, bound, (fan_in, fan_out))
            b = rng.uniform(-bound, bound, fan_out)
            last = i == len(units) - 2
            act = "identity" if last or self.batch_norm else hidden
            block: list[Layer] = [Dense.from_params(_backend.to_backend(w, xp, dev, dt),
                                                    _backend.to_backend(b, xp, dev, dt), act)]
            if self.batch_norm and not last:  # Dense (affine) → BatchNorm → activation
                block.append(BatchNorm(fan_out, **where))
                if hidden in _ACTIVATION_LAYERS:
                    block.append(_ACTIVATION_LAYERS[hidden](**where))
            blocks.append(block)
        if self.dropout:
            # seeds drawn after every weight, so the weights are those without dropout
            for block in blocks[:-1]:
                seed = int(rng.randint(0, 2**31 - 1))
                block.append(Dropout(float(self.dropout), seed=seed, **where))
        self.model_ = Sequential([layer for block in blocks for layer in block],
                                 _LOSSES[self._out_kind]())
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_: list[float] = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_: list[float] | None = []
            self.best_validation_score_: float | None = -np.inf
            self.best_loss_: float | None = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _fit(self, X: Any, y: Any, incremental: bool) -> _BaseMLP:
        self._check_params()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        if not first_pass:  # the same architecture, or a clear error
            self._check_architecture()
        X, y = self._check_Xy(X, y, reset=first_pass)
        if self.batch_norm:
            self._check_batch_norm_rows(int(X.shape[0]))
        T = self._encode(y, incremental)
        xp, dev, dt = self._placement()
        rng = check_random_state(self.random_state)
        if first_pass:
            self._initialize(T, int(X.shape[1]), xp, dev, dt, rng)
        elif T.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {T.shape[1]} outputs but the fitted network gives "
                             f"{self.n_outputs_}")
        model = self.model_
        if model.xp is not xp or model.device != dev or model.dtype != dt:
            self._move(xp, dev, dt)  # warm start after set_params(backend=...)
        if not incremental or getattr(self, "_optimizer", None) is None:
            self._optimizer = self._make_optimizer()
            self._zero_state(self._optimizer)
        self._train(self._to_model(X), _backend.to_backend(T, xp, dev, dt), T, rng,
                    incremental)
        return self

    def _check_architecture(self) -> None:
        """The fitted network (continued by ``warm_start``/``partial_fit``) is the one
        the parameters describe: the same hidden sizes, with BatchNorm and dropout layers
        as ``batch_norm``/``dropout`` ask; a new dropout rate is set on its layers."""
        layers = self.model_.layers
        sizes = [layer.n_out for layer in _dense(self.model_)[:-1]]
        if sizes != self._hidden_sizes():
            raise ValueError(f"hidden_layer_sizes is {self.hidden_layer_sizes!r} but the "
                             f"fitted network has hidden layers {tuple(sizes)}; fit "
                             "without warm_start to train a new network")
        has_norm = any(isinstance(layer, BatchNorm) for layer in layers)
        if has_norm != bool(self.batch_norm):
            raise ValueError(f"batch_norm is {self.batch_norm!r} but the fitted network has "
                             f"{'' if has_norm else 'no '}BatchNorm layers; fit without "
                             "warm_start to train a new network")
        drops = [layer for layer in layers if isinstance(layer, Dropout)]
        if bool(drops) != bool(self.dropout):
            raise ValueError(f"dropout is {self.dropout!r} but the fitted network has "
                             f"{'' if drops else 'no '}dropout layers; fit without "
                             "warm_start to train a new network")
        for layer in drops:
            layer.rate = float(self.dropout)

    @staticmethod
    def _check_batch_norm_rows(n: int) -> None:
        if n < 2:
            raise ValueError(f"batch_norm=True needs at least 2 samples to train on (BatchNorm "
                             f"normalises over a batch's rows), got {n} sample"
                             f"{'' if n == 1 else 's'}")

    def _zero_state(self, opt: optimizers.Optimizer) -> None:
        """Create the optimizer's state (zeros, as its first step would), so every step
        sees state of one structure: JAX then compiles the step once, not twice."""
        slots = opt.slots
        if isinstance(opt, optimizers.SGD) and not opt.momentum:
            slots = ()  # plain SGD keeps no state
        opt.state = {path(i, name): {slot: self.model_.xp.zeros_like(getattr(layer, name))
                                     for slot in slots}
                     for i, layer in enumerate(self.model_.layers)
                     for name in layer.param_names if slots}

    def _train(self, X: Array, T: Array, T_host: np.ndarray, rng: np.random.RandomState,
               incremental: bool) -> None:
        """scikit-learn's ``_fit_stochastic``, step for step, on the model's backend."""
        model, opt = self.model_, self._optimizer
        xp, dev = model.xp, model.device
        X_val = T_val = None
        if self.early_stopping:
            # stratified by class for binary and multi-class targets (scikit-learn's
            # documentation says so; its code stratifies binary targets only)
            stratify = None
            if isinstance(self, ClassifierMixin) and self._label_binarizer.y_type_ in (
                    "binary", "multiclass"):
                stratify = T_host.argmax(axis=1) if T_host.shape[1] > 1 else T_host[:, 0]
            train_idx, val_idx = train_test_split(
                np.arange(X.shape[0]), random_state=rng,
                test_size=self.validation_fraction, stratify=stratify)
            if val_idx.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            X_val, T_val = self._rows(X, val_idx), self._rows(T, val_idx)
            X, T = self._rows(X, train_idx), self._rows(T, train_idx)
            self._best_params = [xp.asarray(p, copy=True) for p in _params(model)]
        n = int(X.shape[0])
        if isinstance(self.batch_size, str):  # "auto"
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It "
                              "is going to be clipped", stacklevel=4)
            batch_size = int(np.clip(self.batch_size, 1, n))
        starts = list(range(0, n, batch_size))
        if self.batch_norm:
            self._check_batch_norm_rows(n)
            if len(starts) > 1 and n - starts[-1] == 1:
                starts.pop()  # BatchNorm needs 2 rows: the last row joins the batch before
        bounds = list(zip(starts, [*starts[1:], n]))
        penalty = _penalty_fn(xp) if self.alpha else None
        half_alpha = 0.5 * float(self.alpha)
        lazy = _backend.is_lazy(X)
        sample_idx = np.arange(n)
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    sample_idx = sk_shuffle(sample_idx, random_state=rng)
                    order = _backend.from_host(sample_idx, xp, dev)
                total: Any = 0.0  # lazy data: the running sum, kept computed
                batch_losses, penalties, sizes = [], [], []  # eager: summed once per epoch
                for start, stop in bounds:
                    if self.shuffle:
                        idx = order[start:stop]
                        xb, tb = xp.take(X, idx, axis=0), xp.take(T, idx, axis=0)
                    else:
                        xb, tb = X[start:stop, ...], T[start:stop, ...]
                    # the L2 term of the batch's loss, with the weights before its update
                    pen = None if penalty is None else penalty(_weights(model), half_alpha)
                    e = model.train_step(xb, tb, opt)
                    if lazy:
                        total = _backend.materialize(
                            [total + e * (stop - start) + (0.0 if pen is None else pen)])[0]
                    else:
                        batch_losses.append(e)
                        sizes.append(stop - start)
                        if pen is not None:
                            penalties.append(pen)
                if not lazy:
                    total = xp.sum(xp.stack(batch_losses) * xp.asarray(
                        sizes, dtype=model.dtype, device=dev))
                    if penalties:
                        total = total + xp.sum(xp.stack(penalties))
                _forget(model)
                self.n_iter_ += 1
                self.loss_ = _backend.to_float(total) / n
                self.t_ += n
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
                self._update_no_improvement_count(X_val, T_val)
                if self._no_improvement_count > self.n_iter_no_change:
                    what = "Validation score" if self.early_stopping else "Training loss"
                    if self.verbose:
                        print(f"{what} did not improve more than tol={self.tol:f} for "
                              f"{self.n_iter_no_change} consecutive epochs. Stopping.")
                    break
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                                  "reached and the optimization hasn't converged yet.",
                                  ConvergenceWarning, stacklevel=4)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)
        if self.early_stopping:  # scikit-learn's best weights, back on the model
            model.load_state_dict(dict(zip(model.state_dict(), self._best_params)))
            del self._best_params
        if not _all_finite(xp, _params(model)):
            raise ValueError("Solver produced non-finite parameter weights. The input data "
                             "may contain large values and need to be preprocessed.")

    @staticmethod
    def _rows(a: Array, idx: np.ndarray) -> Array:
        xp = _backend.namespace_of(a)
        return xp.take(a, _backend.from_host(idx, xp, _backend.device_of(a)), axis=0)

    def _update_no_improvement_count(self, X_val: Array, T_val: Array) -> None:
        """scikit-learn's rule: a better validation score (early stopping) or training
        loss by at least ``tol`` resets the count; the best weights are kept."""
        if self.early_stopping:
            assert self.validation_scores_ is not None and self.best_validation_score_ is not None
            score = self._device_score(X_val, T_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                xp = self.model_.xp
                self._best_params = [xp.asarray(p, copy=True) for p in _params(self.model_)]
        else:
            assert self.best_loss_ is not None
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _device_score(self, X: Array, T: Array) -> float:
        raise NotImplementedError

    def _output(self, X: Array) -> Array:
        """The network's output (probabilities or values) for checked ``X``, on the
        model's backend."""
        return self.model_.predict(self._to_model(X))

    @staticmethod
    def _deliver(a: Array, X_in: Any) -> Array:
        """``a`` where the caller wants it: in the input's namespace and device under
        array-API dispatch (when ``X`` was such an array), else NumPy."""
        if _dispatching() and _is_foreign_array(X_in):
            xp = _backend.namespace_of(X_in)
            return _backend.to_backend(a, xp, _backend.device_of(X_in))
        return _backend.to_numpy(a)

    # ------------------------------------------------------------ moving, state

    def __sklearn_is_fitted__(self) -> bool:
        return "model_" in self.__dict__

    def to(self, backend: Any = None, device: Any = None, dtype: Any = None) -> _BaseMLP:
        """Move the fitted network and its optimizer state to ``backend``/``device``/
        ``dtype`` (``None``: the current backend, its default device, the current dtype)
        and set those parameters to match, so a later ``fit`` trains there too. Returns
        ``self``."""
        check_is_fitted(self)
        xp = _backend.get_namespace(self.model_.backend if backend is None else backend)
        dev = _backend.resolve_device(xp, device)
        dt = _backend.resolve_dtype(xp, _backend.dtype_name(
            self.model_.dtype if dtype is None else dtype))
        self._move(xp, dev, dt)
        self.backend = _backend.backend_name(xp)
        self.device = device
        self.dtype = _backend.dtype_name(dt)
        return self

    def _move(self, xp: ModuleType, dev: Any, dt: Any) -> None:
        opt = getattr(self, "_optimizer", None)
        state = None if opt is None else opt.moved_state(xp, dev, dt)
        self.model_.to(xp, dev, dt)
        if opt is not None and state is not None:
            opt.state = state

    @property
    def coefs_(self) -> list[np.ndarray]:
        """The weight matrices of the Dense layers, input first, as NumPy copies."""
        if "model_" not in self.__dict__:
            raise AttributeError("coefs_ exists once the estimator is fitted")
        return [_backend.to_numpy(w) for w in _weights(self.model_)]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """The bias vectors of the Dense layers, input first, as NumPy copies."""
        if "model_" not in self.__dict__:
            raise AttributeError("intercepts_ exists once the estimator is fitted")
        return [_backend.to_numpy(layer.b) for layer in _dense(self.model_)]

    def __getstate__(self) -> dict[str, Any]:
        """Parameters, buffers (BatchNorm's running statistics) and optimizer state as
        NumPy arrays, the layers' settings (dropout rates and seeds) in the architecture:
        the pickle loads anywhere."""
        state = dict(super().__getstate__())
        model = state.pop("model_", None)
        if model is not None:
            state["_host_model"] = {
                "architecture": model.architecture(), "backend": model.backend,
                "params": [_backend.to_numpy(p) for p in _params(model)]}
        opt = state.get("_optimizer")
        if opt is not None:
            host = copy.copy(opt)
            host.state = {slot: {k: _backend.to_numpy(v) for k, v in values.items()}
                          for slot, values in opt.state.items()}
            state["_optimizer"] = host
        state.pop("_best_params", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        host = state.pop("_host_model", None)
        # pickles from before dropout and batch_norm were parameters: networks without
        state.setdefault("dropout", 0.0)
        state.setdefault("batch_norm", False)
        super().__setstate__(state)
        if host is None:
            return
        backend = self.backend if self.backend is not None else host["backend"]
        try:
            xp = _backend.get_namespace(backend)
            dev = _backend.resolve_device(xp, self.device)
        except (ImportError, ValueError, TypeError) as exc:
            warnings.warn(f"{type(self).__name__} was pickled on backend {backend!r}, device "
                          f"{self.device!r}, which cannot be used here ({exc}); it is "
                          "loaded on numpy and its backend/device parameters say so",
                          UserWarning, stacklevel=2)
            xp, dev = _backend.get_namespace("numpy"), "cpu"
            self.backend, self.device = "numpy", None
        params = host["params"]
        model = Sequential.from_architecture(host["architecture"], params, xp, dev)
        model.loss = _LOSSES[self.out_activation_]()
        self.model_ = model
        opt = self.__dict__.get("_optimizer")
        if opt is not None:  # private copies: a memory-mapped pickle is read-only
            opt.state = {slot: {k: _backend.to_backend(v, xp, dev, model.dtype, copy=True)
                                for k, v in values.items()}
                         for slot, values in opt.state.items()}


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by anyfc on any backend, with
    scikit-learn's ``MLPClassifier`` parameters and behaviour (stochastic solvers).

    Binary targets train one sigmoid output (``predict_proba`` gives two columns),
    multi-class targets a softmax, multi-label indicator matrices one sigmoid per label
    (``predict`` gives the indicator matrix). Classes may be of any type (strings too).
    See the module's docstring for the parameters beyond scikit-learn's — ``dropout``,
    ``batch_norm``, ``backend``, ``device``, ``dtype`` — and for what differs.
    """

    def _encode(self, y: np.ndarray, incremental: bool) -> np.ndarray:
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` "
                                 f"has {self.classes_}. 'y' has {classes}.")
        binarized = self._label_binarizer.transform(y)
        if hasattr(binarized, "toarray"):
            binarized = binarized.toarray()
        self._out_kind = "softmax" if self._label_binarizer.y_type_ == "multiclass" else (
            "logistic")
        return np.asarray(binarized, dtype=np.float64)

    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Train a new network (or continue with ``warm_start=True``) on ``(X, y)``:
        at most ``max_iter`` epochs, stopping by scikit-learn's rule."""
        self._fit(X, y, incremental=False)
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One epoch over ``(X, y)``; the first call needs ``classes`` (every class of
        the whole data set), unless ``y`` is a multi-label indicator matrix."""
        self._check_params()
        first = not hasattr(self, "classes_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None:
            classes = unique_labels(classes)
            if not first and not np.array_equal(self.classes_, classes):
                raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                                 f"partial_fit, was: {self.classes_!r}")
        if first:
            self._label_binarizer = LabelBinarizer()
            y_host = _backend.to_numpy(y) if _is_foreign_array(y) else y
            if type_of_target(y_host).startswith("multilabel"):
                self._label_binarizer.fit(y_host)
            else:
                self._label_binarizer.fit(classes)
            self.classes_ = self._label_binarizer.classes_
        self._fit(X, y, incremental=True)
        return self

    def predict_proba(self, X: Any) -> Array:
        """Class probabilities, columns in the order of ``classes_`` (NumPy, or the
        input's namespace and device under array-API dispatch)."""
        check_is_fitted(self)
        X_in = X
        p = self._output(self._check_X(X, reset=False))
        if self.n_outputs_ == 1 and self._label_binarizer.y_type_ != "multilabel-indicator":
            xp = _backend.namespace_of(p)
            p = xp.concat([1.0 - p, p], axis=1)
        return self._deliver(p, X_in)

    def predict_log_proba(self, X: Any) -> Array:
        """``log(predict_proba(X))``."""
        p = self.predict_proba(X)
        return _backend.namespace_of(p).log(p)

    def predict(self, X: Any) -> Array:
        """Class labels (an indicator matrix for multi-label targets)."""
        check_is_fitted(self)
        X_in = X
        p = self._output(self._check_X(X, reset=False))
        lb = self._label_binarizer
        numeric = self.classes_.dtype.kind in "biuf"
        if _dispatching() and _is_foreign_array(X_in) and numeric:
            xp = _backend.namespace_of(X_in)
            dev = _backend.device_of(X_in)
            p = _backend.to_backend(p, xp, dev)
            if lb.y_type_ == "multilabel-indicator":
                return xp.astype(p > 0.5, _backend.index_dtype(xp))
            if len(self.classes_) == 1:
                idx = xp.zeros(p.shape[0], dtype=_backend.index_dtype(xp), device=dev)
            elif p.shape[1] > 1:
                idx = xp.argmax(p, axis=1)
            else:
                idx = xp.astype(p[:, 0] > 0.5, _backend.index_dtype(xp))
            return xp.take(_backend.to_backend(self.classes_, xp, dev), idx, axis=0)
        y = _backend.to_numpy(p)
        return lb.inverse_transform(y.ravel() if self.n_outputs_ == 1 else y)

    def _device_score(self, X: Array, T: Array) -> float:
        """Accuracy on the validation rows (subset accuracy for multi-label), computed
        on the device: one read."""
        model = self.model_
        xp = model.xp
        z = model.forward(X, training=False)
        if self.out_activation_ == "softmax":
            hits = xp.argmax(z, axis=1) == xp.argmax(T, axis=1)
        else:
            hits = xp.all((z > 0) == (T > 0.5), axis=1)
        if not _all_finite(xp, [z]):
            return float("nan")
        return _backend.to_float(xp.mean(xp.astype(hits, model.dtype)))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.input_tags.sparse = False
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by anyfc on any backend, with
    scikit-learn's ``MLPRegressor`` parameters and behaviour (stochastic solvers,
    squared error, identity output; ``y`` of shape ``(n,)`` or ``(n, k)``). See the
    module's docstring for ``dropout``, ``batch_norm``, ``backend``, ``device`` and
    ``dtype`` and for what differs.
    """

    _out_kind = "identity"

    def fit(self, X: Any, y: Any) -> MLPRegressor:
        """Train a new network (or continue with ``warm_start=True``) on ``(X, y)``."""
        self._fit(X, y, incremental=False)
        return self

    def partial_fit(self, X: Any, y: Any) -> MLPRegressor:
        """One epoch over ``(X, y)``, continuing from the current weights and optimizer
        state."""
        self._fit(X, y, incremental=True)
        return self

    def predict(self, X: Any) -> Array:
        """Predicted values: shape ``(n,)`` for one output, ``(n, k)`` for several."""
        check_is_fitted(self)
        X_in = X
        out = self._output(self._check_X(X, reset=False))
        if out.shape[1] == 1:
            out = _backend.namespace_of(out).reshape(out, (-1,))
        return self._deliver(out, X_in)

    def _device_score(self, X: Array, T: Array) -> float:
        """R² on the validation rows averaged over outputs (scikit-learn's ``r2_score``
        with its conventions for constant targets)."""
        model = self.model_
        xp = model.xp
        z = model.forward(X, training=False)
        if not _all_finite(xp, [z]):
            return float("nan")
        resid = xp.sum((T - z) ** 2, axis=0)
        total = xp.sum((T - xp.mean(T, axis=0)) ** 2, axis=0)
        num, den = _backend.to_numpy(resid), _backend.to_numpy(total)
        scores = np.ones_like(num)
        ok = den != 0
        scores[ok] = 1.0 - num[ok] / den[ok]
        scores[(num != 0) & ~ok] = 0.0
        return float(np.mean(scores))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags

