"""Restore a trained model from a run directory: :func:`load_run`.

``fit`` saves ``checkpoint.pt`` (an ordinary ``torch.save`` file holding ``model``,
``optimizer`` and ``rules`` state dicts plus progress counters) and its checksum in
``checkpoint.pt.sha256``. :func:`load_run` verifies the checksum, loads the file with
``torch.load(weights_only=True)`` and copies the weights into the model you built.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from signalprop.errors import CheckpointCorrupt, ConfigError, SignalpropError
from signalprop.runs import CHECKPOINT, RESULT
from signalprop.storage import load_checkpoint

if TYPE_CHECKING:  # nn, which the package imports, must not import learning
    from signalprop.learning.base import LearningRule



def _no_checkpoint(run_dir: Path) -> SignalpropError:
    subruns = sorted(p.parent.name for p in run_dir.glob(f"*/{CHECKPOINT}"))
    if subruns:
        return SignalpropError(
            f"{run_dir} is an experiment's run directory; its trained models are in the "
            f"sub-directories {', '.join(subruns)}: pass one of them")
    return CheckpointCorrupt(
        f"no {CHECKPOINT} in {run_dir}: the run stopped before its first epoch ended, or this "
        "is not a run directory")


def _short_keys(keys: Sequence[str]) -> str:
    return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def load_run(
    run_dir: str | Path,
    model: nn.Module,
    *,
    rules: Sequence[LearningRule] = (),
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load the weights of ``run_dir``'s latest checkpoint into ``model`` (built with the same
    architecture), and each learning rule's state into ``rules``; returns what was loaded.

    The result has ``epoch`` and ``step`` (of the checkpoint), ``checkpoint`` (its path),
    ``finished``, ``result`` (``result.json``, or None for an unfinished run) and
    ``skipped_rule_state``: with no ``rules`` given only the weights are loaded (a decorrelated
    model's ``R`` is part of them), and this names the rules whose saved state was skipped
    (also said in a ``UserWarning``). A damaged
    checkpoint raises :class:`~signalprop.errors.CheckpointCorrupt`; one holding anything but
    tensors and plain data raises :class:`~signalprop.errors.UnsafeCheckpoint` before any of it
    runs; a model of another shape raises :class:`~signalprop.errors.ConfigError`.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SignalpropError(f"run directory not found: {run_dir}")
    path = run_dir / CHECKPOINT
    if not path.exists():
        raise _no_checkpoint(run_dir)
    state = load_checkpoint(path, map_location=map_location)
    weights = _without_rule_buffers(state["model"], model)
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        raise ConfigError(_misfit(path, model, weights)) from None
    saved_rules = state.get("rules", [])
    skipped: list[str] = []
    if rules and len(saved_rules) != len(rules):
        raise ConfigError(f"{path} holds the state of {len(saved_rules)} learning rule(s); "
                          f"{len(rules)} given: pass the rules the run was trained with, or "
                          "none to load the weights alone")
    if not rules and saved_rules:
        skipped = [_rule_label(rule_state, i) for i, rule_state in enumerate(saved_rules)]
        warnings.warn(f"load_run: loaded the weights of {run_dir} only; skipped the state of "
                      f"{len(skipped)} learning rule(s) ({', '.join(skipped)}): pass rules= "
                      "to restore it", stacklevel=2)
    for rule, rule_state in zip(rules, saved_rules if rules else [], strict=True):
        rule.load_state_dict(rule_state)
    result_path = run_dir / RESULT
    result = json.loads(result_path.read_text()) if result_path.exists() else None
    return {"epoch": state["epoch"], "step": state["step"], "checkpoint": path,
            "finished": result is not None, "result": result, "skipped_rule_state": skipped}


def _rule_label(rule_state: dict[str, Any], index: int) -> str:
    """A short name for a saved rule state (its keys tell which rule saved it)."""
    keys = set(rule_state)
    if "average" in keys:
        return "SAL"
    if "derivative" in keys:
        return "DFA"
    if "sigma" in keys:
        return "NP"
    if "scale" in keys:
        return "FA"
    if "steps" in keys:
        return "decorrelation"
    return f"rule {index + 1}"


def _without_rule_buffers(saved: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """``saved`` without the feedback-alignment buffers (``*.feedback``) that checkpoints
    written before FA kept its matrices in its own state hold, when ``model`` has none."""
    own = model.state_dict()
    stale = [k for k in saved if k.endswith(".feedback") and k not in own]
    return {k: v for k, v in saved.items() if k not in stale} if stale else saved


def _misfit(path: Path, model: nn.Module, saved: dict[str, Any]) -> str:
    """Why the checkpoint's weights do not load into ``model``, with the way out."""
    own = model.state_dict()
    missing = [k for k in own if k not in saved]
    extra = [k for k in saved if k not in own]
    shapes = [k for k in own if k in saved and own[k].shape != saved[k].shape]
    detail = "; ".join(part for part in (
        missing and f"missing {_short_keys(missing)}",
        extra and f"unexpected {_short_keys(extra)}",
        shapes and f"shape differs for {_short_keys(shapes)}") if part)
    hint = "build the model with the run's config (config.json)"
    if any(".decorrelator" in k or ".decorrelators." in k for k in extra):
        hint = ("the run's model was decorrelated: call signalprop.nn.decorrelated_layers."
                "decorrelate(model) with the run's options first")
    return f"{path} does not fit this {type(model).__name__} ({detail}): {hint}"


def load_final_state(run_dir: Path, model: nn.Module, rules: Sequence[LearningRule],
                     device: torch.device, finished: dict[str, Any]) -> None:
    """Load a finished run's final checkpoint into ``model`` (and ``rules``); the checkpoint
    must hold the epoch that ``result.json`` reports."""
    try:
        info = load_run(run_dir, model, rules=rules, map_location=device)
    except CheckpointCorrupt as exc:
        raise CheckpointCorrupt(
            f"{exc}; the run finished but its final weights cannot be loaded: delete "
            f"{run_dir / RESULT} to retrain from the previous checkpoint") from None
    if "epoch" in finished and info["epoch"] != finished["epoch"]:
        raise CheckpointCorrupt(
            f"{run_dir / CHECKPOINT} holds epoch {info['epoch']} but {run_dir / RESULT} reports "
            f"epoch {finished['epoch']}: delete {RESULT} to retrain from the checkpoint")
