"""Independent references: every number anyfc reports, and every update it makes, against
NumPy written here from the definitions, on the same weights.

Each check below guards against a kind of bug that once survived the suite (issue #15):
a metric is compared with a value computed apart (never "the loss went down"), every
optimizer option with its equation over several steps, the training loop with the rows it
must visit, divergence rollback with the optimizer's state, checkpoints with every
non-default setting, and ``Sequential.to`` with the optimizer's arrays.

Only the public API is used (``Sequential``, the layers, ``anyfc.optimizers``, ``fit``,
``evaluate``, ``predict``, ``state_dict``/``load_state_dict``, ``save``/``load``, ``to``,
``anyfc.to_numpy``). Everything is float64, so the references agree to ~1e-12.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import array_api_compat
import numpy as np
import pytest

import anyfc
from anyfc import optimizers

RTOL = 1e-10
ATOL = 1e-12


def host(a: Any) -> np.ndarray:
    return anyfc.to_numpy(a).astype(np.float64)


def host_state(model: anyfc.Sequential) -> dict[str, np.ndarray]:
    return {k: host(v) for k, v in model.state_dict().items()}


def host_opt_state(opt: optimizers.Optimizer) -> dict[str, Any]:
    """The optimizer's ``state_dict()``: its arrays on the host, its counters as they are."""
    return {k: host(v) if k.startswith("state.") else v for k, v in opt.state_dict().items()}


def assert_opt_state(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every state array of the reference, and its step count; counters the reference
    does not keep (the epoch) are not compared."""
    arrays = sorted(k for k in got if k.startswith("state."))
    assert arrays == sorted(k for k in expected if k.startswith("state."))
    assert got["t"] == expected["t"]
    for key in arrays:
        np.testing.assert_allclose(got[key], expected[key], rtol=RTOL, atol=ATOL, err_msg=key)


def assert_same_state(got: dict[str, Any], expected: dict[str, Any], exact: bool = True) -> None:
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, np.ndarray):
            if exact:
                np.testing.assert_array_equal(got[key], value, err_msg=key)
            else:
                np.testing.assert_allclose(got[key], value, rtol=RTOL, atol=ATOL, err_msg=key)
        else:
            assert got[key] == value, key


# ---------------------------------------------------------------- the references


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


ACTIVATIONS = {"identity": lambda u: u, "tanh": np.tanh}


def ref_output(params: list[tuple[np.ndarray, np.ndarray, str]], X: np.ndarray) -> np.ndarray:
    """The raw network output of Dense layers ``(w, b, activation)``."""
    a = X
    for w, b, act in params:
        a = ACTIVATIONS[act](a @ w + b)
    return a


def ref_loss(loss: str, z: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray, float, int]:
    """(mean loss, ∂E/∂z, correct predictions, predictions counted) of logits/outputs
    ``z`` against targets ``t``, straight from the definitions."""
    h = z.shape[0]
    if loss == "softmax_cross_entropy":
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        onehot = np.eye(z.shape[1])[t]
        e = -np.mean(np.log(p[np.arange(h), t]))
        return e, (p - onehot) / h, float(np.sum(np.argmax(z, axis=1) == t)), h
    t = t.reshape(z.shape).astype(np.float64)
    if loss == "binary_cross_entropy":
        s = _sigmoid(z)
        e = np.mean(-(t * np.log(s) + (1.0 - t) * np.log(1.0 - s)))
        # a prediction is "1" when its probability is above one half
        return e, (s - t) / z.size, float(np.sum((s > 0.5) == (t > 0.5))), z.size
    assert loss == "mean_squared_error"
    return np.mean((z - t) ** 2), 2.0 * (z - t) / z.size, 0.0, z.size


def ref_probabilities(loss: str, z: np.ndarray) -> np.ndarray:
    if loss == "softmax_cross_entropy":
        return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    if loss == "binary_cross_entropy":
        return _sigmoid(z)
    return z


def ref_metrics(loss: str, z: np.ndarray, t: np.ndarray) -> dict[str, float]:
    """loss and accuracy (classification), or loss, mean absolute error and R² (the mean
    over output columns of 1 - Σ(z - t)² / Σ(t - mean t)², as scikit-learn's r2_score)."""
    e, _, hits, count = ref_loss(loss, z, t)
    out = {"loss": e}
    if loss != "mean_squared_error":
        out["accuracy"] = hits / count
        return out
    t = t.reshape(z.shape)
    out["mae"] = np.mean(np.abs(z - t))
    out["r2"] = np.mean(1.0 - ((z - t) ** 2).sum(axis=0) / ((t - t.mean(axis=0)) ** 2).sum(axis=0))
    return out


class RefOptimizer:
    """Each optimizer's update, from its textbook equation (PyTorch's documented forms):

    SGD      g ← g + λp;  v ← μv + g;  p ← p − η·(g + μv if nesterov else v)
             (without momentum: p ← p − η·g)
    AdaGrad  g ← g + λp;  h ← h + g²;  p ← p − η·g/(√h + ε)
    RMSProp  g ← g + λp;  h ← ρh + (1−ρ)g²;  p ← p − η·g/(√h + ε)
    Adam     g ← g + λp;  m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;
             p ← p − η·m̂/(√v̂ + ε),  m̂ = m/(1−β₁ᵗ),  v̂ = v/(1−β₂ᵗ)
    AdamW    p ← p − ηλp, then Adam's step with λ = 0 in the gradient
    """

    def __init__(self, kind: str, **hp: Any) -> None:
        defaults = {
            "SGD": {"lr": 0.01, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
            "AdaGrad": {"lr": 0.01, "eps": 1e-8, "weight_decay": 0.0},
            "RMSProp": {"lr": 0.001, "rho": 0.9, "eps": 1e-8, "weight_decay": 0.0},
            "Adam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
            "AdamW": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                      "weight_decay": 0.01},
        }[kind]
        self.kind, self.hp, self.t = kind, {**defaults, **hp}, 0
        self.state: dict[str, dict[str, np.ndarray]] = {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        for name in params:
            params[name] = self._update(name, params[name], grads[name])

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> np.ndarray:
        hp, kind, t = self.hp, self.kind, self.t
        s = self.state.setdefault(name, {})
        lam, lr = hp["weight_decay"], hp["lr"]
        if kind != "AdamW":
            g = g + lam * p
        if kind == "SGD":
            if hp["momentum"] == 0:
                return p - lr * g
            s["v"] = hp["momentum"] * s.get("v", 0.0) + g
            return p - lr * (g + hp["momentum"] * s["v"] if hp["nesterov"] else s["v"])
        if kind == "AdaGrad":
            s["h"] = s.get("h", 0.0) + g * g
            return p - lr * g / (np.sqrt(s["h"]) + hp["eps"])
        if kind == "RMSProp":
            s["h"] = hp["rho"] * s.get("h", 0.0) + (1 - hp["rho"]) * g * g
            return p - lr * g / (np.sqrt(s["h"]) + hp["eps"])
        if kind == "AdamW":
            p = p - lr * lam * p
        b1, b2 = hp["beta1"], hp["beta2"]
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        m_hat, v_hat = s["m"] / (1 - b1**t), s["v"] / (1 - b2**t)
        return p - lr * m_hat / (np.sqrt(v_hat) + hp["eps"])

    def state_dict(self, param_keys: dict[str, str]) -> dict[str, Any]:
        """In ``Optimizer.state_dict``'s naming (``param_keys``: our name → "0.w")."""
        out: dict[str, Any] = {"t": self.t}
        for name, slots in self.state.items():
            for slot, value in slots.items():
                out[f"state.{param_keys[name]}.{slot}"] = value
        return out


def ref_train_linear(loss: str, w: np.ndarray, b: np.ndarray, X: np.ndarray, t: np.ndarray,
                     batch_size: int, epochs: int, opt: RefOptimizer,
                     val: tuple[np.ndarray, np.ndarray] | None = None
                     ) -> tuple[dict[str, list[float]], np.ndarray, np.ndarray]:
    """``fit(shuffle=False)`` of one identity Dense layer, in NumPy: every row once per
    epoch in order, the last batch partial; an epoch's metrics are those of each batch's
    output *before* its update, over all rows (for the mean losses: each batch's mean
    loss weighted by its rows)."""
    params = {"w": w.copy(), "b": b.copy()}
    history: dict[str, list[float]] = {}
    n = X.shape[0]
    for _ in range(epochs):
        outputs = []
        for start in range(0, n, batch_size):
            xb, tb = X[start:start + batch_size], t[start:start + batch_size]
            z = xb @ params["w"] + params["b"]
            outputs.append(z)
            _, grad_z, _, _ = ref_loss(loss, z, tb)
            opt.step(params, {"w": xb.T @ grad_z, "b": grad_z.sum(axis=0)})
        metrics = ref_metrics(loss, np.concatenate(outputs), t)
        if val is not None:
            z = val[0] @ params["w"] + params["b"]
            metrics.update({"val_" + k: v for k, v in ref_metrics(loss, z, val[1]).items()})
        for k, v in metrics.items():
            history.setdefault(k, []).append(v)
    return history, params["w"], params["b"]


# ---------------------------------------------------------------- data

RNG = np.random.default_rng(20260415)
N = 23  # rows: batches of 5 leave a partial last batch of 3
X = RNG.standard_normal((N, 4))
X_VAL = RNG.standard_normal((1100, 4))  # over evaluate's batch of 1024: two batches

# loss case -> (loss, outputs, targets, validation targets)
CASES: dict[str, tuple[str, int, np.ndarray, np.ndarray]] = {
    "softmax": ("softmax_cross_entropy", 3, RNG.integers(0, 3, N), RNG.integers(0, 3, 1100)),
    "binary": ("binary_cross_entropy", 1, RNG.integers(0, 2, N).astype(float),
               RNG.integers(0, 2, 1100).astype(float)),
    "multilabel": ("binary_cross_entropy", 3, RNG.integers(0, 2, (N, 3)).astype(float),
                   RNG.integers(0, 2, (1100, 3)).astype(float)),
    "mse": ("mean_squared_error", 2, RNG.standard_normal((N, 2)),
            RNG.standard_normal((1100, 2))),
}


def _mlp(bk, loss: str, n_out: int) -> anyfc.Sequential:
    return anyfc.Sequential([bk.dense(4, 6, "tanh", seed=0),
                             bk.dense(6, n_out, "identity", seed=1)], loss=loss)


def _mlp_params(model: anyfc.Sequential) -> list[tuple[np.ndarray, np.ndarray, str]]:
    s = host_state(model)
    return [(s["layers.0.w"], s["layers.0.b"], "tanh"),
            (s["layers.1.w"], s["layers.1.b"], "identity")]


def _assert_discriminates_thresholds(z: np.ndarray) -> None:
    """The logits include some in (0, ½): thresholding the logit at ½ (or the probability
    at 0) would give other predictions than thresholding the probability at ½."""
    assert np.any((z > 0) & (z < 0.5)), "test data too easy: no logit in (0, 0.5)"


# ---------------------------------------------------------------- metrics


@pytest.mark.parametrize("case", list(CASES))
def test_fit_history_equals_numpy_training(bk, case):
    """loss, accuracy, val_loss, val_accuracy of every epoch, and the final weights, equal
    NumPy's training of the same linear model (23 rows in batches of 5: the last batch
    holds 3; validation over 1100 rows: two evaluation batches)."""
    loss, k, y, y_val = CASES[case]
    model = anyfc.Sequential([bk.dense(4, k, "identity", seed=3)], loss=loss)
    start = host_state(model)
    history = model.fit(X, y, epochs=3, batch_size=5, shuffle=False, verbose=0,
                        optimizer=optimizers.SGD(0.3), validation_data=(X_VAL, y_val))
    expected, w, b = ref_train_linear(loss, start["layers.0.w"], start["layers.0.b"], X, y,
                                      5, 3, RefOptimizer("SGD", lr=0.3), (X_VAL, y_val))
    assert set(history) == set(expected)
    for key, values in expected.items():
        np.testing.assert_allclose(history[key], values, rtol=RTOL, err_msg=key)
    end = host_state(model)
    np.testing.assert_allclose(end["layers.0.w"], w, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(end["layers.0.b"], b, rtol=RTOL, atol=ATOL)
    if loss == "binary_cross_entropy":
        _assert_discriminates_thresholds(X_VAL @ w + b)


@pytest.mark.parametrize("batch_size", [1, 5, 23, None])
@pytest.mark.parametrize("case", list(CASES))
def test_evaluate_equals_numpy_on_the_same_weights(bk, case, batch_size):
    """evaluate's loss and accuracy over any batching (partial last batches included)
    are the whole data's mean loss and accuracy; binary accuracy counts every label."""
    loss, k, y, _ = CASES[case]
    model = _mlp(bk, loss, k)
    got = model.evaluate(X, y, batch_size=batch_size)
    z = ref_output(_mlp_params(model), X)
    expected = ref_metrics(loss, z, y)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=RTOL), key
    if loss == "binary_cross_entropy":
        _assert_discriminates_thresholds(z)


@pytest.mark.parametrize("case", list(CASES))
def test_predict_equals_the_reference_softmax_sigmoid_or_output(bk, case):
    loss, k, _, _ = CASES[case]
    model = _mlp(bk, loss, k)
    expected = ref_probabilities(loss, ref_output(_mlp_params(model), X))
    for batch_size in (4, None):
        got = host(model.predict(X, batch_size=batch_size))
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_binary_accuracy_thresholds_the_probability_at_one_half(bk):
    """Hand-made logits around 0 and ½: only ``σ(z) > ½`` (i.e. ``z > 0``) gives 4/6."""
    model = anyfc.Sequential([bk.dense(1, 1, "identity")], loss="binary_cross_entropy")
    model.load_state_dict({"layers.0.w": np.ones((1, 1)), "layers.0.b": np.zeros(1)})
    z = np.array([[-1.0], [-0.25], [0.25], [0.4], [0.75], [2.0]])
    t = np.array([0.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    # predicted (z > 0):    0 0 1 1 1 1  -> hits 1 0 0 1 1 1 = 4/6
    result = model.evaluate(z, t, batch_size=4)
    assert result["accuracy"] == pytest.approx(4 / 6, rel=1e-12)
    np.testing.assert_allclose(host(model.predict(z)), _sigmoid(z), rtol=RTOL)


# ---------------------------------------------------------------- optimizers

# case -> (optimizer class, settings, the same without the option under test)
OPTIONS: dict[str, tuple[str, dict[str, Any], dict[str, Any] | None]] = {
    "sgd": ("SGD", {"lr": 0.1}, None),
    "sgd_momentum": ("SGD", {"lr": 0.1, "momentum": 0.9}, {"lr": 0.1}),
    "sgd_nesterov": ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True},
                     {"lr": 0.1, "momentum": 0.9}),
    "sgd_weight_decay": ("SGD", {"lr": 0.1, "weight_decay": 0.3}, {"lr": 0.1}),
    "sgd_all": ("SGD", {"lr": 0.1, "momentum": 0.8, "nesterov": True, "weight_decay": 0.3},
                {"lr": 0.1, "momentum": 0.8, "nesterov": True}),
    "adagrad": ("AdaGrad", {"lr": 0.1}, None),
    "adagrad_weight_decay": ("AdaGrad", {"lr": 0.1, "weight_decay": 0.3}, {"lr": 0.1}),
    "rmsprop": ("RMSProp", {"lr": 0.05, "rho": 0.8}, None),
    "rmsprop_weight_decay": ("RMSProp", {"lr": 0.05, "rho": 0.8, "weight_decay": 0.3},
                             {"lr": 0.05, "rho": 0.8}),
    "adam": ("Adam", {"lr": 0.05, "beta1": 0.8, "beta2": 0.95}, None),
    "adam_weight_decay": ("Adam", {"lr": 0.05, "weight_decay": 5.0}, {"lr": 0.05}),
    "adamw": ("AdamW", {"lr": 0.05, "weight_decay": 0.3}, {"lr": 0.05, "weight_decay": 0.0}),
}
STEPS = 4
X_OPT = RNG.standard_normal((10, 3))
T_OPT = RNG.standard_normal((10, 2))
W0 = RNG.standard_normal((3, 2))
B0 = np.array([0.5, -0.3])  # not zero, so weight decay acts on the bias from step 1
GRADS = [(RNG.standard_normal((3, 2)), RNG.standard_normal(2)) for _ in range(STEPS)]
PARAM_KEYS = {"w": "0.w", "b": "0.b"}


def _ref_optimizer_run(kind: str, settings: dict[str, Any]
                       ) -> tuple[dict[str, list[float]], np.ndarray, np.ndarray, dict]:
    ref = RefOptimizer(kind, **settings)
    history, w, b = ref_train_linear("mean_squared_error", W0, B0, X_OPT, T_OPT, 10, STEPS, ref)
    return history, w, b, ref.state_dict(PARAM_KEYS)


def test_every_option_changes_the_reference():
    """The cases below are only worth something if each option, on this problem, moves the
    weights: an implementation that ignored it would then fail."""
    for case, (kind, settings, without) in OPTIONS.items():
        if without is None:
            continue
        kind_without = "Adam" if kind == "AdamW" else kind
        _, w1, _, _ = _ref_optimizer_run(kind, settings)
        _, w0, _, _ = _ref_optimizer_run(kind_without, without)
        # the tests compare to ~1e-10; Adam's steps hardly depend on the gradient's size,
        # so its L2 term moves the weights least (~5e-4 here)
        assert np.max(np.abs(w1 - w0)) > 1e-4, case
    # decoupled decay is not the L2 penalty
    _, w_adamw, _, _ = _ref_optimizer_run("AdamW", {"lr": 0.05, "weight_decay": 0.3})
    _, w_l2, _, _ = _ref_optimizer_run("Adam", {"lr": 0.05, "weight_decay": 0.3})
    assert np.max(np.abs(w_adamw - w_l2)) > 1e-4


@pytest.mark.parametrize("case", list(OPTIONS))
def test_optimizer_in_fit_follows_its_equation(bk, case):
    """One full batch per epoch, so each epoch is one optimizer step: four steps of the
    optimizer inside ``fit`` (compiled where the backend compiles) against the equation:
    the loss before each step, the weights and the optimizer's state after the last."""
    kind, settings, _ = OPTIONS[case]
    model = anyfc.Sequential([bk.dense(3, 2, "identity")], loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": W0, "layers.0.b": B0})
    opt = getattr(optimizers, kind)(**settings)
    history = model.fit(X_OPT, T_OPT, epochs=STEPS, batch_size=10, shuffle=False, verbose=0,
                        optimizer=opt)
    expected, w, b, state = _ref_optimizer_run(kind, settings)
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=RTOL)
    end = host_state(model)
    np.testing.assert_allclose(end["layers.0.w"], w, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(end["layers.0.b"], b, rtol=RTOL, atol=ATOL)
    assert_opt_state(host_opt_state(opt), state)


@pytest.mark.parametrize("case", list(OPTIONS))
def test_optimizer_step_follows_its_equation(bk, case):
    """``optimizer.step(layers)`` on gradients set by hand, four steps."""
    kind, settings, _ = OPTIONS[case]
    layer = bk.dense(3, 2, "identity")
    layer.w, layer.b = bk.asarray(W0), bk.asarray(B0)
    opt = getattr(optimizers, kind)(**settings)
    ref = RefOptimizer(kind, **settings)
    params = {"w": W0.copy(), "b": B0.copy()}
    for gw, gb in GRADS:
        layer.grad_w, layer.grad_b = bk.asarray(gw), bk.asarray(gb)
        opt.step([layer])
        ref.step(params, {"w": gw, "b": gb})
    np.testing.assert_allclose(host(layer.w), params["w"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(host(layer.b), params["b"], rtol=RTOL, atol=ATOL)
    assert_opt_state(host_opt_state(opt), ref.state_dict(PARAM_KEYS))


# ---------------------------------------------------------------- every row, once an epoch

# one-hot rows: row i of the data moves only row i of w, by -lr·(2/|B|)·(b - t_i) from
# w = 0, b = 0; so each row's move tells which batch size it was trained in, and whether
# it was trained at all. b moves by O(lr) per batch, hence the tolerance.
N_ROWS = 11
ONE_HOT = np.eye(N_ROWS)
TARGETS = 1.0 + 0.1 * np.arange(N_ROWS)
LR = 1e-6


def _one_hot_model(backend: str, device: Any) -> anyfc.Sequential:
    model = anyfc.Sequential([anyfc.Dense(N_ROWS, 1, "identity", backend=backend,
                                          device=device, dtype="float64")],
                             loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": np.zeros((N_ROWS, 1)), "layers.0.b": np.zeros(1)})
    return model


def _batch_size_of_each_row(model: anyfc.Sequential) -> np.ndarray:
    """The size of the batch each row was trained in, from how far it moved its weight."""
    moved = host(model.state_dict()["layers.0.w"])[:, 0]
    share = moved / (2 * LR * TARGETS)  # 1/|B| for a row trained once, 0 if never
    assert np.all(share > 0), f"rows never trained: {np.flatnonzero(share <= 0).tolist()}"
    sizes = 1.0 / share
    np.testing.assert_allclose(sizes, np.round(sizes), rtol=1e-4,
                               err_msg="a row trained more than once, or in no whole batch")
    return np.round(sizes).astype(int)


def _expected_sizes(chunks: list[int], batch_size: int) -> Counter:
    """Rows per batch size: batches of ``batch_size`` within each chunk, the last partial."""
    sizes: Counter = Counter()
    for c in chunks:
        sizes[batch_size] += batch_size * (c // batch_size)
        if c % batch_size:
            sizes[c % batch_size] += c % batch_size
    return sizes


def _check_epoch_history(model: anyfc.Sequential, fit: Any) -> None:
    """Two more epochs: each epoch's loss is the mean over all rows (lr is tiny, so the
    model barely moves)."""
    before = ref_loss("mean_squared_error", ref_output(
        [(host(model.state_dict()["layers.0.w"]), host(model.state_dict()["layers.0.b"]),
          "identity")], ONE_HOT), TARGETS)[0]
    history = fit(epochs=2)
    np.testing.assert_allclose(history["loss"], [before, before], rtol=1e-4)


@pytest.mark.parametrize("shuffle", [False, True], ids=["in_order", "shuffled"])
def test_fit_in_memory_trains_every_row_once_per_epoch(bk, shuffle):
    model = _one_hot_model(bk.name, bk.device_name)

    def fit(epochs: int) -> Any:
        return model.fit(ONE_HOT, TARGETS, epochs=epochs, batch_size=4, shuffle=shuffle,
                         seed=5, verbose=0, optimizer=optimizers.SGD(LR))

    fit(1)
    sizes = _batch_size_of_each_row(model)
    assert Counter(sizes.tolist()) == _expected_sizes([N_ROWS], 4)  # 4, 4, then 3
    if not shuffle:
        assert sizes.tolist() == [4] * 8 + [3] * 3
    _check_epoch_history(model, fit)


@pytest.mark.parametrize("shuffle", [False, True], ids=["in_order", "shuffled"])
@pytest.mark.parametrize("strategy", ["auto", "data_parallel"])
def test_fit_on_dask_data_trains_every_row_once_per_epoch(dask_bk, strategy, shuffle):
    """Streaming (batches within each chunk of 6 and 5 rows) and data-parallel training
    (row ranges of the whole array, across chunks), of a NumPy model."""
    da = pytest.importorskip("dask.array")
    model = _one_hot_model("numpy", None)
    Xd = da.from_array(ONE_HOT, chunks=(6, N_ROWS))
    yd = da.from_array(TARGETS, chunks=6)

    def fit(epochs: int) -> Any:
        return model.fit(Xd, yd, epochs=epochs, batch_size=4, shuffle=shuffle, seed=5,
                         verbose=0, strategy=strategy, optimizer=optimizers.SGD(LR))

    fit(1)
    sizes = _batch_size_of_each_row(model)
    chunks = [6, 5] if strategy == "auto" else [N_ROWS]
    assert Counter(sizes.tolist()) == _expected_sizes(chunks, 4)
    if not shuffle:
        assert sizes.tolist() == ([4] * 4 + [2] * 2 + [4] * 4 + [1] if strategy == "auto"
                                  else [4] * 8 + [3] * 3)
    _check_epoch_history(model, fit)


def test_one_epoch_of_one_batch_is_one_full_batch_gradient_step(bk):
    """batch_size ≥ rows: one step with the mean gradient over every row."""
    model = anyfc.Sequential([bk.dense(3, 2, "identity")], loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": W0, "layers.0.b": B0})
    model.fit(X_OPT, T_OPT, epochs=1, batch_size=64, verbose=0, seed=1,
              optimizer=optimizers.SGD(0.1))
    _, grad_z, _, _ = ref_loss("mean_squared_error", X_OPT @ W0 + B0, T_OPT)
    end = host_state(model)
    np.testing.assert_allclose(end["layers.0.w"], W0 - 0.1 * X_OPT.T @ grad_z, rtol=RTOL)
    np.testing.assert_allclose(end["layers.0.b"], B0 - 0.1 * grad_z.sum(axis=0), rtol=RTOL)


# ---------------------------------------------------------------- divergence

X_DIV = RNG.uniform(0.5, 1.0, (8, 3))
T_DIV = RNG.standard_normal(8)


def _div_model(bk):
    model = anyfc.Sequential([bk.dense(3, 1, "identity")], loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": np.full((3, 1), 0.1), "layers.0.b": np.zeros(1)})
    return model


def _diverging_fit(model, opt, epochs):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return model.fit(X_DIV, T_DIV, epochs=epochs, batch_size=8, shuffle=False,
                         optimizer=opt, verbose=0)


def _exploding_sgd() -> optimizers.SGD:
    """Momentum SGD whose weights grow ~1e40-fold a step: the loss overflows a few epochs
    in (not in the first), while the momentum holds state."""
    return optimizers.SGD(1e40, momentum=0.9)


def test_divergence_in_a_later_epoch_rolls_back_parameters_and_optimizer_state(bk):
    """An epoch that diverges is undone whole: the parameters AND the optimizer's state
    (its velocity and step count) are those after the previous epoch, as a run that
    stopped there has them."""
    first_bad = None
    for epochs in range(1, 8):  # the first epoch that diverges, from a clean start
        try:
            _diverging_fit(_div_model(bk), _exploding_sgd(), epochs)
        except FloatingPointError:
            first_bad = epochs
            break
    assert first_bad is not None and first_bad >= 3, f"diverges at epoch {first_bad}"

    stopped, stopped_opt = _div_model(bk), _exploding_sgd()
    _diverging_fit(stopped, stopped_opt, first_bad - 1)
    expected_params, expected_opt = host_state(stopped), host_opt_state(stopped_opt)
    assert expected_opt["t"] == first_bad - 1
    assert sorted(k for k in expected_opt if k.startswith("state.")) == [
        "state.0.b.v", "state.0.w.v"]

    # diverging in a later epoch of one call
    model, opt = _div_model(bk), _exploding_sgd()
    with pytest.raises(FloatingPointError, match=f"diverged in epoch {first_bad}"):
        _diverging_fit(model, opt, first_bad + 2)
    assert model.optimizer is opt
    assert_same_state(host_state(model), expected_params)
    assert_same_state(host_opt_state(opt), expected_opt)

    # diverging in the first epoch of a later call, the optimizer carried over
    with pytest.raises(FloatingPointError, match="diverged in epoch 1"):
        _diverging_fit(model, None, 3)
    assert model.optimizer is opt
    assert_same_state(host_state(model), expected_params)
    assert_same_state(host_opt_state(opt), expected_opt)


@pytest.mark.parametrize("kind", ["AdaGrad", "RMSProp", "Adam", "AdamW"])
def test_divergence_rolls_back_the_adaptive_optimizers_state(bk, kind):
    """The adaptive optimizers' steps are bounded by lr, so they diverge at once only: a
    state trained with a sane lr, loaded into the same optimizer with lr=1e200, must be
    exactly as loaded after the epoch that diverged."""
    model = _div_model(bk)
    trained = getattr(optimizers, kind)(lr=0.01)
    _diverging_fit(model, trained, 2)
    params, state = host_state(model), host_opt_state(trained)
    assert state["t"] == 2 and any(k.startswith("state.") for k in state)
    exploding = getattr(optimizers, kind)(lr=1e200)
    exploding.load_state_dict(trained.state_dict(), bk.name, bk.device_name, "float64")
    with pytest.raises(FloatingPointError, match="diverged in epoch 1"):
        _diverging_fit(model, exploding, 2)
    assert model.optimizer is trained  # a first epoch that failed keeps the old optimizer
    assert_same_state(host_state(model), params)
    assert_same_state(host_opt_state(exploding), state)
    assert_same_state(host_opt_state(trained), state)


def test_fit_adopts_optimizer_state_loaded_on_another_backend(bk):
    """``optimizer.load_state_dict(sd)`` keeps the arrays on the default backend; ``fit``
    moves ("adopts") them to the model, checks the moved state, and training continues
    exactly as with the optimizer the state came from."""
    model = _div_model(bk)
    trained = optimizers.Adam(0.01)
    _diverging_fit(model, trained, 2)
    start = {k: v for k, v in host_state(model).items()}
    resumed = optimizers.Adam(0.01)
    resumed.load_state_dict(trained.state_dict())  # onto NumPy
    _diverging_fit(model, resumed, 1)
    via_numpy = host_state(model)
    model.load_state_dict(start)
    _diverging_fit(model, trained, 1)
    assert_same_state(host_state(model), via_numpy, exact=False)
    assert_opt_state(host_opt_state(resumed), host_opt_state(trained))


# ---------------------------------------------------------------- checkpoints


def _every_layer(bk) -> list[tuple[anyfc.Layer, dict[str, Any]]]:
    """Every layer type, each with settings other than its defaults, and the settings
    its ``config()`` must report (written out here, not read back from the layer)."""
    where = {"backend": bk.name, "device": bk.device_name, "dtype": "float64"}
    leaky = {"name": "leaky_relu", "alpha": 0.2}
    elu = {"name": "elu", "alpha": 0.5}
    return [
        (anyfc.Dense(5, 8, leaky, init="xavier_uniform", seed=0, **where),
         {"n_in": 5, "n_out": 8, "activation": leaky, "init": "xavier_uniform"}),
        (anyfc.BatchNorm(8, momentum=0.3, eps=1e-3, **where),
         {"n": 8, "momentum": 0.3, "eps": 1e-3}),
        (anyfc.Dropout(0.25, seed=7, **where), {"rate": 0.25, "seed": 7}),
        (anyfc.LeakyReLU(alpha=0.3, **where), {"alpha": 0.3}),
        (anyfc.Dense(8, 8, elu, init="he_uniform", seed=1, **where),
         {"n_in": 8, "n_out": 8, "activation": elu, "init": "he_uniform"}),
        (anyfc.LayerNorm(8, eps=1e-3, **where), {"n": 8, "eps": 1e-3}),
        (anyfc.ELU(alpha=0.7, **where), {"alpha": 0.7}),
        (anyfc.Activation({"name": "leaky_relu", "alpha": 0.05}, **where),
         {"activation": {"name": "leaky_relu", "alpha": 0.05}}),
        (anyfc.Dense(8, 6, "gelu", init="glorot_uniform", seed=2, **where),
         {"n_in": 8, "n_out": 6, "activation": {"name": "gelu"}, "init": "glorot_uniform"}),
        (anyfc.GELU(**where), {}),
        (anyfc.SiLU(**where), {}),
        (anyfc.Softplus(**where), {}),
        (anyfc.Dense(6, 6, "softsign", init="he_normal", seed=3, **where),
         {"n_in": 6, "n_out": 6, "activation": {"name": "softsign"}, "init": "he_normal"}),
        (anyfc.Softsign(**where), {}),
        (anyfc.Sigmoid(**where), {}),
        (anyfc.Tanh(**where), {}),
        (anyfc.ReLU(**where), {}),
        (anyfc.Activation("silu", **where), {"activation": {"name": "silu"}}),
        (anyfc.Dense(6, 3, "identity", init="xavier_normal", seed=4, **where),
         {"n_in": 6, "n_out": 3, "activation": {"name": "identity"}, "init": "xavier_normal"}),
    ]


def _assert_settings(model: anyfc.Sequential, expected: list[tuple[type, dict[str, Any]]]
                     ) -> None:
    assert [type(layer) for layer in model.layers] == [cls for cls, _ in expected]
    for i, (layer, (_, settings)) in enumerate(zip(model.layers, expected)):
        config = layer.config()
        for key, value in settings.items():
            assert config.get(key) == value, f"layer {i} ({type(layer).__name__}) {key}"


def test_every_layer_setting_survives_save_and_load(bk, tmp_path):
    built = _every_layer(bk)
    expected = [(type(layer), settings) for layer, settings in built]
    model = anyfc.Sequential([layer for layer, _ in built])
    _assert_settings(model, expected)
    opt = optimizers.AdamW(lr=0.02, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.05)
    X6, y6 = RNG.standard_normal((30, 5)), RNG.integers(0, 3, 30)
    model.fit(X6, y6, epochs=1, batch_size=10, shuffle=False, optimizer=opt, verbose=0)
    model.save(tmp_path / "every.npz")
    loaded = anyfc.load(tmp_path / "every.npz", backend=bk.name, device=bk.device_name)
    _assert_settings(loaded, expected)
    assert [layer.config() for layer in loaded.layers] == [
        layer.config() for layer in model.layers]
    assert loaded.architecture() == model.architecture()
    assert type(loaded.optimizer) is optimizers.AdamW
    settings = {"lr": 0.02, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6, "weight_decay": 0.05}
    assert loaded.optimizer.config().items() >= settings.items()
    assert loaded.optimizer.config() == opt.config()
    assert_same_state(host_state(loaded), host_state(model))
    assert_same_state(host_opt_state(loaded.optimizer), host_opt_state(opt))
    np.testing.assert_allclose(host(loaded.predict(X6)), host(model.predict(X6)),
                               rtol=RTOL, atol=ATOL)


def test_a_loaded_model_trains_as_the_saved_one(bk, tmp_path):
    """Settings are used, not only kept: the loaded model (dropout seed, BatchNorm
    momentum, ...) trains on exactly as the one saved."""
    model = anyfc.Sequential([layer for layer, _ in _every_layer(bk)])
    model.save(tmp_path / "fresh.npz")
    loaded = anyfc.load(tmp_path / "fresh.npz", backend=bk.name, device=bk.device_name)
    X6, y6 = RNG.standard_normal((30, 5)), RNG.integers(0, 3, 30)
    for m in (model, loaded):
        m.fit(X6, y6, epochs=2, batch_size=10, shuffle=False, verbose=0,
              optimizer=optimizers.SGD(0.05, momentum=0.5))
    assert_same_state(host_state(loaded), host_state(model), exact=False)


# ---------------------------------------------------------------- moving


def _placement(a: Any) -> tuple[type, Any, Any]:
    return type(a), array_api_compat.device(a), a.dtype


def _trained_with_adam(backend: str, device: Any) -> anyfc.Sequential:
    model = anyfc.Sequential([
        anyfc.Dense(4, 6, "tanh", backend=backend, device=device, dtype="float64", seed=0),
        anyfc.Dense(6, 3, "identity", backend=backend, device=device, dtype="float64",
                    seed=1)])
    model.fit(X, CASES["softmax"][2], epochs=2, batch_size=8, shuffle=False, verbose=0,
              optimizer=optimizers.Adam(0.01))
    return model


def _assert_moved(model: anyfc.Sequential, before: dict[str, Any], reference: Any,
                  rtol: float) -> None:
    """Every parameter and every optimizer state array lives where ``reference`` does,
    and holds the values it held before the move."""
    want = _placement(reference)
    for key, value in model.state_dict().items():
        assert _placement(value) == want, key
    state = model.optimizer.state_dict()
    arrays = [k for k in state if k.startswith("state.")]
    assert state.keys() == before.keys() and arrays and state["t"] == before["t"]
    for key in arrays:
        value = state[key]
        assert _placement(value) == want, f"optimizer {key} left at {_placement(value)}"
        np.testing.assert_allclose(host(value), before[key], rtol=rtol, err_msg=key)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_to_moves_the_optimizer_state(bk, dtype):
    """From NumPy to the backend under test, and back; float32 on the way there."""
    model = _trained_with_adam("numpy", None)
    before = host_opt_state(model.optimizer)
    model.to(bk.name, bk.device_name, dtype)
    _assert_moved(model, before, bk.asarray([0.0], dtype), 1e-6 if dtype == "float32" else 0)
    model.fit(X, CASES["softmax"][2], epochs=1, batch_size=8, verbose=0)  # trains on there
    before = host_opt_state(model.optimizer)
    model.to("numpy", None, "float64")
    _assert_moved(model, before, np.zeros(1), 0)


CPU_BACKENDS = ["numpy", "array_api_strict", "torch", "jax", "dask"]


@pytest.mark.parametrize("target", CPU_BACKENDS)
def test_cross_library_to_moves_the_optimizer_state(bk, target):
    """From the backend under test to each other installed library (the ``cross`` nox
    session installs them all together)."""
    if target == bk.id:
        pytest.skip("the same library and device: test_to_moves_the_optimizer_state")
    if target not in anyfc.available_backends():
        pytest.skip(f"{target} is not installed here (nox -s cross runs this)")
    model = _trained_with_adam(bk.name, bk.device_name)
    before = host_opt_state(model.optimizer)
    expected = host(model.predict(X))
    model.to(target)
    reference = anyfc.to_backend(np.zeros(1), target, dtype="float64")
    _assert_moved(model, before, reference, 0)
    np.testing.assert_allclose(host(model.predict(X)), expected, rtol=RTOL, atol=ATOL)



# ---------------------------------------------------------------- activations: the edges
# Mutation testing of anyfc/activations.py (tests/README.md) left these unchecked: the
# derivative exactly at a kink, the range checks of the settings, the error messages and
# repr. Values away from the kinks are checked against finite differences elsewhere.


@pytest.mark.parametrize("spec, slopes", [
    ("relu", [0.0, 0.0, 1.0, 0.0]),
    ({"name": "leaky_relu", "alpha": 0.2}, [0.2, 0.2, 1.0, 0.2]),
    ({"name": "elu", "alpha": 0.5}, [0.5, 0.5, 1.0, 0.5 * np.exp(-1.0)]),
], ids=["relu", "leaky_relu", "elu"])
def test_the_derivative_at_a_kink_is_the_documented_one(bk, spec, slopes):
    """At u = 0 (and -0) exactly, f'(u) is the left derivative: the docstrings' "1 if
    u > 0 else ..." (PyTorch's convention too), at u = 1 and u = -1 the usual one."""
    layer = anyfc.Activation(spec, backend=bk.name, device=bk.device_name, dtype="float64")
    layer.forward(bk.asarray([[0.0, -0.0, 1.0, -1.0]]))
    grad = layer.backward(bk.asarray(np.ones((1, 4))))
    np.testing.assert_allclose(host(grad), [slopes], rtol=1e-15)


def test_the_sigmoid_is_one_half_at_zero(bk):
    layer = anyfc.Sigmoid(backend=bk.name, device=bk.device_name, dtype="float64")
    np.testing.assert_array_equal(host(layer.forward(bk.asarray([[0.0, -0.0]]))), [[0.5, 0.5]])


@pytest.mark.parametrize("alpha", [0, 0.0, 0.3, 1, 1.0, np.float32(0.5)])
def test_leaky_relu_takes_slopes_from_0_to_1(alpha):
    assert anyfc.activations.get({"name": "leaky_relu", "alpha": alpha}).alpha == float(alpha)
    assert anyfc.LeakyReLU(alpha=alpha).config() == {"alpha": float(alpha)}


@pytest.mark.parametrize("alpha", [True, False, -0.1, 1.5, 2.0, float("nan"), "0.1", None])
def test_leaky_relu_refuses_other_slopes(alpha):
    with pytest.raises(ValueError, match=r"leaky_relu needs a number 0 <= alpha <= 1, got"):
        anyfc.activations.LeakyReLU(alpha)


@pytest.mark.parametrize("alpha", [1e-9, 0.5, 1, 3.5])
def test_elu_takes_positive_alphas(alpha):
    assert anyfc.ELU(alpha=alpha).config() == {"alpha": float(alpha)}


@pytest.mark.parametrize("alpha", [True, 0, 0.0, -1.0, float("nan"), "1", None])
def test_elu_refuses_other_alphas(alpha):
    with pytest.raises(ValueError, match=r"elu needs a number alpha > 0, got"):
        anyfc.activations.ELU(alpha)


def test_activation_names_and_settings_are_checked_with_helpful_messages():
    get = anyfc.activations.get
    listing = r"valid activations are identity, linear, relu, leaky_relu, sigmoid, tanh"
    with pytest.raises(ValueError, match=rf"unknown activation 'nope'; {listing}"):
        get("nope")
    with pytest.raises(ValueError, match=rf"unknown activation {{'name': 'nope'}}; {listing}"):
        get({"name": "nope"})
    with pytest.raises(ValueError, match=rf"unknown activation {{'alpha': 0.1}}; {listing}"):
        get({"alpha": 0.1})  # a config without a name
    with pytest.raises(ValueError, match=r"bad settings for activation \{'name': 'relu', "
                                         r"'alpha': 0.1\}: "):
        get({"name": "relu", "alpha": 0.1})
    with pytest.raises(ValueError, match=r"takes the logits of an 'identity' last layer "
                                         r"\(Dense\(n, classes, 'identity'\)\); predict\(\) "
                                         r"applies the softmax for you$"):
        get("softmax")


def test_activations_repr_their_settings():
    get = anyfc.activations.get
    assert repr(get("relu")) == "ReLU()"
    assert repr(get(None)) == "Identity()"
    assert repr(get({"name": "leaky_relu", "alpha": 0.2})) == "LeakyReLU(alpha=0.2)"
    assert repr(get({"name": "ELU", "alpha": 2})) == "ELU(alpha=2.0)"
    assert get({"name": "elu", "alpha": 2}).config() == {"name": "elu", "alpha": 2.0}


def test_a_custom_activation_reprs_all_its_settings():
    class Scaled(anyfc.activations.Activation):  # the base class is public: users extend it
        name = "scaled"

        def __init__(self, a: float = 1.0, b: float = 2.0) -> None:
            self.a, self.b = a, b

    assert repr(Scaled(0.5, 3.0)) == "Scaled(a=0.5, b=3.0)"
    assert Scaled().config() == {"name": "scaled", "a": 1.0, "b": 2.0}
