"""Turning a claim's rule into a report row: run health, data provenance and seed labels.

:func:`judge` applies a :class:`~signalprop.experiments.registry.Claim`'s ``check`` to a run's
results and then the checks every claim shares:

* the run trained: each sub-run's final training loss is finite and, for the sub-runs the
  claim names in ``learns``, below its initial value; otherwise "not checked: the run failed";
* the data: a fallback dataset (MNIST-1D standing in for a missing Fashion-MNIST) caps the
  verdict at "not checked" unless the claim is about that dataset; a verdict on data other
  than the paper's reads "reproduced on Fashion-MNIST (paper: MNIST)";
* the seeds: a quick run, or a stochastic claim judged on fewer than :data:`MIN_SEEDS` seeds,
  is labelled "indicative (n seeds)".
"""

from __future__ import annotations

import fnmatch
import json
import math
from pathlib import Path
from typing import Any

from signalprop.experiments.paper_scale import Scale, judge_at_scale
from signalprop.experiments.registry import VERDICTS, Claim
from signalprop.metrics_file import metrics_lines, metrics_path
from signalprop.runs import RESULT, find_subrun_dirs, subrun_name

MIN_SEEDS = 3  #: seeds a stochastic claim needs for a verdict that is not "indicative"

DATA_NAMES = {
    "fashion-mnist": "Fashion-MNIST", "mnist": "MNIST", "mnist1d": "MNIST-1D",
    "fashion-mnist-permuted": "permuted sequential Fashion-MNIST",
    "mnist-permuted": "psMNIST", "delayed-recall": "delayed recall",
    "bitstream": "bit-stream recall", "spirals": "two spirals",
    "gaussian-noise-input": "Gaussian noise input",
}


def data_name(name: str) -> str:
    """A dataset's display name (``fashion-mnist`` → ``Fashion-MNIST``)."""
    return DATA_NAMES.get(name, name)


# ------------------------------------------------------------------------------ run health
def subrun_health(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Per sub-run: initial and final training loss, and whether the two are comparable.

    The initial loss is the first logged step's, else the first epoch's mean; the final loss is
    ``result.json``'s ``train_loss``, else the last epoch's. They are comparable when the run
    logged steps or more than one epoch.
    """
    run_dir = Path(run_dir)
    health: dict[str, dict[str, Any]] = {}
    for sub in find_subrun_dirs(run_dir):
        first_step = first_epoch = last_epoch = None
        epochs = 0
        metrics = metrics_path(sub)
        try:
            for line in metrics_lines(metrics) if metrics is not None else ():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(rec, dict):
                    continue
                if rec.get("kind") == "step" and first_step is None:
                    first_step = rec.get("loss")
                elif rec.get("kind") == "epoch" and "train_loss" in rec:
                    epochs += 1
                    first_epoch = rec["train_loss"] if first_epoch is None else first_epoch
                    last_epoch = rec["train_loss"]
        except (OSError, EOFError):
            pass
        final = last_epoch
        try:
            result = json.loads((sub / RESULT).read_text())
            if isinstance(result, dict) and "train_loss" in result:
                final = result["train_loss"]
        except (OSError, ValueError):
            pass
        if final is None:
            continue
        health[subrun_name(run_dir, sub)] = {
            "initial_loss": first_step if first_step is not None else first_epoch,
            "final_loss": final,
            "comparable": first_step is not None or epochs > 1,
        }
    return health


def _number(x: Any) -> float:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else math.nan


def run_failures(claim: Claim, health: dict[str, dict[str, Any]]) -> list[str]:
    """Why the run cannot support ``claim``: non-finite losses, or a sub-run in ``learns``
    whose training loss did not fall below its initial value."""
    problems = []
    for name, h in health.items():
        final = _number(h.get("final_loss"))
        if not math.isfinite(final):
            problems.append(f"{name}: final train loss {final}")
    for pattern in claim.learns:
        for name in sorted(n for n in health if fnmatch.fnmatch(n, pattern)):
            h = health[name]
            final, initial = _number(h.get("final_loss")), _number(h.get("initial_loss"))
            if (math.isfinite(final) and math.isfinite(initial) and h.get("comparable", True)
                    and not final < initial):
                problems.append(f"{name}: train loss {final:.3g} not below its initial "
                                f"{initial:.3g}")
    return problems


# ------------------------------------------------------------------------------ data
def fallbacks_of(summary: dict[str, Any], config: dict[str, Any] | None = None) -> list[dict]:
    """The fallbacks a run used: ``summary["fallbacks"]``, or (runs made before it was
    stored) a configured ``data.name`` that is not among the datasets the run used."""
    stored = summary.get("fallbacks")
    if isinstance(stored, list):
        return [f for f in stored if isinstance(f, dict)]
    wanted = ((config or {}).get("data") or {}).get("name") if isinstance(
        (config or {}).get("data"), dict) else None
    used = summary.get("datasets") or []
    if isinstance(wanted, str) and used and not any(u.startswith(wanted) for u in used):
        return [{"wanted": wanted, "used": used[0], "reason": "not available"}]
    return []


def _datasets(summary: dict[str, Any]) -> list[str]:
    used = summary.get("datasets")
    if isinstance(used, list) and used:
        return [str(u) for u in used]
    dataset = (summary.get("results") or {}).get("dataset")
    return [str(dataset).split(" (")[0]] if dataset else []


# ------------------------------------------------------------------------------ labels
def seed_count(claim: Claim, results: dict[str, Any]) -> int | None:
    """Seeds behind a stochastic claim (``results["seeds"]``; without it, the longest
    ``*_per_seed`` list; default 1); None otherwise."""
    if not claim.stochastic:
        return None
    n = results.get("seeds")
    if isinstance(n, int | float) and not isinstance(n, bool):
        return int(n)
    lengths = [len(v) for k, v in results.items()
               if k.endswith("_per_seed") and isinstance(v, list)]
    return max(lengths, default=1)


def indicative_note(quick: bool, seeds: int | None) -> str:
    """``"indicative (1 seed)"`` and the like, or "" for a verdict that is not indicative."""
    if seeds is not None and seeds < MIN_SEEDS:
        return f"indicative ({seeds} seed{'s' if seeds != 1 else ''})"
    return "indicative (quick run)" if quick else ""


def verdict_label(verdict: str, *, ours: list[str], claim_data: str, same: bool,
                  note: str = "") -> str:
    """The verdict as the report shows it: with the data when it is not the paper's, and the
    indicative note."""
    text = verdict
    if verdict != "not checked" and not same:
        text = f"{verdict} on {', '.join(data_name(d) for d in ours) or 'other data'} " \
               f"(paper: {claim_data})"
    return f"{text}; {note}" if note and verdict != "not checked" else text


def judge(claim: Claim, summary: dict[str, Any], *, command: str, quick: bool,
          health: dict[str, dict[str, Any]], config: dict[str, Any] | None = None,
          scale: Scale | None = None) -> dict:
    """One claim row: the rule's verdict after the run-health, data and scale checks (a "not
    reproduced" below the paper's budget: :func:`~signalprop.experiments.paper_scale.
    judge_at_scale`), with labels and the paper's budget beside ours."""
    results = summary.get("results", {}) if isinstance(summary.get("results"), dict) else {}
    try:
        ours, verdict = claim.check(results)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        ours, verdict = f"missing ({exc})", "not checked"
    if verdict not in VERDICTS:
        raise ValueError(f"claim check returned unknown verdict {verdict!r}")
    used = _datasets(summary)
    same = bool(claim.same_data) and any(u in claim.same_data for u in used)
    failures = run_failures(claim, health)
    if failures:
        ours, verdict = f"not checked: the run failed ({'; '.join(failures[:3])})", "not checked"
    for fb in fallbacks_of(summary, config):
        if fb.get("used") not in claim.same_data and verdict != "not checked":
            ours = (f"not checked: ran on the fallback {data_name(str(fb.get('used')))} because "
                    f"{data_name(str(fb.get('wanted')))} is missing; {ours}")
            verdict = "not checked"
    verdict, ours, scale_text = judge_at_scale(verdict, ours, scale, config)
    seeds = seed_count(claim, results)
    label = verdict_label(verdict, ours=used, claim_data=claim.paper_data, same=same,
                          note=indicative_note(quick, seeds))
    return {
        "claim": claim.text, "source": claim.source, "paper_value": claim.paper_value,
        "our_value": ours, "verdict": verdict, "label": label,
        "dataset": results.get("dataset", ", ".join(used)), "paper_data": claim.paper_data,
        "scale": scale_text, "seeds": seeds, "rule": claim.rule, "rule_version": claim.rule_version,
        "command": command,
    }
