"""scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor`` trained by anyfc on any
backend (``pip install 'anyfc[sklearn]'``; ``import anyfc`` alone never imports
scikit-learn).

>>> from anyfc.sklearn import MLPClassifier
>>> from sklearn.datasets import load_iris
>>> X, y = load_iris(return_X_y=True)
>>> clf = MLPClassifier((16,), max_iter=300, learning_rate_init=0.01, random_state=0)
>>> clf.fit(X, y).score(X, y) > 0.9
True

A face, not an engine: the parameters become an ``anyfc.Sequential`` (``model_``:
``Dense(l2=alpha)`` layers with scikit-learn's initial weights, its losses' scales as
loss settings) and options of ``Sequential.fit`` (``Adam(eps_hat=True)``,
``SGD(lr_in_velocity=True)``, ``shuffle="cumulative"``, ``NoImprovementStopping``,
``LearningRateScheduler``), or ``anyfc.lbfgs.fit`` for ``solver="lbfgs"``. So on NumPy
with float64 data they follow scikit-learn's trajectory to rounding. Every call is all
or nothing; the documentation's *scikit-learn* page maps the parameters and lists what
differs.
"""

from __future__ import annotations

import copy
import inspect
import numbers
import warnings
from typing import Any

import numpy as np
import scipy.sparse
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from . import _backend, _validation, lbfgs, losses, optimizers
from .callbacks import Callback, LearningRateScheduler, NoImprovementStopping
from .layers import Activation, BatchNorm, Dense, Dropout, Layer, ReLU, Sigmoid, Tanh
from .model import Sequential
from .state import ModelState, path

Array = Any
__all__ = ["MLPClassifier", "MLPRegressor"]

ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
"""scikit-learn's hidden-layer activation names → anyfc's."""
SOLVERS = ("adam", "sgd", "lbfgs", "adamw", "rmsprop", "adagrad")
_AFTER_NORM: dict[str, type[Activation]] = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}
_REAL, _INT = numbers.Real, numbers.Integral


def _loss(out_activation: str) -> losses.Loss:
    """scikit-learn's loss for an output activation, as an anyfc loss."""
    weighted = "mean_with_sample_weight"
    if out_activation == "softmax":
        return losses.SoftmaxCrossEntropy(weighted)
    if out_activation == "logistic":
        return losses.BinaryCrossEntropy(weighted, outputs="sum")
    return losses.MeanSquaredError(weighted, outputs="sum", half=True)


def _foreign(X: Any) -> bool:
    """An array of an Array API library other than NumPy (checked where it is)."""
    return _backend.is_array(X) and not isinstance(X, np.ndarray)


def _dense(model: Sequential) -> list[Dense]:
    return [layer for layer in model.layers if isinstance(layer, Dense)]


def _rows(a: Array, idx: np.ndarray) -> Array:
    xp = _backend.namespace_of(a)
    return xp.take(a, _backend.from_host(idx, xp, _backend.device_of(a)), axis=0)


def _dispatching() -> bool:
    return bool(sklearn.get_config().get("array_api_dispatch", False))


def _stochastic(est: Any) -> bool:
    """``partial_fit`` exists for the stochastic solvers only (scikit-learn's rule)."""
    if est.solver == "lbfgs":
        raise AttributeError("partial_fit is only available for stochastic optimizers. "
                             "lbfgs is not stochastic.")
    return True


class _Epochs(Callback):
    """The loss of each finished epoch (and scikit-learn's verbose line)."""

    def __init__(self, verbose: Any) -> None:
        self.verbose, self.losses = verbose, list[float]()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.losses.append(float((logs or {})["loss"]))
        if self.verbose:
            print(f"Iteration {len(self.losses)}, loss = {self.losses[-1]:.8f}")


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, training, pickling."""

    batch_size: Any
    n_features_in_: int
    model_: Sequential
    n_outputs_: int
    loss_curve_: list[float]
    validation_scores_: list[float] | None

    CONSTRAINTS: dict = {  # scikit-learn's, and anyfc's own
        "hidden_layer_sizes": ["array-like", Interval(_INT, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))], "solver": [StrOptions(set(SOLVERS))],
        "alpha": [Interval(_REAL, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(_INT, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(_REAL, 0, None, closed="neither")],
        "power_t": [Interval(_REAL, 0, None, closed="left")],
        "max_iter": [Interval(_INT, 1, None, closed="left")], "shuffle": ["boolean"],
        "random_state": ["random_state"], "tol": [Interval(_REAL, 0, None, closed="left")],
        "verbose": ["verbose"], "warm_start": ["boolean"],
        "momentum": [Interval(_REAL, 0, 1, closed="both")], "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(_REAL, 0, 1, closed="left")],
        "beta_1": [Interval(_REAL, 0, 1, closed="left")],
        "beta_2": [Interval(_REAL, 0, 1, closed="left")],
        "epsilon": [Interval(_REAL, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(_INT, 1, None, closed="left"), Options(_REAL, {np.inf})],
        "max_fun": [Interval(_INT, 1, None, closed="left")],
        "dropout": [Interval(_REAL, 0, 1, closed="left")], "batch_norm": ["boolean"],
    }
    _parameter_constraints = CONSTRAINTS  # what scikit-learn's _validate_params reads

    def __init__(self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *,
                 solver: str = "adam", alpha: float = 0.0001, batch_size: int | str = "auto",
                 learning_rate: str = "constant", learning_rate_init: float = 0.001,
                 power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: Any = None, tol: float = 1e-4, verbose: bool = False,
                 warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int = 10, max_fun: int = 15000,
                 dropout: float = 0.0, batch_norm: bool = False, backend: Any = None,
                 device: Any = None, dtype: Any = None) -> None:
        self.hidden_layer_sizes, self.activation, self.solver = (
            hidden_layer_sizes, activation, solver)
        self.alpha, self.batch_size, self.learning_rate = alpha, batch_size, learning_rate
        self.learning_rate_init, self.power_t = learning_rate_init, power_t
        self.max_iter, self.shuffle, self.random_state = max_iter, shuffle, random_state
        self.tol, self.verbose, self.warm_start = tol, verbose, warm_start
        self.momentum, self.nesterovs_momentum = momentum, nesterovs_momentum
        self.early_stopping, self.validation_fraction = early_stopping, validation_fraction
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.n_iter_no_change, self.max_fun = n_iter_no_change, max_fun
        self.dropout, self.batch_norm = dropout, batch_norm
        self.backend, self.device, self.dtype = backend, device, dtype

    # ------------------------------------------------------------ parameters and data

    def _hidden_sizes(self) -> list[int]:
        given = self.hidden_layer_sizes
        sizes: list[Any] = list(given) if hasattr(given, "__iter__") else [given]
        if not all(isinstance(s, _INT) and not isinstance(s, (bool, np.bool_)) and int(s) >= 1
                   for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {given!r}")
        return [int(s) for s in sizes]

    def _check_params(self, incremental: bool) -> None:
        """scikit-learn's rules for its parameters (``_parameter_constraints``), then
        anyfc's, before anything changes."""
        self._validate_params()
        self._hidden_sizes()
        problems = [
            (self.dtype is not None and _backend.dtype_name(self.dtype) not in (
                "float32", "float64"), f"dtype must be None (the data's), 'float32' or "
             f"'float64', got {self.dtype!r}"),
            (self.solver == "lbfgs" and (self.dropout or self.batch_norm), "solver='lbfgs' "
             "needs the same loss at every evaluation: use dropout=0 and batch_norm=False "
             f"with it, or a stochastic solver ({', '.join(SOLVERS[:2] + SOLVERS[3:])})"),
            (self.batch_norm and self.batch_size != "auto" and self.batch_size < 2,
             f"batch_size must be at least 2 with batch_norm=True, got {self.batch_size!r}"),
            (self.early_stopping and incremental,
             "partial_fit does not support early_stopping=True")]
        for problem, message in problems:
            if problem:
                raise ValueError(message)

    def _check_X(self, X: Any, reset: bool) -> Array:
        """NumPy-like ``X`` through scikit-learn (float32 kept); another library's array
        checked where it is, as ``Sequential.fit`` checks it (and kept there)."""
        if scipy.sparse.issparse(X):
            raise TypeError(f"X is a scipy sparse matrix of shape {X.shape}: anyfc's networks "
                            f"compute on dense arrays; pass X.toarray() "
                            f"({X.shape[0] * X.shape[1] / 2**17:,.0f} MiB as float64), or "
                            "reduce its width first (e.g. TruncatedSVD in a Pipeline)")
        if not _foreign(X):
            return validate_data(self, X, reset=reset, dtype=(np.float64, np.float32))
        float_kind = _backend.check_numeric(X, "X") == "real floating"
        X = _validation.inputs(X, _backend.namespace_of(X), _backend.device_of(X),
                               X.dtype if float_kind else "float64",
                               X.shape[-1] if reset else self.n_features_in_)
        if reset:
            self.n_features_in_ = int(X.shape[1])
            self.__dict__.pop("feature_names_in_", None)
        elif hasattr(self, "feature_names_in_"):
            warnings.warn(f"X does not have valid feature names, but {type(self).__name__} "
                          "was fitted with feature names", UserWarning, stacklevel=4)
        return X

    def _check_Xy(self, X: Any, y: Any, reset: bool) -> tuple[Array, np.ndarray]:
        """``(X, y)`` checked; ``y`` on the host (labels and targets are small)."""
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target "
                             "y is None")
        numeric = not isinstance(self, ClassifierMixin)
        y = _backend.to_numpy(y) if _foreign(y) else y
        if not _foreign(X) and not scipy.sparse.issparse(X):
            X, y = validate_data(self, X, y, reset=reset, multi_output=True,
                                 y_numeric=numeric, dtype=(np.float64, np.float32))
        else:
            X = self._check_X(X, reset)
            y = check_array(y, ensure_2d=False, dtype="numeric" if numeric else None,
                            input_name="y")
            if y.shape[0] != X.shape[0]:
                raise ValueError(f"Found input variables with inconsistent numbers of "
                                 f"samples: [{X.shape[0]}, {y.shape[0]}]")
        return X, column_or_1d(y, warn=True) if y.ndim == 2 and y.shape[1] == 1 else y

    def _targets(self, y: np.ndarray, first: bool, classes: Any) -> tuple[np.ndarray, str]:
        """(targets as an ``(n, k)`` float matrix, the output activation)."""
        y = np.asarray(y, dtype=np.float64)
        return (y.reshape(-1, 1) if y.ndim == 1 else y), "identity"

    # ------------------------------------------------------------ training

    def _fit(self, X: Any, y: Any, sample_weight: Any, incremental: bool,
             classes: Any = None) -> Any:
        """All or nothing: a call that fails (a refused parameter or data, a diverged
        epoch) leaves the estimator, its network and its optimizer as they were."""
        saved = dict(vars(self))  # the network and optimizer are trained as copies
        try:
            self._train(X, y, sample_weight, incremental, classes)
        except BaseException as exc:
            self.__dict__.clear()
            self.__dict__.update(saved)
            if isinstance(exc, FloatingPointError):  # scikit-learn's error, the loop's why
                raise ValueError("Solver produced non-finite parameter weights. The input "
                                 f"data may contain large values and need to be "
                                 f"preprocessed. ({exc})") from exc
            raise
        return self

    def _train(self, X: Any, y: Any, sample_weight: Any, incremental: bool,
               classes: Any) -> None:
        self._check_params(incremental)
        first = "model_" not in vars(self) or (not self.warm_start and not incremental)
        X, y = self._check_Xy(X, y, reset=first)
        n = int(X.shape[0])
        if self.batch_norm and n < 2:
            raise ValueError(f"batch_norm=True needs at least 2 samples to train on (BatchNorm "
                             f"normalises over a batch's rows), got {n} sample")
        T, out = self._targets(y, first, classes)
        # early stopping's split is stratified by class, binary and multi-class (scikit-
        # learn's documentation says so; its code stratifies binary targets only)
        stratify = T.argmax(axis=1) if out == "softmax" else T[:, 0] if (
            out == "logistic" and T.shape[1] == 1) else None
        model: Any = vars(self).get("model_")
        xp = _backend.get_namespace(self.backend if self.backend is not None else (
            model.backend if model is not None else _backend.get_backend()))
        dev = _backend.resolve_device(xp, self.device)
        dt = _backend.resolve_dtype(xp, _backend.dtype_name(  # scikit-learn: the data's
            self.dtype if self.dtype is not None else X.dtype if first else model.dtype))
        w = _validation.sample_weight(sample_weight, n, xp, dev, dt)
        rng = check_random_state(self.random_state)
        if not first and T.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {T.shape[1]} outputs but the fitted network gives "
                             f"{self.n_outputs_}")
        # the fitted network is never trained in place: a call that fails leaves it whole
        self.model_ = model = self._network(T.shape[1], int(X.shape[1]), out, dict(
            backend=xp, device=dev, dtype=dt), rng, None if first else model)
        if first:
            self.n_outputs_, self.out_activation_ = T.shape[1], out
            self.n_layers_, self.n_iter_, self.t_ = len(_dense(model)) + 1, 0, 0
            self.loss_curve_, self._no_improvement_count = [], 0
            self.best_loss_ = None if self.early_stopping else np.inf
            self.best_validation_score_ = -np.inf if self.early_stopping else None
            self.validation_scores_ = [] if self.early_stopping else None
            self.__dict__.pop("_optimizer", None)
        X, T = _backend.to_backend(X, xp, dev, dt), _backend.to_backend(T, xp, dev, dt)
        if self.solver != "lbfgs":
            return self._epochs(model, X, T, w, incremental, rng, stratify)
        result = lbfgs.fit(model, X, T, sample_weight=w, max_iter=self.max_iter,
                           max_fun=self.max_fun, tol=self.tol, verbose=int(self.verbose))
        self.n_iter_, self.loss_ = result.n_iter, result.loss
        for name in ("loss_curve_", "t_", "best_loss_", "validation_scores_",
                     "best_validation_score_", "_optimizer"):
            self.__dict__.pop(name, None)  # the stochastic solvers' (scikit-learn has none)
        if not result.converged:
            warnings.warn(f"lbfgs failed to converge after {result.n_iter} iteration(s) "
                          f"({result.message}). Increase the number of iterations "
                          f"(max_iter={self.max_iter}) or scale the data.",
                          ConvergenceWarning, stacklevel=4)

    def _epochs(self, model: Sequential, X: Array, T: Array, w: Array | None,
                incremental: bool, rng: np.random.RandomState, stratify: Any) -> None:
        """scikit-learn's ``_fit_stochastic`` as a configuration of ``Sequential.fit``."""
        fresh = not incremental or vars(self).get("_optimizer") is None
        if fresh:  # partial_fit keeps the optimizer, and the settings it was made with
            self._optimizer, self._rate = self._make_optimizer(model), (
                self.learning_rate, self.learning_rate_init, self.power_t)
        else:  # a copy of it, its state where the model is
            kept, self._optimizer = self._optimizer, copy.copy(self._optimizer)
            self._optimizer.restore(kept.snapshot())
            self._optimizer.state = self._optimizer.moved_state(model.xp, model.device,
                                                                model.dtype)
        opt, (schedule, lr0, power_t) = self._optimizer, self._rate
        val = None
        if self.early_stopping:
            train, held = train_test_split(np.arange(X.shape[0]), random_state=rng,
                                           test_size=self.validation_fraction,
                                           stratify=stratify)
            if held.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            val = (_rows(X, held), _rows(T, held), None if w is None else _rows(w, held))
            X, T, w = _rows(X, train), _rows(T, train), None if w is None else _rows(w, train)
        n = int(X.shape[0])
        if self.batch_size != "auto" and self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          "going to be clipped", stacklevel=4)
        sgd = isinstance(opt, optimizers.SGD)
        stopper = NoImprovementStopping(
            "loss" if val is None else (lambda model: self._score_rows(model, *val)),
            tol=self.tol, n_iter_no_change=self.n_iter_no_change,
            mode="min" if val is None else "max", restore_best_weights=val is not None,
            best=self.best_loss_ if val is None else self.best_validation_score_,
            count=self._no_improvement_count, verbose=int(bool(self.verbose)),
            lr_factor=0.2 if sgd and schedule == "adaptive" else None)
        epochs = _Epochs(self.verbose)
        hooks: list[Callback] = [epochs, stopper]
        if sgd and schedule == "invscaling":  # scikit-learn's rate of the samples seen
            t0 = self.t_
            hooks.append(LearningRateScheduler(lambda e, lr: lr if e == 0 and fresh else (
                lr0 / (t0 + e * n + 1) ** power_t)))
        interrupted = False
        try:
            model.fit(X, T, epochs=1 if incremental else self.max_iter,
                      batch_size=min(200, n) if self.batch_size == "auto" else min(
                          self.batch_size, n), optimizer=opt, seed=rng, verbose=0,
                      shuffle="cumulative" if self.shuffle else False, callbacks=hooks,
                      sample_weight=w, merge_last=bool(self.batch_norm))
        except KeyboardInterrupt:  # the loop undid the unfinished epoch
            interrupted = True
            stopper.on_train_end()
            warnings.warn("Training interrupted by user.", stacklevel=4)
        self.n_iter_, self.t_ = len(epochs.losses), self.t_ + n * len(epochs.losses)
        self.loss_curve_ = [*self.loss_curve_, *epochs.losses]
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else np.nan
        self._no_improvement_count = stopper.count
        if val is None:
            self.best_loss_ = stopper.best
        else:
            self.best_validation_score_ = stopper.best
            self.validation_scores_ = [*(self.validation_scores_ or []), *stopper.scores]
        if not (incremental or interrupted or stopper.stopped_epoch is not None) and (
                self.n_iter_ == self.max_iter):
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                          "reached and the optimization hasn't converged yet.",
                          ConvergenceWarning, stacklevel=4)

    def _score_rows(self, model: Sequential, X: Array, T: Array, w: Array | None) -> float:
        raise NotImplementedError

    def _make_optimizer(self, model: Sequential) -> optimizers.Optimizer:
        """The solver as an anyfc optimizer, its state created as zeros (as its first step
        would: every step then has one structure, and JAX compiles the step once)."""
        lr, eps = self.learning_rate_init, self.epsilon
        opt: optimizers.Optimizer
        if self.solver == "sgd":
            opt = optimizers.SGD(lr, momentum=self.momentum, lr_in_velocity=True,
                                 nesterov=bool(self.nesterovs_momentum) and self.momentum > 0)
        elif self.solver in ("adam", "adamw"):
            adam = optimizers.Adam if self.solver == "adam" else optimizers.AdamW
            opt = adam(lr, beta1=self.beta_1, beta2=self.beta_2, eps=eps,
                       eps_hat=self.solver == "adam")
        else:
            opt = (optimizers.RMSProp if self.solver == "rmsprop" else optimizers.AdaGrad)(
                lr, eps=eps)
        slots = () if isinstance(opt, optimizers.SGD) and not opt.momentum else opt.slots
        opt.state = {path(i, name): {slot: model.xp.zeros_like(getattr(layer, name))
                                     for slot in slots}
                     for i, layer in enumerate(model.layers) for name in layer.param_names
                     if slots}
        return opt

    def _network(self, n_out: int, n_in: int, out: str, where: dict[str, Any],
                 rng: np.random.RandomState, fitted: Sequential | None) -> Sequential:
        """The network the parameters describe: new, with scikit-learn's Glorot-uniform
        weights and biases drawn from ``rng`` in float64 on the host (as scikit-learn
        does); or holding copies of ``fitted``'s state (its arrays and dropout streams),
        which it must match layer for layer — a new activation, dropout rate or alpha is
        taken (scikit-learn reads them at every call), other layers are refused."""
        units, hidden = [n_in, *self._hidden_sizes(), n_out], ACTIVATIONS[self.activation]
        seeds = [layer.seed for layer in (fitted.layers if fitted else [])
                 if isinstance(layer, Dropout)]
        blocks: list[list[Layer]] = []  # one per Dense: the Dense and the layers after it
        for i, (fan_in, fan_out) in enumerate(zip(units, units[1:])):
            act = "identity" if i == len(units) - 2 or self.batch_norm else hidden
            if fitted is None:
                bound = np.sqrt((2.0 if self.activation == "logistic" else 6.0) /
                                (fan_in + fan_out))
                w, b = (_backend.to_backend(rng.uniform(-bound, bound, shape), **where)
                        for shape in ((fan_in, fan_out), fan_out))
                blocks.append([Dense.from_params(w, b, act, l2=float(self.alpha))])
            else:  # its arrays are loaded below
                blocks.append([Dense(fan_in, fan_out, act, l2=float(self.alpha), seed=0,
                                     **where)])
            if self.batch_norm and i < len(units) - 2:  # Dense → BatchNorm → activation
                blocks[-1].append(BatchNorm(fan_out, **where))
                blocks[-1] += [_AFTER_NORM[hidden](**where)] if hidden in _AFTER_NORM else []
        for block in blocks[:-1] if self.dropout else []:  # seeds after every weight
            seed = seeds.pop(0) if seeds else int(rng.randint(0, 2**31 - 1))
            block.append(Dropout(float(self.dropout), seed=seed, **where))
        model = Sequential([layer for block in blocks for layer in block], _loss(out))
        if fitted is not None:
            def layout(m: Sequential) -> str:
                return " → ".join(type(layer).__name__ + (
                    f"({layer.n_out})" if isinstance(layer, Dense) else "")
                    for layer in m.layers)
            if layout(model) != layout(fitted):
                raise ValueError(f"the fitted network is {layout(fitted)}, but "
                                 "hidden_layer_sizes, batch_norm, dropout and activation ask "
                                 f"for {layout(model)}; fit without warm_start to train a "
                                 "new network")
            model.load_state_dict(fitted.state_dict())  # copies, moved where asked
            if (model.xp, model.device) == (fitted.xp, fitted.device):  # dropout streams
                state = model.state(rng=False)
                model.set_state(ModelState(state.params, state.buffers, fitted.state().rng))
        return model

    # ------------------------------------------------------------ prediction, state

    def _output(self, X: Any) -> Array:
        """The network's output (probabilities or values): ``X`` checked, then predicted
        (moved once to the model's backend and device)."""
        check_is_fitted(self)
        return self.model_.predict(self._check_X(X, reset=False))

    @staticmethod
    def _deliver(a: Array, X_in: Any) -> Array:
        """``a`` in the input's namespace and device under array-API dispatch (when ``X``
        was such an array), else NumPy."""
        if _dispatching() and _foreign(X_in):
            return _backend.to_backend(a, _backend.namespace_of(X_in), _backend.device_of(X_in))
        return _backend.to_numpy(a)

    def __sklearn_is_fitted__(self) -> bool:
        return "model_" in vars(self)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags

    def to(self, backend: Any = None, device: Any = None, dtype: Any = None) -> Any:
        """Move the fitted network and its optimizer state to another backend or device.

        The estimator's ``backend``, ``device`` and ``dtype`` parameters are set to match.

        Parameters
        ----------
        backend : str, module or None
            The backend (``None``: the current one).
        device : str, device object or None
            The device (``None``: the backend's default device).
        dtype : str, dtype or None
            The floating dtype (``None``: the current one).

        Returns
        -------
        estimator
            ``self``.
        """
        check_is_fitted(self)
        model = self.model_
        model.optimizer = vars(self).get("_optimizer")
        model.to(backend, device, dtype)
        self.backend, self.device = model.backend, device
        self.dtype = _backend.dtype_name(model.dtype)
        return self

    coefs_ = property(lambda self: [_backend.to_numpy(d.w) for d in _dense(self.model_)],
                      doc="The Dense layers' weight matrices, input first, as NumPy copies.")
    intercepts_ = property(lambda self: [_backend.to_numpy(d.b) for d in _dense(self.model_)],
                           doc="The Dense layers' bias vectors, input first, as NumPy copies.")

    def __getstate__(self) -> dict[str, Any]:
        """The network as its architecture and NumPy arrays (the optimizer pickles its
        state as NumPy arrays itself): the pickle loads anywhere."""
        state = dict(super().__getstate__())
        model = state.pop("model_", None)
        if model is not None:
            state["_host_model"] = {"architecture": model.architecture(), "backend": model.backend,
                                    "params": list(map(_backend.to_numpy,
                                                       model.state_dict().values()))}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Back on ``backend``/``device`` (``None``: where it trained), or on NumPy with a
        warning where those cannot be used here."""
        host = state.pop("_host_model", None)
        super().__setstate__(state)
        if host is None:
            return
        backend = self.backend if self.backend is not None else host["backend"]
        try:
            where = (backend, _backend.resolve_device(_backend.get_namespace(backend),
                                                      self.device))
        except (ImportError, ValueError, TypeError) as exc:
            warnings.warn(f"{type(self).__name__} was pickled on backend {backend!r}, device "
                          f"{self.device!r}, which cannot be used here ({exc}); it is loaded "
                          "on numpy and its backend/device parameters say so", stacklevel=2)
            where, self.backend, self.device = ("numpy", "cpu"), "numpy", None
        self.model_ = Sequential.from_architecture(host["architecture"], host["params"], *where)
        opt, model = vars(self).get("_optimizer"), self.model_
        if opt is not None:  # private copies: a memory-mapped pickle is read-only
            opt.state = {key: {k: _backend.to_backend(v, model.xp, model.device, model.dtype,
                                                      copy=True) for k, v in values.items()}
                         for key, values in opt.state.items()}


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by anyfc on any backend.

    scikit-learn's ``MLPClassifier`` parameters and behaviour. Binary targets train one
    sigmoid output (``predict_proba`` gives two columns), multi-class targets a softmax,
    multi-label indicator matrices one sigmoid per label (``predict`` gives the
    indicator matrix). Classes may be of any type (strings too). Beyond scikit-learn's
    parameters: ``dropout``, ``batch_norm``, ``backend``, ``device``, ``dtype`` (the
    documentation's *scikit-learn* page).

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default (100,)
        The width of each hidden layer.
    activation : {"relu", "identity", "logistic", "tanh"}, default "relu"
        The hidden layers' activation (scikit-learn's names).
    solver : {"adam", "sgd", "lbfgs", "adamw", "rmsprop", "adagrad"}, default "adam"
        The optimizer: scikit-learn's three (``"lbfgs"``: full-batch L-BFGS,
        ``anyfc.lbfgs``), or anyfc's ``"adamw"``, ``"rmsprop"``, ``"adagrad"``.
    alpha : float, default 1e-4
        The L2 penalty ``alpha·W/batch`` on the weights, never the biases.
    batch_size : int or "auto", default "auto"
        Rows per mini-batch; ``"auto"``: ``min(200, n_samples)``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default "constant"
        The rate's schedule for ``solver="sgd"``, as scikit-learn's.
    learning_rate_init : float, default 0.001
        The initial learning rate.
    power_t : float, default 0.5
        The exponent of ``"invscaling"``.
    max_iter : int, default 200
        Epochs at most (iterations for ``"lbfgs"``).
    shuffle : bool, default True
        Shuffle the rows each epoch (scikit-learn's order).
    random_state : int, RandomState or None, default None
        The initial weights, shuffling and early-stopping split, as scikit-learn draws
        them.
    tol : float, default 1e-4
        The improvement that counts for the convergence rule.
    verbose : bool, default False
        Print each epoch's loss, as scikit-learn.
    warm_start : bool, default False
        ``fit`` continues from the current network.
    momentum : float, default 0.9
        SGD's momentum.
    nesterovs_momentum : bool, default True
        Nesterov's momentum for SGD.
    early_stopping : bool, default False
        Stop on a held-out ``validation_fraction`` of the training rows (stratified for
        classification).
    validation_fraction : float, default 0.1
        The rows held out with ``early_stopping``.
    beta_1, beta_2 : float, default 0.9 and 0.999
        Adam's moment decays.
    epsilon : float, default 1e-8
        Adam's ``ε̂``.
    n_iter_no_change : int, default 10
        Epochs without improvement by ``tol`` before stopping.
    max_fun : int, default 15000
        Loss evaluations at most, for ``"lbfgs"``.
    dropout : float, default 0
        anyfc's: a ``Dropout(dropout)`` after each hidden activation (0: none).
    batch_norm : bool, default False
        anyfc's: ``Dense → BatchNorm → activation`` for each hidden layer.
    backend, device : optional
        anyfc's: where the network trains (default: anyfc's default backend, its default
        device).
    dtype : {None, "float32", "float64"}, default None
        anyfc's: the network's dtype (``None``: the data's floating dtype).

    Attributes
    ----------
    model_ : anyfc.Sequential
        The trained network (``model_.save(path)`` saves it).
    coefs_, intercepts_ : list of numpy.ndarray
        The Dense layers' weights and biases, input first, as NumPy copies.
    loss_, loss_curve_ : float, list of float
        The last epoch's training loss, and each epoch's.
    n_iter_, t_ : int
        Epochs (or L-BFGS iterations) run, and samples seen.
    best_loss_, validation_scores_, best_validation_score_
        As scikit-learn's (early stopping keeps the validation scores).
    n_features_in_, feature_names_in_
        The input's width, and its column names (pandas).
    n_layers_, n_outputs_, out_activation_
        As scikit-learn's.
    classes_ : numpy.ndarray
        The classes, in the order of ``predict_proba``'s columns.

    Examples
    --------
    >>> from anyfc.sklearn import MLPClassifier
    >>> clf = MLPClassifier((16,), max_iter=5, random_state=0)
    >>> clf.fit([[0.0, 1.0], [1.0, 0.0], [0.0, 0.9], [1.0, 0.1]], ["a", "b", "a", "b"]).classes_
    array(['a', 'b'], dtype='<U1')
    """

    def _targets(self, y: np.ndarray, first: bool, classes: Any) -> tuple[np.ndarray, str]:
        """scikit-learn's rules: a new ``LabelBinarizer`` for a new network (from
        ``classes`` on partial_fit's first call), else ``y``'s classes checked."""
        check_classification_targets(y)
        if classes is not None or first:
            lb = LabelBinarizer().fit(y if classes is None or type_of_target(
                y).startswith("multilabel") else classes)
            self._label_binarizer, self.classes_ = lb, lb.classes_
        labels = unique_labels(y)
        if (classes is not None or not first) and self.warm_start:
            if set(labels) != set(self.classes_):
                raise ValueError("warm_start can only be used where `y` has the same classes "
                                 f"as in the previous call to fit. Previously got "
                                 f"{self.classes_}, `y` has {labels}")
        elif classes is not None or not first:
            if len(np.setdiff1d(labels, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` "
                                 f"has {self.classes_}. 'y' has {labels}.")
        binarized = self._label_binarizer.transform(y)
        binarized = binarized.toarray() if hasattr(binarized, "toarray") else binarized
        out = "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"
        return np.asarray(binarized, dtype=np.float64), out

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPClassifier:
        """Train a new network (or continue with ``warm_start=True``) on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            NumPy, pandas, lists, or an array of any backend (checked where it is).
        y : array-like
            The classes (of any type), or a multi-label indicator matrix.
        sample_weight : array-like of shape (n_samples,), optional
            Each row's loss weight.

        Returns
        -------
        MLPClassifier
            ``self``.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_stochastic)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None,
                    classes: Any = None) -> MLPClassifier:
        """Train one epoch over ``(X, y)``, continuing from the current network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The inputs.
        y : array-like
            The classes, or a multi-label indicator matrix.
        sample_weight : array-like of shape (n_samples,), optional
            Each row's loss weight.
        classes : array-like, optional
            Every class of the whole data set: needed on the first call, unless ``y`` is
            a multi-label indicator matrix.

        Returns
        -------
        MLPClassifier
            ``self``.
        """
        first = not hasattr(self, "classes_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None:
            classes = unique_labels(classes)
            if not first and not np.array_equal(self.classes_, classes):
                raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                                 f"partial_fit, was: {self.classes_!r}")
        return self._fit(X, y, sample_weight, True, classes if first else None)

    def predict_proba(self, X: Any) -> Array:
        """Predict class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The inputs.

        Returns
        -------
        array of shape (n_samples, n_classes)
            Columns in the order of ``classes_``: NumPy, or the input's namespace and
            device under array-API dispatch.
        """
        p = self._output(X)
        if self.n_outputs_ == 1 and self._label_binarizer.y_type_ != "multilabel-indicator":
            p = _backend.namespace_of(p).concat([1.0 - p, p], axis=1)
        return self._deliver(p, X)

    def predict_log_proba(self, X: Any) -> Array:
        """Predict the logarithm of the class probabilities, ``log(predict_proba(X))``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The inputs.

        Returns
        -------
        array of shape (n_samples, n_classes)
            As ``predict_proba``'s.
        """
        p = self.predict_proba(X)
        return _backend.namespace_of(p).log(p)

    def predict(self, X: Any) -> Array:
        """Predict class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The inputs.

        Returns
        -------
        array
            The labels (an indicator matrix for multi-label targets); under array-API
            dispatch, numeric labels in the input's namespace and device.
        """
        p = _backend.to_numpy(self._output(X))
        y = self._label_binarizer.inverse_transform(p.ravel() if self.n_outputs_ == 1 else p)
        return self._deliver(y, X) if self.classes_.dtype.kind in "biuf" else y

    def _score_rows(self, model: Sequential, X: Array, T: Array, w: Array | None) -> float:
        """Accuracy (subset accuracy for multi-label) on held-out rows, weighted by ``w``:
        computed on the device, one read."""
        xp, z = model.xp, model.forward(X, training=False)
        if self.out_activation_ == "softmax":
            hits = xp.argmax(z, axis=1) == xp.argmax(T, axis=1)
        else:
            hits = xp.all((z > 0) == (T > 0.5), axis=1)
        hits = xp.astype(hits, model.dtype)
        return _backend.to_float(xp.mean(hits) if w is None else xp.sum(w * hits) / xp.sum(w))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by anyfc on any backend.

    scikit-learn's ``MLPRegressor`` parameters and behaviour (squared error, identity
    output; ``y`` of shape ``(n,)`` or ``(n, k)``). Beyond scikit-learn's parameters:
    ``dropout``, ``batch_norm``, ``backend``, ``device``, ``dtype`` (the documentation's
    *scikit-learn* page).

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default (100,)
        The width of each hidden layer.
    activation : {"relu", "identity", "logistic", "tanh"}, default "relu"
        The hidden layers' activation (scikit-learn's names).
    solver : {"adam", "sgd", "lbfgs", "adamw", "rmsprop", "adagrad"}, default "adam"
        The optimizer: scikit-learn's three (``"lbfgs"``: full-batch L-BFGS,
        ``anyfc.lbfgs``), or anyfc's ``"adamw"``, ``"rmsprop"``, ``"adagrad"``.
    alpha : float, default 1e-4
        The L2 penalty ``alpha·W/batch`` on the weights, never the biases.
    batch_size : int or "auto", default "auto"
        Rows per mini-batch; ``"auto"``: ``min(200, n_samples)``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default "constant"
        The rate's schedule for ``solver="sgd"``, as scikit-learn's.
    learning_rate_init : float, default 0.001
        The initial learning rate.
    power_t : float, default 0.5
        The exponent of ``"invscaling"``.
    max_iter : int, default 200
        Epochs at most (iterations for ``"lbfgs"``).
    shuffle : bool, default True
        Shuffle the rows each epoch (scikit-learn's order).
    random_state : int, RandomState or None, default None
        The initial weights, shuffling and early-stopping split, as scikit-learn draws
        them.
    tol : float, default 1e-4
        The improvement that counts for the convergence rule.
    verbose : bool, default False
        Print each epoch's loss, as scikit-learn.
    warm_start : bool, default False
        ``fit`` continues from the current network.
    momentum : float, default 0.9
        SGD's momentum.
    nesterovs_momentum : bool, default True
        Nesterov's momentum for SGD.
    early_stopping : bool, default False
        Stop on a held-out ``validation_fraction`` of the training rows (stratified for
        classification).
    validation_fraction : float, default 0.1
        The rows held out with ``early_stopping``.
    beta_1, beta_2 : float, default 0.9 and 0.999
        Adam's moment decays.
    epsilon : float, default 1e-8
        Adam's ``ε̂``.
    n_iter_no_change : int, default 10
        Epochs without improvement by ``tol`` before stopping.
    max_fun : int, default 15000
        Loss evaluations at most, for ``"lbfgs"``.
    dropout : float, default 0
        anyfc's: a ``Dropout(dropout)`` after each hidden activation (0: none).
    batch_norm : bool, default False
        anyfc's: ``Dense → BatchNorm → activation`` for each hidden layer.
    backend, device : optional
        anyfc's: where the network trains (default: anyfc's default backend, its default
        device).
    dtype : {None, "float32", "float64"}, default None
        anyfc's: the network's dtype (``None``: the data's floating dtype).
    loss : {"squared_error"}, default "squared_error"
        Keyword-only here (it is scikit-learn's first positional parameter), and
        ``"squared_error"`` only.

    Attributes
    ----------
    model_ : anyfc.Sequential
        The trained network (``model_.save(path)`` saves it).
    coefs_, intercepts_ : list of numpy.ndarray
        The Dense layers' weights and biases, input first, as NumPy copies.
    loss_, loss_curve_ : float, list of float
        The last epoch's training loss, and each epoch's.
    n_iter_, t_ : int
        Epochs (or L-BFGS iterations) run, and samples seen.
    best_loss_, validation_scores_, best_validation_score_
        As scikit-learn's (early stopping keeps the validation scores).
    n_features_in_, feature_names_in_
        The input's width, and its column names (pandas).
    n_layers_, n_outputs_, out_activation_
        As scikit-learn's.
    """

    _parameter_constraints: dict = {**_BaseMLP.CONSTRAINTS,
                                    "loss": [StrOptions({"squared_error", "poisson"})]}

    def __init__(self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *,
                 loss: str = "squared_error", **kwargs: Any) -> None:
        super().__init__(hidden_layer_sizes, activation, **kwargs)
        self.loss = loss

    # scikit-learn reads the parameters from the signature: the base's, and loss
    __init__.__signature__ = inspect.signature(_BaseMLP.__init__).replace(  # type: ignore
        parameters=[*inspect.signature(_BaseMLP.__init__).parameters.values(),
                    inspect.Parameter("loss", inspect.Parameter.KEYWORD_ONLY,
                                      default="squared_error")])

    def _check_params(self, incremental: bool) -> None:
        super()._check_params(incremental)
        if self.loss != "squared_error":
            raise ValueError(f"loss={self.loss!r} is not supported by anyfc's MLPRegressor "
                             "(it needs an exponential output layer); use "
                             "loss='squared_error', or scikit-learn's MLPRegressor")

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Train a new network (or continue with ``warm_start=True``) on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            NumPy, pandas, lists, or an array of any backend (checked where it is).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets.
        sample_weight : array-like of shape (n_samples,), optional
            Each row's loss weight.

        Returns
        -------
        MLPRegressor
            ``self``.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_stochastic)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Train one epoch over ``(X, y)``, continuing from the current weights and optimizer.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets.
        sample_weight : array-like of shape (n_samples,), optional
            Each row's loss weight.

        Returns
        -------
        MLPRegressor
            ``self``.
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X: Any) -> Array:
        """Predict values.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The inputs.

        Returns
        -------
        array
            Of shape ``(n,)`` for one output, ``(n, k)`` for several (NumPy, or the
            input's namespace and device under array-API dispatch).
        """
        out = self._output(X)
        if out.shape[1] == 1:
            out = _backend.namespace_of(out).reshape(out, (-1,))
        return self._deliver(out, X)

    def _score_rows(self, model: Sequential, X: Array, T: Array, w: Array | None) -> float:
        """R² on held-out rows averaged over outputs, weighted by ``w`` (scikit-learn's
        ``r2_score`` with its conventions for constant targets): one read."""
        xp, z = model.xp, model.forward(X, training=False)
        w = xp.reshape(xp.ones_like(X[:, 0]) if w is None else w, (-1, 1))
        mean = xp.sum(w * T, axis=0) / xp.sum(w)
        num, den = (_backend.to_numpy(xp.sum(w * (T - z) ** 2, axis=0)),
                    _backend.to_numpy(xp.sum(w * (T - mean) ** 2, axis=0)))
        scores = np.where(den != 0, 1.0 - num / np.where(den != 0, den, 1.0),
                          np.where(num != 0, 0.0, 1.0))
        return float(np.mean(scores))
