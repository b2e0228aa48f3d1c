"""``build_report``: read run directories, write README.md, index.html and figures/*.png.

Only the report's own output is ever (over)written: a file that already exists in ``out_dir``
is replaced only when the previous report's manifest lists it or it carries the report's
marker comment. Every file is written atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from signalprop.errors import SignalpropError
from signalprop.metrics_file import compressed_copy
from signalprop.report import html as html_render
from signalprop.report import markdown as md_render
from signalprop.report._fmt import slug
from signalprop.report.benchmarks import load_benchmarks
from signalprop.report.content import RunSection, benchmark_table
from signalprop.report.figures import run_figures
from signalprop.report.paths import RUNS_DIR, command_text, localise_run
from signalprop.report.runs_reader import discover_runs
from signalprop.runs import CONFIG, METRICS, METRICS_GZ, RESULT, SUMMARY
from signalprop.storage import atomic_write_bytes

MANIFEST = ".signalprop-report.json"
FIGURES_DIR = "figures"
RUN_FILES = (CONFIG, SUMMARY, RESULT, METRICS, METRICS_GZ)  #: read from a run; no checkpoints
COPIED_FILES = (CONFIG, SUMMARY, RESULT, METRICS_GZ)  #: what a report's copy of a run holds
README = "README.md"
INDEX = "index.html"


def build_report(
    run_dirs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    title: str = "signalprop report",
    benchmarks: Iterable[str | os.PathLike[str]] = (),
    standalone: bool = False,
) -> Path:
    """Write a report of ``run_dirs`` into ``out_dir`` and return the path of its index.html.

    Each entry of ``run_dirs`` is a run directory (``runs/<experiment>/<timestamp>``) or a
    directory containing run directories at any depth (``runs/``, ``runs/<experiment>/``).
    Runs are only read. ``out_dir`` receives ``README.md`` and ``index.html`` (both refer to
    the figures by relative path, so each PNG is stored once; ``standalone=True`` inlines them in
    ``index.html`` instead, a page that opens on its own), ``figures/*.png`` and
    ``runs/<experiment>/<run id>/``: a copy of each run's ``config.json``, ``summary.json`` and
    every sub-run's ``result.json`` and metrics (no checkpoints), which each claim row links to,
    so the table can be re-derived without rerunning. The copy keeps ``summary.json`` and
    ``result.json`` as compact JSON (the same values without indentation) and the metrics as
    ``metrics.jsonl.gz``: every epoch record and at most
    :data:`~signalprop.metrics_file.MAX_STEP_RECORDS` step records per sub-run
    (:mod:`signalprop.metrics_file`); paths in the report are relative to it
    (:mod:`signalprop.report.paths`). ``benchmarks`` are benchmark JSON files or directories of
    them; their ratios get a table of their own.
    """
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    run_dirs = list(run_dirs)
    if not run_dirs:
        raise SignalpropError(
            "no run directories given (pass runs/<experiment>/<timestamp> or a folder such as "
            "runs/ that contains run directories)"
        )
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise SignalpropError(f"report output is not a directory: {out} (pass a directory path)")

    runs = discover_runs(run_dirs)
    folders = [localise_run(run) for run in runs]
    sections: list[RunSection] = []
    used: set[str] = set()
    for i, run in enumerate(runs, start=1):
        prefix = base = f"{slug(run.experiment, 40)}-{slug(run.run_id, 40)}"
        n = 1
        while prefix in used:
            n += 1
            prefix = f"{base}-{n}"
        used.add(prefix)
        sections.append(RunSection(run, f"run-{i}-{prefix}", run_figures(run, prefix),
                                   folders[i - 1]))

    run_files: dict[str, bytes] = {}
    for run, folder in zip(runs, folders, strict=True):
        run_files.update(_run_copies(run.path, folder, [(run.path, run.experiment, folder)]))

    generated = datetime.now().astimezone().isoformat(sep=" ", timespec="seconds")
    bench = benchmark_table(load_benchmarks([Path(b) for b in benchmarks]))
    files: dict[str, bytes] = {
        README: md_render.render_markdown(title, sections, generated, FIGURES_DIR,
                                          bench).encode(),
        INDEX: html_render.render_html(title, sections, generated, bench,
                                       None if standalone else FIGURES_DIR).encode(),
    }
    for sec in sections:
        for fig in sec.figures:
            files[f"{FIGURES_DIR}/{fig.filename}"] = fig.png
    files.update(run_files)

    previous = _read_manifest(out)
    _check_ownership(out, files, previous)
    # Claim every file before writing any, so a report interrupted half-way is recognised as
    # the report's own by the next one (which then finishes it and drops what is stale).
    _write_manifest(out, previous | set(files))
    for rel, data in files.items():
        atomic_write_bytes(out / rel, data)
    for rel in sorted(previous - set(files)):  # stale output of an earlier report
        target = out / rel
        if _is_safe_rel(rel) and target.is_file():
            try:
                target.unlink()
            except OSError:
                pass
    _write_manifest(out, set(files))
    return out / INDEX


def _write_manifest(out: Path, files: set[str]) -> None:
    manifest = {"generator": "signalprop.report", "files": sorted(files)}
    atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())


def _run_copies(run_dir: Path, folder: str,
                runs: list[tuple[Path, str, str]]) -> dict[str, bytes]:
    """``{report-relative path: bytes}`` of a run's files worth keeping (:data:`RUN_FILES`):
    metrics as a thinned ``metrics.jsonl.gz`` (a plain file wins over an older gzip copy),
    ``config.json`` with its commands' paths made relative to the report, ``summary.json`` and
    ``result.json`` as compact JSON."""
    out: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(run_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != FIGURES_DIR)
        here = Path(dirpath)
        names = set(filenames) & set(RUN_FILES)
        if METRICS in names:
            names.discard(METRICS_GZ)
        for name in sorted(names):
            rel = (here / name).relative_to(run_dir).as_posix()
            try:
                data = (here / name).read_bytes()
            except OSError:
                continue
            if name == METRICS or name == METRICS_GZ:
                rel = rel.removesuffix(name) + METRICS_GZ
                data = _metrics_copy(data)
            elif name == CONFIG and here == Path(run_dir):
                data = _config_copy(data, runs)
            elif name in (SUMMARY, RESULT):
                data = _compact_json(data)
            if _is_safe_rel(f"{folder}/{rel}"):
                out[f"{folder}/{rel}"] = data
    return out


def _metrics_copy(data: bytes) -> bytes:
    """The report's thinned gzip copy; a copy that cannot be decompressed is kept as it is."""
    try:
        return compressed_copy(data)
    except (OSError, EOFError):
        return data


def _compact_json(data: bytes) -> bytes:
    """``data`` re-serialised without indentation (the same values, keys in the same order);
    bytes that are not JSON are kept as they are."""
    try:
        value = json.loads(data)
    except ValueError:
        return data
    return (json.dumps(value, separators=(",", ":")) + "\n").encode()


def _config_copy(data: bytes, runs: list[tuple[Path, str, str]]) -> bytes:
    """``config.json`` with ``command`` and ``meta.command`` relative to the report (other
    bytes unchanged when there is nothing to rewrite)."""
    try:
        config = json.loads(data)
    except ValueError:
        return data
    if not isinstance(config, dict):
        return data
    changed = False
    for holder in (config, config.get("meta")):
        if isinstance(holder, dict) and isinstance(holder.get("command"), str):
            new = command_text(holder["command"], runs)
            changed |= new != holder["command"]
            holder["command"] = new
    return (json.dumps(config, indent=2) + "\n").encode() if changed else data


def _is_safe_rel(rel: str) -> bool:
    parts = Path(rel).parts
    return (
        rel in (README, INDEX)
        or (len(parts) == 2 and parts[0] == FIGURES_DIR and rel.endswith(".png"))
        or (len(parts) >= 4 and parts[0] == RUNS_DIR and parts[-1] in RUN_FILES
            and not any(p in ("", ".", "..") or p.startswith(".") for p in parts))
    )


def _read_manifest(out: Path) -> set[str]:
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list):
        return set()
    return {f for f in files if isinstance(f, str) and _is_safe_rel(f)}


def _has_marker(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return False
    return b"generated by signalprop.report" in head


def _check_ownership(out: Path, files: dict[str, bytes], previous: set[str]) -> None:
    conflicts = []
    for rel in files:
        target = out / rel
        if not target.exists() and not target.is_symlink():
            continue
        if target.is_symlink() or not target.is_file():
            conflicts.append(rel)
        elif rel in previous or (rel in (README, INDEX) and _has_marker(target)):
            continue
        else:
            conflicts.append(rel)
    if (out / FIGURES_DIR).exists() and not (out / FIGURES_DIR).is_dir():
        conflicts.append(FIGURES_DIR)
    if conflicts:
        shown = ", ".join(conflicts[:5]) + (" ..." if len(conflicts) > 5 else "")
        raise SignalpropError(
            f"refusing to overwrite files in {out} that signalprop report did not write: {shown} "
            "(choose an empty or report-only output directory, or move those files away)"
        )
