"""``pairing-sal-decor`` (issue 29.5): SAL (Shibata et al. 2021, arXiv 2012.13134) on a
decorrelated deep tanh MLP (Ahmad 2024, arXiv 2407.10780): ``h_{l+1} = tanh(W_l z_l + b_l)``,
``z_l = R_l (h_l − μ_l)``, with SAL lifting ``s_j = |f'(U_j)| ‖w_j‖`` on the true
pre-activation ``U = W z + b``.

What each variant trains, the study's rows on two seeds, and both claims' rules on synthetic
rows both ways (they must be able to fail)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from pairing_runs import tiny_pairing_run

from signalprop.experiments import pairing_sal_decor as ps
from signalprop.experiments.context import resolve_config
from signalprop.experiments.registry import get_experiment
from signalprop.learning.decorrelation_rule import DecorrelationRule
from signalprop.learning.sensitivity import SensitivityAdjustment
from signalprop.nn.decorrelated_layers import DecorrelatedLinear

EXP = get_experiment("pairing-sal-decor")


def _config(*overrides: str) -> ps.SALDecorConfig:
    return resolve_config(EXP, True, ["model.depth=3", "model.width=8", *overrides])


@pytest.mark.parametrize(("method", "rules"), [
    ("bp", set()), ("decor", {DecorrelationRule}), ("sal", {SensitivityAdjustment}),
    ("sal-decor", {DecorrelationRule, SensitivityAdjustment})])
def test_each_variant_builds_its_rules_on_the_same_small_gain_net(method, rules):
    cfg = _config()
    model, built = ps.build(cfg, method, EXP.sample_splits(cfg, 16, 0))
    assert {type(r) for r in built} == rules
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == cfg.model.depth + 1
    assert all(isinstance(m, DecorrelatedLinear) for m in linears) == method.endswith("decor")
    assert model.gain == cfg.model.gain == 0.5
    sal = [r for r in built if isinstance(r, SensitivityAdjustment)]
    if sal:  # the same SAL rate alone as in the pair
        assert sal[0].lr == cfg.sal.lr


def test_sal_adjusts_the_decorrelated_net_it_is_paired_with(tmp_path: Path):
    """A short fit of the pair moves both SAL's weights (via its steps) and every R."""
    from signalprop.train import TrainConfig, fit

    cfg = _config()
    splits = EXP.sample_splits(cfg, 32, 0)
    torch.manual_seed(0)
    model, rules = ps.build(cfg, "sal-decor", splits)
    r_before = [m.decorrelator.R.detach().clone() for m in model.modules()
                if isinstance(m, DecorrelatedLinear)]
    out = fit(model, splits.train, splits.test, TrainConfig(epochs=2, batch_size=8, lr=1e-3),
              tmp_path, rules=rules, progress=False)
    assert out["train_loss"] == out["train_loss"]  # finite
    after = [m.decorrelator.R for m in model.modules() if isinstance(m, DecorrelatedLinear)]
    assert all(not torch.equal(a, b) for a, b in zip(after, r_before, strict=True))
    steps = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("sal_mean_s" in r for r in steps)


def test_tiny_study_tunes_every_variant_on_one_grid_and_writes_rows(tmp_path: Path):
    summary = tiny_pairing_run(EXP, ps.METHODS, tmp_path)
    assert [c["source"][:14] for c in summary["claims"]] == ["our hypothesis"] * 2
    for index, claim in enumerate(EXP.claims):
        text, _ = claim.check(summary["results"])
        assert "sal+decor" in text and "tuned Adam lr" in text, index


def _rows(pair: float, sal: float, decor: float, spread: float = 0.002) -> dict[str, Any]:
    means = {"bp": 0.6, "decor": decor, "sal": sal, "sal-decor": pair}
    return {"rows": [{"variant": v, "seed": s, "status": "ok", "test_acc": m + d, "lr": 1e-3}
                     for v, m in means.items() for s, d in enumerate((-spread, 0, spread))]}


@pytest.mark.parametrize(("pair", "sal", "decor", "spread", "verdicts"), [
    (0.75, 0.70, 0.70, 0.002, ("reproduced", "reproduced")),
    (0.75, 0.70, 0.745, 0.002, ("reproduced", "partly")),     # within a point of decor
    (0.75, 0.76, 0.30, 0.002, ("not reproduced", "reproduced")),  # SAL alone is better
    (0.75, 0.73, 0.73, 0.05, ("not reproduced", "not reproduced")),  # inside the noise
])
def test_rules_judge_both_ways(pair, sal, decor, spread, verdicts):
    results = _rows(pair, sal, decor, spread)
    got = tuple(claim.check(results)[1] for claim in EXP.claims)
    assert got == verdicts
