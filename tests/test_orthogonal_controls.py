"""Controls of orthogonal-deep-mlp: the rotation net, the nonlinear share, the claim's rule."""

import pytest
import torch

from signalprop.errors import ConfigError
from signalprop.experiments.context import resolve_config
from signalprop.experiments.orthogonal_deep_mlp import deep_learns
from signalprop.experiments.orthogonal_models import (
    RotationControl,
    linear_part,
    nonlinear_share,
)
from signalprop.experiments.registry import get_experiment
from signalprop.nn.orthogonal import AdditiveFilterMLP


def _zeroed(model: AdditiveFilterMLP) -> AdditiveFilterMLP:
    with torch.no_grad():
        model.stack.weight.zero_()
        model.stack.bias.zero_()  # tanh(0) = 0: the nonlinear branch contributes nothing
    return model


@pytest.mark.parametrize("skip", ["orthogonal", "identity"])
def test_linear_part_is_the_stack_without_its_nonlinear_branch(skip):
    torch.manual_seed(0)
    model = _zeroed(AdditiveFilterMLP(6, 8, 40, 3, skip=skip)).double()
    h0 = torch.randn(5, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model.stack(h0), h0 @ linear_part(model.stack).t())


def test_rotation_control_matches_the_filter_net_with_the_branch_removed():
    torch.manual_seed(0)
    net = AdditiveFilterMLP(6, 8, 50, 3).double()
    control = RotationControl(net)
    x = torch.randn(4, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(control(x), _zeroed(net)(x))
    assert not any(p is net.stack.weight for p in control.parameters())
    assert {n for n, _ in control.named_parameters()} == {
        "input.weight", "input.bias", "head.weight", "head.bias"}


def test_nonlinear_share_is_zero_without_the_branch_and_one_for_a_plain_net():
    torch.manual_seed(0)
    x = torch.randn(16, 6)
    filt = AdditiveFilterMLP(6, 8, 30, 3)
    share = nonlinear_share(filt, x)
    assert 0.0 < share < 1.0
    assert nonlinear_share(_zeroed(filt), x) == pytest.approx(0.0, abs=1e-6)
    assert nonlinear_share(AdditiveFilterMLP(6, 8, 30, 3, skip="none"), x) == pytest.approx(1.0)


def _results(filter_acc, control_acc, std=0.01, seeds=3, depth=50000, spread=2.0):
    """Per-seed accuracies with the given mean and sample standard deviation."""
    offsets = [0.0] if seeds == 1 else [std * k for k in (-1.0, 0.0, 1.0)][:seeds]
    results = {"depth": depth, "chance": 0.1, "seeds": seeds, "peak_rss_gib": 1.0,
               "filter_grad_spread": spread}
    for model, acc in (("filter", filter_acc), ("rotation", control_acc),
                       ("logistic", control_acc)):
        results[f"{model}_test_acc_per_seed"] = [acc + o for o in offsets]
        results[f"{model}_test_acc"] = acc
    return get_experiment("orthogonal-deep-mlp").with_rows(results)


def test_deep_claim_needs_the_deep_net_to_beat_the_controls_by_a_t_test():
    assert deep_learns(_results(0.80, 0.70))[1] == "reproduced"
    # Learns, gradients flat, but no better than a control: depth not used.
    value, verdict = deep_learns(_results(0.80, 0.79))
    assert verdict == "partly" and "depth not used" in value
    # Not beyond noise (3 seeds, std 0.05: SE 0.041, t = 1.96 on 4 df, Welch p = 0.06).
    assert deep_learns(_results(0.80, 0.72, std=0.05))[1] == "partly"
    assert deep_learns(_results(0.80, 0.70, seeds=1))[1] == "partly"  # one seed cannot decide
    assert deep_learns(_results(0.80, 0.70, depth=5000))[1] == "partly"
    assert deep_learns(_results(0.12, 0.70, spread=1e6))[1] == "not reproduced"


def test_unknown_deep_model_names_the_choices():
    with pytest.raises(ConfigError, match="rotation, shallow, logistic"):
        resolve_config(get_experiment("orthogonal-deep-mlp"), quick=True,
                       overrides=["model.models=(filter,linear)"])


def test_tiny_run_rows_carry_gradient_spread_and_nonlinear_share(tmp_path):
    import json

    from signalprop.experiments.context import run_experiment
    from signalprop.experiments.evidence import rows_of, select

    exp = get_experiment("orthogonal-deep-mlp")
    run_dir = run_experiment(exp, out=tmp_path, quick=True, progress=False, overrides=[
        f"{k}={v}" for k, v in {**exp.tiny, "seeds": 1, "model.models": "[filter,logistic]",
                                "model.jacobian_depth": 10}.items()])
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = rows_of(summary["results"])
    (deep,), (flat,) = select(rows, "filter"), select(rows, "logistic")
    assert deep.lr == 1e-3 and deep.run == "filter-s0"  # no tuning: train.lr
    assert deep.value("grad_spread") >= 1.0 and 0 < deep.value("share_init") < 1
    assert deep.value("b") == pytest.approx(1 / 40)
    assert "grad_spread" in flat.metrics and "share_init" not in flat.metrics
    assert set(summary["series"]["grad_norm_vs_depth"]["lines"]) == {"filter"}
    assert summary["results"]["filter_jacobian_sv_max"] > 0
