"""What ``signalprop reproduce`` prints while it works: one line per experiment as it starts
(with ``--jobs 1``) and as it ends (elapsed time, verdicts, run directory), under an overall
progress bar when stderr is a terminal."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any


def elapsed_text(seconds: float) -> str:
    """``42s`` or ``3m05s``."""
    seconds = round(seconds)
    return f"{seconds}s" if seconds < 60 else f"{seconds // 60}m{seconds % 60:02d}s"


def verdict_counts(run_dir: Path | None) -> str:
    """``2 reproduced, 1 partly`` from a run's ``summary.json`` (empty if it has none)."""
    if run_dir is None:
        return ""
    try:
        claims = json.loads((Path(run_dir) / "summary.json").read_text()).get("claims", [])
    except (OSError, ValueError):
        return ""
    counts = Counter(str(c.get("verdict")) for c in claims if isinstance(c, dict))
    return ", ".join(f"{n} {verdict}" for verdict, n in counts.items())


class Progress:
    """Start and end lines for each experiment, and a bar over all of them on a terminal."""

    def __init__(self, total: int, quick: bool, show_bar: bool | None = None) -> None:
        from tqdm.auto import tqdm

        self.total, self.done, self.quick = total, 0, quick
        self.started: dict[str, float] = {}
        self.begun = time.perf_counter()
        show = sys.stderr.isatty() if show_bar is None else show_bar
        self.bar = tqdm(total=total, desc="reproduce", unit="experiment", disable=not show,
                        file=sys.stderr, leave=False)

    def _write(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def note(self, message: str) -> None:
        self._write(f"reproduce: {message}")

    def start(self, name: str, index: int) -> None:
        self.started[name] = time.perf_counter()
        size = " (quick)" if self.quick else ""
        self._write(f"reproduce [{index}/{self.total}] {name}{size}: started")

    def end(self, outcome: Any) -> None:
        self.done += 1
        began = self.started.get(outcome.name, self.begun)
        parts = [f"{outcome.status} in {elapsed_text(time.perf_counter() - began)}"]
        verdicts = verdict_counts(outcome.run_dir)
        if verdicts:
            parts.append(verdicts)
        parts.append(outcome.reason or str(outcome.run_dir))
        self._write(f"reproduce [{self.done}/{self.total}] {outcome.name}: {'; '.join(parts)}")
        self.bar.update()
        self.bar.refresh()  # redraw now: experiments end minutes apart

    def close(self) -> None:
        self.bar.close()
        self._write(f"reproduce: {self.done} experiment(s) in "
                    f"{elapsed_text(time.perf_counter() - self.begun)}")
