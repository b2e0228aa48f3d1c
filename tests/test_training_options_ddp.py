"""fit's options on 2 gloo ranks: fp16 loss scaling, gradient clipping and a cosine schedule
keep the ranks identical and follow the single-process run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from test_ddp_train import CFG, WORLD, _data, _launch, _model

from signalprop.learning.base import LearningRule
from signalprop.storage import read_jsonl
from signalprop.train import fit

CLIP = 0.05
OPTIONS = dataclasses.replace(CFG, amp="fp16", grad_clip=CLIP, lr_schedule="cosine")


class GradNorm(LearningRule):
    """The total gradient norm each optimiser step used."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def after_step(self, model):
        grads = [p.grad.flatten() for p in model.parameters() if p.grad is not None]
        self.norms.append(float(torch.cat(grads).norm()))
        return {}


def _options_worker(rank: int, out: Path) -> None:
    train, test = _data()
    model, norms = _model(), GradNorm()
    fit(model, train, test, OPTIONS, out / "ddp", seed=3, rules=(norms,), progress=False)
    torch.save(model.state_dict(), out / f"rank{rank}.pt")
    (out / f"norms{rank}.json").write_text(json.dumps(norms.norms))


@pytest.mark.slow  # about 13 s on 2 shared cores (two processes start and import torch)
def test_two_ranks_with_fp16_clipping_and_schedule_follow_one_process(tmp_path):
    train, test = _data()
    single, norms = _model(), GradNorm()
    fit(single, train, test, OPTIONS, tmp_path / "single", seed=3, rules=(norms,),
        progress=False)
    _launch(_options_worker, tmp_path)

    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for key, value in single.state_dict().items():
        torch.testing.assert_close(states[0][key], states[1][key], rtol=0, atol=0)
        torch.testing.assert_close(states[0][key], value, rtol=0, atol=1e-5)
    ranks = [json.loads((tmp_path / f"norms{r}.json").read_text()) for r in range(WORLD)]
    assert ranks[0] == ranks[1] and len(ranks[0]) == len(norms.norms)
    assert max(ranks[0]) <= CLIP * (1 + 1e-5) and max(norms.norms) <= CLIP * (1 + 1e-5)
    assert min(ranks[0]) > 0.5 * CLIP  # the clip was active, not met trivially
    ddp = [r for r in read_jsonl(tmp_path / "ddp" / "metrics.jsonl") if r["kind"] == "epoch"]
    one = [r for r in read_jsonl(tmp_path / "single" / "metrics.jsonl") if r["kind"] == "epoch"]
    assert [(r["lr"], r["amp_scale"]) for r in ddp] == [(r["lr"], r["amp_scale"]) for r in one]
