"""Before/after check of a decorrelation optimisation: another git revision's decorrelated step
against this tree's, side by side in one process, with the plain step as the common yardstick.

The revision's ``src/signalprop`` is extracted with ``git archive`` into a temporary folder and
imported as ``signalprop_base`` (its imports rewritten), so both versions run in the same
process on the same inputs. In each round the plain, base and current steps are timed back to
back (forward + backward + Adam + R update, process CPU time); ratios are medians of the
per-round ratios, so the machine drifting between rounds cancels out.

    python benchmarks/decorrelation_ab.py --base HEAD~1 [--block-size 16] [--batch 256]
"""

from __future__ import annotations

import argparse
import importlib
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import torch
from torch import nn

from signalprop.experiments.decorrelation_models import ModelConfig, make_mlp
from signalprop.learning.decorrelation_rule import decorrelation_step
from signalprop.nn.decorrelation_policy import decorrelate

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling cost benchmark
from decorrelation_cost import make_step, time_steps  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BASE_PACKAGE = "signalprop_base"


def extract_revision(revision: str, into: Path) -> Path:
    """Write ``revision``'s package as ``into/signalprop_base`` with its imports renamed."""
    try:
        archive = subprocess.run(["git", "archive", revision, "src/signalprop"], cwd=ROOT,
                                 check=True, capture_output=True).stdout
    except subprocess.CalledProcessError as err:
        raise SystemExit(f"cannot read revision {revision!r}: {err.stderr.decode().strip()} "
                         "(give a commit, tag or branch of this repository)") from None
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    package = into / BASE_PACKAGE
    (into / "src" / "signalprop").rename(package)
    pattern = re.compile(r"\bsignalprop(?=[.\s])")
    for path in package.rglob("*.py"):
        path.write_text(pattern.sub(BASE_PACKAGE, path.read_text()))
    return package


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--block-size", type=int, default=16, help="0 for the dense R")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if args.block_size < 0 or min(args.batch, args.width, args.rounds, args.repeats) < 1:
        parser.error("--block-size must be >= 0 and --batch/--width/--rounds/--repeats >= 1")
    torch.set_num_threads(1)
    block = args.block_size or None
    with tempfile.TemporaryDirectory() as tmp:
        extract_revision(args.base, Path(tmp))
        sys.path.insert(0, tmp)
        base_policy = importlib.import_module(f"{BASE_PACKAGE}.nn.decorrelation_policy")
        base_rule = importlib.import_module(f"{BASE_PACKAGE}.learning.decorrelation_rule")
        config = ModelConfig(width=args.width, depth=3)
        x, y = torch.randn(args.batch, 784), torch.randint(0, 10, (args.batch,))

        def model() -> nn.Module:
            torch.manual_seed(0)
            return make_mlp(784, 10, config)

        steps = {
            "plain": make_step(model(), x, y, None),
            "base": make_step(base_policy.decorrelate(model(), lr=1e-5, block_size=block), x, y,
                              base_rule.decorrelation_step),
            "current": make_step(decorrelate(model(), lr=1e-5, block_size=block), x, y,
                                 decorrelation_step),
        }
        for step in steps.values():
            time_steps(step, 3)
        times: dict[str, list[float]] = {key: [] for key in steps}
        for _ in range(args.rounds):
            for key, step in steps.items():
                times[key].append(time_steps(step, args.repeats))

    def ratio(a: str, b: str) -> float:
        return statistics.median(p / q for p, q in zip(times[a], times[b], strict=True))

    kind = f"R blocks of {block}" if block else "dense R"
    print(f"MLP 784-{args.width}x3-10, batch {args.batch}, {kind}; {args.rounds} rounds of "
          f"{args.repeats} steps, one thread")
    for key in steps:
        print(f"  {key:<8} {1e3 * statistics.median(times[key]):7.2f} ms/step  "
              f"{ratio(key, 'plain'):.3f}x plain")
    print(f"current / base ({args.base}): {ratio('current', 'base'):.3f}")


if __name__ == "__main__":
    main()
