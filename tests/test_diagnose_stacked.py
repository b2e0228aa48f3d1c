"""Issues 21.8 and 30.2: diagnose judges every layer of a stacked module, from the library and
the CLI, with a summary row; its remedies name those layers and work when applied."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import nn

from signalprop.diagnose.core import diagnose
from signalprop.diagnose.report import STACK_ROWS
from signalprop.nn.mlp import MLP
from signalprop.nn.orthogonal import AdditiveFilterMLP


def _batch(n: int = 16, d: int = 12, classes: int = 3):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_a_1000_layer_stack_reports_each_layer(tmp_path):
    torch.manual_seed(0)
    model = AdditiveFilterMLP(12, 16, 1000, 3)
    x, y = _batch()
    d = diagnose(model, (x, y), jacobian=False)
    rows = [lay for lay in d.layers if lay.stack == "stack"]
    assert [lay.name for lay in rows] == [f"stack.{i}" for i in range(1000)]
    assert len(d.layers) == 1002 and len(d.to_dict()["layers"]) == 1002  # a verdict each
    # the same per-layer norms as plain backprop through the checkpointed stack
    h0 = model.input(x).detach().requires_grad_(True)
    nn.functional.cross_entropy(model.head(model.stack(h0)), y).backward()
    expected = model.stack.layer_grad_norms().tolist()
    assert [lay.grad_norm for lay in rows] == pytest.approx(expected, rel=1e-5)
    out_ref = d.layer("head").output_grad_norm
    assert rows[0].input_grad_norm == pytest.approx(float(h0.grad.norm()), rel=1e-4)
    assert rows[0].backward_gain == pytest.approx(float(h0.grad.norm()) / out_ref, rel=1e-4)
    assert all(lay.activation == "tanh" and lay.sensitivity_mean > 0 for lay in rows)
    text = str(d)
    assert text.startswith("signalprop diagnosis: healthy (1002 layers in 3 modules")
    summary_row = next(line for line in text.splitlines() if line.startswith("1-1000 "))
    assert summary_row.split()[1:5] == ["stack", "stack", "of", "1000"]
    assert summary_row.endswith("1000 healthy")
    shown = [f"stack.{i}" for i in (0, 1, 2, 3, 996, 997, 998, 999)]
    listed = {line.split()[1] for line in text.splitlines() if "stack layer" in line}
    assert listed == set(shown)
    summary = next(line for line in text.splitlines() if "not listed" in line)
    middle = expected[4:996]
    assert "stack.4 ... stack.995: 992 stacked layers not listed" in summary
    low = 4 + min(range(len(middle)), key=middle.__getitem__)
    assert f"min {min(middle):.3g} (stack.{low})" in summary and "992 healthy" in summary
    assert d.plot(tmp_path / "d.png").exists()


def test_cli_diagnoses_each_stacked_layer(tmp_path, capsys):
    from signalprop.cli import main

    code = main(["diagnose", "orthogonal-deep-mlp", "--set", "model.depth=300", "--batch-size",
                 "16", "--json", str(tmp_path / "d.json")])
    out = capsys.readouterr().out
    assert code == 0
    assert "(302 layers in 3 modules" in out and "stack of 300" in out
    saved = json.loads((tmp_path / "d.json").read_text())
    assert len(saved["layers"]) == 302 and saved["layers"][150]["name"] == "stack.149"
    assert saved["layers"][150]["verdict"] in ("healthy", "vanishing", "exploding", "saturated")


@pytest.fixture(scope="module")
def plain_stack():
    """A 200-layer plain tanh stack (no skip branch): its first layers' gradients vanish."""
    from signalprop.diagnose.adapters import experiment_model

    model, batch, _ = experiment_model("orthogonal-deep-mlp", batch_size=64, model="plain",
                                       overrides=["model.depth=200"])
    d = diagnose(model, batch, jacobian=False)
    assert d.verdict == "vanishing" and "stack.0" in d.suggestions[0].layers
    return model, batch, d


def test_stack_remedies_name_its_layers_and_run_as_printed(plain_stack):
    _, _, d = plain_stack
    codes = [s.remedy.code for s in d.suggestions]
    rescale = next(c for c in codes if "rescale(" in c)
    assert "*[f'stack.{i}' for i in range(0, 200)]" in rescale and "'stack'" not in rescale
    assert not any("SensitivityAdjustment" in c for c in codes)  # SAL finds no stacked neuron
    for code in codes:  # no variable the user does not have
        assert " d." not in code and "d.layers" not in code


def test_each_printed_stack_remedy_fixes_the_stack(plain_stack):
    model, batch, d = plain_stack
    runnable = [s.remedy for s in d.suggestions if "signalprop.diagnose.fixes" in s.remedy.code]
    assert runnable
    for remedy in runnable:
        fixed = copy.deepcopy(model)
        exec(remedy.code, {"model": fixed})  # exactly as printed, with only `model` defined
        after = diagnose(fixed, batch, jacobian=False)
        assert after.verdict == "healthy", (remedy.code, str(after))


def test_a_short_stack_lists_every_layer():
    torch.manual_seed(0)
    d = diagnose(AdditiveFilterMLP(12, 16, STACK_ROWS, 3), _batch(), jacobian=False)
    text = d.table()
    assert all(f"stack.{i} " in text for i in range(STACK_ROWS))
    assert "not listed" not in text and "elided" not in text


def test_the_table_says_how_many_rows_it_elided():
    torch.manual_seed(0)
    d = diagnose(MLP(12, 16, 59, 3, "tanh", gain=1 / math.sqrt(3)), _batch(), jacobian=False)
    lines = d.table(max_rows=40).splitlines()
    assert len(d.layers) == 60
    assert "... 20 rows elided ..." in lines
    assert len(lines) == 1 + 40 + 1  # header, 40 rows, the elision line
