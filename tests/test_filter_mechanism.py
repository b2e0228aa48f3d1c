"""orthogonal-filter-mechanism: points, models per filter, the recorded spectrum, the table."""

from __future__ import annotations

import json

import pytest

from signalprop.cli import main
from signalprop.config import apply_overrides
from signalprop.errors import ConfigError
from signalprop.experiments import orthogonal_filter_mechanism as fm
from signalprop.experiments.evidence import Row, rows_of


def test_points_and_models():
    cfg = apply_overrides(fm.MechanismConfig(), ["lengths=100,400", "beta_scales=1,4"])
    assert list(fm.points(cfg)) == ["T100-c1", "T100-c4", "T400-c1", "T400-c4"]
    model = fm.model_for(cfg, "haar-det-1", 400, 4.0)
    assert model.rnn.cell.b == pytest.approx(4 / 400) and model.scale == pytest.approx(100.0)
    assert model.rnn.cell.filter_kind == "haar-det-1"


def test_bad_filter_names_the_field():
    with pytest.raises(ConfigError, match="filters"):
        apply_overrides(fm.MechanismConfig(), ["filters=[haar,householder]"])


def test_table_counts_seeds_below_the_threshold():
    cfg = apply_overrides(fm.MechanismConfig(), ["lengths=100", "beta_scales=1",
                                                 "filters=[cycle,haar-det+1]"])
    rows = [Row("cycle", s, {"test_mse": v, "det": -1.0, "angle_T": 0.0}, point="T100-c1")
            for s, v in enumerate((0.01, 0.02, 0.1))]
    rows += [Row("haar-det+1", s, {"test_mse": v, "det": 1.0, "angle_T": 3.0}, point="T100-c1")
             for s, v in enumerate((0.01, 0.15, 0.16))]
    out = fm.table(rows, cfg)["rows"]
    assert out[0][:3] == ["cycle", 100, "1/T"] and out[0][5:8] == ["2/3", "yes", "-1, -1, -1"]
    assert out[1][5:7] == ["1/3", "no"]


def test_tiny_run_records_det_and_angle(tmp_path):
    sets = ["lengths=6", "beta_scales=1", "steps=2", "evals=1", "n_test=10", "hidden=4",
            "seeds=2", "filters=[haar-det-1,haar-no-fixed]"]
    assert main(["run", "orthogonal-filter-mechanism", "--out", str(tmp_path),
                 *[a for s in sets for a in ("--set", s)]]) == 0
    summary = json.loads(next(tmp_path.rglob("summary.json")).read_text())
    rows = rows_of(summary["results"])
    assert [(r.variant, r.seed) for r in rows] == [("haar-det-1", 0), ("haar-det-1", 1),
                                                   ("haar-no-fixed", 0), ("haar-no-fixed", 1)]
    assert all(r.value("det") == pytest.approx(-1.0) for r in rows[:2])
    assert all(r.value("det") == pytest.approx(1.0) for r in rows[2:])
    assert all(r.value("angle_T") < 1e-5 for r in rows[:2])
    assert all(r.value("angle_T") > 1e-3 for r in rows[2:])
    assert len(summary["results"]["mechanism"]["rows"]) == 2


def test_a_tight_data_cap_still_trains_every_step(tmp_path):
    # 100 values of length 6 hold 8 sequences: under one batch of 50, so without the floor on
    # the cap each of the 2 epochs would stop after 1 of its 2 steps.
    sets = ["lengths=6", "beta_scales=1", "steps=4", "evals=2", "n_test=10", "hidden=4",
            "seeds=1", "filters=[cycle]", "max_elements=100"]
    assert main(["run", "orthogonal-filter-mechanism", "--out", str(tmp_path),
                 *[a for s in sets for a in ("--set", s)]]) == 0
    summary = json.loads(next(tmp_path.rglob("summary.json")).read_text())
    assert [r.value("step") for r in rows_of(summary["results"])] == [4]
