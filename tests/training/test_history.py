"""anyfc.training.history: History reads like Keras's and plots; the progress output (off
for 0 and False, one line an epoch, a bar redrawn in place on a terminal)."""

from __future__ import annotations

from typing import Any

import pytest

import anyfc
from anyfc import optimizers
from tests.helpers.training import X, Y
from tests.references import B0, T_OPT, W0, X_OPT


def test_history_reads_like_keras_and_plots():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", seed=0)])
    history = model.fit(X, Y, epochs=3, validation_split=0.25, verbose=0)
    assert history.history == dict(history) and history.history is not history
    assert history.epoch == [0, 1, 2] and history.epochs == 3
    fig = history.plot()
    assert len(fig.axes) == 2
    assert [len(line.get_xdata()) for line in fig.axes[0].lines] == [3, 3]
    with pytest.raises(ValueError, match="no metric 'mae'"):
        history.plot(["mae"])


def _progress_lines(history: Any, epochs: int) -> list[str]:
    """verbose's line per epoch: ``Epoch e/E - <seconds>s - key: value - ...`` (regexes)."""
    import re

    return [rf"Epoch {e + 1}/{epochs} - \d+\.\d\ds - " + re.escape(" - ".join(
        f"{k}: {v[e]:.4f}" for k, v in history.items())) for e in range(epochs)]


@pytest.mark.mutation
@pytest.mark.parametrize("verbose", [False, True, 0, 2])
def test_fit_takes_verbose_as_a_bool_or_a_level(verbose, capsys):
    """Off for 0 and False; one line per epoch for 2, and for 1 or True when the output is
    no terminal (as under pytest)."""
    import re

    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", dtype="float64")],
                             loss="mean_squared_error")
    model.load_state_dict({"layers.0.w": W0, "layers.0.b": B0})
    capsys.readouterr()
    history = model.fit(X_OPT, T_OPT, epochs=2, batch_size=10, shuffle=False,
                        verbose=verbose, optimizer=optimizers.SGD(0.1),
                        validation_data=(X_OPT[:3], T_OPT[:3]))
    lines = capsys.readouterr().out.splitlines()
    expected = _progress_lines(history, 2) if verbose else []
    assert len(lines) == len(expected)
    for line, pattern in zip(lines, expected):
        assert re.fullmatch(pattern, line), (line, pattern)


@pytest.mark.mutation
def test_verbose_1_on_a_terminal_draws_a_bar_per_epoch(capsys, monkeypatch):
    """10 rows in batches of 4: 3 batches an epoch, the bar redrawn in place ("\\r")."""
    import re
    import sys

    from anyfc.training import history as history_module

    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", dtype="float64")],
                             loss="mean_squared_error")
    capsys.readouterr()
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(history_module, "_tqdm", lambda: None)  # anyfc's own bar
    history = model.fit(X_OPT, T_OPT, epochs=2, batch_size=4, shuffle=False, verbose=1)
    out = capsys.readouterr().out
    bars = re.findall(r"\rEpoch (\d)/(\d) \[([=.]{30})\] (\d)/(\d)", out)
    assert bars and {(e, n) for e, n, *_ in bars} == {("1", "2"), ("2", "2")}
    for _, _, bar, done, total in bars:
        filled = 30 * int(done) // 3
        assert total == "3" and bar == "=" * filled + "." * (30 - filled)
    assert {(e, d) for e, _, _, d, _ in bars} >= {("1", "3"), ("2", "3")}  # each epoch's end
    assert re.search(r"\] 1/3 - ETA \d+s - loss: \d\.\d{4}\x1b\[K", out)  # running loss
    ends = [line.split("\r")[-1].removesuffix("\x1b[K") for line in out.split("\n") if line]
    for line, pattern in zip(ends, _progress_lines(history, 2)):
        assert re.fullmatch(pattern, line), (line, pattern)
    assert len(ends) == 2


def test_verbose_1_on_a_terminal_uses_tqdm_with_the_epochs_metrics(capsys, monkeypatch):
    """With tqdm installed, a bar per epoch (on stderr) that ends holding the epoch's
    metrics; standard output stays clean."""
    import sys

    pytest.importorskip("tqdm")
    model = anyfc.Sequential([anyfc.Dense(3, 2, "identity", dtype="float64")],
                             loss="mean_squared_error")
    capsys.readouterr()
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    history = model.fit(X_OPT, T_OPT, epochs=2, batch_size=4, shuffle=False, verbose=1,
                        metrics=["mse"])
    captured = capsys.readouterr()
    assert captured.out == ""
    for epoch in (0, 1):
        assert f"Epoch {epoch + 1}/2" in captured.err
        assert f"mse: {history['mse'][epoch]:.4f}" in captured.err
    assert "3/3" in captured.err
