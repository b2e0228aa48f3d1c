"""The ``signalprop`` command line: list, run, report and reproduce experiments.

User errors (unknown names, bad options or values, missing data) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

from signalprop.cli_checks import (
    EXIT_RUN_FAILED,
    add_threads_option,
    check_writable,
    claim_lines,
    interrupt_hint,
    resume_dir,
)
from signalprop.errors import DivergenceError, SignalpropError

EXIT_USAGE = 2
EXIT_DIVERGED = 3


class _Parser(argparse.ArgumentParser):
    """argparse that prints a single error line with close-match suggestions, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = ""
        words = [w for w in message.replace("'", " ").replace(",", " ").split() if w]
        if "invalid choice" in message or "unrecognized arguments" in message:
            choices = self._known_words()
            for word in words:
                if word.startswith("-") or "invalid choice" in message:
                    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
                    if close and word not in choices:
                        hint = f"; did you mean {', '.join(close)}?"
                        break
        print(f"{self.prog}: error: {message}{hint}", file=sys.stderr)
        sys.exit(EXIT_USAGE)

    def _known_words(self) -> list[str]:
        words: list[str] = []
        for action in self._actions:
            words.extend(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                words.extend(action.choices)
                for sub in action.choices.values():
                    words.extend(o for a in sub._actions for o in a.option_strings)
        return list(dict.fromkeys(words))


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="the short CI-sized version")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config field, e.g. train.lr=0.01")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="output root (runs/)")
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda:N")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_threads_option(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="signalprop", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p_list = sub.add_parser("list", help="experiments and their claims")
    p_list.add_argument("--config", metavar="NAME", help="show one experiment's config keys")

    p_run = sub.add_parser("run", help="run one experiment")
    p_run.add_argument("name")
    _add_run_options(p_run)
    p_run.add_argument("--resume", nargs="?", const="latest", metavar="RUN_DIR",
                       help="continue a run directory (default: the latest of NAME)")

    p_report = sub.add_parser("report", help="Markdown and HTML report from run directories")
    p_report.add_argument("run_dirs", nargs="+", type=Path)
    p_report.add_argument("--out", type=Path, default=Path("report"))
    p_report.add_argument("--benchmarks", type=Path, action="append", default=None,
                          help="benchmark JSON file or folder (default: benchmarks/results)")
    p_report.add_argument("--readme", type=Path, default=None,
                          help="also rewrite the results section of this README")
    p_report.add_argument("--standalone", action="store_true",
                          help="inline the figures in index.html (one page that opens on its "
                               "own) instead of referring to figures/*.png")

    p_repro = sub.add_parser("reproduce", help="run every experiment, then the report")
    size = p_repro.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the short versions (CI, demo)")
    size.add_argument("--full", action="store_true", help="the full versions (default)")
    p_repro.add_argument("--only", metavar="PATTERN", help="glob on experiment names")
    p_repro.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p_repro.add_argument("--seeds", type=int, default=None, metavar="N",
                         help="seeds per experiment, for experiments that use several "
                              "(default: --full raises each below 3 to 3)")
    p_repro.add_argument("--jobs", type=int, default=1, metavar="N",
                         help="experiments run in parallel (default 1)")
    p_repro.add_argument("--out", type=Path, default=Path("runs"))
    p_repro.add_argument("--device", default="auto")
    add_threads_option(p_repro)
    p_repro.add_argument("--report", type=Path, default=None,
                         help="report directory (default: <out>/report)")
    p_repro.add_argument("--benchmarks", type=Path, action="append", default=None,
                         help="benchmark JSON file or folder (default: benchmarks/results)")
    p_repro.add_argument("--readme", type=Path, default=None,
                         help="also rewrite the results section of this README")
    p_diag = sub.add_parser("diagnose", help="gradient-health check of a model")
    from signalprop.diagnose.cli import add_arguments as add_diagnose_arguments

    add_diagnose_arguments(p_diag)
    return parser


def _cmd_list(args: argparse.Namespace) -> int:
    from signalprop import config as config_lib
    from signalprop.experiments.paper_budgets import scales_of
    from signalprop.experiments.paper_scale import default_data, scale_row
    from signalprop.experiments.registry import all_experiments, get_experiment

    if args.config:
        exp = get_experiment(args.config)
        cfg = exp.make_config()
        flat = _flatten(config_lib.to_dict(cfg))
        for key, value in flat.items():
            print(f"{key} = {value!r}")
        return 0
    for exp in all_experiments():
        defaults = config_lib.to_dict(exp.make_config())
        print(f"{exp.name:28s} {exp.summary}")
        print(f"{'':28s}   models: {', '.join(exp.models)}")
        scales = scales_of(exp.name, len(exp.claims))
        for claim, scale in zip(exp.claims, scales, strict=True):
            print(f"{'':28s}   claim: {claim.text} [{claim.source}]")
            print(f"{'':28s}   data: ours {default_data(defaults, claim.same_data)}; "
                  f"paper {claim.paper_data}")
            scale_text = scale_row(scale, defaults)[0]
            if scale_text:
                print(f"{'':28s}   scale: {scale_text}")
            print(f"{'':28s}   rule v{claim.rule_version}: {claim.rule}")
    return 0


def _flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _cmd_run(args: argparse.Namespace) -> int:
    """Run one experiment; under torchrun every rank joins the process group (DDP)."""
    from signalprop.device import resolve_device
    from signalprop.distributed import is_main_process, process_group
    from signalprop.experiments.context import missing_requirements, run_experiment
    from signalprop.experiments.registry import get_experiment

    exp = get_experiment(args.name)
    device = resolve_device(args.device)
    resume = resume_dir(args.resume, args.out, exp.name) if args.resume else None
    check_writable(resume or args.out, "--resume" if resume else "--out")
    reason = missing_requirements(exp)
    if reason:
        print(f"skipped {exp.name}: {reason}", file=sys.stderr)
        return 0
    with process_group(device) as device:
        if resume is not None and is_main_process():
            print(f"resuming {resume}", file=sys.stderr)
        try:
            run_dir = run_experiment(
                exp, out=args.out, quick=args.quick, seed=args.seed,
                overrides=None if resume else args.overrides, device=device, resume=resume,
                progress=False if args.no_progress else None,
                resume_overrides=args.overrides if resume else None,
            )
        except DivergenceError as exc:
            from signalprop.experiments.resuming import rerun_advice

            raise DivergenceError(f"{exc}{rerun_advice(exp, exc)}") from None
        if not is_main_process():
            return 0
        print(run_dir, flush=True)
        lines, failed = claim_lines(run_dir)
        for line in lines:
            print(line, file=sys.stderr)
    if failed:
        print(f"signalprop: the run failed (see above); its files are in {run_dir}",
              file=sys.stderr)
        return EXIT_RUN_FAILED
    return 0


def _benchmark_paths(given: list[Path] | None) -> list[Path]:
    if given:
        for path in given:
            if not path.exists():
                raise SignalpropError(f"benchmark results not found: {path}")
        return given
    default = Path("benchmarks/results")
    return [default] if default.is_dir() else []


def _write_report(run_dirs: list[Path], out: Path, benchmarks: list[Path] | None,
                  readme: Path | None, standalone: bool = False) -> None:
    """Report (README.md, index.html, figures), results.json and, optionally, a README block."""
    from signalprop.report import build_report
    from signalprop.report.results_block import render_results_block, results_data, update_readme
    from signalprop.storage import atomic_write_json

    bench = _benchmark_paths(benchmarks)
    index = build_report(run_dirs, out, benchmarks=bench, standalone=standalone)
    data = results_data(run_dirs, bench, " ".join(["signalprop", *sys.argv[1:]]))
    atomic_write_json(out / "results.json", data)
    if readme is not None:
        update_readme(readme, render_results_block(data))
        print(f"results section of {readme} updated")
    print(f"report: {index.parent / 'README.md'} and {index}")


def _check_readme(readme: Path | None) -> None:
    if readme is not None and not readme.is_file():
        raise SignalpropError(f"--readme {readme}: no such file")


def _cmd_report(args: argparse.Namespace) -> int:
    for path in args.run_dirs:
        if not path.exists():
            raise SignalpropError(f"run directory not found: {path}")
    _check_readme(args.readme)
    check_writable(args.out)
    _write_report(list(args.run_dirs), args.out, args.benchmarks, args.readme, args.standalone)
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from signalprop.device import resolve_device
    from signalprop.reproduce import reproduce

    resolve_device(args.device)  # fail fast on a bad --device
    _check_readme(args.readme)
    check_writable(args.out)
    check_writable(args.report or args.out / "report", "--report")
    outcomes = reproduce(args.out, quick=args.quick, only=args.only, seed=args.seed,
                         seeds=args.seeds, jobs=args.jobs, device=args.device)
    run_dirs = [o.run_dir for o in outcomes if o.run_dir is not None]
    for outcome in outcomes:
        if outcome.status in ("skipped", "failed"):
            print(f"{outcome.status} {outcome.name}: {outcome.reason}", file=sys.stderr)
    print(f"run directories: {', '.join(str(d) for d in run_dirs) or 'none'}")
    if run_dirs:
        _write_report(run_dirs, args.report or args.out / "report", args.benchmarks,
                      args.readme)
    return 0 if all(o.status != "failed" for o in outcomes) else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from signalprop.diagnose.cli import run as _cmd_diagnose
    from signalprop.threads import apply_default, set_threads


    commands = {"list": _cmd_list, "run": _cmd_run, "report": _cmd_report,
                "reproduce": _cmd_reproduce, "diagnose": _cmd_diagnose}
    try:
        if getattr(args, "threads", None) is not None:
            set_threads(args.threads)
        elif hasattr(args, "threads"):
            apply_default()  # unless OMP_NUM_THREADS or the calling program chose
        return commands[args.command](args)
    except DivergenceError as exc:
        print(f"signalprop: diverged: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except SignalpropError as exc:
        print(f"signalprop: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `signalprop list | head`
        sys.stderr.close()
        return 0
    except OSError as exc:  # e.g. a disk that filled up or a folder made read-only meanwhile
        if exc.filename is None:
            raise
        print(f"signalprop: error: {exc.strerror or exc}: {exc.filename} (free space or "
              "permissions there, or pass another --out)", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(interrupt_hint(args, argv), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
