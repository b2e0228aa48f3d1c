"""One setting of the 300-layer tanh MLP on MNIST-1D (sensitivity-deep-mlp), or a shallow/linear
reference, trained with a plain loop; prints one JSON line (validation and test accuracy).

The validation split (``--n-val`` examples carved from the 4000 training examples by
:func:`signalprop.experiments.lr_tuning.carve_validation`) chooses settings; the test split is
only reported. Results: docs/methods/sensitivity.md, "Can anything train the 300-layer MLP?".

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/sal_deep_mlp_sweep.py --depth 300 \
        --init orthogonal --gain 1.0 --lr 1e-3 --epochs 10
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from torch import nn
from torch.utils.data import DataLoader

from signalprop.data.mnist1d_data import load_mnist1d
from signalprop.experiments.lr_tuning import carve_validation
from signalprop.experiments.sensitivity_deep_mlp import orthogonal_init_
from signalprop.learning.sensitivity import SensitivityAdjustment
from signalprop.nn.mlp import MLP


def build(args: argparse.Namespace) -> nn.Module:
    if args.depth == 0:
        return nn.Linear(40, 10)  # logistic regression
    model = MLP(40, args.width, args.depth, 10, "tanh", args.gain)
    return orthogonal_init_(model, args.gain) if args.init == "orthogonal" else model


@torch.no_grad()
def accuracy(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    out = model(data[0])
    return (float(nn.functional.cross_entropy(out, data[1])),
            float((out.argmax(1) == data[1]).float().mean()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=300)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--init", choices=("gaussian", "orthogonal"), default="gaussian")
    p.add_argument("--gain", type=float, default=0.5)
    p.add_argument("--opt", choices=("adam", "sgd"), default="adam")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--clip", type=float, default=0.0)
    p.add_argument("--sal-lr", type=float, default=0.0, help="0: no SAL")
    p.add_argument("--sal-target", type=float, default=1.0)
    p.add_argument("--no-guard", action="store_true")
    p.add_argument("--n-val", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    splits = load_mnist1d(seed=0, n_train=4000, n_test=1000)
    train, val = carve_validation(splits, args.n_val, seed=0)
    val_t = (val.tensors[0], val.tensors[1])
    test_t = (splits.test.tensors[0], splits.test.tensors[1])
    torch.manual_seed(args.seed)
    model = build(args)
    opt = (torch.optim.Adam(model.parameters(), args.lr) if args.opt == "adam"
           else torch.optim.SGD(model.parameters(), args.lr, momentum=args.momentum))
    sal = None
    if args.sal_lr > 0:
        sal = SensitivityAdjustment(lr=args.sal_lr, beta=0.0, target=args.sal_target,
                                    saturation_guard=not args.no_guard)
        sal.attach(model)
    loader = DataLoader(train.train, batch_size=args.batch, shuffle=True,
                        generator=torch.Generator().manual_seed(args.seed))
    start, best_val, curve = time.time(), 0.0, []
    for _ in range(args.epochs):
        model.train()
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x), y)
            if not math.isfinite(float(loss.detach())):
                break
            loss.backward()
            if args.clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            if sal is not None:
                sal.after_step(model)
        model.eval()
        _, val_acc = accuracy(model, val_t)
        best_val = max(best_val, val_acc)
        curve.append(round(val_acc, 3))
    train_loss, _ = accuracy(model, (train.train.tensors[0], train.train.tensors[1]))
    _, test_acc = accuracy(model, test_t)
    print(json.dumps({**{k: v for k, v in vars(args).items()},
                      "train_loss": round(train_loss, 4), "val_acc": curve[-1],
                      "best_val_acc": round(best_val, 3), "test_acc": round(test_acc, 3),
                      "val_curve": curve, "seconds": round(time.time() - start, 1)}))


if __name__ == "__main__":
    main()
