"""Time one SGD training step of a 784-256-256-10 MLP with BatchNorm and Dropout:

    Dense(784, 256) → BatchNorm → ReLU → Dropout(0.3) → Dense(256, 256) → BatchNorm → ReLU
    → Dropout(0.3) → Dense(256, 10), softmax cross-entropy, float32

anyfc on each CPU backend against the same model in torch.nn (BatchNorm1d, Dropout,
autograd, torch.optim.SGD). Each contender runs in its own process, ``--procs`` times;
each process reports the median of ``--rounds`` rounds; the table gives the median over
processes and the ratio to torch.nn measured in the same run.

    python benchmarks/batchnorm_dropout.py --procs 5 --batch 128
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

SIZES = [784, 256, 256, 10]
CONTENDERS = ["torch.nn", "anyfc:numpy", "anyfc:torch", "anyfc:jax"]
LR = 0.01


def data(batch: int, n_batches: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((batch * n_batches, SIZES[0]), dtype=np.float32),
            rng.integers(0, SIZES[-1], batch * n_batches))


def anyfc_runner(backend: str, batch: int) -> tuple[Any, Any]:
    import anyfc

    w = {"backend": backend}
    layers: list[Any] = []
    for i, (a, b) in enumerate(zip(SIZES[:-2], SIZES[1:-1])):
        layers += [anyfc.Dense(a, b, None, seed=i, **w), anyfc.BatchNorm(b, **w),
                   anyfc.ReLU(**w), anyfc.Dropout(0.3, seed=i, **w)]
    model = anyfc.Sequential(layers + [anyfc.Dense(SIZES[-2], SIZES[-1], "identity", seed=9,
                                                   **w)])
    opt = anyfc.optimizers.SGD(LR)
    X, y = data(batch)
    xs = [anyfc.to_backend(X[i:i + batch], backend, dtype="float32")
          for i in range(0, len(X), batch)]
    ts = [anyfc.to_backend(y[i:i + batch], backend) for i in range(0, len(y), batch)]
    ts = [anyfc._validation.targets(t, model.loss, model.xp, model.device, model.dtype,
                                    batch, 10) for t in ts]

    def step(k: int) -> Any:
        return model.train_step(xs[k % len(xs)], ts[k % len(ts)], opt)

    return step, anyfc.synchronize


def torch_runner(batch: int) -> tuple[Any, Any]:
    import torch

    torch.manual_seed(0)
    mods: list[Any] = []
    for a, b in zip(SIZES[:-2], SIZES[1:-1]):
        mods += [torch.nn.Linear(a, b), torch.nn.BatchNorm1d(b), torch.nn.ReLU(),
                 torch.nn.Dropout(0.3)]
    net = torch.nn.Sequential(*mods, torch.nn.Linear(SIZES[-2], SIZES[-1]))
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    X, y = data(batch)
    xs = [torch.from_numpy(X[i:i + batch]) for i in range(0, len(X), batch)]
    ts = [torch.from_numpy(y[i:i + batch]) for i in range(0, len(y), batch)]

    def step(k: int) -> Any:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xs[k % len(xs)]), ts[k % len(ts)])
        loss.backward()
        opt.step()
        return loss

    return step, lambda out: None


def worker(contender: str, batch: int, rounds: int, steps: int) -> dict[str, float]:
    runner = torch_runner(batch) if contender == "torch.nn" else anyfc_runner(
        contender.split(":")[1], batch)
    step, sync = runner
    t0 = time.perf_counter()
    sync(step(0))  # warm-up (JAX compiles here)
    first = time.perf_counter() - t0
    for k in range(1, 10):
        out = step(k)
    sync(out)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for k in range(steps):
            out = step(k)
        sync(out)
        times.append((time.perf_counter() - t0) / steps)
    return {"step_s": statistics.median(times), "first_step_s": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--procs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.batch, args.rounds, args.steps)))
        return
    contenders = args.contenders.split(",")
    results: dict[str, list[float]] = {c: [] for c in contenders}
    for _ in range(args.procs):  # interleaved, so drift on a shared machine hits all alike
        for contender in contenders:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", contender, "--batch", str(args.batch),
                 "--rounds", str(args.rounds), "--steps", str(args.steps)],
                capture_output=True, text=True, check=True)
            results[contender].append(json.loads(out.stdout.splitlines()[-1])["step_s"])
    base = statistics.median(results[contenders[0]])
    print(f"| contender (batch {args.batch}) | ms per step (median of {args.procs} processes) "
          f"| × {contenders[0]} |")
    print("| --- | ---: | ---: |")
    for contender in contenders:
        median = statistics.median(results[contender])
        print(f"| {contender} | {median * 1e3:.2f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
