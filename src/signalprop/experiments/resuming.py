"""What ``signalprop run NAME --resume DIR --set KEY=VALUE`` may change, and the rerun advice
printed after a divergence.

Only training settings that leave what was already trained valid can change on resume:
``lr`` (the optimiser's rate is rescaled from the checkpoint on), ``epochs`` (more epochs
continue finished models) and ``grad_clip``, each in a :class:`~signalprop.train.TrainConfig`
group of the experiment's config. Anything else is refused with a one-line error; the changes
are recorded under ``resumed`` in the run's ``config.json``.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from signalprop import config as config_lib
from signalprop.errors import ConfigError, DivergenceError
from signalprop.experiments.registry import Experiment
from signalprop.train import TrainConfig

SAFE_ON_RESUME = ("lr", "epochs", "grad_clip")


def safe_keys(cfg: Any, prefix: str = "") -> list[str]:
    """The dotted keys of ``cfg`` that ``--resume`` may change."""
    keys = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, TrainConfig):
            keys += [f"{prefix}{f.name}.{name}" for name in SAFE_ON_RESUME]
        elif dataclasses.is_dataclass(value):
            keys += safe_keys(value, f"{prefix}{f.name}.")
    return keys


def apply_resume_overrides(cfg: Any, overrides: list[str], run_dir: Path,
                           finished: bool) -> Any:
    """``cfg`` with ``overrides`` applied, or ConfigError if one may not change on resume."""
    changed = config_lib.apply_overrides(cfg, overrides)  # unknown keys, bad values
    allowed = safe_keys(cfg)
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key not in allowed:
            raise ConfigError(
                f"--set {key} cannot change a run being resumed (only "
                f"{', '.join(allowed) or 'nothing'} can); start a new run without --resume")
    if finished and not any(item.split("=", 1)[0].strip().endswith(".epochs")
                            for item in overrides):
        raise ConfigError(
            f"{run_dir} has finished, so --set {' '.join(overrides)} would change nothing; "
            "raise its train.epochs to continue it, or start a new run without --resume")
    return changed


def record_resume(saved: dict[str, Any], overrides: list[str], cfg: Any) -> dict[str, Any]:
    """``config.json`` contents with the new config and the history of resume overrides."""
    entry = {"overrides": list(overrides),
             "time": datetime.now(UTC).isoformat(timespec="seconds")}
    return {**saved, "config": config_lib.to_dict(cfg),
            "resumed": [*saved.get("resumed", []), entry]}


def rerun_advice(experiment: Experiment, exc: DivergenceError) -> str:
    """A command that continues the diverged run with a lower learning rate, when the run's
    ``train.lr`` is the rate that diverged; otherwise where to find the keys."""
    run_dir = exc.experiment_dir
    if run_dir is None or exc.lr is None:
        return ""
    saved = _saved_config(Path(run_dir)) or {}
    default = experiment.make_config()
    if saved.get("quick") and experiment.quick:
        default = config_lib.apply_dict(default, experiment.quick)
    train = getattr(default, "train", None)
    used = saved.get("config", {}).get("train", {}).get("lr") if saved else None
    if not isinstance(train, TrainConfig) or used != exc.lr:
        return (f"; lower that model's learning rate in a new run (`signalprop list --config "
                f"{experiment.name}` shows the keys)")
    lower = train.lr if exc.lr > train.lr else exc.lr / 10
    why = "the experiment's default" if exc.lr > train.lr else "a tenth of it"
    clip = " --set train.grad_clip=1" if exc.lr <= train.lr and not saved["config"]["train"].get(
        "grad_clip") else ""
    return (f"; to continue with a lower rate ({why}) run: signalprop run {experiment.name} "
            f"--resume {run_dir} --set train.lr={lower:g}{clip}")


def _saved_config(run_dir: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
