"""``reproduce`` is not silent: a line per experiment as it starts and ends (elapsed time,
verdicts), and an overall bar on a terminal."""

from __future__ import annotations

import json
import re

from signalprop.cli import main
from signalprop.reproduce import Outcome
from signalprop.reproduce_progress import Progress, elapsed_text, verdict_counts


def test_elapsed_and_verdict_counts(tmp_path):
    assert elapsed_text(42.4) == "42s" and elapsed_text(185) == "3m05s"
    (tmp_path / "summary.json").write_text(json.dumps({"claims": [
        {"verdict": "reproduced"}, {"verdict": "partly"}, {"verdict": "reproduced"}]}))
    assert verdict_counts(tmp_path) == "2 reproduced, 1 partly"
    assert verdict_counts(tmp_path / "missing") == "" and verdict_counts(None) == ""


def test_bar_on_a_terminal_and_lines_either_way(tmp_path, capsys):
    progress = Progress(2, quick=True, show_bar=True)
    progress.start("a", 1)
    progress.end(Outcome("a", "skipped", reason="no data"))
    progress.close()
    err = capsys.readouterr().err
    assert "reproduce [1/2] a (quick): started" in err
    assert re.search(r"reproduce \[1/2\] a: skipped in \d+s; no data", err)
    assert "1/2" in err.replace("reproduce [1/2]", "")  # the bar's own counter
    quiet = Progress(1, quick=False, show_bar=False)
    assert quiet.bar.disable


def test_reproduce_prints_start_and_end_lines(tmp_path, capsys):
    code = main(["reproduce", "--quick", "--only", "deep-tanh-mlp", "--out", str(tmp_path),
                 "--report", str(tmp_path / "report")])
    assert code == 0
    err = capsys.readouterr().err
    assert "reproduce [1/1] deep-tanh-mlp (quick): started" in err
    assert re.search(r"reproduce \[1/1\] deep-tanh-mlp: ran in \d+s; \d+ [a-z ]+; "
                     + re.escape(str(tmp_path)), err), err
    assert re.search(r"reproduce: 1 experiment\(s\) in \d+s", err)
