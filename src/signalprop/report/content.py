"""What the report says, independent of Markdown or HTML: tables as lists of text cells."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from signalprop.report._fmt import MISSING, fmt_float, fmt_seconds, fmt_value
from signalprop.report.figures import FigureImage, grad_norm_profiles
from signalprop.report.runs_reader import RunRecord

CLAIM_COLUMNS = ["claim", "source", "paper", "ours", "data: ours (paper's)", "verdict", "rule",
                 "run files", "command"]
CLAIM_CODE_COLUMNS = {"command"}
CLAIM_LINK_COLUMNS = {"run files"}


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    code_columns: set[str] = field(default_factory=set)  #: rendered as inline code
    link_columns: set[str] = field(default_factory=set)  #: relative paths, rendered as links


@dataclass
class RunSection:
    run: RunRecord
    anchor: str
    figures: list[FigureImage]
    folder: str = ""  #: the run's copy in the report (``runs/<experiment>/<run id>``)

    @property
    def label(self) -> str:
        return f"{self.run.experiment} / {self.run.run_id}"


def status_text(run: RunRecord) -> str:
    if run.complete:
        return "complete"
    return "incomplete (no summary.json: the experiment did not finish or is still running)"


def info_rows(run: RunRecord, folder: str = "") -> list[tuple[str, str, bool]]:
    """``(field, value, is_code)`` rows describing a run; its directory is shown as ``folder``
    (its copy in the report) when given."""
    m = run.meta
    versions = ", ".join(
        f"{k} {m[k]}" for k in ("signalprop", "torch", "python") if m.get(k) not in (None, "")
    )
    host = " ".join(
        x for x in (str(m.get("hostname") or ""), f"({m['platform']})" if m.get("platform") else "")
        if x
    )
    device = str(m.get("device") or "")
    if m.get("device_name") and device:
        device += f" ({m['device_name']})"
    rows: list[tuple[str, str, bool]] = [
        ("experiment", run.experiment, False),
        ("status", status_text(run), False),
        ("summary", str(run.raw_config.get("summary") or ""), False),
        ("claim", run.claim, False),
        ("paper", run.paper, False),
        ("date", run.date_text, False),
        ("command", run.command, True),
        ("device", device, False),
        ("versions", versions, False),
        ("host", host, False),
        ("seed", fmt_value(run.seed) if run.seed is not None else "", False),
        ("quick", fmt_value(run.quick) if run.quick is not None else "", False),
        ("wall time", fmt_seconds(run.wall_s) if run.wall_s is not None else "", False),
        ("run directory", f"{folder}/" if folder else str(run.path), True),
    ]
    return [r for r in rows if r[1]]


def verdict_text(c: dict[str, Any]) -> str:
    """The stored verdict (with its data and seed labels) and, when today's rule or judging
    differs, today's verdict and why."""
    text = str(c.get("label") or c.get("verdict") or MISSING)
    if c.get("rule_version") is not None:
        text += f" (rule v{c['rule_version']})"
    if c.get("now"):
        text += f"\n{c.get('change') or 'changed since the run'}; today: {c['now']}"
    return text


def rule_text(c: dict[str, Any]) -> str:
    """The rule that judged the run (and today's, when it changed since)."""
    rule, version = c.get("rule"), c.get("rule_version")
    if not rule:
        text = MISSING if version is None else f"v{version} (see docs/rules.md)"
    else:
        text = f"v{version}: {rule}" if version is not None else str(rule)
    if c.get("rule_now"):
        text += f"\ntoday {c['rule_now']}"
    return text


def data_text(c: dict[str, Any]) -> str:
    ours = MISSING if c.get("dataset") in (None, "") else fmt_value(c["dataset"])
    text = f"{ours} ({c['paper_data']})" if c.get("paper_data") else ours
    return f"{text}\nscale: {c['scale']}" if c.get("scale") else text


def claim_cells(c: dict[str, Any]) -> list[str]:
    def t(key: str) -> str:
        v = c.get(key)
        return MISSING if v in (None, "") else fmt_value(v)

    return [t("claim"), t("source"), t("paper_value"), t("our_value"), data_text(c),
            verdict_text(c), rule_text(c), t("files"), t("command")]


def claims_table(run: RunRecord) -> Table | None:
    if not run.claims:
        return None
    return Table(list(CLAIM_COLUMNS), [claim_cells(c) for c in run.claims], CLAIM_CODE_COLUMNS,
                 CLAIM_LINK_COLUMNS)


def all_claims_table(sections: list[RunSection]) -> Table:
    """Claims of every run, prefixed by the run; an incomplete run without claims gets one
    'not checked' row from its config.json claim."""
    rows: list[list[str]] = []
    for sec in sections:
        run = sec.run
        for c in run.claims:
            rows.append([sec.label] + claim_cells(c))
        if not run.claims and not run.complete and run.claim:
            rows.append([sec.label, run.claim, run.paper or MISSING, MISSING,
                         "(run incomplete)", MISSING, "not checked", MISSING, MISSING,
                         run.command or MISSING])
    return Table(["run"] + CLAIM_COLUMNS, rows, CLAIM_CODE_COLUMNS, CLAIM_LINK_COLUMNS)


def results_table(run: RunRecord) -> Table | None:
    if not run.results:
        return None
    return Table(["result", "value"], [[str(k), fmt_value(v)] for k, v in run.results.items()])


def extra_tables(run: RunRecord) -> list[tuple[str, Table]]:
    return [
        (name, Table(cols, [[fmt_value(v) for v in row] + [""] * (len(cols) - len(row))
                            for row in rows]))
        for name, (cols, rows) in run.tables.items()
    ]


def subrun_table(run: RunRecord) -> Table | None:
    """One row per subrun: epochs logged and its final metrics (result.json, else last epoch)."""
    if not run.subruns:
        return None
    keys: list[str] = []
    for sub in run.subruns:
        for k in sub.result:
            if k not in keys:
                keys.append(k)
    if not keys:
        keys = [k for k in ("train_loss", "test_loss", "test_acc")
                if any(k in e for s in run.subruns for e in s.epochs)]
    rows = []
    for sub in run.subruns:
        last = sub.epochs[-1] if sub.epochs else {}
        src = sub.result or last
        cells = [sub.name, str(len(sub.epochs)), str(sub.n_steps)]
        cells += [fmt_value(src[k]) if k in src else MISSING for k in keys]
        rows.append(cells)
    return Table(["subrun", "epochs logged", "step records"] + keys, rows)


def grad_norm_table(run: RunRecord) -> Table | None:
    """Summary of the last logged per-layer gradient norms of each subrun."""
    rows = []
    for sub in run.subruns:
        prof = grad_norm_profiles(sub)
        if prof is None:
            continue
        last = prof[0]
        vals = [v for v in last["grad_norms"].values()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
        norms = list(last["grad_norms"].values())
        first_layer, last_layer = norms[0], norms[-1]
        ratio = MISSING
        if (isinstance(first_layer, (int, float)) and isinstance(last_layer, (int, float))
                and last_layer):
            ratio = fmt_float(float(first_layer) / float(last_layer))
        rows.append([
            sub.name, fmt_value(last.get("epoch")), str(len(norms)),
            fmt_value(first_layer), fmt_value(last_layer),
            fmt_value(min(vals)) if vals else MISSING, fmt_value(max(vals)) if vals else MISSING,
            ratio,
        ])
    if not rows:
        return None
    return Table(["subrun", "epoch", "layers", "first layer", "last layer", "min", "max",
                  "first / last"], rows)


def benchmark_table(records: list) -> Table | None:
    """One row per benchmark ratio: benchmark, comparison, ratio, machine, command."""
    rows = [[r.name, label, f"{value:.3g}x", r.machine, r.command]
            for r in records for label, value in r.ratios.items()]
    if not rows:
        return None
    return Table(["benchmark", "comparison", "ratio", "machine", "command"], rows, {"command"})
