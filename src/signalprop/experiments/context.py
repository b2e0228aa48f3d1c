"""Running an experiment: the run directory, its config, the sub-runs and the summary.

An experiment's ``run(ctx)`` trains one or more models through :meth:`RunContext.fit` (one
sub-directory each, resumable) and returns ``{"results": ..., "series": ..., "tables": ...}``.
:func:`run_experiment` adds the claims' verdicts and writes ``summary.json``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from signalprop import config as config_lib
from signalprop import distributed
from signalprop.errors import (
    ConfigError,
    DatasetCorrupt,
    DatasetMissing,
    DivergenceError,
    SignalpropError,
)
from signalprop.experiments.registry import Experiment
from signalprop.learning.base import LearningRule, LossFn
from signalprop.runs import new_run_dir, run_metadata
from signalprop.storage import atomic_write_json
from signalprop.train import TrainConfig, fit, seed_everything

_NOTED: set[str] = set()


def unavailable_reason(name: str, exc: Exception) -> str:
    """A short reason why dataset ``name`` cannot be used: not found, incomplete (naming the
    folder and the missing files) or corrupt (naming the file)."""
    from signalprop.data.paths import DISPLAY_NAMES, short_missing

    display = DISPLAY_NAMES.get(name, name)
    if isinstance(exc, DatasetCorrupt) and getattr(exc, "path", None) is not None:
        return f"{display} file {exc.path} is corrupt (delete it and reinstall it)"
    if isinstance(exc, DatasetMissing) and name in DISPLAY_NAMES:
        return short_missing(name)
    text = str(exc)
    return f"{display} unavailable ({text if len(text) <= 120 else text[:117] + '...'})"


@dataclass
class RunContext:
    """What an experiment's ``run`` function gets: config, run directory, device and helpers.

    Under torchrun every rank runs the experiment with the same run directory; only rank 0
    (:attr:`is_main`) writes into it: :meth:`fit` and :meth:`write_json` take care of that.
    """

    experiment: Experiment
    config: Any
    run_dir: Path
    device: torch.device
    seed: int = 0
    quick: bool = False
    progress: bool | None = None
    datasets_used: list[str] = field(default_factory=list)
    fallbacks: list[dict[str, str]] = field(default_factory=list)

    @property
    def is_main(self) -> bool:
        """True on the rank that writes files (rank 0; always true without torchrun)."""
        return distributed.is_main_process()

    def log(self, message: str) -> None:
        if self.is_main:
            print(f"[{self.experiment.name}] {message}", file=sys.stderr, flush=True)

    def note_once(self, message: str) -> None:
        """Log ``message`` unless this process already has (e.g. a dataset fallback that
        every experiment of ``reproduce`` would repeat)."""
        if message not in _NOTED:
            _NOTED.add(message)
            if self.is_main:
                print(f"signalprop: {message}", file=sys.stderr, flush=True)

    def write_json(self, name: str, data: Any) -> Path:
        """Atomically write ``<run_dir>/<name>`` as JSON (rank 0 only); returns the path."""
        path = self.run_dir / name
        if self.is_main:
            atomic_write_json(path, data)
        return path

    def write_jsonl(self, name: str, records: list[dict[str, Any]]) -> Path:
        """Write ``<run_dir>/<name>`` as JSON lines, one record each (rank 0 only)."""
        path = self.run_dir / name
        if self.is_main:
            text = "".join(json.dumps(r, allow_nan=True) + "\n" for r in records)
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
        return path

    def load_data(self, name: str, fallback: str | None = None, **options: Any):
        """Load a dataset; when it is missing use ``fallback`` and say so in one line."""
        from signalprop import data

        try:
            splits = data.load(name, seed=self.seed, **options)
        except (DatasetMissing, DatasetCorrupt) as exc:
            if fallback is None:
                raise
            self.note_once(f"{unavailable_reason(name, exc)}; using {fallback} instead")
            self.fallbacks.append({"wanted": name, "used": fallback, "reason": str(exc)})
            accepted = data.options_of(fallback)
            splits = data.load(fallback, seed=self.seed,
                               **{k: v for k, v in options.items() if k in accepted})
        if splits.name not in self.datasets_used:
            self.datasets_used.append(splits.name)
        return splits

    def fit(
        self,
        name: str,
        model: nn.Module,
        splits: Any,
        train: TrainConfig,
        *,
        seed: int | None = None,
        rules: tuple[LearningRule, ...] = (),
        loss_fn: LossFn | None = None,
        on_epoch: Any = None,
    ) -> dict[str, Any]:
        """Train ``model`` in the sub-run ``<run_dir>/<name>`` (resumes if it exists)."""
        return fit(
            model, splits.train, splits.test, train, self.run_dir / name,
            seed=self.seed if seed is None else seed, task=splits.task, device=self.device,
            rules=rules, loss_fn=loss_fn, on_epoch=on_epoch, progress=self.progress,
            desc=f"{self.experiment.name}/{name}",
        )

    def seeds(self, count: int) -> list[int]:
        """``count`` seeds starting at the run's base seed."""
        return [self.seed + i for i in range(count)]

    def figure_path(self, name: str) -> Path:
        """``<run_dir>/figures/<name>``; the folder is created on rank 0, which saves figures."""
        path = self.run_dir / "figures" / name
        if self.is_main:
            path.parent.mkdir(parents=True, exist_ok=True)
        return path


def resolve_config(experiment: Experiment, quick: bool, overrides: list[str]) -> Any:
    """Default config, then the quick overrides, then the user's ``--set`` overrides."""
    cfg = experiment.make_config()
    if quick and experiment.quick:
        cfg = config_lib.apply_dict(cfg, experiment.quick)
    return config_lib.apply_overrides(cfg, overrides)


def missing_requirements(experiment: Experiment) -> str | None:
    """A one-line reason when a dataset the experiment requires is absent, else None."""
    from signalprop import data

    for name in experiment.requires:
        ok, reason = data.is_available(name)
        if not ok:
            return reason
    return None


def evaluate_claims(experiment: Experiment, summary: dict[str, Any], command: str, *,
                    quick: bool = False, health: dict | None = None,
                    config: dict | None = None) -> list[dict]:
    """Judge each of the experiment's claims from ``summary`` by its own rule, after the
    checks every claim shares (run health, data, seeds: see :mod:`signalprop.experiments.judging`).
    A run made before its experiment used the study runner has no ``rows``; the experiment's
    ``legacy_rows`` reads them from the results it stored then.
    """
    from signalprop.experiments.judging import judge
    from signalprop.experiments.paper_budgets import scales_of

    health = summary.get("health", {}) if health is None else health
    results = summary.get("results")
    if isinstance(results, dict):
        summary = {**summary, "results": experiment.with_rows(results)}
    scales = scales_of(experiment.name, len(experiment.claims))
    return [judge(claim, summary, command=command, quick=quick, health=health, config=config,
                  scale=scale) for claim, scale in zip(experiment.claims, scales, strict=True)]


def run_experiment(
    experiment: Experiment,
    *,
    out: Path = Path("runs"),
    quick: bool = False,
    seed: int = 0,
    overrides: list[str] | None = None,
    device: torch.device | None = None,
    resume: Path | None = None,
    progress: bool | None = None,
    resume_overrides: list[str] | None = None,
) -> Path:
    """Run ``experiment`` in a new run directory (or resume ``resume``); return the directory.

    ``resume_overrides`` (``--resume DIR --set ...``) may change only the training settings
    listed in :mod:`signalprop.experiments.resuming`; they are recorded in ``config.json``. A new
    run that fails before its first training step (e.g. a data error) leaves no directory
    behind, so ``--resume`` cannot pick it.
    """
    from signalprop.experiments import resuming

    device = device or torch.device("cpu")
    if resume is not None:
        resume = Path(resume)
        try:
            saved = json.loads((resume / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SignalpropError(
                f"cannot resume {resume}: unreadable config.json ({exc})"
            ) from None
        if saved.get("experiment") != experiment.name:
            raise ConfigError(
                f"{resume} is a run of {saved.get('experiment')!r}, not {experiment.name!r}"
            )
        cfg = config_lib.from_dict(experiment.make_config(), saved["config"])
        quick, seed, run_dir = saved.get("quick", False), saved.get("seed", 0), resume
        overrides = saved.get("overrides", [])
        meta = saved.get("meta", {})
        if resume_overrides:
            cfg = resuming.apply_resume_overrides(cfg, resume_overrides, resume,
                                                  (resume / "summary.json").exists())
    else:
        cfg = resolve_config(experiment, quick, overrides or [])
        run_dir = _shared_run_dir(out, experiment.name)
        meta = run_metadata(device)
        if distributed.is_distributed():
            meta["world_size"] = distributed.world_size()
    quick_flag = " --quick" if quick else ""
    command = f"signalprop run {experiment.name}{quick_flag} --seed {seed}"
    if overrides:
        command += "".join(f" --set {o}" for o in overrides)
    ctx = RunContext(experiment, cfg, run_dir, device, seed=seed, quick=quick, progress=progress)
    record = {
        "experiment": experiment.name, "summary": experiment.summary, "paper": experiment.paper,
        "claim": "; ".join(c.text for c in experiment.claims) or experiment.summary,
        "quick": quick, "seed": seed, "overrides": list(overrides or []), "command": command,
        "config": config_lib.to_dict(cfg),
        "meta": meta,
    }
    if resume is not None and saved.get("resumed"):
        record["resumed"] = saved["resumed"]
    if resume is not None and resume_overrides:
        record = resuming.record_resume(record, resume_overrides, cfg)
    ctx.write_json("config.json", record)
    seed_everything(seed)
    started = time.perf_counter()
    try:
        summary = experiment.run(ctx)
    except DivergenceError as exc:
        exc.experiment_dir = run_dir
        raise
    except Exception:
        if resume is None and ctx.is_main:
            _remove_if_untrained(run_dir)
        raise
    summary = {
        "experiment": experiment.name, "wall_s": time.perf_counter() - started,
        "quick": quick, "datasets": ctx.datasets_used, "fallbacks": ctx.fallbacks, **summary,
    }
    if ctx.is_main:
        from signalprop.experiments.judging import subrun_health

        summary["health"] = subrun_health(run_dir)
    summary["claims"] = evaluate_claims(experiment, summary, command, quick=quick,
                                        config=record["config"])
    ctx.write_json("summary.json", summary)
    return run_dir


def _remove_if_untrained(run_dir: Path) -> None:
    """Delete a new run directory that holds no training output (no checkpoint, no metrics)."""
    import shutil

    trained = any(p.name.startswith("checkpoint.pt") or (p.name == "metrics.jsonl"
                                                         and p.stat().st_size)
                  for p in run_dir.rglob("*") if p.is_file())
    if not trained and not (run_dir / "summary.json").exists():
        shutil.rmtree(run_dir, ignore_errors=True)


def _shared_run_dir(out: Path, experiment: str) -> Path:
    """A new run directory, created by rank 0; every rank gets its path."""
    return distributed.broadcast_object(
        new_run_dir(out, experiment) if distributed.is_main_process() else None)
