"""How many CPU threads torch uses: the ``--threads`` option, :func:`set_threads` and the default.

torch starts with one intra-op thread per core whatever else runs on the machine. When other
processes keep those cores busy, its threads wait for each other and a step can take ten times
longer than with fewer threads (docs/threads.md has the measurement). The default here
therefore counts only the cores that are free:

    threads = max(1, cores - floor(load))    (divided among torchrun's local ranks)

where ``cores`` is the number of CPUs this process may run on (``os.sched_getaffinity``) and
``load`` the 1-minute load average (``os.getloadavg``). An explicit choice wins: ``--threads N``
or :func:`set_threads` ``(N)``; then ``OMP_NUM_THREADS`` from the environment (torch already
read it); then a ``torch.set_num_threads`` call made after ``import signalprop``.
:func:`signalprop.train.fit` applies the default once per process when none of these chose,
and every run records the number and how it was chosen (:func:`record`).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from signalprop.errors import ConfigError

#: torch's thread count when signalprop was imported: a later difference means the user chose.
_AT_IMPORT = torch.get_num_threads()
_CHOICE: dict[str, Any] = {}


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def load_average() -> float | None:
    """The 1-minute load average, or None where the platform has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def default_threads(cores: int | None = None, load: float | None = None,
                    processes: int | None = None) -> int:
    """``max(1, (cores - floor(load)) // processes)``: one thread per core that other processes
    leave free, shared among the ``processes`` of this job on the machine (torchrun's
    ``LOCAL_WORLD_SIZE``; 1 without torchrun)."""
    cores = available_cores() if cores is None else cores
    load = load_average() if load is None else load
    if processes is None:
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    busy = math.floor(load) if load is not None and math.isfinite(load) else 0
    return max(1, min(cores, cores - busy) // max(1, processes))


def set_threads(threads: int | None = None) -> int:
    """Use ``threads`` intra-op threads (None: :func:`default_threads`); returns the number.

    ``signalprop.set_threads()`` in a script does what the command line does by default;
    ``signalprop.set_threads(1)`` pins one thread (deterministic timings, many jobs side by side).
    """
    if threads is None:
        cores, load = available_cores(), load_average()
        threads = default_threads(cores, load)
        how = (f"default: {cores} cores, load average "
               f"{'unknown' if load is None else f'{load:.2f}'}")
    else:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"--threads must be an integer >= 1, got {threads!r}")
        how = "chosen"
    torch.set_num_threads(threads)
    _CHOICE.update(threads=threads, how=how)
    return threads


def chosen_elsewhere() -> str | None:
    """How the thread count was chosen outside :func:`set_threads`, or None if it was not."""
    if os.environ.get("OMP_NUM_THREADS"):
        return "OMP_NUM_THREADS"
    if torch.get_num_threads() != _AT_IMPORT:
        return "torch.set_num_threads"
    return None


def apply_default() -> None:
    """Apply :func:`default_threads` unless a thread count was already chosen (see module doc)."""
    if not _CHOICE and chosen_elsewhere() is None:
        set_threads(None)


def record() -> dict[str, Any]:
    """``{"threads": N, "threads_how": ...}`` for a run's metadata."""
    threads = torch.get_num_threads()
    if _CHOICE.get("threads") == threads:
        how = _CHOICE["how"]
    else:
        how = chosen_elsewhere() or "torch default"
    return {"threads": threads, "threads_how": how}
