"""Run the ``signalprop`` command line in-process, as the CLI tests do."""

from __future__ import annotations

from signalprop.cli import main


def run_cli(capsys, *argv: str) -> tuple[int | str | None, str, str]:
    """``(exit code, stdout, stderr)`` of ``signalprop *argv`` (argparse's exits included)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err
