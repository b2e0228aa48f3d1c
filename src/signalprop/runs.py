"""Run directories: ``<out>/<experiment>/<timestamp>-<suffix>/`` with config and metadata.

The names of the files in a run directory are defined here, once. A run directory holds
:data:`CONFIG`, :data:`SUMMARY` once the experiment finished, optional ``figures/*.png`` and
one sub-directory per trained model (a *sub-run*, at any depth) with :data:`RESULT`,
:data:`METRICS` and :data:`CHECKPOINT`. A report's copy of a run keeps the metrics as
:data:`METRICS_GZ` (gzip, step records possibly thinned: see :mod:`signalprop.metrics_file`).
"""

from __future__ import annotations

import os
import platform
import secrets
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from signalprop import threads
from signalprop.version import __version__

CONFIG = "config.json"  #: the experiment, its config and :func:`run_metadata`
SUMMARY = "summary.json"  #: results, tables, series and claims, written when the run ends
RESULT = "result.json"  #: a sub-run's final metrics, written by ``fit`` when it ends
METRICS = "metrics.jsonl"  #: a sub-run's step and epoch records, appended by ``fit``
METRICS_GZ = "metrics.jsonl.gz"  #: a report's gzip copy of :data:`METRICS`
CHECKPOINT = "checkpoint.pt"  #: a sub-run's last good checkpoint (with a ``.sha256`` beside it)
FIGURES = "figures"  #: a run's own PNG figures
ROOT_SUBRUN = "(run)"  #: the name of a sub-run that is the run directory itself


def new_run_dir(out: Path, experiment: str) -> Path:
    """Create a fresh, unique run directory (safe when several processes start at once)."""
    base = Path(out) / experiment
    base.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        path = base / f"{stamp}-{secrets.token_hex(2)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            time.sleep(0.01)
    raise RuntimeError(f"could not create a unique run directory under {base}")


def latest_run_dir(out: Path, experiment: str) -> Path | None:
    """The newest run directory of ``experiment`` under ``out``, if any."""
    base = Path(out) / experiment
    if not base.is_dir():
        return None
    runs = sorted(p for p in base.iterdir() if (p / CONFIG).exists())
    return runs[-1] if runs else None


def run_metadata(device: torch.device) -> dict[str, Any]:
    """Versions, device, host and command line, saved with every run."""
    return {
        "signalprop": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        **threads.record(),  # timings (wall-clock, step ratios) depend on it
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
        platform.processor() or platform.machine(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["signalprop", *sys.argv[1:]]),
    }


def find_subrun_dirs(run_dir: Path) -> list[Path]:
    """Directories below ``run_dir`` holding :data:`RESULT`, :data:`METRICS` or
    :data:`METRICS_GZ` (any depth), the run directory first when it holds them itself
    (single-model experiments). A sub-run's own sub-directories are not searched."""
    run_dir = Path(run_dir)
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(run_dir):
        here = Path(dirpath)
        if {RESULT, METRICS, METRICS_GZ} & set(filenames):
            found.append(here)
            if here != run_dir:
                dirnames[:] = []
                continue
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and not (here == run_dir and d == FIGURES)
        )
    return sorted(found, key=lambda p: (p != run_dir, p.relative_to(run_dir).as_posix()))


def subrun_name(run_dir: Path, sub_dir: Path) -> str:
    """A sub-run's name: its path below the run directory (posix), :data:`ROOT_SUBRUN` for the
    run directory itself."""
    rel = Path(sub_dir).relative_to(run_dir).as_posix()
    return ROOT_SUBRUN if rel == "." else rel
