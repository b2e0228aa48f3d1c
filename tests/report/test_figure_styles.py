"""Issue 30.6: a figure with many lines (decorrelation-speedup's 24 sub-runs) repeats no colour
and line style, and its legend sits outside the curves."""

from __future__ import annotations

from pathlib import Path

from signalprop.report import figures
from signalprop.report.runs_reader import SubRun


def test_24_lines_get_24_distinct_styles_and_ten_keep_tab10():
    styles = figures.line_styles(24)
    assert len(set((tuple(c), s) for c, s in styles)) == 24
    assert [s for _, s in figures.line_styles(10)] == ["-"] * 10


def test_a_loss_figure_with_24_subruns_puts_its_legend_outside(monkeypatch):
    seen = {}
    real = figures._legend

    def spy(ax, n):
        real(ax, n)
        legend = ax.get_legend()
        seen["anchor"] = legend.get_bbox_to_anchor().x0 if legend else None
        seen["right"] = ax.bbox.x1
        seen["lines"] = [(line.get_color(), line.get_linestyle()) for line in ax.get_lines()]

    monkeypatch.setattr(figures, "_legend", spy)
    subruns = [SubRun(f"variant-{i}", Path("."), epochs=[
        {"kind": "epoch", "epoch": e, "train_loss": 1.0 / (e + i)} for e in (1, 2, 3)])
        for i in range(24)]
    png = figures.loss_figure(subruns)
    assert png is not None and png.startswith(figures.PNG_SIGNATURE)
    assert len(set(map(str, seen["lines"]))) == 24
    assert seen["anchor"] is not None and seen["anchor"] > seen["right"]  # right of the axes
