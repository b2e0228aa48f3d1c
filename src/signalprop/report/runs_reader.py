"""Read trainer run directories (read only; never trains, never writes).

A run directory (``runs/<experiment>/<timestamp>/``, the layout of :mod:`signalprop.runs`)
holds ``config.json``, ``summary.json`` once the experiment finished, optional
``figures/*.png`` and one sub-directory per trained model (a *subrun*, at any depth) with
``result.json`` and/or ``metrics.jsonl`` (a report's copy: ``metrics.jsonl.gz``, possibly
thinned; see :mod:`signalprop.metrics_file`). Every file may be missing or partial: problems are
recorded in ``notes`` instead of raising.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from signalprop.errors import ConfigError, SignalpropError
from signalprop.experiments.context import evaluate_claims
from signalprop.experiments.judging import subrun_health
from signalprop.experiments.registry import get_experiment
from signalprop.metrics_file import THINNED, metrics_lines, metrics_path, usable_profile
from signalprop.runs import CONFIG, FIGURES, RESULT, SUMMARY, find_subrun_dirs, subrun_name

CLAIM_FIELDS = ("claim", "source", "paper_value", "our_value", "dataset", "paper_data", "scale",
                "verdict", "label", "rule", "rule_version", "rule_now", "seeds", "now", "change",
                "command")

_DIR_TIMESTAMP = re.compile(r"(\d{8})-(\d{6})")


@dataclass
class SubRun:
    """One trained model inside a run: ``<run_dir>/<name>/``."""

    name: str  #: path relative to the run directory, posix style (``"plain/seed0"``)
    path: Path
    result: dict[str, Any] = field(default_factory=dict)  #: ``result.json`` (flat dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)  #: ``kind == "epoch"`` records
    n_steps: int = 0  #: number of ``kind == "step"`` records (before any thinning)
    skipped_lines: list[int] = field(default_factory=list)  #: 1-based unparsable line numbers
    notes: list[str] = field(default_factory=list)

    def epoch_series(self, key: str) -> list[tuple[float, float]]:
        """``(epoch, value)`` pairs of a numeric epoch metric; finite values, last record wins."""
        by_epoch: dict[float, float] = {}
        for i, rec in enumerate(self.epochs):
            y = rec.get(key)
            if not _is_number(y) or not math.isfinite(y):
                continue
            x = rec.get("epoch")
            by_epoch[float(x) if _is_number(x) else float(i + 1)] = float(y)
        return sorted(by_epoch.items())

    def grad_norm_epochs(self) -> list[dict[str, Any]]:
        """Epoch records whose ``grad_norms`` dict has a positive finite norm, in file order."""
        return [r for r in self.epochs if usable_profile(r.get("grad_norms"))]


@dataclass
class RunRecord:
    """Everything the report needs from one run directory."""

    path: Path
    experiment: str
    claim: str = ""
    paper: str = ""
    quick: bool | None = None
    seed: Any = None
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    raw_config: dict[str, Any] = field(default_factory=dict)  #: the whole ``config.json``
    summary: dict[str, Any] | None = None  #: raw ``summary.json``; ``None`` when incomplete
    results: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, tuple[list[str], list[list[Any]]]] = field(default_factory=dict)
    claims: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, dict[str, Any]] = field(default_factory=dict)
    subruns: list[SubRun] = field(default_factory=list)
    figure_files: list[Path] = field(default_factory=list)
    started: datetime | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.summary is not None

    @property
    def command(self) -> str:
        """The command that started the run (``meta.command``, else top-level ``command``)."""
        return _text(self.meta.get("command") or self.raw_config.get("command"))

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def wall_s(self) -> float | None:
        w = (self.summary or {}).get("wall_s")
        return float(w) if _is_number(w) else None

    @property
    def date_text(self) -> str:
        if self.started is None:
            return ""
        return self.started.isoformat(sep=" ", timespec="seconds")

    @property
    def sort_time(self) -> float:
        if self.started is not None:
            try:
                return self.started.timestamp()
            except (OverflowError, OSError, ValueError):
                pass
        try:
            return (self.path / CONFIG).stat().st_mtime
        except OSError:
            return 0.0

    def all_notes(self) -> list[str]:
        out = list(self.notes)
        for sub in self.subruns:
            out.extend(f"{sub.name}: {n}" for n in sub.notes)
        return out


# --------------------------------------------------------------------------- discovery


def is_run_dir(path: Path) -> bool:
    """``config.json`` plus either ``summary.json`` or at least one subrun."""
    path = Path(path)
    if not (path / CONFIG).is_file():
        return False
    return (path / SUMMARY).is_file() or bool(find_subrun_dirs(path))


def find_run_dirs(container: Path) -> list[Path]:
    """Run directories at any depth below ``container`` (a run's own tree is not searched)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(container):
        here = Path(dirpath)
        if CONFIG in filenames and is_run_dir(here):
            found.append(here)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return found


def resolve_run_dirs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand each path to run directories; raise :class:`SignalpropError` for a bad path."""
    out: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise SignalpropError(
                f"run directory does not exist: {p} "
                "(pass runs/<experiment>/<timestamp> or a folder containing run directories)"
            )
        if not p.is_dir():
            raise SignalpropError(
                f"not a run directory: {p} is a file "
                "(pass the directory that holds config.json, e.g. runs/<experiment>/<timestamp>)"
            )
        found = [p] if (p / CONFIG).is_file() else find_run_dirs(p)
        if not found:
            raise SignalpropError(
                f"not a run directory: {p} (expected config.json; pass "
                "runs/<experiment>/<timestamp> or a folder such as runs/ that contains run "
                "directories)"
            )
        for d in found:
            key = d.resolve()
            if key not in seen:
                seen.add(key)
                out.append(d)
    return out


def discover_runs(paths: Iterable[str | os.PathLike[str]]) -> list[RunRecord]:
    """Read all runs below ``paths``.

    Runs are grouped by experiment (in order of first appearance) and newest first within
    an experiment.
    """
    records = [read_run(d) for d in resolve_run_dirs(paths)]
    order: dict[str, int] = {}
    for r in records:
        order.setdefault(r.experiment, len(order))
    return sorted(records, key=lambda r: (order[r.experiment], -r.sort_time, r.run_id))


# --------------------------------------------------------------------------- reading


def read_run(run_dir: str | os.PathLike[str]) -> RunRecord:
    """Read one run directory. Raises only when ``config.json`` is absent."""
    path = Path(run_dir)
    if not (path / CONFIG).is_file():
        raise SignalpropError(
            f"not a run directory: {path} (expected config.json; pass "
            "runs/<experiment>/<timestamp>)"
        )
    notes: list[str] = []
    cfg = _read_json(path / CONFIG, notes)
    if not isinstance(cfg, dict):
        if cfg is not None:
            notes.append("config.json is not a JSON object; ignored")
        cfg = {}
    meta = cfg.get("meta") if isinstance(cfg.get("meta"), dict) else {}
    rec = RunRecord(
        path=path,
        experiment=_text(cfg.get("experiment")) or path.parent.name or path.name,
        claim=_text(cfg.get("claim")),
        paper=_text(cfg.get("paper")),
        quick=cfg.get("quick") if isinstance(cfg.get("quick"), bool) else None,
        seed=cfg.get("seed"),
        config=cfg.get("config") if isinstance(cfg.get("config"), dict) else {},
        meta=meta,
        raw_config=cfg,
        notes=notes,
    )
    rec.started = _parse_started(meta.get("started"), path.name)

    if (path / SUMMARY).is_file():
        summary = _read_json(path / SUMMARY, notes)
        if isinstance(summary, dict):
            rec.summary = summary
            _read_summary(rec, summary)
        elif summary is not None:
            notes.append("summary.json is not a JSON object; run treated as incomplete")
    else:
        notes.append("no summary.json: the experiment did not finish (or is still running)")

    rec.subruns = [read_subrun(path, d) for d in find_subrun_dirs(path)]
    fig_dir = path / FIGURES
    if fig_dir.is_dir():
        rec.figure_files = sorted(
            p for p in fig_dir.iterdir() if p.suffix.lower() == ".png" and p.is_file()
        )
    return rec


def read_subrun(run_dir: Path, sub_dir: Path) -> SubRun:
    """One sub-run's ``result.json`` and metrics (plain or a report's gzip copy)."""
    sub = SubRun(name=subrun_name(run_dir, sub_dir), path=sub_dir)
    if (sub_dir / RESULT).is_file():
        result = _read_json(sub_dir / RESULT, sub.notes)
        if isinstance(result, dict):
            sub.result = result
        elif result is not None:
            sub.notes.append("result.json is not a JSON object; ignored")
    metrics = metrics_path(sub_dir)
    if metrics is not None:
        _read_metrics(metrics, sub)
    return sub


def _read_metrics(path: Path, sub: SubRun) -> None:
    thinned: dict[str, Any] | None = None
    try:
        for lineno, line in enumerate(metrics_lines(path), start=1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                sub.skipped_lines.append(lineno)
                continue
            if not isinstance(rec, dict):
                sub.skipped_lines.append(lineno)
                continue
            kind = rec.get("kind")
            if kind == "epoch":
                sub.epochs.append(rec)
            elif kind == "step":
                sub.n_steps += 1
            elif kind == THINNED:
                thinned = rec
    except (OSError, EOFError) as exc:
        sub.notes.append(f"cannot read {path.name} ({getattr(exc, 'strerror', None) or exc})")
        return
    if thinned is not None and _is_number(thinned.get("step_records")):
        sub.n_steps = int(thinned["step_records"])  # the copy keeps a thinned subset
    if sub.skipped_lines:
        shown = ", ".join(str(n) for n in sub.skipped_lines[:5])
        more = "" if len(sub.skipped_lines) <= 5 else f" and {len(sub.skipped_lines) - 5} more"
        sub.notes.append(
            f"{path.name}: skipped {len(sub.skipped_lines)} unparsable line(s) "
            f"(line {shown}{more}); a truncated last line usually means training was interrupted"
        )


def _current_claims(rec: RunRecord, summary: dict[str, Any]) -> list | None:
    """Claims judged by the registered experiment's current rules (None if not registered)."""
    try:
        exp = get_experiment(rec.experiment)
    except ConfigError:
        return None
    if not exp.claims or not isinstance(summary.get("results"), dict):
        return None
    command = rec.command
    stored = summary.get("claims")
    if isinstance(stored, list) and stored and isinstance(stored[0], dict):
        command = stored[0].get("command") or command
    health = summary.get("health")
    if not isinstance(health, dict):
        health = subrun_health(rec.path)
    quick = summary.get("quick", rec.quick)
    return evaluate_claims(exp, summary, command, quick=bool(quick), health=health,
                           config=rec.config)


def merge_claims(stored: Any, current: list[dict] | None) -> Any:
    """The stored verdicts, each beside today's when today's rule or judging differs.

    A stored row without ``rule_version`` was judged before rules were versioned: version 1.
    Where the version differs the row's ``change`` says "rule changed since the run"; where only
    the verdict differs (the same rule, newer run-health or data checks) it says "judged
    differently today". ``now`` holds today's label in both cases. Where verdict and rule agree
    but today's label differs (its data provenance or seed count, e.g. a run that did not store
    ``seeds``), the row shows today's label and names the stored one in ``change``.
    """
    if current is None:
        return stored
    if not isinstance(stored, list):
        return current
    by_text = {c.get("claim"): c for c in stored if isinstance(c, dict)}
    rows = []
    for i, now in enumerate(current):
        old = by_text.get(now["claim"])
        if old is None and i < len(stored) and isinstance(stored[i], dict):
            old = stored[i]  # the claim's wording changed since the run
        if old is None:
            rows.append(now)
            continue
        version = old.get("rule_version", 1)
        row = {**now, "verdict": old.get("verdict"), "our_value": old.get("our_value"),
               "rule_version": version, "rule": old.get("rule", now["rule"] if
                                                         version == now["rule_version"] else "")}
        if version != now["rule_version"] or old.get("verdict") != now["verdict"]:
            row["label"] = old.get("label") or _relabel(old.get("verdict"), now)
            row["now"] = f"{now['label']} (rule v{now['rule_version']}: {now['our_value']})"
            row["change"] = ("rule changed since the run" if version != now["rule_version"]
                             else "judged differently today (run-health or data checks)")
            if version != now["rule_version"]:
                row["rule_now"] = f"v{now['rule_version']}: {now['rule']}"
        elif old.get("label") and old["label"] != now["label"]:
            row["label"] = now["label"]  # same verdict and rule; provenance or seed count
            row["change"] = f"label recomputed today (stored: {old['label']})"
        else:
            row["label"] = old.get("label") or now["label"]
        rows.append(row)
    return rows


def _relabel(verdict: Any, now: dict) -> str:
    """A stored verdict from before labels were stored, with today's provenance."""
    label = str(now.get("label", ""))
    base = str(now.get("verdict", ""))
    if base != "not checked" and label.startswith(base):
        return f"{verdict}{label[len(base):]}"
    return str(verdict)


def _read_summary(rec: RunRecord, summary: dict[str, Any]) -> None:
    notes = rec.notes
    results = summary.get("results")
    if isinstance(results, dict):
        rec.results = results
    elif results is not None:
        notes.append("summary.json: 'results' is not an object; ignored")

    tables = summary.get("tables")
    if isinstance(tables, dict):
        for name, tab in tables.items():
            cols = tab.get("columns") if isinstance(tab, dict) else None
            rows = tab.get("rows") if isinstance(tab, dict) else None
            if not isinstance(rows, list):
                notes.append(f"summary.json: table {name!r} has no 'rows' list; ignored")
                continue
            rows = [r if isinstance(r, list) else [r] for r in rows]
            width = max((len(r) for r in rows), default=0)
            cols = [str(c) for c in cols] if isinstance(cols, list) else []
            cols += [""] * (width - len(cols))
            rec.tables[str(name)] = (cols, rows)
    elif tables is not None:
        notes.append("summary.json: 'tables' is not an object; ignored")

    claims = merge_claims(summary.get("claims"), _current_claims(rec, summary))
    if isinstance(claims, list):
        for c in claims:
            if isinstance(c, dict):
                rec.claims.append({k: c.get(k) for k in CLAIM_FIELDS})
            else:
                notes.append("summary.json: a claim entry is not an object; ignored")
    elif claims is not None:
        notes.append("summary.json: 'claims' is not a list; ignored")

    series = summary.get("series")
    if isinstance(series, dict):
        for name, spec in series.items():
            if isinstance(spec, dict) and isinstance(spec.get("lines"), dict):
                rec.series[str(name)] = spec
            else:
                notes.append(f"summary.json: series {name!r} has no 'lines' object; ignored")
    elif series is not None:
        notes.append("summary.json: 'series' is not an object; ignored")


def _read_json(path: Path, notes: list[str]) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as exc:
        notes.append(f"cannot read {path.name} ({exc.strerror or exc})")
    except ValueError as exc:
        notes.append(f"{path.name} is not valid JSON ({exc}); ignored")
    return None


def _parse_started(value: Any, dir_name: str) -> datetime | None:
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    m = _DIR_TIMESTAMP.search(dir_name)
    if m:
        try:
            return datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S")
        except ValueError:
            pass
    return None


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _text(x: Any) -> str:
    return x if isinstance(x, str) else ("" if x is None else str(x))
