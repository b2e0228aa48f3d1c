"""The ``signalprop diagnose`` sub-command (arguments and entry point)."""

from __future__ import annotations

import argparse

from signalprop.errors import SignalpropError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="EXPERIMENT or path/to/file.py:factory")
    parser.add_argument("--batch-size", type=int, default=64)


def run(args: argparse.Namespace) -> int:
    raise SignalpropError("signalprop diagnose is not implemented yet")
