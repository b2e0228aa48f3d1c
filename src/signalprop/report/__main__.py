"""``python -m signalprop.report RUN_OR_RUNS_DIR... -o OUT_DIR [--title TITLE] [--standalone]``."""

from __future__ import annotations

import argparse
import sys

from signalprop.errors import SignalpropError
from signalprop.report.builder import build_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m signalprop.report",
        description="Write README.md, index.html and figures/ for run directories.",
    )
    parser.add_argument("runs", nargs="+", help="run directories or folders containing runs")
    parser.add_argument("-o", "--out", required=True, help="output directory of the report")
    parser.add_argument("--title", default="signalprop report")
    parser.add_argument("--standalone", action="store_true",
                        help="inline the figures in index.html instead of referring to figures/")
    args = parser.parse_args(argv)
    try:
        index = build_report(args.runs, args.out, title=args.title, standalone=args.standalone)
    except SignalpropError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
