"""Streaming and data-parallel training from Dask: throughput and peak memory.

    python benchmarks/dask_streaming.py                 # sizes 1x, 4x, 16x; 1 vs 2 workers
    python benchmarks/dask_streaming.py --base-rows 50000 --skip-cluster

Streaming: the same model trains one epoch on 1x, 4x and 16x the data (augmented digits
on disk, read chunk by chunk); each size runs in its own process, so its peak RSS is its
own. Memory should stay flat while the data grows. Data-parallel: one epoch with
strategy="data_parallel" on a LocalCluster of 1 and of 2 worker processes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent


def _example():
    spec = importlib.util.spec_from_file_location("ooc", HERE.parent / "examples" /
                                                  "dask_out_of_core.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data(folder: str, rows: int, chunk_rows: int):
    import numpy as np
    from sklearn.datasets import load_digits

    ex = _example()
    X, y = load_digits(return_X_y=True)
    files = ex.write_chunks(folder, (X / 16.0).astype(np.float32), y, rows, chunk_rows)
    return ex.dask_arrays(files)


def _model(backend):
    import anyfc

    return anyfc.Sequential([anyfc.Dense(64, 128, "relu", seed=0, backend=backend),
                             anyfc.Dense(128, 10, "identity", seed=1, backend=backend)])


def worker_stream(rows: int, chunk_rows: int, backend: str | None) -> dict:
    import anyfc

    with tempfile.TemporaryDirectory() as folder:
        X, y = _data(folder, rows, chunk_rows)
        model = _model(backend)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        model.fit(X, y, epochs=1, batch_size=256, verbose=0, seed=0,
                  optimizer=anyfc.optimizers.Adam(3e-3))
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rows": rows, "samples_per_s": rows / seconds, "peak_mb": peak,
            "added_mb": peak - before, "data_mb": rows * 64 * 4 / 2**20}


def worker_cluster(rows: int, chunk_rows: int, workers: int) -> dict:
    from dask.distributed import Client, LocalCluster

    import anyfc

    with tempfile.TemporaryDirectory() as folder:
        X, y = _data(folder, rows, chunk_rows)
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster):
            model = _model(None)
            opt = anyfc.optimizers.Adam(1e-2)
            warm = 4 * chunk_rows
            model.fit(X[:warm], y[:warm], epochs=1, batch_size=warm, verbose=0,
                      strategy="data_parallel", optimizer=opt)  # start the workers' imports
            start = time.perf_counter()
            model.fit(X, y, epochs=1, batch_size=4 * chunk_rows, verbose=0,
                      strategy="data_parallel", optimizer=opt)
            seconds = time.perf_counter() - start
    return {"workers": workers, "rows": rows, "samples_per_s": rows / seconds}


def run(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         env=os.environ)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=None, help="the model's backend (numpy default)")
    parser.add_argument("--device", default=None, help="ignored")
    parser.add_argument("--base-rows", type=int, default=100_000)
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--skip-cluster", action="store_true")
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "ROWS", "CHUNK_ROWS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if importlib.util.find_spec("dask") is None:
        print("dask is not installed here (pip install 'anyfc[dask]'): nothing to measure")
        return
    if args.worker:
        kind, rows, chunk_rows = args.worker
        if kind == "stream":
            result = worker_stream(int(rows), int(chunk_rows), args.backend)
        else:
            result = worker_cluster(int(rows), int(chunk_rows), args.workers)
        print(json.dumps(result))
        return

    print(f"streaming one epoch, chunks of {args.chunk_rows:,} rows, model on "
          f"{args.backend or 'numpy'} (each size in its own process)")
    print("| data | rows | data MiB | samples/s | peak RSS MiB | added by training MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for factor in (1, 4, 16):
        extra = ["--backend", args.backend] if args.backend else []
        r = run(["--worker", "stream", str(args.base_rows * factor), str(args.chunk_rows),
                 *extra])
        print(f"| {factor}x | {r['rows']:,} | {r['data_mb']:.0f} | {r['samples_per_s']:,.0f} "
              f"| {r['peak_mb']:.0f} | {r['added_mb']:.0f} |", flush=True)
    if args.skip_cluster or importlib.util.find_spec("distributed") is None:
        return
    rows, chunk = args.base_rows * 2, 2_000
    print(f"\ndata-parallel, one epoch of {rows:,} rows, batches of {4 * chunk:,} rows "
          f"(4 chunks), LocalCluster with 1 thread per worker process")
    print("| workers | samples/s | speed-up |")
    print("|---:|---:|---:|")
    base = None
    for workers in (1, 2):
        r = run(["--worker", "cluster", str(rows), str(chunk), "--workers", str(workers)])
        base = base or r["samples_per_s"]
        print(f"| {workers} | {r['samples_per_s']:,.0f} | {r['samples_per_s'] / base:.2f}x |",
              flush=True)


if __name__ == "__main__":
    main()
