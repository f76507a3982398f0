"""Independent NumPy references, written from the definitions, and the data the tests check
against them. Imported by the test files that need them; nothing here is collected.

- reading back: ``host``, ``host_state``, ``host_opt_state`` (arrays, a model's state, an
  optimizer's state, as NumPy float64) and ``assert_opt_state`` / ``assert_same_state``;
  ``RTOL``/``ATOL`` are float64 agreement (~1e-10).
- the references: ``ref_output``, ``ref_loss``, ``ref_probabilities``, ``ref_metrics``
  (loss, accuracy, MAE, and R² as scikit-learn's ``r2_score``), ``RefOptimizer`` (each
  optimizer's textbook update), ``ref_train_linear`` (``fit(shuffle=False)`` of one Dense
  layer), ``_ref_weighted`` and the weighted losses' ``_ref_softmax_ce``, ``_ref_bce``,
  ``_ref_mse`` (``E = (1/n) Σ_k w_k e_k``).
- the data: one seeded generator (``RNG``) draws every array here, in a fixed order, when
  this module is imported, so the numbers do not depend on which test file imports it.

The tests that use them are marked ``reference`` (issue #15) or ``mutation`` (written for
surviving mutants); tests/README.md maps them to the bugs they catch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import anyfc
from anyfc import optimizers

# ---------------------------------------------------------------- reading back

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


# ---------------------------------------------------------------- optimizers

STEPS = 4
X_OPT = RNG.standard_normal((10, 3))
T_OPT = RNG.standard_normal((10, 2))
W0 = RNG.standard_normal((3, 2))
B0 = np.array([0.5, -0.3])  # not zero, so weight decay acts on the bias from step 1
GRADS = [(RNG.standard_normal((3, 2)), RNG.standard_normal(2)) for _ in range(STEPS)]


# ---------------------------------------------------------------- divergence

X_DIV = RNG.uniform(0.5, 1.0, (8, 3))
T_DIV = RNG.standard_normal(8)


# ---------------------------------------------------------------- another device


def _strict(device: str | None = "device1") -> tuple[Any, Any]:
    """array_api_strict (in the test extra, so in every session) and one of its devices:
    mixing devices there raises, as on a GPU."""
    xp = pytest.importorskip("array_api_strict")
    return xp, (None if device is None else xp.Device(device))


# ---------------------------------------------------------------- losses

Z4 = RNG.standard_normal((4, 3)) * 2


def _ref_weighted(loss: str, z: np.ndarray, t: np.ndarray, w: np.ndarray
                  ) -> tuple[float, np.ndarray]:
    """``E = (1/n) Σ_k w_k e_k`` and its gradient ``w_k ∂e_k/∂z_k / n`` (ref_loss's
    unweighted per-row terms, each row alone: its mean times its share of n)."""
    h = z.shape[0]
    e, grad = 0.0, np.zeros_like(z)
    for k in range(h):
        ek, gk, _, _ = ref_loss(loss, z[k:k + 1], t[k:k + 1])
        per_row = 1 if loss == "softmax_cross_entropy" else z.shape[1]
        n = h * per_row
        e += w[k] * ek * per_row / n
        grad[k] = w[k] * gk[0] * per_row / n
    return e, grad


# loss -> (targets as given: labels, 0/1 floats or reals)
LOSS_TARGETS = {
    "softmax_cross_entropy": np.array([0, 2, 1, 2]),
    "binary_cross_entropy": RNG.integers(0, 2, (4, 3)).astype(np.float64),
    "mean_squared_error": RNG.standard_normal((4, 3)),
}


# ---------------------------------------------------------------- the weighted losses
# E = (1/n) Σ_k w_k e_k; the cases are drawn from the generator a test passes in.


def _log_softmax(z):
    m = z - z.max(axis=1, keepdims=True)
    return m - np.log(np.exp(m).sum(axis=1, keepdims=True))


def _ref_softmax_ce(z, labels, w):
    """E = -(1/h) Σ_k w_k log p_{k, label_k}"""
    e = -_log_softmax(z)[np.arange(len(labels)), labels]
    return np.sum(w * e) / z.shape[0]


def _ref_bce(z, t, w):
    """E = (1/(h·c)) Σ_k w_k Σ_j -(t log p + (1-t) log(1-p))"""
    t = t.reshape(z.shape)
    p = 1 / (1 + np.exp(-z))
    e = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    return np.sum(w[:, None] * e) / z.size


def _ref_mse(z, t, w):
    """E = (1/(h·c)) Σ_k w_k Σ_j (z - t)²"""
    return np.sum(w[:, None] * (z - t.reshape(z.shape)) ** 2) / z.size


def loss_case_data(rng):
    """Logits of 6 rows × 4 outputs, and targets for each loss: labels, their one-hot rows,
    0/1 bits and real targets (drawn in this order from ``rng``)."""
    z = rng.standard_normal((6, 4)) * 2
    labels = rng.integers(0, 4, size=6)
    onehot = np.eye(4)[labels]
    bits = rng.integers(0, 2, size=(6, 4)).astype(np.float64)
    target = rng.standard_normal((6, 4))
    return z, labels, onehot, bits, target


def _cases(rng):
    z, labels, onehot, bits, target = loss_case_data(rng)
    return {
        "softmax_cross_entropy": (z, labels, lambda w: _ref_softmax_ce(z, labels, w)),
        "softmax_cross_entropy/onehot": (z, onehot, lambda w: _ref_softmax_ce(z, labels, w)),
        "binary_cross_entropy": (z, bits, lambda w: _ref_bce(z, bits, w)),
        "binary_cross_entropy/1d": (z[:, :1], bits[:, 0],
                                    lambda w: _ref_bce(z[:, :1], bits[:, 0], w)),
        "mean_squared_error": (z, target, lambda w: _ref_mse(z, target, w)),
    }


def _target(bk, t):
    return bk.asarray(t, None if t.dtype.kind == "i" else "float64")


def _weights(rng, h=6):
    w = rng.uniform(0.1, 3.0, size=h)
    w[2] = 0.0  # one row that does not count
    return w


def _host(a):
    return anyfc.to_numpy(a)
