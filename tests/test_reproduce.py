"""reproduce: runs, skips with a reason, reuses finished runs; its report renders offline."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from signalprop.cli import main
from signalprop.experiments import registry
from signalprop.report.results_block import (
    END,
    START,
    readme_block,
    render_results_block,
    update_readme,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("repro")
    readme = out / "README.md"
    readme.write_text(f"# x\n\n{START}\nold\n{END}\n\ntail\n")
    code = main(["reproduce", "--quick", "--only", "deep-tanh-mlp", "--out", str(out),
                 "--readme", str(readme)])
    assert code == 0
    return out, readme


def test_reproduce_writes_report_results_and_readme(quick_run):
    out, readme = quick_run
    report = out / "report"
    data = json.loads((report / "results.json").read_text())
    assert data["claims"] and data["claims"][0]["experiment"] == "deep-tanh-mlp"
    assert readme_block(readme) == render_results_block(data)
    assert readme.read_text().endswith("tail\n")
    html = (report / "index.html").read_text()
    assert not re.search(r"""(src|href)=["']https?://""", html)


def test_reproduce_reuses_finished_runs(quick_run, capsys):
    out, _ = quick_run
    before = sorted((out / "deep-tanh-mlp").iterdir())
    assert main(["reproduce", "--quick", "--only", "deep-tanh-mlp", "--out", str(out)]) == 0
    assert sorted((out / "deep-tanh-mlp").iterdir()) == before
    assert "reused" in capsys.readouterr().err


def test_reproduce_reruns_when_the_resolved_config_changed(quick_run):
    """A finished run whose config differs from today's is not reused; a field its config.json
    lacks counts as today's default."""
    import dataclasses

    from signalprop.experiments.context import resolve_config
    from signalprop.reproduce import find_previous

    out, _ = quick_run
    exp = registry.get_experiment("deep-tanh-mlp")
    cfg = resolve_config(exp, True, [])
    run_dir = find_previous(out, "deep-tanh-mlp", True, 0, [])
    assert find_previous(out, "deep-tanh-mlp", True, 0, [], cfg) == run_dir
    changed = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=cfg.train.lr * 2))
    assert find_previous(out, "deep-tanh-mlp", True, 0, [], changed) is None
    path = run_dir / "config.json"
    original = path.read_text()
    try:
        saved = json.loads(original)
        del saved["config"]["train"]["lr"]  # as if the field did not exist then
        path.write_text(json.dumps(saved))
        assert find_previous(out, "deep-tanh-mlp", True, 0, [], cfg) == run_dir
    finally:
        path.write_text(original)


def test_reproduce_skips_missing_data_with_reason(tmp_path, capsys, monkeypatch):
    exp = registry.get_experiment("deep-tanh-mlp")
    fake = registry.Experiment(
        name="zz-needs-missing-data", summary="test", paper="-", make_config=exp.make_config,
        run=exp.run, requires=("mnist",),
    )
    monkeypatch.setitem(registry._REGISTRY, fake.name, fake)
    monkeypatch.setenv("SIGNALPROP_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    from signalprop import data

    if data.is_available("mnist")[0]:
        pytest.skip("MNIST is installed system-wide here")
    assert main(["reproduce", "--quick", "--only", "zz-*", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "skipped zz-needs-missing-data" in err


def test_readme_results_section_matches_committed_results():
    results = ROOT / "docs" / "results" / "results.json"
    if not results.exists():
        pytest.skip("no committed full-run results yet")
    data = json.loads(results.read_text())
    assert readme_block(ROOT / "README.md") == render_results_block(data)


def test_update_readme_requires_markers(tmp_path):
    from signalprop.errors import SignalpropError

    path = tmp_path / "R.md"
    path.write_text("no markers")
    with pytest.raises(SignalpropError, match="no results markers"):
        update_readme(path, "x")
    assert path.read_text() == "no markers"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const tables = [...document.querySelectorAll('table')];
  const empty = tables.filter(t => t.querySelectorAll('tbody tr, tr').length < 2).length;
  document.title = `PROBE imgs=${imgs.length} ok=${ok} tables=${tables.length} empty=${empty}`;
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(quick_run, tmp_path):
    out, _ = quick_run
    page = out / "report" / "probe.html"  # beside index.html: its figures are relative paths
    page.write_text((out / "report" / "index.html").read_text().replace("</body>",
                                                                         PROBE + "</body>"))
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         page.as_uri()], capture_output=True, text=True, timeout=120)
    match = re.search(r"PROBE imgs=(\d+) ok=(\d+) tables=(\d+) empty=(\d+)", proc.stdout)
    assert match, proc.stderr[-2000:]
    imgs, ok, tables, empty = map(int, match.groups())
    assert imgs >= 3 and ok == imgs
    assert tables >= 3 and empty == 0


def test_report_shows_the_stored_verdict_and_todays_when_the_rule_changed(quick_run, tmp_path):
    from signalprop.report import build_report

    out, _ = quick_run
    (run,) = list((out / "deep-tanh-mlp").iterdir())
    copy = tmp_path / "runs" / "deep-tanh-mlp" / run.name
    shutil.copytree(run, copy)
    summary = json.loads((copy / "summary.json").read_text())
    today = summary["claims"][0]
    assert today["rule_version"] == 1 and today["verdict"] == "reproduced"
    summary["claims"][0].update(our_value="stored number", verdict="partly", label="partly",
                                rule_version=0)
    (copy / "summary.json").write_text(json.dumps(summary))
    readme = (build_report([copy], tmp_path / "report").parent / "README.md").read_text()
    row = next(line for line in readme.splitlines() if "stored number" in line)
    assert "partly (rule v0)<br>rule changed since the run; today: reproduced" in row
    copied = tmp_path / "report" / "runs" / "deep-tanh-mlp" / run.name
    assert json.loads((copied / "summary.json").read_text())["claims"][0]["verdict"] == "partly"
    assert (copied / "config.json").is_file() and (copied / "deep" / "metrics.jsonl.gz").is_file()
    assert not list(copied.rglob("*.pt"))  # no checkpoints
    assert f"(runs/deep-tanh-mlp/{run.name}/)" in row


def test_quick_suite_end_to_end(tmp_path):
    """The reduced form of `signalprop reproduce` that CI runs: every experiment, quick."""
    code = main(["reproduce", "--quick", "--jobs", "2", "--out", str(tmp_path)])
    assert code == 0
    data = json.loads((tmp_path / "report" / "results.json").read_text())
    ran = {c["experiment"] for c in data["claims"]}
    expected = {e.name for e in registry.all_experiments() if e.claims}
    assert ran == expected
    claims = {c.text: c for e in registry.all_experiments() for c in e.claims}
    for row in data["claims"]:  # every quick verdict is labelled, versioned and nan-free
        assert row["rule_version"] == claims[row["claim"]].rule_version
        assert row["verdict"] == "not checked" or "indicative" in row["label"], row
        assert not re.search(r"\bnan\b", row["our_value"].lower()), row
    assert (tmp_path / "report" / "index.html").stat().st_size > 10_000
    readme = (tmp_path / "report" / "README.md").read_text()
    assert not re.search(r"\bnan\b", readme, re.IGNORECASE)  # no NaN reaches the report
