"""Reports of finished (or interrupted) runs: README.md + index.html + PNGs they both refer to.

>>> from signalprop.report import build_report
>>> build_report(["runs/deep-tanh-mlp"], "report/")  # doctest: +SKIP

The report only reads run directories (see :mod:`signalprop.report.runs_reader` for the
format); it never trains.
"""

from __future__ import annotations

from signalprop.report.builder import build_report
from signalprop.report.runs_reader import RunRecord, SubRun, discover_runs, read_run

__all__ = ["RunRecord", "SubRun", "build_report", "discover_runs", "read_run"]
