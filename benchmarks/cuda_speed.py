"""GPU time of signalprop's custom autograd Functions and RNNs next to torch's own, in one run.

Every row is one training step (forward + backward) of a custom Function and of the torch
reference it replaces, timed with ``torch.utils.benchmark.Timer`` (wall clock with CUDA
synchronisation; process CPU time cannot time GPU kernels), median of ``blocked_autorange``:

- ``checkpointed_stack``: ``AdditiveFilterStack`` (``_CheckpointedStack``) vs the same stack under
  plain autograd (``checkpoint=False``);
- ``filter_rnn_bptt`` / ``filter_rnn_loop`` / ``filter_rnn_perm_bptt``: ``AdditiveFilterRNN``
  (``_AdditiveFilterBPTT``, the autograd loop, the permutation filter) vs cuDNN ``nn.RNN`` and
  ``nn.LSTM`` of the same size, with a linear head on the last state;
- ``linear_feedback`` / ``conv2d_feedback``: feedback alignment's Functions vs ``F.linear`` /
  ``F.conv2d`` under autograd;
- ``dfa_step``: a direct-feedback-alignment step (``_Inject``) vs a backprop step of the MLP.

Ratios are custom / reference (below 1: the custom Function is faster). Results go to
``benchmarks/results/cuda_speed.json`` (read by ``signalprop reproduce --readme``); a
``--device cpu`` smoke run prints only, unless ``--out`` is given.

    python benchmarks/cuda_speed.py [--quick] [--device cuda|cpu]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import benchmark

from signalprop.learning.feedback_alignment import DirectFeedbackAlignment
from signalprop.nn.feedback import conv2d_with_feedback, linear_with_feedback
from signalprop.nn.orthogonal import AdditiveFilterStack
from signalprop.nn.orthogonal_rnn import AdditiveFilterRNN, LastStepClassifier

DEFAULT_OUT = Path(__file__).parent / "results" / "cuda_speed.json"


@dataclass(frozen=True)
class Sizes:
    batch: int = 128
    hidden: int = 128
    steps: int = 784
    depth: int = 1000
    width: int = 256


QUICK = Sizes(batch=64, hidden=64, steps=196, depth=200, width=128)


def _train_step(model: nn.Module, loss: Callable[[], torch.Tensor]) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss().backward()
    return step


def _classifier_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    return _train_step(model, lambda: F.cross_entropy(model(x), y))


def build_cases(device: torch.device, sizes: Sizes) -> dict[str, Callable[[], None]]:
    """Name -> one training step, all inputs on ``device`` (float32)."""
    torch.manual_seed(0)
    on = {"device": device}
    cases: dict[str, Callable[[], None]] = {}

    h0 = torch.randn(sizes.batch, sizes.width, **on)
    for name, checkpoint in (("checkpointed_stack", True), ("autograd_stack", False)):
        stack = AdditiveFilterStack(sizes.width, sizes.depth, checkpoint=checkpoint, **on)
        cases[name] = _train_step(stack, lambda s=stack: s(h0).square().mean())

    x = torch.randn(sizes.batch, sizes.steps, 1, **on)
    y = torch.randint(0, 10, (sizes.batch,), device=device)
    rnns = {
        "filter_rnn_bptt": AdditiveFilterRNN(1, sizes.hidden, impl="bptt", **on),
        "filter_rnn_loop": AdditiveFilterRNN(1, sizes.hidden, impl="loop", **on),
        "filter_rnn_perm_bptt": AdditiveFilterRNN(1, sizes.hidden, filter="permutation", **on),
        "torch_rnn": nn.RNN(1, sizes.hidden, batch_first=True, **on),
        "torch_lstm": nn.LSTM(1, sizes.hidden, batch_first=True, **on),
    }
    for name, rnn in rnns.items():
        cases[name] = _classifier_step(LastStepClassifier(rnn, 10).to(device), x, y)

    features = torch.randn(sizes.batch * 4, sizes.width, **on)
    linear = nn.Linear(sizes.width, sizes.width, **on)
    feedback = torch.randn_like(linear.weight)
    cases["linear_feedback"] = _train_step(linear, lambda: linear_with_feedback(
        features, linear.weight, linear.bias, feedback).square().mean())
    cases["torch_linear"] = _train_step(linear, lambda: linear(features).square().mean())

    images = torch.randn(sizes.batch, 16, 32, 32, **on)
    conv = nn.Conv2d(16, 32, 3, padding=1, **on)
    conv_feedback = torch.randn_like(conv.weight)
    cases["conv2d_feedback"] = _train_step(conv, lambda: conv2d_with_feedback(
        images, conv.weight, conv.bias, conv_feedback, padding=1).square().mean())
    cases["torch_conv2d"] = _train_step(conv, lambda: conv(images).square().mean())

    inputs = torch.randn(sizes.batch * 4, 784, **on)
    labels = torch.randint(0, 10, (sizes.batch * 4,), device=device)
    mlp = nn.Sequential(nn.Linear(784, sizes.width), nn.Tanh(), nn.Linear(sizes.width, sizes.width),
                        nn.Tanh(), nn.Linear(sizes.width, 10)).to(device)
    cases["backprop_step"] = _classifier_step(mlp, inputs, labels)
    dfa_mlp = copy.deepcopy(mlp)
    dfa = DirectFeedbackAlignment()
    dfa.attach(dfa_mlp)

    def dfa_step() -> None:
        dfa_mlp.zero_grad(set_to_none=True)
        dfa.compute_gradients(dfa_mlp, inputs, labels, F.cross_entropy)

    cases["dfa_step"] = dfa_step
    return cases


PAIRS = {  # ratio label -> (custom, reference)
    "checkpointed_stack_vs_autograd_stack": ("checkpointed_stack", "autograd_stack"),
    "filter_rnn_bptt_vs_torch_rnn": ("filter_rnn_bptt", "torch_rnn"),
    "filter_rnn_bptt_vs_torch_lstm": ("filter_rnn_bptt", "torch_lstm"),
    "filter_rnn_loop_vs_torch_rnn": ("filter_rnn_loop", "torch_rnn"),
    "filter_rnn_perm_bptt_vs_torch_rnn": ("filter_rnn_perm_bptt", "torch_rnn"),
    "linear_feedback_vs_torch_linear": ("linear_feedback", "torch_linear"),
    "conv2d_feedback_vs_torch_conv2d": ("conv2d_feedback", "torch_conv2d"),
    "dfa_step_vs_backprop_step": ("dfa_step", "backprop_step"),
}


def measure(cases: dict[str, Callable[[], None]], min_run_time: float,
            threads: int) -> dict[str, float]:
    """Median seconds per step of every case (after one warm-up call each)."""
    seconds = {}
    for name, step in cases.items():
        step()
        timer = benchmark.Timer(stmt="step()", globals={"step": step}, num_threads=threads,
                                label="cuda_speed", description=name)
        seconds[name] = timer.blocked_autorange(min_run_time=min_run_time).median
    return seconds


def machine(device: torch.device) -> dict[str, str]:
    found = {"device": str(device), "torch": torch.__version__, "processor": platform.machine()}
    if device.type == "cuda":
        found.update({"gpu": torch.cuda.get_device_name(device),
                      "cuda": str(torch.version.cuda),
                      "cudnn": str(torch.backends.cudnn.version())})
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true",
                        help=f"batch {QUICK.batch}, hidden {QUICK.hidden}, {QUICK.steps} steps, "
                             f"depth {QUICK.depth}")
    for field in Sizes.__dataclass_fields__:
        parser.add_argument(f"--{field}", type=int, default=None)
    parser.add_argument("--min-run-time", type=float, default=1.0,
                        help="seconds per blocked_autorange (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"JSON file (default {DEFAULT_OUT} on cuda, none on cpu)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(f"cuda_speed: CUDA is not available (torch {torch.__version__}, no GPU "
                 "visible); run it on a machine with a GPU, or pass --device cpu for a smoke run")
    base = QUICK if args.quick else Sizes()
    values = {f: getattr(base, f) if getattr(args, f) is None else getattr(args, f)
              for f in Sizes.__dataclass_fields__}
    if any(v < 1 for v in values.values()) or args.min_run_time <= 0 or args.threads < 1:
        parser.error("sizes and --threads must be >= 1 and --min-run-time > 0")
    sizes = Sizes(**values)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    seconds = measure(build_cases(device, sizes), args.min_run_time, args.threads)
    ratios = {label: seconds[a] / seconds[b] for label, (a, b) in PAIRS.items()}
    print(f"{'comparison':40s} {'custom s':>11s} {'reference s':>11s} {'ratio':>7s}")
    for label, (a, b) in PAIRS.items():
        print(f"{label:40s} {seconds[a]:11.3e} {seconds[b]:11.3e} {ratios[label]:7.3f}")
    out = args.out or (DEFAULT_OUT if device.type == "cuda" else None)
    if out is not None:
        result = {"benchmark": "cuda_speed", "machine": machine(device),
                  "command": "python benchmarks/cuda_speed.py " + " ".join(argv or sys.argv[1:]),
                  "config": values, "seconds_per_step": seconds, "ratios": ratios}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
