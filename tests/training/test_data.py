"""anyfc.training.data (InMemory, Streamed, DataParallel): every row trained exactly once
an epoch, in the batch sizes expected, in memory and on Dask data (streamed, or
data-parallel); each implementation yields every row once; weighted training is the same
on every data path."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest

import anyfc
from anyfc import optimizers
from anyfc.optimizers import SGD
from tests.helpers.training import X, Y, _assert_weights, _weights
from tests.references import B0, RTOL, T_OPT, W0, X_OPT, host, host_state, ref_loss, ref_output


def _rows_seen(data, rng):
    return np.concatenate([anyfc.to_numpy(batch[0])[:, 0] for batch in data.batches(rng)])


def test_each_data_implementation_yields_every_row_once(dask_bk):
    import dask.array as da

    from anyfc.training import data

    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", dtype="float64", seed=0)])
    Xr = np.arange(41.0).reshape(-1, 1) * np.ones((1, 3))
    t = np.arange(41) % 2
    rng = np.random.default_rng(0)
    memory = data.for_training(model, data.prepare(model, Xr, t), 8, True, "auto")
    lazy = data.prepare(model, da.from_array(Xr, chunks=10), da.from_array(t, chunks=10))
    streamed = data.for_training(model, lazy, 8, True, "auto")
    parallel = data.for_training(model, lazy, 8, True, "data_parallel")
    assert [type(d).__name__ for d in (memory, streamed, parallel)] == [
        "InMemory", "Streamed", "DataParallel"]
    for d in (memory, streamed, parallel):
        seen = _rows_seen(d, rng)
        assert sorted(seen.tolist()) == list(range(41)), type(d).__name__
        assert d.rows == 41
        assert d.n_batches == len(list(d.batches(rng)))


def test_weighted_training_is_the_same_on_every_data_path(dask_bk):
    import dask.array as da

    w = np.linspace(0.1, 2.0, 40)

    def trained(Xd, yd, wd, **kw):
        model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", dtype="float64", seed=0)])
        model.fit(Xd, yd, epochs=2, batch_size=10, optimizer=SGD(0.3), shuffle=False,
                  sample_weight=wd, verbose=0, **kw)
        return _weights(model)

    memory = trained(X, Y, w)
    chunked = (da.from_array(X, chunks=10), da.from_array(Y, chunks=10),
               da.from_array(w, chunks=10))
    _assert_weights(memory, trained(*chunked), rtol=1e-12)
    _assert_weights(memory, trained(*chunked, strategy="data_parallel"), rtol=1e-12)


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


@pytest.mark.reference
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


@pytest.mark.reference
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


@pytest.mark.reference
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


@pytest.mark.mutation
def test_per_row_data_follows_its_rows_through_shuffling(bk):
    """Shuffled training equals unshuffled training on rows pre-permuted in the order the
    seed draws (``rng.permutation(n)`` per epoch from ``fit(seed=)``'s generator), with
    every per-row value — labels, sample weights, class weights — permuted alike: a path
    that shuffled X but not a row's weight would train on other numbers."""
    rng = np.random.default_rng(7)
    n = 30
    Xr, yr = rng.standard_normal((n, 4)), rng.integers(0, 3, n)
    w = rng.uniform(0.1, 5.0, n)
    cw = {0: 0.5, 1: 2.0, 2: 3.5}

    def model():
        return anyfc.Sequential([
            anyfc.Dense(4, 5, "tanh", seed=0, backend=bk.name, device=bk.device_name,
                        dtype="float64"),
            anyfc.Dense(5, 3, "identity", seed=1, backend=bk.name, device=bk.device_name,
                        dtype="float64")])

    shuffled = model()
    shuffled.fit(Xr, yr, sample_weight=w, class_weight=cw, epochs=2, batch_size=7, seed=11,
                 optimizer=SGD(0.1, momentum=0.5), verbose=0)
    reference, order = model(), np.random.default_rng(11)
    reference.optimizer = SGD(0.1, momentum=0.5)
    for _ in range(2):
        p = order.permutation(n)
        reference.fit(Xr[p], yr[p], sample_weight=w[p], class_weight=cw, epochs=1,
                      batch_size=7, shuffle=False, verbose=0)
    _assert_weights(_weights(reference), _weights(shuffled), rtol=1e-12, atol=1e-14)
    unshuffled = model()  # and the order matters: the premise of the comparison
    unshuffled.fit(Xr, yr, sample_weight=w, class_weight=cw, epochs=2, batch_size=7,
                   shuffle=False, optimizer=SGD(0.1, momentum=0.5), verbose=0)
    assert not np.allclose(anyfc.to_numpy(unshuffled.layers[0].w),
                           anyfc.to_numpy(shuffled.layers[0].w))
