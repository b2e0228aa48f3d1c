"""Paths as a report shows them: relative to the report, never the building machine's.

A report copies each run to ``runs/<experiment>/<run id>/`` beside its README.md. Text taken
from a run (the command that started it, a claim's re-run command) names the machine's
absolute paths; :func:`relative_text` rewrites the run's directory as that copy, the run's
experiment folder as ``runs/<experiment>`` and the output root above it as ``runs``, and
shortens any other absolute path to its last component. In the command that started a run
(:func:`command_text`), an absolute ``--out`` is the root its run directory was made in, so it
reads ``--out runs`` wherever the run was made.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from signalprop.report._fmt import slug
from signalprop.report.runs_reader import RunRecord

RUNS_DIR = "runs"  #: the report's folder of run copies

_ABSOLUTE = re.compile(r"(?<![\w.~:/-])/[^\s'\"`]+")
_RUN_COMMAND = re.compile(r"\s*signalprop\s+(run|reproduce)\b")
_ABSOLUTE_OUT = re.compile(r"(--out[= ])/[^\s'\"`]*")
_END = r"(?=$|[/\s'\"`])"


def run_folder(experiment: str, run_id: str) -> str:
    """A run's copy in the report, ``runs/<experiment>/<run id>`` (file-name safe)."""
    return f"{RUNS_DIR}/{slug(experiment, 60)}/{slug(run_id, 60)}"


def _mapping(run_path: Path, experiment: str, folder: str) -> list[tuple[str, str]]:
    """``(absolute path, report path)`` pairs for the run directory and, when it sits in the
    usual ``<out>/<experiment>/<run>`` layout, its two parents."""
    target = PurePosixPath(folder)
    pairs: list[tuple[str, str]] = []
    for source in {Path(os.path.abspath(run_path)), Path(os.path.realpath(run_path))}:
        pairs.append((str(source), str(target)))
        if source.parent.name == experiment:
            pairs.append((str(source.parent), str(target.parent)))
            pairs.append((str(source.parent.parent), str(target.parent.parent)))
    return sorted(set(pairs), key=lambda pair: -len(pair[0]))


def relative_text(text: str, runs: Iterable[tuple[Path, str, str]]) -> str:
    """``text`` with the absolute paths of ``runs`` (``(run directory, experiment, report
    folder)``) replaced by their place in the report and any other absolute path shortened to
    its last component."""
    if "/" not in text:
        return text
    for run_path, experiment, folder in runs:
        for source, target in _mapping(run_path, experiment, folder):
            if source != "/":
                text = re.sub(re.escape(source) + _END, lambda _m, t=target: t, text)
    return _ABSOLUTE.sub(lambda m: PurePosixPath(m.group(0)).name or m.group(0), text)


def command_text(command: str, runs: Iterable[tuple[Path, str, str]]) -> str:
    """:func:`relative_text` for a ``signalprop run``/``reproduce`` command, whose absolute
    ``--out`` becomes the report's ``runs`` folder."""
    if _RUN_COMMAND.match(command):
        command = _ABSOLUTE_OUT.sub(lambda m: m.group(1) + RUNS_DIR, command)
    return relative_text(command, runs)


def localise_run(run: RunRecord) -> str:
    """Rewrite ``run``'s command and its claims' commands with :func:`relative_text`, point
    each claim's ``files`` at the run's copy, and return that copy's folder."""
    folder = run_folder(run.experiment, run.run_id)
    runs = [(run.path, run.experiment, folder)]
    if isinstance(run.meta.get("command"), str):
        run.meta = {**run.meta, "command": command_text(run.meta["command"], runs)}
    if isinstance(run.raw_config.get("command"), str):
        run.raw_config = {**run.raw_config,
                          "command": command_text(run.raw_config["command"], runs)}
    for claim in run.claims:
        if isinstance(claim.get("command"), str):
            claim["command"] = command_text(claim["command"], runs)
        claim["files"] = folder + "/"
    return folder
