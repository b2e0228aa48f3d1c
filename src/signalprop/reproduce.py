"""``signalprop reproduce``: run every registered experiment, skip what cannot run, resume what
already finished in the same output directory, then write the report.

A finished run is recognised by its ``config.json`` (same experiment, quick flag, seed,
overrides and resolved config, so a changed default reruns it; a field the saved config lacks
counts as today's default) and its ``summary.json``; an unfinished one is resumed from its
checkpoints.
"""

from __future__ import annotations

import fnmatch
import json
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch

from signalprop import config as config_lib
from signalprop.errors import DivergenceError, SignalpropError
from signalprop.experiments.context import (
    missing_requirements,
    resolve_config,
    run_experiment,
)
from signalprop.experiments.registry import Experiment, all_experiments, get_experiment
from signalprop.reproduce_progress import Progress


@dataclass(frozen=True)
class Outcome:
    """What happened to one experiment: ``ran``, ``resumed`` (an interrupted run of the same
    settings continued), ``reused`` (finished before), ``skipped`` or ``failed``."""

    name: str
    status: str
    run_dir: Path | None = None
    reason: str = ""


def select(only: str | None) -> list[Experiment]:
    """Registered experiments whose name matches the glob ``only`` (all when None)."""
    chosen = [e for e in all_experiments() if only is None or fnmatch.fnmatch(e.name, only)]
    if not chosen:
        raise SignalpropError(f"--only {only!r} matches no experiment (`signalprop list`)")
    return chosen


def seed_overrides(experiment: Experiment, seeds: int | None, quick: bool = False) -> list[str]:
    """``<group>.seeds=N`` for every ``seeds`` field in the experiment's config.

    ``--seeds N`` sets them all to N. Without it a full run raises each one below
    :data:`~signalprop.experiments.judging.MIN_SEEDS` to that minimum, so claims comparing
    stochastic outcomes are decided on enough seeds; a quick run keeps its own (its verdicts are
    labelled indicative).
    """
    from signalprop.experiments.judging import MIN_SEEDS

    if seeds is not None and seeds < 1:
        raise SignalpropError(f"--seeds must be >= 1, got {seeds}")
    cfg = resolve_config(experiment, quick, [])
    keys = [k for k in config_lib.field_names(cfg) if k.split(".")[-1] == "seeds"]
    if seeds is not None:
        return [f"{key}={seeds}" for key in keys]
    if quick:
        return []
    return [f"{key}={MIN_SEEDS}" for key in keys if _value(cfg, key) < MIN_SEEDS]


def _value(cfg: object, dotted: str) -> int:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return int(cfg)  # type: ignore[call-overload]


def _json(cfg: object) -> object:
    return json.loads(json.dumps(config_lib.to_dict(cfg)))


def find_previous(
    out: Path, name: str, quick: bool, seed: int, overrides: list[str],
    config: object | None = None,
) -> Path | None:
    """The newest run of ``name`` under ``out`` made with the same settings (and, when given,
    the same resolved ``config`` dataclass), if any."""
    base = out / name
    if not base.is_dir():
        return None
    for run_dir in sorted(base.iterdir(), reverse=True):
        try:
            saved = json.loads((run_dir / "config.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if (saved.get("quick") == quick and saved.get("seed") == seed
                and saved.get("overrides", []) == overrides
                and (config is None or _same_config(config, saved.get("config")))):
            return run_dir
    return None


def _same_config(config: object, saved: object) -> bool:
    """Whether a saved ``config.json`` entry, read with today's defaults for the fields it
    lacks, equals ``config``."""
    if not isinstance(saved, dict):
        return False
    try:
        return _json(config_lib.from_dict(config, saved)) == _json(config)
    except (TypeError, ValueError, SignalpropError):
        return False


def run_one(name: str, out: Path, quick: bool, seed: int, seeds: int | None, device: str,
            threads: int | None = None, progress: bool | None = False) -> Outcome:
    """Run, resume or reuse one experiment; never raises for an experiment's own failure."""
    from signalprop.device import resolve_device

    if threads:
        from signalprop.threads import set_threads

        set_threads(threads)
    experiment = get_experiment(name)
    reason = missing_requirements(experiment)
    if reason:
        return Outcome(name, "skipped", reason=reason)
    overrides = seed_overrides(experiment, seeds, quick)
    config = resolve_config(experiment, quick, overrides)
    previous = find_previous(out, name, quick, seed, overrides, config)
    if previous is not None and (previous / "summary.json").exists():
        return Outcome(name, "reused", previous)
    try:
        run_dir = run_experiment(
            experiment, out=out, quick=quick, seed=seed, overrides=overrides,
            device=resolve_device(device), resume=previous, progress=progress,
        )
    except DivergenceError as exc:
        return Outcome(name, "failed", reason=f"diverged: {exc}")
    return Outcome(name, "ran" if previous is None else "resumed", run_dir)


def reproduce(
    out: Path, *, quick: bool, only: str | None = None, seed: int = 0,
    seeds: int | None = None, jobs: int = 1, device: str = "auto",
) -> list[Outcome]:
    """Run the selected experiments (``jobs`` at a time) and return their outcomes in order."""
    if jobs < 1:
        raise SignalpropError(f"--jobs must be >= 1, got {jobs}")
    names = [e.name for e in select(only)]
    for name in names:
        seed_overrides(get_experiment(name), seeds, quick)  # validate before starting anything
    args = [(name, out, quick, seed, seeds, device) for name in names]
    progress = Progress(len(names), quick)
    try:
        if jobs == 1:
            outcomes = []
            for index, arg in enumerate(args, 1):
                progress.start(arg[0], index)
                outcomes.append(run_one(*arg, None, None))  # per-epoch bars on a terminal
                progress.end(outcomes[-1])
            return outcomes
        threads = max(1, torch.get_num_threads() // jobs)  # the choice, shared by the jobs
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(run_one, *arg, threads): arg[0] for arg in args}
            progress.note(f"{len(names)} experiments, {jobs} at a time")
            for future in as_completed(futures):
                progress.end(future.result())
            return [future.result() for future in futures]
    finally:
        progress.close()
