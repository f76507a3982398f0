"""Small data: fitting scikit-learn's digits, the first fit in a fresh process, and
predict at batch 1, 32 and 1024 against onnxruntime (issue #23).

    python benchmarks/small_data.py                 # everything, 3 processes per contender
    python benchmarks/small_data.py --what fit --procs 5
    python benchmarks/small_data.py --what predict --batches 1,32,1024

``fit``: MLP 64-64-10 (ReLU, softmax cross-entropy), Adam (lr 1e-3), batch 32, 30
epochs over all 1,797 digits (float32), shuffled each epoch. Every contender runs in its
own fresh process, with one thread per library (``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, ``torch.set_num_threads(1)``, XLA's
``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``): its first fit
(what a script pays: the library imported beforehand, compilation included) and then a
second fit of a new model of the same structure in the same process (what a grid search
pays per model). Contenders: ``torch.nn`` (the loop a torch user writes: ``randperm``,
``index_select``, ``zero_grad``/``backward``/``Adam.step``, the loss and the hits summed
on the device and read once an epoch), ``sklearn`` (``MLPClassifier(solver="adam")``,
30 iterations, no early stopping), and ``anyfc:<backend>`` (``Sequential.fit``, which
also checks the data and every epoch's finiteness).

``predict``: the 64-128-64-10 digits MLP of ``examples/export_onnx.py``, float32, one
call with the probabilities on the host (anyfc: ``predict`` + ``to_numpy``), against the
same model exported with ``anyfc.onnx.export`` and run by onnxruntime
(``CPUExecutionProvider``, one intra-op thread), median of many calls.

The numbers are medians over ``--procs`` separate processes, run interleaved (one process
of each contender in turn), so a change in the machine's load falls on all alike; read the
ratios, which come from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

FIT_CONTENDERS = ["torch.nn", "sklearn", "anyfc:numpy", "anyfc:torch", "anyfc:jax"]
PREDICT_CONTENDERS = ["onnxruntime", "anyfc:numpy", "anyfc:torch", "anyfc:jax"]
EPOCHS, BATCH, LR = 30, 32, 1e-3


def one_thread_env(env: dict[str, str]) -> dict[str, str]:
    env = dict(env)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               XLA_FLAGS=f"{env.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false "
               "intra_op_parallelism_threads=1".strip())
    return env


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y.astype(np.int64)


# ---------------------------------------------------------------- fit

def fit_torch_nn(X: np.ndarray, y: np.ndarray, seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(EPOCHS):
        order = torch.randperm(len(Xt), generator=gen)
        loss_sum = torch.zeros(())
        hits = torch.zeros((), dtype=torch.int64)
        for start in range(0, len(Xt), BATCH):
            idx = order[start:start + BATCH]
            x, t = Xt.index_select(0, idx), yt.index_select(0, idx)
            opt.zero_grad(set_to_none=True)
            out = net(x)
            loss = loss_fn(out, t)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)
            hits += (out.detach().argmax(1) == t).sum()
        float(loss_sum), int(hits)  # noqa: B018  (read once an epoch, as fit does)


def fit_sklearn(X: np.ndarray, y: np.ndarray, seed: int) -> None:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(64,), solver="adam", learning_rate_init=LR,
                        batch_size=BATCH, max_iter=EPOCHS, tol=0.0,
                        n_iter_no_change=EPOCHS + 1, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)


def fit_anyfc(backend: str, X: np.ndarray, y: np.ndarray, seed: int) -> None:
    import anyfc

    model = anyfc.Sequential([anyfc.Dense(64, 64, "relu", seed=seed),
                              anyfc.Dense(64, 10, seed=seed + 1)], backend=backend)
    model.fit(X, y, epochs=EPOCHS, batch_size=BATCH, optimizer=anyfc.optimizers.Adam(LR),
              seed=seed, verbose=0)


def import_library(contender: str) -> None:
    if contender == "torch.nn" or contender.endswith("torch"):
        import torch

        torch.set_num_threads(1)
    if contender.endswith("jax"):
        import jax  # noqa: F401
    if contender == "sklearn":
        import sklearn.neural_network  # noqa: F401
    if contender.startswith("anyfc"):
        import anyfc

        anyfc.to_backend(np.zeros(1), contender.split(":")[1])  # its namespace, imported


def fit_worker(contender: str) -> dict[str, Any]:
    X, y = digits()
    start = time.perf_counter()
    import_library(contender)
    imported = time.perf_counter() - start
    if contender == "torch.nn":
        run = fit_torch_nn
    elif contender == "sklearn":
        run = fit_sklearn
    else:
        backend = contender.split(":")[1]

        def run(X: np.ndarray, y: np.ndarray, seed: int) -> None:
            fit_anyfc(backend, X, y, seed)
    times = []
    for seed in (0, 1):
        start = time.perf_counter()
        run(X, y, seed)
        times.append(time.perf_counter() - start)
    return {"import_s": imported, "first_s": times[0], "second_s": times[1]}


# ---------------------------------------------------------------- predict

def predict_model(backend: str) -> Any:
    import anyfc

    return anyfc.Sequential([anyfc.Dense(64, 128, "relu", seed=0),
                             anyfc.Dense(128, 64, "relu", seed=1),
                             anyfc.Dense(64, 10, seed=2)], backend=backend)


def median_call(call: Any, seconds: float = 0.6) -> float:
    """Median time of ``call()`` over rounds of calls lasting ``seconds`` in all."""
    for _ in range(20):
        call()
    reps = 1
    while True:  # calls per round: about 10 ms
        start = time.perf_counter()
        for _ in range(reps):
            call()
        spent = time.perf_counter() - start
        if spent > 0.01:
            break
        reps *= 2
    rounds = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rounds) < 5:
        start = time.perf_counter()
        for _ in range(reps):
            call()
        rounds.append((time.perf_counter() - start) / reps)
    return statistics.median(rounds)


def predict_worker(contender: str, batches: list[int]) -> dict[str, Any]:
    X, _ = digits()
    import_library(contender)
    rows = {b: np.ascontiguousarray(np.resize(X, (b, 64))) for b in batches}
    out: dict[str, Any] = {}
    if contender == "onnxruntime":
        import onnxruntime as ort

        import anyfc.onnx

        path = os.path.join(tempfile.mkdtemp(prefix="anyfc-bench-"), "m.onnx")
        anyfc.onnx.export(predict_model("numpy"), path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        name, output = session.get_inputs()[0].name, session.get_outputs()[0].name
        for b in batches:
            out[str(b)] = median_call(lambda r=rows[b]: session.run([output], {name: r})[0])
        os.remove(path)
        return out
    import anyfc

    model = predict_model(contender.split(":")[1])
    for b in batches:
        out[str(b)] = median_call(lambda r=rows[b]: anyfc.to_numpy(model.predict(r)))
    return out


# ---------------------------------------------------------------- driver

def available(contender: str) -> bool:
    import importlib.util

    lib = {"torch.nn": "torch", "sklearn": "sklearn", "onnxruntime": "onnxruntime"}.get(
        contender, contender.split(":")[-1])
    return importlib.util.find_spec(lib) is not None


def spawn(args: list[str], env: dict[str, str]) -> dict[str, Any] | None:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        print(f"{' '.join(args)} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", default="fit,predict")
    parser.add_argument("--procs", type=int, default=3)
    parser.add_argument("--contenders", default=None, help="comma list (default: all here)")
    parser.add_argument("--batches", default="1,32,1024")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--worker", nargs=2, metavar=("WHAT", "CONTENDER"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    if args.worker:
        what, contender = args.worker
        result = (fit_worker(contender) if what == "fit" else
                  predict_worker(contender, batches))
        print(json.dumps(result))
        return
    env = one_thread_env(dict(os.environ))
    results: dict[str, Any] = {}
    if "fit" in args.what:
        contenders = [c for c in (args.contenders.split(",") if args.contenders
                                  else FIT_CONTENDERS) if c in FIT_CONTENDERS or
                      c.startswith("anyfc:")]
        contenders = [c for c in contenders if available(c)]
        runs: dict[str, list[dict[str, Any]]] = {c: [] for c in contenders}
        for _ in range(args.procs):
            for c in contenders:
                got = spawn(["--worker", "fit", c], env)
                if got:
                    runs[c].append(got)
        base = runs.get("torch.nn")
        base_first = statistics.median(r["first_s"] for r in base) if base else float("nan")
        base_second = statistics.median(r["second_s"] for r in base) if base else float("nan")
        print(f"\ndigits, 64-64-10, Adam, batch {BATCH}, {EPOCHS} epochs, one thread each, "
              f"median of {args.procs} fresh processes\n")
        print("| contender | import s | first fit s | × torch.nn | second fit s | × torch.nn "
              "| ms/step (second) |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        steps = EPOCHS * -(-1797 // BATCH)
        for c in contenders:
            if not runs[c]:
                continue
            row = {k: statistics.median(r[k] for r in runs[c]) for k in runs[c][0]}
            results[f"fit|{c}"] = dict(row, all=runs[c])
            print(f"| {c} | {row['import_s']:.2f} | {row['first_s']:.3f} | "
                  f"{row['first_s'] / base_first:.2f} | {row['second_s']:.3f} | "
                  f"{row['second_s'] / base_second:.2f} | "
                  f"{row['second_s'] / steps * 1e3:.3f} |", flush=True)
    if "predict" in args.what:
        contenders = [c for c in (args.contenders.split(",") if args.contenders
                                  else PREDICT_CONTENDERS) if c in PREDICT_CONTENDERS]
        contenders = [c for c in contenders if available(c)]
        if "onnxruntime" in contenders:
            contenders.remove("onnxruntime")
            contenders.insert(0, "onnxruntime")
        pruns: dict[str, list[dict[str, Any]]] = {c: [] for c in contenders}
        for _ in range(args.procs):
            for c in contenders:
                got = spawn(["--worker", "predict", c, "--batches", args.batches], env)
                if got:
                    pruns[c].append(got)
        print(f"\npredict, 64-128-64-10 float32, probabilities on the host, one thread each, "
              f"median of {args.procs} processes\n")
        print("| contender | " + " | ".join(f"batch {b} ms | × ort" for b in batches) + " |")
        print("|---|" + "---:|---:|" * len(batches))
        base_runs = pruns.get("onnxruntime") or []
        for c in contenders:
            if not pruns[c]:
                continue
            cells = []
            for b in batches:
                value = statistics.median(r[str(b)] for r in pruns[c])
                base = (statistics.median(r[str(b)] for r in base_runs) if base_runs
                        else float("nan"))
                results[f"predict|{c}|{b}"] = value
                cells.append(f"{value * 1e3:.4f} | {value / base:.2f}")
            print(f"| {c} | " + " | ".join(cells) + " |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
