"""What the deep-gated-network experiments share (Lakshminarayanan & Singh, arXiv 2002.03996
and 2006.10529): the paper reference, the variants' table order, sample data and accuracy.

A deep gated network masks a value network, linear between its gates, with gates from a
feature network (:mod:`signalprop.nn.gated`)::

    z(0) = x,   z(l) = (Θᵛ(l) z(l-1)) ⊙ G_x(l),   ŷ = Θᵛ(d) z(d-1)

so ``ŷ`` is a sum over paths of the value weights' products times the paths' gates (the neural
path feature). The variants fix the gates at random (FRNPF), copy them from a trained ReLU net
(FLNPF), learn them in a separate feature net (DLNPF; DLGN with a linear one) or take them from
the value net's own pre-activations (ReLU).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import TensorDataset

from signalprop.data.splits import Splits
from signalprop.experiments.samples import load_sample

PAPER = "Lakshminarayanan & Singh, arXiv 2002.03996 (DGN) and 2006.10529 (NPF/NPK, NeurIPS 2020)"
ORDER = ("frnpf-ii", "frnpf-di", "flnpf", "dlnpf", "dlgn", "relu")


def accuracy(model: torch.nn.Module, data: TensorDataset, batch: int = 2000
             ) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of ``model`` on ``data``, in eval mode."""
    was = model.training
    model.eval()
    x, y = data.tensors
    device = next(model.parameters()).device
    hits, loss = 0, 0.0
    with torch.no_grad():
        for start in range(0, x.shape[0], batch):
            out = model(x[start : start + batch].to(device))
            target = y[start : start + batch].to(device)
            loss += float(torch.nn.functional.cross_entropy(out, target, reduction="sum"))
            hits += int((out.argmax(1) == target).sum())
    model.train(was)
    return hits / x.shape[0], loss / x.shape[0]


def sample_flat(cfg: Any, n: int, seed: int) -> Splits:
    """``n`` flattened examples of the configured dataset (the models' sample data)."""
    return load_sample(cfg.data.name, n, seed, flatten=True)
