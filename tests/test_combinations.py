"""The combination matrix: every learning rule x every model family, under float32 and
bfloat16 autocast, either trains or refuses in one line naming the layer (issue 29)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from signalprop.learning.combination_cell import run_cell
from signalprop.learning.combinations import (
    EXPECTED,
    FAMILIES,
    NOT_FAMILIES,
    PRECISIONS,
    RULES,
    Refuses,
    render_markdown,
)
from signalprop.nn.registry import MODULES

DOC = Path(__file__).resolve().parents[1] / "docs" / "modules.md"
CELLS = [(f, r, p) for f in FAMILIES for r in RULES for p in PRECISIONS]


@pytest.mark.parametrize(("family", "rule", "precision"), CELLS,
                         ids=[f"{f}-{r}-{p}" for f, r, p in CELLS])
def test_cell_trains_or_refuses_in_one_line(family, rule, precision):
    expected = EXPECTED[(family, rule)]
    result = run_cell(family, rule, precision)
    if isinstance(expected, Refuses):
        assert result.error is not None, f"{family} x {rule} trained; the table says it refuses"
        assert "\n" not in result.error
        assert re.search(rf"'{re.escape(expected.layer)}'|\({re.escape(expected.layer)}\)|"
                         rf"{re.escape(expected.layer)} \(", result.error), result.error
        assert expected.reason in result.error, result.error
        return
    assert result.error is None, result.error
    assert result.loss_after < result.loss_before, (result.loss_before, result.loss_after)
    assert result.unreached == [], f"layers still trained by exact backprop: {result.unreached}"
    assert result.unchanged == [], f"left unchanged: {result.unchanged}"
    assert result.leftovers == [], f"the rules left on the model: {result.leftovers}"


def test_table_has_every_cell_and_covers_the_registry():
    assert set(EXPECTED) == {(f, r) for f in FAMILIES for r in RULES}
    covered = {name for family in FAMILIES.values() for name in family.covers}
    assert covered | set(NOT_FAMILIES) >= set(MODULES), set(MODULES) - covered - set(NOT_FAMILIES)
    assert not covered & set(NOT_FAMILIES)


def test_docs_show_the_table():
    text = DOC.read_text()
    begin, end = "<!-- combination matrix: begin -->", "<!-- combination matrix: end -->"
    shown = text[text.index(begin) + len(begin):text.index(end)].strip()
    assert shown == render_markdown(), ("docs/modules.md is out of date: paste "
                                        "signalprop.learning.combinations.render_markdown()")
