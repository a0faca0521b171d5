"""Sweep benchmark: an lr x seed grid trained as one batch against one run at a time.

Times, on this machine (CPU seconds of the process and wall seconds, with the load average
before and after each measurement):

* (a) one digits-mlp run alone (adam, 10 epochs of minibatch:64 = 230 steps, evaluated
  every 7 steps, as ``compare`` trains it);
* (b) the 7 lr x 5 seed grid of such runs, trained by ``runner.sweep`` into a fresh folder,
  batched (``vectorize=True``, the default) and one by one (``vectorize=False``);
* (c) ``descentlab.lab.compare()`` with its defaults (ravine and digits-mlp, 5 optimizers,
  lrs="auto", 3 seeds) into a fresh folder, with the in-process executor batching and not
  (``InProcessExecutor(vectorize=...)``); the lr range tests are part of both.

Never collected by pytest. Run: python benchmarks/sweep.py [--repeats 3] [--no-compare]
[--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from descentlab.lab import compare
from descentlab.lab.compare import EVALUATIONS
from descentlab.lab.executors import InProcessExecutor
from descentlab.lab.runner import run_one
from descentlab.lab.spec import parse_optimizer, parse_regime
from descentlab.lab.sweep import sweep
from descentlab.lab.training import RunSpec
from descentlab.lab.workloads import WORKLOADS

WORKLOAD = "digits-mlp"
LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)  # 7 lrs half a decade apart, as lrs="auto"
SEEDS = 5
STEPS = 230  # compare's 10 epochs of minibatch:64 on 1437 samples
EVAL_EVERY = STEPS // EVALUATIONS  # as compare evaluates them


def grid() -> list[RunSpec]:
    opt, regime = parse_optimizer("adam"), parse_regime("minibatch:64")
    return [
        RunSpec(WORKLOAD, opt, lr, seed, regime, STEPS, EVAL_EVERY)
        for lr in LRS
        for seed in range(SEEDS)
    ]


def load() -> float:
    return os.getloadavg()[0]


def timed(label: str, work: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of ``repeats`` calls of ``work``; prints each."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = load()
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        print(
            f"  {label}: wall {walls[-1]:7.2f} s, CPU {cpus[-1]:7.2f} s "
            f"(load {before:.2f} -> {load():.2f})",
            flush=True,
        )
    return statistics.median(walls), statistics.median(cpus)


def in_fresh_folder(work: Callable[[Path], object]) -> Callable[[], object]:
    def run() -> object:
        with tempfile.TemporaryDirectory(prefix="descentlab-bench-") as folder:
            return work(Path(folder))

    return run


def defaults(vectorize: bool) -> Callable[[Path], object]:
    """``compare()`` with its defaults into a folder, batching or not."""

    def run(folder: Path) -> object:
        return compare(out=folder, executor=InProcessExecutor(vectorize), progress=False)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timings of (a) and batched (b)")
    parser.add_argument("--no-compare", action="store_true", help="skip (c)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    build = WORKLOADS[WORKLOAD].build
    builds = {WORKLOAD: build}
    specs = grid()
    print(
        f"{os.cpu_count()} CPUs, torch {torch.__version__} on {torch.get_num_threads()} "
        f"thread(s); load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    run_one(specs[0], build)  # warm up: imports, the data, the kernels
    in_fresh_folder(lambda f: sweep(specs[:2], builds, f))()

    results: dict[str, tuple[float, float]] = {}
    print(f"(a) one {WORKLOAD} run (adam, {STEPS} steps, evaluated every {EVAL_EVERY})")
    results["solo"] = timed("solo", lambda: run_one(specs[len(specs) // 2], build), args.repeats)
    print(f"(b) the {len(LRS)} lr x {SEEDS} seed grid ({len(specs)} runs) through runner.sweep")
    results["grid batched"] = timed(
        "batched", in_fresh_folder(lambda f: sweep(specs, builds, f)), args.repeats
    )
    results["grid one by one"] = timed(
        "one by one", in_fresh_folder(lambda f: sweep(specs, builds, f, vectorize=False)), 1
    )
    if not args.no_compare:
        print("(c) compare() with its defaults")
        for vectorize in (True, False):
            name = f"compare {'batched' if vectorize else 'one by one'}"
            results[name] = timed(name, in_fresh_folder(defaults(vectorize)), 1)
    solo_wall, solo_cpu = results["solo"]
    print(f"\nmedians (load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    print(f"{'':24} {'wall s':>8} {'x solo':>7} {'CPU s':>8} {'x solo':>7}")
    for name, (wall, cpu) in results.items():
        print(f"{name:24} {wall:8.2f} {wall / solo_wall:7.1f} {cpu:8.2f} {cpu / solo_cpu:7.1f}")


if __name__ == "__main__":
    main()
