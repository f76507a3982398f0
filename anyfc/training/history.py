"""What ``fit`` returns (``History``) and what it shows while it runs (``Progress``)."""

from __future__ import annotations

import sys
import time
from typing import Any


class History(dict):  # type: ignore[type-arg]
    """Per-epoch metrics returned by ``fit``, a dict of lists: ``history["loss"]``,
    ``["accuracy"]`` (classification) or ``["mae"]``, ``["r2"]`` (regression), and the
    same with ``val_`` for validation data. ``history.history`` is the plain dict (as in
    Keras), ``history.epoch`` the epoch indices (0-based), ``history.lr`` the learning
    rate each epoch started with."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epoch: list[int] = []
        self.lr: list[float] = []

    @property
    def history(self) -> dict[str, list[float]]:
        """The metrics as a plain dict of lists (a copy)."""
        return {k: list(v) for k, v in self.items()}

    @property
    def epochs(self) -> int:
        """How many epochs were trained."""
        return len(self.get("loss", []))

    def plot(self, keys: list[str] | None = None, ax: Any = None) -> Any:
        """A matplotlib figure of the metrics by epoch: one panel per metric (``loss``,
        ``accuracy``, ...) with its ``val_`` twin on the same axes. Needs matplotlib
        (``pip install anyfc[plot]``); returns the figure (save it with
        ``fig.savefig(path)``). ``ax``: draw every metric on these axes instead."""
        try:
            import matplotlib.pyplot as plt  # picks a headless backend without a display
        except ImportError as exc:
            raise ImportError("History.plot needs matplotlib: pip install 'anyfc[plot]' "
                              "(from a clone: pip install -e '.[plot]')") from exc
        names = keys if keys is not None else [k for k in self if not k.startswith("val_")]
        unknown = [k for k in names if k not in self]
        if unknown:
            raise ValueError(f"no metric {unknown[0]!r} in this history; it has "
                             f"{', '.join(self) or 'nothing (no epoch trained)'}")
        epochs = [e + 1 for e in self.epoch] or list(range(1, self.epochs + 1))
        if ax is not None:
            fig, axes = ax.figure, [ax] * len(names)
        else:
            fig, grid = plt.subplots(1, max(len(names), 1), figsize=(4.5 * max(len(names), 1),
                                                                     3.5), squeeze=False)
            axes = list(grid[0])
        for name, a in zip(names, axes):
            a.plot(epochs, self[name], label=name)
            if "val_" + name in self:
                a.plot(epochs, self["val_" + name], label="val_" + name)
            a.set_xlabel("epoch")
            a.set_ylabel(name)
            a.legend()
        fig.tight_layout()
        return fig


class Progress:
    """A one-line progress bar per epoch (verbose=1), or one line per epoch
    (verbose=2, or verbose=1 when the output is not a terminal). It never reads
    the device: the loss is shown when the epoch ends."""

    def __init__(self, verbose: int, epochs: int, n_batches: int) -> None:
        self.verbose, self.epochs, self.n_batches = verbose, epochs, n_batches
        self.live = verbose == 1 and sys.stdout.isatty()

    def start(self, epoch: int) -> None:
        self.epoch, self.done, self.t0, self.shown = epoch, 0, time.perf_counter(), 0.0

    def batch(self) -> None:
        self.done += 1
        now = time.perf_counter()
        if self.live and (now - self.shown > 0.1 or self.done == self.n_batches):
            self.shown = now
            width = 30
            filled = width * self.done // self.n_batches
            sys.stdout.write(
                f"\rEpoch {self.epoch}/{self.epochs} [{'=' * filled}{'.' * (width - filled)}] "
                f"{self.done}/{self.n_batches}")
            sys.stdout.flush()

    def end(self, metrics: dict[str, float]) -> None:
        if not self.verbose:
            return
        text = " - ".join(f"{k}: {v:.4f}" for k, v in metrics.items())
        lead = "\r" if self.live else ""
        seconds = time.perf_counter() - self.t0
        print(f"{lead}Epoch {self.epoch}/{self.epochs} - {seconds:.2f}s - {text}" + " " * 10)
