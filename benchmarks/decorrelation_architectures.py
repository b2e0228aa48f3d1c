"""Per-step cost and peak memory of decorrelated ResNet-18 and ViT against the plain networks.

For each architecture one process times, in every round, the plain step and the decorrelated
steps (dense ``R`` and blocks of each ``--block-sizes``) back to back; a step is forward +
backward + Adam (+ the ``R`` update, preset ``dalm`` as in ``decorrelation-resnet``). The
clock is process CPU time; a variant's ratio is the median over rounds of its per-round ratio
to the plain step, with the quartiles. Peak memory is measured in a fresh child process per
variant: the peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs`` just
before) over building the model and three training steps, minus the resident set before
building it (torch imported, batch made). Linux only.

    OMP_NUM_THREADS=1 python benchmarks/decorrelation_architectures.py [--quick]
        [--block-sizes 16,32] [--rounds 5] [--repeats 1] [--out FILE.json]

The 1.3x target is judged on ResNet-18 with blocks.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from signalprop.learning.decorrelation_rule import decorrelation_step
from signalprop.nn.decorrelation_policy import decorrelate
from signalprop.nn.resnet import resnet18
from signalprop.nn.vit import SmallViT

sys.path.insert(0, str(Path(__file__).parent))
from decorrelation_cost import _sizes, make_step, multiply_adds, time_steps  # noqa: E402

TARGET = 1.3
ARCHS = {
    "resnet18": ("ResNet-18 (torchvision layout, 3x3 stem), 1x28x28", 128),
    "vit": ("ViT 7x7 patches, dim 64, 4 blocks, 4 heads, 1x28x28", 128),
}


def build(arch: str, block: int | None, decorrelated: bool, quick: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    if arch == "resnet18":
        model: torch.nn.Module = resnet18(10, 1, 16 if quick else 64)
    else:
        model = SmallViT(dim=32 if quick else 64, depth=2 if quick else 4, heads=4,
                         mlp_dim=64 if quick else 128)
    if decorrelated:
        decorrelate(model, preset="dalm", lr=1e-5, block_size=block)
    return model


def _batch(arch: str, quick: bool) -> tuple[torch.Tensor, torch.Tensor]:
    batch = 32 if quick else ARCHS[arch][1]
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, 1, 28, 28, generator=g), torch.randint(0, 10, (batch,),
                                                                      generator=g)


_PROBE = """
import sys, torch
sys.path.insert(0, {here!r})
import decorrelation_architectures as b
from signalprop.learning.decorrelation_rule import decorrelation_step
torch.set_num_threads(1)
x, y = b._batch({arch!r}, {quick!r})
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
    f.write("5")
v = {variant!r}
model = b.build({arch!r}, None if v in ("plain", "dense") else int(v), v != "plain", {quick!r})
step = b.make_step(model, x, y, None if v == "plain" else decorrelation_step)
for _ in range(3):
    step()
print((status("VmHWM:") - before) / 1024)
"""


def peak_memory_mib(arch: str, variant: str, quick: bool) -> float:
    """Child process: peak RSS (``VmHWM``, reset first) over building ``variant`` and 3
    training steps, minus its RSS before building (torch imported, batch made), in MiB."""
    code = _PROBE.format(here=str(Path(__file__).parent), arch=arch, quick=quick,
                         variant=variant)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def compare(arch: str, sizes: tuple[int, ...], rounds: int, repeats: int, quick: bool) -> list:
    """Rows for one architecture: plain, dense R and each block size, timed side by side."""
    x, y = _batch(arch, quick)
    variants = {"plain": None, "dense": None, **{str(b): b for b in sizes}}
    models = {v: build(arch, b, v != "plain", quick) for v, b in variants.items()}
    steps = {v: make_step(m, x, y, None if v == "plain" else decorrelation_step)
             for v, m in models.items()}
    for step in steps.values():  # warm-up
        time_steps(step, 1)
    times: dict[str, list[float]] = {v: [] for v in steps}
    for _ in range(rounds):
        for v, step in steps.items():
            times[v].append(time_steps(step, repeats))
    rows = []
    for v in variants:
        ratios = [d / p for d, p in zip(times[v], times["plain"], strict=True)]
        low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
        row = {"architecture": ARCHS[arch][0], "arch": arch, "R": v, "batch": x.shape[0],
               "ms_per_step": 1e3 * statistics.median(times[v]),
               "ratio": statistics.median(ratios), "ratio_quartiles": [low, high],
               "peak_mib": peak_memory_mib(arch, v, quick)}
        if arch == "resnet18" and v != "plain":  # convs and fc are all of ResNet's matmuls
            row["madds_ratio"] = multiply_adds(models[v], x)["madds_ratio"]
        rows.append(row)
        print(f"{arch:<9} R={v:<6} batch {x.shape[0]:>4}  {row['ms_per_step']:9.1f} ms/step  "
              f"ratio {row['ratio']:.2f}x [{low:.2f}-{high:.2f}]  peak "
              f"{row['peak_mib']:8.1f} MiB" + (f"  multiply-adds {row['madds_ratio']:.2f}x"
                                             if "madds_ratio" in row else ""), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="narrow models, batch 32")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results"
                        / "decorrelation_architectures.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--block-sizes", type=_sizes, default=(16, 32))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--archs", default="resnet18,vit")
    args = parser.parse_args()
    archs = args.archs.split(",")
    if any(a not in ARCHS for a in archs):
        parser.error(f"--archs entries must be among {list(ARCHS)}, got {args.archs!r}")
    for option in ("threads", "rounds", "repeats"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be a positive integer")
    torch.set_num_threads(args.threads)
    rows = [row for arch in archs
            for row in compare(arch, args.block_sizes, args.rounds, args.repeats, args.quick)]
    verdicts = {f"resnet18, R blocks of {r['R']}": "met" if r["ratio"] <= TARGET else "missed"
                for r in rows if r["arch"] == "resnet18" and r["R"] not in ("plain", "dense")}
    for kind, verdict in verdicts.items():
        print(f"target: decorrelated step <= {TARGET}x plain, {kind} -> {verdict}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "decorrelation_architectures", "quick": args.quick,
        "threads": args.threads, "torch": torch.__version__, "machine": platform.machine(),
        "clock": "process CPU time", "memory": "peak RSS (VmHWM, reset) of a child process "
        "over build + 3 steps, minus its RSS before building, MiB", "rounds": args.rounds,
        "steps_per_round": args.repeats, "target_ratio": TARGET, "resnet18_target": verdicts,
        "rows": rows, "command": "python benchmarks/decorrelation_architectures.py",
        "ratios": {f"decorrelated/plain step, {r['architecture']}, R {r['R']}, batch "
                   f"{r['batch']}": r["ratio"] for r in rows if r["R"] != "plain"},
    }, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
