"""Run directories: ``<out>/<experiment>/<timestamp>-<suffix>/`` with config and metadata."""

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

from signalprop import __version__, threads


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
    runs = sorted(p for p in base.iterdir() if (p / "config.json").exists())
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
