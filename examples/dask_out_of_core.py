"""Train on a data set larger than a memory budget, stored on disk, with Dask.
===========================================================================

::

    python examples/dask_out_of_core.py                          # stream chunks to NumPy
    python examples/dask_out_of_core.py --scheduler distributed  # data-parallel, 2 workers

The data: scikit-learn's digits, augmented (each image shifted by up to one pixel and
given a little noise) into as many samples as asked for, written to disk one chunk at a
time as .npy files: into the folder given by ``--out``, where they stay, or by default
into a fresh temporary folder removed at the end (244 MiB at the default size). Nothing
is written into the current directory. Dask reads a chunk only when training needs it,
so the process holds a few chunks, never the whole set. Prints throughput and peak
memory, then scores the real (not augmented) held-out digits, and the whole on-disk set,
lazily.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import tempfile
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import anyfc


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift each 8×8 image by -1..1 pixels in each direction, add noise, clip to [0, 1]."""
    out = np.empty_like(images)
    shifts = rng.integers(-1, 2, size=(len(images), 2))
    for i, (dy, dx) in enumerate(shifts):
        out[i] = np.roll(images[i].reshape(8, 8), (dy, dx), axis=(0, 1)).ravel()
    out += rng.normal(0.0, 0.05, size=out.shape)
    return np.clip(out, 0.0, 1.0, out=out)


def write_chunks(folder: str, X: np.ndarray, y: np.ndarray, rows: int, chunk_rows: int,
                 seed: int = 0) -> list[tuple[str, str, int]]:
    """Write ``rows`` augmented samples as .npy chunk files; returns (X file, y file, rows)
    per chunk. Only one chunk is ever in memory."""
    rng = np.random.default_rng(seed)
    files = []
    for k, start in enumerate(range(0, rows, chunk_rows)):
        n = min(chunk_rows, rows - start)
        pick = rng.integers(0, len(X), size=n)
        x_path, y_path = (os.path.join(folder, f"chunk{k:05d}_{s}.npy") for s in "Xy")
        np.save(x_path, augment(X[pick], rng).astype(np.float32))
        np.save(y_path, y[pick].astype(np.int64))
        files.append((x_path, y_path, n))
    return files


def dask_arrays(files: list[tuple[str, str, int]]) -> tuple[object, object]:
    """Lazy arrays over the chunk files: each task opens its own file (so this works
    on a cluster's workers too, with no array shipped through the scheduler)."""
    import dask
    import dask.array as da

    load = dask.delayed(np.load, pure=True)
    X = da.concatenate([da.from_delayed(load(x), shape=(n, 64), dtype=np.float32)
                        for x, _, n in files])
    y = da.concatenate([da.from_delayed(load(t), shape=(n,), dtype=np.int64)
                        for _, t, n in files])
    return X, y


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--backend", default=None, help="the model's backend (default numpy)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--rows", type=int, default=None, help="samples written to disk "
                        "(default 1,000,000; 200,000 with --scheduler distributed, where "
                        "every step is a round trip to the cluster)")
    parser.add_argument("--chunk-rows", type=int, default=None,
                        help="rows per chunk file (default 20,000; 2,000 with --scheduler "
                        "distributed, so each step's batch spans chunks on every worker)")
    parser.add_argument("--budget-mb", type=float, default=128,
                        help="a memory budget the data set exceeds (reported against)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--scheduler", choices=["threads", "distributed"], default="threads")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=None, help="the folder for the chunk files, kept "
                        "(default: a fresh temporary folder, removed at the end)")
    args = parser.parse_args(argv)
    distributed = args.scheduler == "distributed"
    if args.rows is None:
        args.rows = 200_000 if distributed else 1_000_000
    if args.chunk_rows is None:
        args.chunk_rows = 2_000 if distributed else 20_000

    digits_X, digits_y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        digits_X / 16.0, digits_y, test_size=0.25, random_state=0, stratify=digits_y)
    data_mb = args.rows * 64 * 4 / 2**20
    print(f"{args.rows:,} augmented digits = {data_mb:.0f} MiB on disk in chunks of "
          f"{args.chunk_rows:,} rows; memory budget {args.budget_mb:.0f} MiB")

    with contextlib.ExitStack() as cleanup:
        if args.out is None:
            folder = cleanup.enter_context(
                tempfile.TemporaryDirectory(prefix="anyfc-dask_out_of_core-"))
        else:
            folder = args.out
            os.makedirs(folder, exist_ok=True)
        print(f"chunk files go to {folder}" + (" (removed at the end)" if args.out is None
                                               else ""))
        files = write_chunks(folder, X_train, y_train, args.rows, args.chunk_rows)
        X, y = dask_arrays(files)
        model = anyfc.Sequential(
            [anyfc.Dense(64, 128, "relu", seed=0), anyfc.Dense(128, 10, "identity", seed=1)],
            backend=args.backend, device=args.device)
        client = cluster = None
        if args.scheduler == "distributed":
            from dask.distributed import Client, LocalCluster

            cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                   processes=True, dashboard_address=None)
            client = Client(cluster)
        try:
            rss_before = peak_rss_mb()
            start = time.perf_counter()
            if client is None:  # stream chunks to the in-memory model
                model.fit(X, y, epochs=args.epochs, batch_size=args.batch_size, seed=0,
                          optimizer=anyfc.optimizers.Adam(3e-3), verbose=2)
            else:  # every step's gradient summed over chunks on the workers
                model.fit(X, y, epochs=args.epochs, batch_size=args.batch_size * 16, seed=0,
                          optimizer=anyfc.optimizers.Adam(1e-2), verbose=2,
                          strategy="data_parallel")
            seconds = time.perf_counter() - start
            throughput = args.rows * args.epochs / seconds
            peak = peak_rss_mb()
            print(f"trained {args.epochs} epochs in {seconds:.1f}s: {throughput:,.0f} samples/s "
                  f"({args.scheduler})")
            added = peak - rss_before
            verdict = "within" if added <= args.budget_mb else "OVER"
            print(f"memory added by training: {added:.0f} MiB ({verdict} the {args.budget_mb:.0f} "
                  f"MiB budget) for a {data_mb:.0f} MiB data set; peak of this process "
                  f"{peak:.0f} MiB")

            accuracy = float(np.mean(anyfc.to_numpy(model.predict(X_test)).argmax(axis=1)
                                     == y_test))
            print(f"held-out accuracy on the real digits: {accuracy:.4f}")
            lazy = model.predict(X)  # a Dask array: nothing computed yet
            import dask.array as da

            on_disk = float(da.mean(da.argmax(lazy, axis=1) == y).compute())
            print(f"accuracy over the {args.rows:,} on-disk samples (lazy predict, "
                  f"{len(lazy.chunks[0])} chunks): {on_disk:.4f}")
        finally:
            if client is not None:
                client.close()
                cluster.close()
    return {"accuracy": accuracy, "samples_per_s": throughput, "peak_mb": peak,
            "added_mb": added, "data_mb": data_mb}


if __name__ == "__main__":
    main()
