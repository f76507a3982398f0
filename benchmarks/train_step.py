"""Time one SGD training step of an MLP: anyfc on each backend, the article's plain-NumPy
layer code, and torch.nn + autograd + torch.optim — same shapes, same batches, same
optimizer, float32.

    python benchmarks/train_step.py                      # every CPU contender
    python benchmarks/train_step.py --backend cupy       # GPU: anyfc on CuPy vs torch-cuda
    python benchmarks/train_step.py --cases b32,b1024 --procs 5
    python benchmarks/train_step.py --fit                # a full fit epoch per round
    python benchmarks/train_step.py --contenders torch.nn,anyfc:torch+compile

Contenders: ``torch.nn``, ``plain_numpy``, and ``anyfc:BACKEND[+COMPILER][:DEVICE]`` —
anyfc on BACKEND with its default step compiler (JAX: ``jit``; the others eager), or with
the one named (``anyfc:torch+compile``: ``torch.compile`` of the whole step;
``anyfc:jax+eager``: JAX op by op), see ``anyfc.set_step_compiler``.

Each contender runs in its own process (BLAS thread pools of different libraries must not
share one), ``--procs`` times; each process times ``--rounds`` rounds of steps (or, with
``--fit``, of one ``fit`` epoch each over ``steps`` batches, shuffled, metrics included;
torch.nn runs the same epoch by hand) and reports its median. The table gives the median
over processes, the ratio to torch.nn, the achieved GFLOP/s against a GEMM of the same
shape on the same library (the limit), the peak memory the training added to the
process, and the compile time: what the warm-up steps (or the first epoch) took beyond
the same number of steady ones — the compilation of JAX's and torch.compile's steps
(TorchInductor caches its kernels on disk, so processes after the first compile faster).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # share the GPU politely

CASES = {  # name -> (layer sizes, batch size, steps per round)
    "b32": ([784, 256, 256, 10], 32, 200),
    "b128": ([784, 256, 256, 10], 128, 100),
    "b1024": ([784, 256, 256, 10], 1024, 20),
    "wide": ([4096, 4096, 4096, 10], 256, 4),
}
# torch.nn, the baseline, runs first in each round; rows print when their case is done.
CPU_CONTENDERS = ["torch.nn", "anyfc:numpy", "anyfc:torch", "anyfc:jax", "anyfc:torch+compile",
                  "plain_numpy"]
GPU_CONTENDERS = {  # --backend: anyfc on that GPU backend (and the others), vs torch-cuda
    "cupy": ["torch.nn:cuda", "anyfc:cupy", "anyfc:torch:cuda", "anyfc:jax"],
    "torch": ["torch.nn:cuda", "anyfc:torch:cuda"],
}
LR = 0.01
FIT_MIN_BATCHES = 8  # --fit: batches per epoch at least (fit's once-an-epoch work amortised)


def step_flops(sizes: list[int], batch: int) -> float:
    """Matrix-product FLOPs of one step: forward X·W, backward Xᵀ·Δ and Δ·Wᵀ (none for
    the first layer, whose ∂E/∂X nobody needs)."""
    total = 0.0
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        products = 2 if i == 0 else 3
        total += products * 2.0 * batch * n_in * n_out
    return total


def make_data(sizes: list[int], batch: int, n_batches: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch * n_batches, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], batch * n_batches)
    return X, y


# ---------------------------------------------------------------- contenders


class PlainNumpy:
    """The article's layer code as written there: np.dot, a ReLU derivative built with
    np.where(u <= 0, 0, 1) (an int64 array, which promotes float32 to float64)."""

    def __init__(self, sizes: list[int]) -> None:
        rng = np.random.default_rng(0)
        self.w = [(rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32)
                  for a, b in zip(sizes, sizes[1:])]
        self.b = [np.zeros(b, dtype=np.float32) for b in sizes[1:]]

    def step(self, x: np.ndarray, t: np.ndarray) -> None:
        xs, us = [], []
        for i, (w, b) in enumerate(zip(self.w, self.b)):
            xs.append(x)
            u = np.dot(x, w) + b
            us.append(u)
            x = u if i == len(self.w) - 1 else np.where(u <= 0, 0, u)
        p = np.exp(x - x.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        onehot = np.eye(p.shape[1], dtype=np.float32)[t]
        delta = (p - onehot) / len(t)
        for i in range(len(self.w) - 1, -1, -1):
            if i < len(self.w) - 1:
                delta = delta * np.where(us[i] <= 0, 0, 1)
            grad_w = np.dot(xs[i].T, delta)
            grad_b = np.sum(delta, axis=0)
            if i > 0:
                delta = np.dot(delta, self.w[i].T)
            self.w[i] -= LR * grad_w
            self.b[i] -= LR * grad_b

    def sync(self) -> None:
        pass

    def epoch(self, X: np.ndarray, y: np.ndarray, batch: int, seed: int) -> None:
        order = np.random.default_rng(seed).permutation(len(X))
        for start in range(0, len(X), batch):
            idx = order[start:start + batch]
            self.step(X[idx], y[idx])


class AnyfcContender:
    def __init__(self, sizes: list[int], backend: str, device: str | None,
                 compiler: str | None = None) -> None:
        import anyfc

        self.anyfc = anyfc
        if compiler:
            anyfc.set_step_compiler(backend, compiler)
        layers = [anyfc.Dense(a, b, "relu" if i < len(sizes) - 2 else "identity", seed=i)
                  for i, (a, b) in enumerate(zip(sizes, sizes[1:]))]
        self.model = anyfc.Sequential(layers, backend=backend, device=device, dtype="float32")
        self.opt = anyfc.optimizers.SGD(lr=LR)

    def epoch(self, X: Any, y: Any, batch: int, seed: int) -> None:
        """One ``fit`` epoch: shuffled batches, the step, the loss and accuracy sums, and
        fit's once-an-epoch checks (snapshot for undo, finiteness)."""
        self.model.fit(X, y, epochs=1, batch_size=batch, optimizer=self.opt, shuffle=True,
                       seed=seed, verbose=0)

    def put(self, X: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        m = self.model
        return (self.anyfc.to_backend(X, m.xp, m.device, m.dtype),
                self.anyfc.to_backend(y, m.xp, m.device))

    def step(self, x: Any, t: Any) -> None:
        self.model.train_step(x, t, self.opt)

    def sync(self) -> None:
        self.anyfc.synchronize(self.model.layers[-1].w)


class TorchNN:
    def __init__(self, sizes: list[int], device: str) -> None:
        import torch

        self.torch = torch
        torch.manual_seed(0)
        mods: list[Any] = []
        for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
            mods.append(torch.nn.Linear(a, b))
            if i < len(sizes) - 2:
                mods.append(torch.nn.ReLU())
        self.device = device
        self.net = torch.nn.Sequential(*mods).to(device)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=LR)
        self.loss = torch.nn.CrossEntropyLoss()

    def put(self, X: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        return (self.torch.from_numpy(X).to(self.device),
                self.torch.from_numpy(y).to(self.device))

    def step(self, x: Any, t: Any) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.loss(self.net(x), t).backward()
        self.opt.step()

    def sync(self) -> None:
        if self.device != "cpu":
            self.torch.cuda.synchronize()

    def epoch(self, X: Any, y: Any, batch: int, seed: int) -> None:
        """The epoch a torch user writes: shuffled batches, the step, the loss and the
        number of correct predictions summed on the device, read once at the end."""
        torch = self.torch
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(X), generator=gen).to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        hits = torch.zeros((), device=self.device, dtype=torch.int64)
        for start in range(0, len(X), batch):
            idx = order[start:start + batch]
            x, t = X.index_select(0, idx), y.index_select(0, idx)
            self.opt.zero_grad(set_to_none=True)
            out = self.net(x)
            loss = self.loss(out, t)
            loss.backward()
            self.opt.step()
            loss_sum += loss.detach() * len(idx)
            hits += (out.detach().argmax(1) == t).sum()
        float(loss_sum), int(hits)  # noqa: B018  (fit reads its metrics once an epoch)


def parse(contender: str) -> tuple[str, str | None, str | None]:
    """``anyfc:torch+compile:cuda`` → (``torch``, ``compile``, ``cuda``)."""
    _, spec, *device = contender.split(":")
    backend, _, compiler = spec.partition("+")
    return backend, compiler or None, device[0] if device else None


def build(contender: str, sizes: list[int]) -> Any:
    if contender == "plain_numpy":
        return PlainNumpy(sizes)
    if contender.startswith("torch.nn"):
        return TorchNN(sizes, "cuda" if contender.endswith(":cuda") else "cpu")
    backend, compiler, device = parse(contender)
    return AnyfcContender(sizes, backend, device, compiler)


def gemm_limit(contender: str, sizes: list[int], batch: int) -> float:
    """GFLOP/s of the forward GEMM of the largest layer, on the contender's library."""
    a, b = max(zip(sizes, sizes[1:]), key=lambda s: s[0] * s[1])
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, a), dtype=np.float32)
    w = rng.standard_normal((a, b), dtype=np.float32)
    if contender in ("plain_numpy", "anyfc:numpy"):
        matmul, sync = (lambda: x @ w), (lambda: None)
    elif "torch" in contender:
        import torch

        dev = "cuda" if contender.endswith("cuda") else "cpu"
        xt, wt = torch.from_numpy(x).to(dev), torch.from_numpy(w).to(dev)
        matmul = lambda: xt @ wt  # noqa: E731
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    elif contender.startswith("anyfc:jax"):
        import jax.numpy as jnp

        xj, wj = jnp.asarray(x), jnp.asarray(w)
        last: list[Any] = [None]

        def matmul() -> None:
            # full float32, as anyfc's steps ask for (JAX's default on NVIDIA GPUs is TF32);
            # dispatched asynchronously, like the others
            last[0] = jnp.matmul(xj, wj, precision="highest")

        def sync() -> None:
            last[0].block_until_ready()
    elif contender == "anyfc:cupy":
        import cupy

        xc, wc = cupy.asarray(x), cupy.asarray(w)
        matmul, sync = (lambda: xc @ wc), cupy.cuda.get_current_stream().synchronize
    else:
        return float("nan")
    for _ in range(3):
        matmul()
    sync()
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < 0.3:
        matmul()
        reps += 1
    sync()
    return 2.0 * batch * a * b * reps / (time.perf_counter() - start) / 1e9


def _peak_device_bytes(contender: str) -> float:
    if "cupy" in contender:
        import cupy

        return float(cupy.get_default_memory_pool().total_bytes())
    if contender.endswith("cuda"):
        import torch

        return float(torch.cuda.max_memory_allocated())
    return float("nan")


def _synced(runner: Any, fn: Any) -> float:
    start = time.perf_counter()
    fn()
    runner.sync()
    return time.perf_counter() - start


def fit_worker(contender: str, case: str, rounds: int) -> dict[str, Any]:
    """Runs in its own process: median seconds per step over ``rounds`` epochs of
    ``steps`` batches each (at least ``FIT_MIN_BATCHES``), after one epoch of warm-up,
    which compiles."""
    sizes, batch, steps = CASES[case]
    steps = max(steps, FIT_MIN_BATCHES)
    runner = build(contender, sizes)
    X, y = make_data(sizes, batch, steps)
    if hasattr(runner, "put"):
        X, y = runner.put(X, y)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    first = _synced(runner, lambda: runner.epoch(X, y, batch, 0))
    per_epoch = [_synced(runner, lambda r=r: runner.epoch(X, y, batch, r + 1))
                 for r in range(rounds)]
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    device = str(runner.model.device) if hasattr(runner, "model") else (
        getattr(runner, "device", "cpu"))
    epoch = statistics.median(per_epoch)
    return {"device": device, "seconds": epoch / steps,
            "compile_s": max(0.0, first - epoch),
            "gemm_gflops": gemm_limit(contender, sizes, batch),
            "rss_added_mb": (rss_after - rss_before) / 1024,
            "rss_peak_mb": rss_after / 1024, "device_mb": _peak_device_bytes(contender) / 2**20}


def worker(contender: str, case: str, rounds: int) -> dict[str, Any]:
    """Runs in its own process: median seconds per step over ``rounds`` rounds."""
    sizes, batch, steps = CASES[case]
    runner = build(contender, sizes)
    X, y = make_data(sizes, batch, 8)
    batches = [runner.put(X[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
               for i in range(8)] if hasattr(runner, "put") else [
        (X[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]) for i in range(8)]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    warm = max(3, steps // 10)  # warm-up (compilation, allocator, BLAS threads)
    warm_s = [_synced(runner, lambda i=i: runner.step(*batches[i % 8])) for i in range(warm)]
    per_step = []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(steps):
            runner.step(*batches[i % 8])
        runner.sync()
        per_step.append((time.perf_counter() - start) / steps)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    device = str(runner.model.device) if hasattr(runner, "model") else (
        getattr(runner, "device", "cpu"))
    seconds = statistics.median(per_step)
    return {"device": device, "seconds": seconds,
            "compile_s": max(0.0, sum(warm_s) - warm * seconds),
            "gemm_gflops": gemm_limit(contender, sizes, batch),
            "rss_added_mb": (rss_after - rss_before) / 1024,
            "rss_peak_mb": rss_after / 1024, "device_mb": _peak_device_bytes(contender) / 2**20}


def available(contender: str) -> bool:
    import importlib.util

    lib = {"torch.nn": "torch", "plain_numpy": "numpy"}.get(contender.split(":")[0])
    if lib is None:
        lib = parse(contender)[0]
    return importlib.util.find_spec(lib) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=None,
                        help="cupy or torch for the GPU comparison; default: CPU contenders")
    parser.add_argument("--device", default=None, help="ignored (GPU 0 is used)")
    parser.add_argument("--contenders", default=None, help="comma list (default: all here)")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--procs", type=int, default=None,
                        help="processes per contender (default 3 on CPU, 1 on a GPU)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every library in the worker processes (default: "
                        "each library's own; 1 keeps a shared machine's numbers steady)")
    parser.add_argument("--fit", action="store_true",
                        help="time full fit epochs (shuffling, metrics) instead of bare steps")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--worker", nargs=2, metavar=("CONTENDER", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        work = fit_worker if args.fit else worker
        print(json.dumps(work(args.worker[0], args.worker[1], args.rounds)))
        return
    if args.contenders:
        contenders = args.contenders.split(",")
    elif args.backend in GPU_CONTENDERS:
        contenders = GPU_CONTENDERS[args.backend]
    else:
        contenders = CPU_CONTENDERS
    contenders = [c for c in contenders if available(c)]
    if args.procs is None:
        args.procs = 1 if args.backend in GPU_CONTENDERS else 3
    if args.backend in GPU_CONTENDERS:
        import anyfc

        if "cupy" in contenders[0] and "cupy" not in anyfc.available_backends():
            print("no usable CuPy GPU here: nothing to benchmark")
            return
    env = dict(os.environ)
    if args.threads:
        n = str(args.threads)
        env.update(OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n,
                   XLA_FLAGS=f"{env.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen="
                   f"{'true' if args.threads > 1 else 'false'} "
                   f"intra_op_parallelism_threads={n}".strip())
    results: dict[str, dict[str, Any]] = {}
    print_header(args.fit)
    for case in args.cases.split(","):
        # the processes of one round run one after the other, contender by contender, so
        # a change in the machine's load falls on every contender alike
        runs: dict[str, list[dict[str, Any]]] = {c: [] for c in contenders}
        failed: set[str] = set()
        for _ in range(args.procs):
            for contender in contenders:
                if contender in failed:
                    continue
                cmd = [sys.executable, __file__, "--worker", contender, case,
                       "--rounds", str(args.rounds)] + (["--fit"] if args.fit else [])
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    print(f"{contender} {case} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                    failed.add(contender)
                    continue
                runs[contender].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        for contender in contenders:
            got = runs[contender]
            if not got:
                continue
            row = {k: statistics.median(r[k] for r in got) for k in got[0] if k != "device"}
            row.update(device=got[0]["device"], all_ms=[r["seconds"] * 1e3 for r in got])
            results[f"{case}|{contender}"] = row
            print_row(results, contenders, case, contender)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)


def print_header(fit: bool = False) -> None:
    what = "ms/step in a fit epoch (median)" if fit else "ms/step (median)"
    print(f"| case | contender | device | {what} | vs torch.nn | GFLOP/s | GEMM GFLOP/s "
          "| % of GEMM | peak RSS added (MB) | device MB | compile s |", flush=True)
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)


def print_row(results: dict[str, dict[str, Any]], contenders: list[str], case: str,
              contender: str) -> None:
    """One table row; the ratio is to torch.nn, which each case runs first."""
    base_name = next((c for c in contenders if c.startswith("torch.nn")), None)
    sizes, batch, _ = CASES[case]
    r = results[f"{case}|{contender}"]
    base = results.get(f"{case}|{base_name}")
    ratio = r["seconds"] / base["seconds"] if base else float("nan")
    gflops = step_flops(sizes, batch) / r["seconds"] / 1e9
    shape = "-".join(map(str, sizes))
    print(f"| {shape} b{batch} | {contender} | {r['device']} | {r['seconds'] * 1e3:.3f} "
          f"| {ratio:.2f}x | {gflops:.0f} | {r['gemm_gflops']:.0f} "
          f"| {100 * gflops / r['gemm_gflops']:.0f}% | {r['rss_added_mb']:.1f} "
          f"| {r['device_mb']:.0f} | {r.get('compile_s', float('nan')):.1f} |", flush=True)


if __name__ == "__main__":
    main()
