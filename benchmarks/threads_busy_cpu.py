"""torch's default thread count against signalprop's default on a CPU that other work keeps busy.

Starts ``--competitors`` busy processes (default: one per core), so the machine is loaded
however idle it was, then times, interleaved in one process, one forward and backward pass of
the README's 1,000-layer ``AdditiveFilterMLP(40, 64, 1000, 10)`` on a batch of 128 with

* torch's default: one thread per core (``os.sched_getaffinity``), and
* ``signalprop.threads.default_threads()``: ``max(1, cores - floor(load))``, read under the load.

``--experiment NAME`` also times ``signalprop run NAME --quick`` as a subprocess, alternately
with ``--threads <cores>`` and with no ``--threads`` (the default rule). Prints JSON: medians,
ratios (torch default / signalprop default; above 1 means the default is faster), load
averages before and after, cores. The numbers are in docs/threads.md.

    python benchmarks/threads_busy_cpu.py [--repeats 5] [--competitors N] [--depth 1000]
                                          [--experiment NAME]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from signalprop.nn.orthogonal import AdditiveFilterMLP
from signalprop.threads import available_cores, default_threads, load_average


def _spin(stop: mp.synchronize.Event) -> None:  # type: ignore[name-defined]
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def _step_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    start = time.perf_counter()
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    return time.perf_counter() - start


def _run_seconds(experiment: str, threads: int | None) -> float:
    extra = [] if threads is None else ["--threads", str(threads)]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "signalprop.cli", "run", experiment, "--quick",
                        "--no-progress", "--out", out, *extra], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


def measure(repeats: int, competitors: int, experiment: str | None, depth: int = 1000,
            settle_s: float = 5.0) -> dict:
    cores = available_cores()
    before = load_average()
    stop = mp.Event()
    spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(competitors)]
    for proc in spinners:
        proc.start()
    try:
        time.sleep(settle_s if competitors else 0.0)  # the load average sees the competitors
        chosen = default_threads()
        torch.manual_seed(0)
        model = AdditiveFilterMLP(40, width=64, depth=depth, out_features=10)
        x, y = torch.randn(128, 40), torch.randint(0, 10, (128,))
        times: dict[str, list[float]] = {"torch default": [], "signalprop default": []}
        for threads in (cores, chosen):
            torch.set_num_threads(threads)
            _step_seconds(model, x, y)  # warm-up
        for _ in range(repeats):  # interleaved, so both see the same load
            for threads, key in ((cores, "torch default"), (chosen, "signalprop default")):
                torch.set_num_threads(threads)
                times[key].append(_step_seconds(model, x, y))
        runs: dict[str, list[float]] = {}
        if experiment:
            for _ in range(max(1, repeats // 2)):
                runs.setdefault("torch default", []).append(_run_seconds(experiment, cores))
                runs.setdefault("signalprop default", []).append(_run_seconds(experiment, None))
        during = load_average()
    finally:
        stop.set()
        for proc in spinners:
            proc.join(timeout=10)
    step = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "threads_busy_cpu",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": cores,
                    "torch": torch.__version__, "competitors": competitors},
        "command": " ".join(["python", *sys.argv]),
        "load_average": {"before": before, "during": during},
        "threads": {"torch default": cores, "signalprop default": chosen},
        "fwd_bwd_seconds_median": step,
        "fwd_bwd_seconds_all": times,
        "ratios": {f"fwd/bwd, {depth}-layer MLP: torch default / signalprop default":
                   step["torch default"] / step["signalprop default"]},
    }
    if runs:
        wall = {k: statistics.median(v) for k, v in runs.items()}
        result["run_seconds_median"] = wall
        result["run_seconds_all"] = runs
        result["ratios"][f"signalprop run {experiment} --quick: torch default / signalprop "
                         "default"] = wall["torch default"] / wall["signalprop default"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--depth", type=int, default=1000, help="MLP depth (default 1000)")
    parser.add_argument("--competitors", type=int, default=None,
                        help="busy processes started beside the timing (default: one per core)")
    parser.add_argument("--experiment", default=None, help="also time `signalprop run NAME "
                        "--quick` with each thread count")
    args = parser.parse_args()
    competitors = available_cores() if args.competitors is None else args.competitors
    if args.repeats < 1 or competitors < 0 or args.depth < 1:
        parser.error("--repeats and --depth must be >= 1 and --competitors >= 0")
    print(json.dumps(measure(args.repeats, competitors, args.experiment, args.depth), indent=1))


if __name__ == "__main__":
    main()
