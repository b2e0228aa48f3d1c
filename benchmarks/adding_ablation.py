"""Why the additive-filter RNN does or does not learn the adding problem: small targeted runs.

Each variant trains ``LastStepClassifier(AdditiveFilterRNN(2, hidden, beta=b), 1, scale=s)``
on the adding problem (Hochreiter & Schmidhuber 1997) with a fresh batch every step (as LEM's
``src/adding`` does) and reports the test MSE (500 fixed sequences) every ``--eval-every`` steps,
against 0.167, the MSE of always predicting 1. Variants change one thing at a time from the
library's recommended settings (``b = 1/T``, readout scale ``1/b``, Adam 1e-3, clip 1):

- ``b``: ``c/T`` for a larger ``c``, or a fixed ``b``;
- the filter: ``haar`` (paper), ``cycle``, or ``identity`` (``O = I``, a leaky integrator; an
  ablation only, not a library option);
- the readout scale, the learning rate, gradient clipping;
- ``frozen``: only the readout trains (the recurrent control).

Also reported: ``||W||_2`` after training and the recurrent drive ``||W h_t|| / ||U x_t + c||``
averaged over steps of one test batch, which says whether the state feeds back into the
nonlinearity at all (the state's scale is ``b``).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/adding_ablation.py --T 400 \\
        --variants base b=10/T b=0.1 scale=1 lr=3e-3 lr=1e-2 clip=0 filter=identity
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from signalprop.data.synthetic.adding import sample_adding
from signalprop.nn.orthogonal_rnn import AdditiveFilterRNN, LastStepClassifier

ALWAYS_ONE_MSE = 1 / 6  # Var(u1 + u2) for u1, u2 ~ U[0, 1]: the MSE of predicting the mean 1


def parse_variant(text: str, T: int) -> dict[str, Any]:
    """``"b=10/T"`` -> ``{"b": 10/T}``; ``"base"`` -> ``{}``; several joined by commas."""
    out: dict[str, Any] = {}
    if text == "base":
        return out
    for part in text.split(","):
        key, value = part.split("=", 1)
        if key == "b":
            out["b"] = float(value[:-2]) / T if value.endswith("/T") else float(value)
        elif key in ("scale", "lr", "clip"):
            out[key] = float(value)
        elif key in ("filter",):
            out[key] = value
        elif key == "frozen":
            out[key] = value == "1"
        else:
            raise SystemExit(f"unknown variant key {key!r} in {text!r}")
    return out


def build(T: int, hidden: int, seed: int, options: dict[str, Any]) -> LastStepClassifier:
    torch.manual_seed(seed)
    b = options.get("b", 1.0 / T)
    kind = options.get("filter", "haar")
    rnn = AdditiveFilterRNN(2, hidden, beta=b, filter="haar" if kind == "identity" else kind)
    if kind == "identity":
        rnn.cell.filter.copy_(torch.eye(hidden))
    model = LastStepClassifier(rnn, 1, scale=options.get("scale", 1.0 / b))
    if options.get("frozen"):
        rnn.requires_grad_(False)
    return model


@torch.no_grad()
def recurrent_drive(model: LastStepClassifier, x: torch.Tensor) -> float:
    """Mean over steps of ``||W h_{t-1}|| / ||U x_t + c||`` on ``x`` (B, T, 2)."""
    cell = model.rnn.cell
    states, _ = model.rnn(x)
    prev = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], 1)
    rec = (prev @ cell.weight_hh.t()).norm(dim=-1)
    inp = nn.functional.linear(x, cell.weight_ih, cell.bias).norm(dim=-1)
    return float((rec / inp.clamp_min(1e-12)).mean())


def train(T: int, hidden: int, steps: int, batch: int, seed: int, eval_every: int,
          options: dict[str, Any]) -> dict[str, Any]:
    model = build(T, hidden, seed, options)
    gen = torch.Generator().manual_seed(seed + 1)
    x_test, y_test = sample_adding(500, torch.Generator().manual_seed(12345), T=T)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=options.get("lr", 1e-3))
    clip = options.get("clip", 1.0)
    curve = []
    started = time.process_time()
    for step in range(1, steps + 1):
        x, y = sample_adding(batch, gen, T=T)
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        if clip > 0:
            nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        if step % eval_every == 0 or step == steps:
            with torch.no_grad():
                mse = float(sum(nn.functional.mse_loss(model(x_test[i:i + 100]), y_test[i:i + 100])
                                for i in range(0, 500, 100)) / 5)
            curve.append([step, mse if math.isfinite(mse) else None])
    w = model.rnn.cell.weight_hh.detach()
    return {"test_mse_curve": curve, "final_test_mse": curve[-1][1],
            "weight_hh_norm": float(torch.linalg.matrix_norm(w, 2)),
            "recurrent_drive": recurrent_drive(model, x_test[:50]),
            "cpu_s": time.process_time() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, nargs="+", default=[400])
    parser.add_argument("--variants", nargs="+", default=["base"])
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/adding_ablation.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for T in args.T:
        for text in args.variants:
            row = train(T, args.hidden, args.steps, args.batch, args.seed, args.eval_every,
                        parse_variant(text, T))
            key = f"T={T} {text} hidden={args.hidden} steps={args.steps} seed={args.seed}"
            results[key] = row
            print(f"{key}: test MSE {row['final_test_mse']} (always-1: {ALWAYS_ONE_MSE:.3f}), "
                  f"curve {row['test_mse_curve']}, ||W|| {row['weight_hh_norm']:.2f}, drive "
                  f"{row['recurrent_drive']:.3g}, {row['cpu_s']:.0f} s", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
