"""What ``fit`` returns (``History``) and what it shows while it runs (``Progress``)."""

from __future__ import annotations

import sys
import time
from typing import Any


class History(dict):  # type: ignore[type-arg]
    """Per-epoch metrics returned by ``fit``, a dict of lists.

    ``history["loss"]``, ``["accuracy"]`` (classification) or ``["mae"]``, ``["r2"]``
    (regression), and the same with ``val_`` for validation data.

    Parameters
    ----------
    *args, **kwargs
        As for ``dict``: the metrics' lists by name (``fit`` fills them in).

    Attributes
    ----------
    epoch : list of int
        The epoch indices (0-based).
    lr : list of float
        The learning rate each epoch started with.
    """

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
        """Plot the metrics by epoch with matplotlib.

        One panel per metric (``loss``, ``accuracy``, ...) with its ``val_`` twin on the
        same axes. Needs matplotlib (``pip install 'anyfc[plot]'``).

        Parameters
        ----------
        keys : list of str, optional
            The metrics to plot (default: every one but the ``val_`` twins, which join
            their metric's panel).
        ax : matplotlib.axes.Axes, optional
            Draw every metric on these axes instead of a new figure.

        Returns
        -------
        matplotlib.figure.Figure
            The figure (save it with ``fig.savefig(path)``).

        Raises
        ------
        ImportError
            matplotlib is not installed.
        ValueError
            A key this history does not have.
        """
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
    """What ``fit`` shows while it runs, as Keras's ``verbose``: 0 nothing; 2 one line per
    epoch; 1 a progress bar per epoch with the time left and the running loss where the
    output is a terminal or a notebook (``tqdm.auto`` when installed:
    ``pip install 'anyfc[progress]'``, else a bar of its own), and one clean line per
    epoch where it is not (a log file, CI). The running loss is read from the device at
    most twice a second; the epoch's line holds the epoch's metrics."""

    def __init__(self, verbose: int, epochs: int, n_batches: int) -> None:
        self.verbose, self.epochs, self.n_batches = verbose, epochs, n_batches
        live = verbose == 1 and (_notebook() or sys.stdout.isatty())
        self.tqdm = _tqdm() if live else None
        self.live = live
        self.bar: Any = None

    def start(self, epoch: int) -> None:
        self.epoch, self.done, self.t0, self.shown = epoch, 0, time.perf_counter(), 0.0
        if self.tqdm is not None:
            self.bar = self.tqdm(total=self.n_batches, desc=f"Epoch {epoch}/{self.epochs}",
                                 unit="batch", leave=True, dynamic_ncols=True)

    def batch(self, sums: Any = None) -> None:
        self.done += 1
        if not self.live:
            return
        now = time.perf_counter()
        if now - self.shown < 0.5 and self.done < self.n_batches:
            if self.bar is not None:
                self.bar.update(1)
            return
        self.shown = now
        loss = _running_loss(sums)
        if self.bar is not None:
            self.bar.update(1)
            if loss is not None:
                self.bar.set_postfix_str(f"loss: {loss:.4f}", refresh=False)
            return
        width = 30
        filled = width * self.done // self.n_batches
        elapsed = now - self.t0
        left = elapsed / self.done * (self.n_batches - self.done)
        shown = "" if loss is None else f" - loss: {loss:.4f}"
        sys.stdout.write(
            f"\rEpoch {self.epoch}/{self.epochs} [{'=' * filled}{'.' * (width - filled)}] "
            f"{self.done}/{self.n_batches} - ETA {left:.0f}s{shown}\x1b[K")
        sys.stdout.flush()

    def end(self, metrics: dict[str, float]) -> None:
        if not self.verbose:
            return
        text = " - ".join(f"{k}: {v:.4f}" for k, v in metrics.items())
        seconds = time.perf_counter() - self.t0
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=True)
            self.bar.close()
            self.bar = None
            return
        lead, tail = ("\r", "\x1b[K") if self.live else ("", "")
        print(f"{lead}Epoch {self.epoch}/{self.epochs} - {seconds:.2f}s - {text}{tail}")


def _notebook() -> bool:
    return "ipykernel" in sys.modules


def _tqdm() -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


def _running_loss(sums: Any) -> float | None:
    """The mean loss of the epoch so far (one read of the device), if there are sums."""
    if not sums or not sums.get("n"):
        return None
    from .._backend import to_float

    return to_float(sums["loss"]) / sums["n"]
