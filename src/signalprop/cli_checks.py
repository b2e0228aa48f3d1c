"""What the command line checks before it starts and says when it stops.

Each check turns a problem into one :class:`~signalprop.errors.SignalpropError` line that
names the fix (the CLI prints it and exits 2); the messages after a run or an interrupt give
the exact command that shows or continues it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import tempfile
from pathlib import Path

from signalprop.errors import SignalpropError

#: Exit status of ``signalprop run`` when the run trained but failed (a claim reads "not
#: checked: the run failed"), as distinct from a usage error (2) or a divergence (3).
EXIT_RUN_FAILED = 1
RUN_FAILED = "not checked: the run failed"


def check_writable(path: Path, option: str = "--out") -> None:
    """Create ``path`` if needed and write a scratch file in it; one line naming the fix if
    that fails (an unwritable ``--out`` would otherwise fail after minutes of training)."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".signalprop-write-test-"):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise SignalpropError(f"{option} {path}: cannot write there: {why}{where}; pass a "
                              f"directory you can write to, e.g. {option} "
                              f"{Path.home() / 'signalprop-runs'}") from None


def resume_dir(given: str, out: Path, experiment: str) -> Path:
    """The run directory ``--resume`` names (``latest``: the newest of ``experiment`` under
    ``out``), checked to hold a run's ``config.json`` before anything is printed."""
    from signalprop.runs import latest_run_dir

    if given == "latest":
        found = latest_run_dir(out, experiment)
        if found is None:
            raise SignalpropError(f"nothing to resume: no run of {experiment} under {out} "
                                  f"(pass --out DIR where it ran, or --resume RUN_DIR)")
        return found
    path = Path(given)
    if not (path / "config.json").is_file():
        what = "no such directory" if not path.exists() else "not a run directory (no config.json)"
        raise SignalpropError(f"cannot resume {path}: {what}; pass a directory "
                              f"{out}/{experiment}/<run>, or --resume alone for the latest")
    return path


def run_command(args: argparse.Namespace, run_dir: Path | None) -> str:
    """``signalprop run NAME --out OUT --resume RUN_DIR``: the command that continues a run."""
    words = ["signalprop", "run", args.name, "--out", str(args.out)]
    if getattr(args, "device", "auto") != "auto":
        words += ["--device", args.device]
    words += ["--resume"] + ([str(run_dir)] if run_dir is not None else [])
    return shlex.join(words)


def interrupt_hint(args: argparse.Namespace | None, argv: list[str]) -> str:
    """The line printed after Ctrl-C: for ``run`` and ``reproduce`` the command that goes on."""
    command = getattr(args, "command", None)
    if command == "run":
        from signalprop.runs import latest_run_dir

        latest = latest_run_dir(args.out, args.name) if args.resume is None else None
        resume = latest if latest is not None else (
            Path(args.resume) if args.resume not in (None, "latest") else None)
        return f"signalprop: interrupted; to continue: {run_command(args, resume)}"
    if command == "reproduce":
        again = shlex.join(["signalprop", *argv])
        return (f"signalprop: interrupted; to continue, run the same command again (it reuses "
                f"finished runs in {args.out} and resumes the unfinished one): {again}")
    return "signalprop: interrupted"


def claim_lines(run_dir: Path) -> tuple[list[str], bool]:
    """One line per claim of a finished run (its verdict label and text), and whether the run
    failed (some claim reads "not checked: the run failed")."""
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return [f"no summary.json in {run_dir}: the run did not finish"], True
    lines, failed = [], False
    claims = [c for c in summary.get("claims", []) if isinstance(c, dict)]
    for index, claim in enumerate(claims, 1):
        ours = str(claim.get("our_value", ""))
        failed = failed or ours.startswith(RUN_FAILED)
        label = claim.get("label") or claim.get("verdict")
        why = f" ({ours[len('not checked: '):]})" if ours.startswith(RUN_FAILED) else ""
        lines.append(f"claim {index}/{len(claims)}: {label}{why}: {claim.get('claim')}")
    return lines, failed


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N``; without it, one thread per core that other processes leave free."""
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch (default: cores minus the load average, "
                             "at least 1; docs/threads.md)")
