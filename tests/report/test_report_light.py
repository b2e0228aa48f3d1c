"""A report stays light: metrics copied as thinned gzip, palette PNGs, no absolute paths of the
machine that built it; and its copies read back like the original runs."""

from __future__ import annotations

import gzip
import json
from io import BytesIO
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from signalprop.experiments.judging import subrun_health
from signalprop.metrics_file import (
    MAX_STEP_RECORDS,
    THINNED,
    compressed_copy,
    metrics_lines,
    metrics_path,
    thin_lines,
)
from signalprop.report import build_report, read_run
from signalprop.report.figures import PNG_SIGNATURE, compact_png
from signalprop.report.paths import command_text, relative_text
from signalprop.report.results_block import results_data


def _lines(steps: int, epochs: int = 2) -> list[str]:
    out = []
    for step in range(1, steps + 1):
        out.append(json.dumps({"kind": "step", "step": step, "loss": 3.0 - step / steps}) + "\n")
        if step % (steps // epochs) == 0:
            out.append(json.dumps({"kind": "epoch", "epoch": step // (steps // epochs),
                                   "train_loss": 1.0}) + "\n")
    return out


def _kinds(lines: list[str]) -> list[str]:
    return [json.loads(line)["kind"] for line in lines]


def test_thinning_keeps_epochs_first_and_last_step_and_says_so():
    lines = _lines(1000)
    thin = thin_lines(lines, 50)
    assert _kinds(thin).count("step") == 50 and _kinds(thin).count("epoch") == 2
    note = json.loads(thin[0])
    assert note == {"kind": THINNED, "step_records": 1000, "kept_step_records": 50,
                    "grad_norms_epochs": 0, "kept_grad_norms_epochs": 0}
    steps = [json.loads(line)["step"] for line in thin if '"step", "step"' in line]
    assert steps[0] == 1 and steps[-1] == 1000 and steps == sorted(steps)
    assert thin_lines(lines[:30], 50) == lines[:30]  # short files are left alone


def test_grad_norms_stay_on_the_first_and_last_usable_profile():
    epochs = [{"kind": "epoch", "epoch": e, "train_loss": 1.0, "grad_norms": norms}
              for e, norms in enumerate([{"a": 0.0}, {"a": 1.0}, {"a": 2.0}, {"a": 3.0},
                                         {"a": float("nan")}], start=1)]
    thin = thin_lines([json.dumps(r) + "\n" for r in epochs], 10)
    assert json.loads(thin[0])["grad_norms_epochs"] == 5
    kept = [json.loads(line) for line in thin[1:]]
    assert [r["epoch"] for r in kept] == [1, 2, 3, 4, 5]  # every epoch record stays
    assert [r["epoch"] for r in kept if "grad_norms" in r] == [2, 4]
    assert all(r["train_loss"] == 1.0 for r in kept)


def test_compressed_copy_is_reproducible_and_not_thinned_twice():
    data = "".join(_lines(1000)).encode()
    copy = compressed_copy(data)
    assert copy == compressed_copy(data)  # no timestamp in the gzip header
    text = gzip.decompress(copy).decode()
    assert text.count('"kind": "step"') == MAX_STEP_RECORDS
    assert compressed_copy(copy) == copy  # a copy of a copy changes nothing
    assert len(copy) < len(data) / 5


def test_readers_take_plain_and_gzip_metrics(tmp_path: Path):
    plain, packed = tmp_path / "a", tmp_path / "b"
    for folder in (plain, packed):
        folder.mkdir()
    data = "".join(_lines(400)).encode()
    (plain / "metrics.jsonl").write_bytes(data)
    (packed / "metrics.jsonl.gz").write_bytes(compressed_copy(data))
    assert metrics_path(plain) == plain / "metrics.jsonl"
    assert metrics_path(packed) == packed / "metrics.jsonl.gz"
    assert metrics_path(tmp_path) is None
    assert "".join(metrics_lines(plain / "metrics.jsonl")) == data.decode()
    assert _kinds(list(metrics_lines(packed / "metrics.jsonl.gz")))[0] == THINNED


def test_report_copy_reads_back_like_the_run(make_run, tmp_path: Path):
    run_dir = make_run(subruns=("deep",))
    metrics = run_dir / "deep" / "metrics.jsonl"  # 3 epochs with grad_norms, 3 steps
    steps = [json.dumps({"kind": "step", "step": s, "loss": 3.0 - s / 900}) + "\n"
             for s in range(1, 899)]
    metrics.write_text("".join(steps) + metrics.read_text())
    original = read_run(run_dir)
    build_report([run_dir], tmp_path / "r")
    copy_dir = tmp_path / "r" / "runs" / "fake-deep-mlp" / run_dir.name
    assert not (copy_dir / "deep" / "metrics.jsonl").exists()
    assert (copy_dir / "deep" / "metrics.jsonl.gz").is_file()
    copied = read_run(copy_dir)
    assert copied.subruns[0].n_steps == original.subruns[0].n_steps == 901
    assert [{k: v for k, v in r.items() if k != "grad_norms"} for r in copied.subruns[0].epochs] \
        == [{k: v for k, v in r.items() if k != "grad_norms"} for r in original.subruns[0].epochs]
    profiles = original.subruns[0].grad_norm_epochs()
    assert copied.subruns[0].grad_norm_epochs() == [profiles[0], profiles[-1]]
    assert subrun_health(copy_dir) == subrun_health(run_dir)
    assert [c["verdict"] for c in copied.claims] == [c["verdict"] for c in original.claims]


def test_no_absolute_paths_of_the_building_machine(make_run, tmp_path: Path):
    run_dir = make_run()
    out_root = run_dir.parent.parent
    config = json.loads((run_dir / "config.json").read_text())
    config["meta"]["command"] = f"signalprop reproduce --full --out {out_root} --data /srv/x/data"
    (run_dir / "config.json").write_text(json.dumps(config))
    report = tmp_path / "report"
    build_report([run_dir], report)
    data = results_data([run_dir], [], f"signalprop report {run_dir} --out {report}")
    texts = [(report / "README.md").read_text(), (report / "index.html").read_text(),
             json.dumps(data), *(p.read_text() for p in report.rglob("config.json"))]
    for text in texts:
        assert str(tmp_path) not in text and "/srv/" not in text
    folder = f"runs/fake-deep-mlp/{run_dir.name}"
    assert data["command"] == f"signalprop report {folder} --out report"
    assert "signalprop reproduce --full --out runs --data data" in texts[0]
    assert f"`{folder}/`" in texts[0]  # the run directory row


def test_relative_text_maps_the_run_and_its_parents(tmp_path: Path):
    run = tmp_path / "out" / "exp" / "20261206-000000-abcd"
    places = [(run, "exp", "runs/exp/20261206-000000-abcd")]
    assert relative_text(f"x --out {tmp_path}/out y", places) == "x --out runs y"
    assert relative_text(f"{run}/deep {tmp_path}/out/exp", places) == \
        "runs/exp/20261206-000000-abcd/deep runs/exp"
    assert relative_text(f"{tmp_path}/outside/file.json", places) == "file.json"
    assert relative_text("signalprop run exp --set lrs=[1e-3]", places) == \
        "signalprop run exp --set lrs=[1e-3]"


def test_compact_png_is_smaller_and_still_a_png():
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for k in range(8):
        ax.plot(range(50), [((i * (k + 1)) % 17) / 17 for i in range(50)], label=f"line {k}")
    ax.legend()
    buf = BytesIO()
    fig.savefig(buf, format="png")
    png = buf.getvalue()
    small = compact_png(png)
    assert small.startswith(PNG_SIGNATURE) and len(small) < 0.6 * len(png)
    assert compact_png(b"not a png") == b"not a png"


@pytest.mark.parametrize("name", ["metrics.jsonl", "metrics.jsonl.gz"])
def test_the_copy_holds_gzip_metrics_whichever_form_the_run_has(make_run, tmp_path: Path,
                                                                 name):
    run_dir = make_run(subruns=("deep",))
    if name.endswith(".gz"):
        plain = run_dir / "deep" / "metrics.jsonl"
        (run_dir / "deep" / name).write_bytes(compressed_copy(plain.read_bytes()))
        plain.unlink()
    out = tmp_path / "r"
    build_report([run_dir], out)
    copy = out / "runs" / "fake-deep-mlp" / run_dir.name / "deep"
    assert sorted(p.name for p in copy.iterdir()) == ["metrics.jsonl.gz", "result.json"]


def test_an_absolute_out_of_a_run_command_is_the_reports_runs_folder(tmp_path: Path):
    places = [(tmp_path / "a" / "exp" / "1", "exp", "runs/exp/1")]
    assert command_text("signalprop reproduce --full --out /work/elsewhere", places) == \
        "signalprop reproduce --full --out runs"
    assert command_text("signalprop run exp --out=/x/y --seed 0", places) == \
        "signalprop run exp --out=runs --seed 0"
    assert command_text("signalprop run exp --out runs/full", places) == \
        "signalprop run exp --out runs/full"
    assert command_text("signalprop report /x/y --out /r", places) == "signalprop report y --out r"


def test_the_copy_holds_compact_json_with_the_same_values(make_run, tmp_path: Path):
    run_dir = make_run(subruns=("deep",))
    out = tmp_path / "r"
    copy = out / "runs" / "fake-deep-mlp" / run_dir.name
    for rel in ("summary.json", "deep/result.json"):  # indented, as the trainer writes them
        (run_dir / rel).write_text(json.dumps(json.loads((run_dir / rel).read_text()), indent=2))
    build_report([run_dir], out)
    for rel in ("summary.json", "deep/result.json"):
        original, text = (run_dir / rel).read_text(), (copy / rel).read_text()
        assert json.loads(text) == json.loads(original)
        assert text == json.dumps(json.loads(original), separators=(",", ":")) + "\n"
        assert len(text) < len(original)
