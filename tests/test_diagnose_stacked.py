"""Issue 21.8: diagnose lists the layers of a stacked module, and the table says what it elides."""

from __future__ import annotations

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
    stack = d.layer("stack")
    assert len(stack.layer_grad_norms) == 1000
    # the same per-layer norms as plain backprop through the checkpointed stack
    nn.functional.cross_entropy(model(x), y).backward()
    expected = model.stack.layer_grad_norms().tolist()
    assert stack.layer_grad_norms == pytest.approx(expected, rel=1e-5)
    text = str(d)
    assert text.startswith("signalprop diagnosis: healthy (1002 layers in 3 modules")
    shown = [f"stack.{i}" for i in (0, 1, 2, 3, 996, 997, 998, 999)]
    rows = {line.split()[0] for line in text.splitlines() if "stack layer" in line}
    assert rows == set(shown)
    summary = next(line for line in text.splitlines() if "not listed" in line)
    middle = expected[4:996]
    assert "stack.4 ... stack.995: 992 stacked layers not listed" in summary
    low = 4 + min(range(len(middle)), key=middle.__getitem__)
    assert f"min {min(middle):.3g} (stack.{low})" in summary
    assert d.to_dict()["layers"][1]["layer_grad_norms"][999] == pytest.approx(expected[999])
    assert d.plot(tmp_path / "d.png").exists()


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
