"""A log line at least every :data:`INTERVAL_S` seconds of training when no progress bar shows.

On a terminal :func:`signalprop.train.fit` draws a bar per epoch; in a log (``make demo >
log``, a batch job, ``reproduce`` without a terminal) it prints instead, once at least
``INTERVAL_S`` seconds passed since the last such line of this process::

    signalprop: decorrelation-speedup/mlp: epoch 3/10, step 45/120, loss 0.532, 2m10s in

so a long experiment is never silent for minutes. ``SIGNALPROP_LOG_INTERVAL`` (seconds)
changes the interval.
"""

from __future__ import annotations

import os
import sys
import time

#: Seconds between two lines; a line comes at the first step after this much silence.
INTERVAL_S = 30.0
_LAST = [time.monotonic()]


def interval() -> float:
    """:data:`INTERVAL_S`, or ``SIGNALPROP_LOG_INTERVAL`` when set to a number."""
    try:
        return float(os.environ.get("SIGNALPROP_LOG_INTERVAL", INTERVAL_S))
    except ValueError:
        return INTERVAL_S


def _elapsed(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds}s" if seconds < 60 else f"{seconds // 60}m{seconds % 60:02d}s"


class Heartbeat:
    """Call :meth:`tick` after every training step; it prints when the interval has passed."""

    def __init__(self, desc: str, enabled: bool) -> None:
        self.desc = desc or "fit"
        self.enabled = enabled
        self.started = time.monotonic()
        self.every = interval()

    def tick(self, epoch: int, epochs: int, step: int, steps: int, loss: float) -> bool:
        """Print a line if :attr:`every` seconds passed since the last one; True if it did."""
        now = time.monotonic()
        if not self.enabled or now - _LAST[0] < self.every:
            return False
        _LAST[0] = now
        print(f"signalprop: {self.desc}: epoch {epoch}/{epochs}, step {step}/{steps}, loss "
              f"{loss:.4g}, {_elapsed(now - self.started)} in", file=sys.stderr, flush=True)
        return True
