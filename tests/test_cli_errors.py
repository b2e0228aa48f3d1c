"""Issue 30.4-5: errors are one line with the fix (exit 2), interrupt hints give a command that
works, a half-written report is finished by the next one, and ``run`` ends with its verdicts."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from cli_runner import run_cli

from signalprop import cli_checks
from signalprop.cli import EXIT_USAGE, build_parser, main
from signalprop.cli_checks import EXIT_RUN_FAILED

SMALL = ("--set", "model.depth=6", "--set", "train.epochs=2", "--set", "data.n_train=512",
         "--no-progress")



def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("argv", [
    ("run", "deep-tanh-mlp", "--quick", "--out", "{bad}"),
    ("report", "{run}", "--out", "{bad}"),
    ("reproduce", "--quick", "--only", "deep-tanh-mlp", "--out", "{bad}"),
    ("reproduce", "--quick", "--only", "deep-tanh-mlp", "--out", "{ok}", "--report", "{bad}"),
])
def test_an_unwritable_output_is_one_line_exit_2(capsys, tmp_path, argv):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    (tmp_path / "run").mkdir()
    values = {"bad": str(blocker / "out"), "run": str(tmp_path / "run"), "ok": str(tmp_path)}
    code, _, err = run_cli(capsys, *(a.format(**values) for a in argv))
    line = _one_line(err)
    assert code == EXIT_USAGE
    assert f"{blocker / 'out'}: cannot write there" in line and "pass a directory" in line
    assert not (tmp_path / "deep-tanh-mlp").exists()  # nothing started


def test_resume_of_a_missing_directory_fails_before_resuming(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "deep-tanh-mlp", "--resume", str(tmp_path / "nope"))
    line = _one_line(err)
    assert code == EXIT_USAGE and "resuming" not in err
    assert f"cannot resume {tmp_path / 'nope'}: no such directory" in line


def test_run_interrupt_hint_names_out_and_the_run_and_works(capsys, tmp_path, monkeypatch):
    from signalprop.experiments import context

    real = context.fit

    def fit_then_interrupt(*args, **kwargs):
        real(*args, **kwargs)  # the first sub-run trains, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(context, "fit", fit_then_interrupt)
    out = tmp_path / "elsewhere"
    code, _, err = run_cli(capsys, "run", "deep-tanh-mlp", "--quick", "--out", str(out), *SMALL)
    assert code == 130
    (run_dir,) = (out / "deep-tanh-mlp").iterdir()
    # progress (heartbeat) lines may come first on a slow machine; the hint is one line
    (hint,) = [line for line in err.splitlines() if "to continue: " in line]
    command = hint.split("to continue: ", 1)[1]
    assert command == f"signalprop run deep-tanh-mlp --out {out} --resume {run_dir}"
    monkeypatch.undo()
    code, stdout, err = run_cli(capsys, *shlex.split(command)[1:], "--no-progress")
    assert code == 0, err
    assert stdout.strip() == str(run_dir) and f"resuming {run_dir}" in err
    assert (run_dir / "summary.json").exists()


def test_reproduce_interrupt_hint_is_the_same_command():
    args = build_parser().parse_args(["reproduce", "--quick", "--out", "my runs"])
    hint = cli_checks.interrupt_hint(args, ["reproduce", "--quick", "--out", "my runs"])
    assert hint.endswith("signalprop reproduce --quick --out 'my runs'")
    assert "--resume" not in hint


def test_a_report_interrupted_half_way_is_finished_by_the_next(tmp_path, monkeypatch, capsys):
    from signalprop.report import builder

    run = tmp_path / "runs"
    assert main(["run", "deep-tanh-mlp", "--quick", "--out", str(run), *SMALL]) == 0
    capsys.readouterr()
    real, written = builder.atomic_write_bytes, []

    def flaky(path, data):
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(path)
        real(path, data)

    monkeypatch.setattr(builder, "atomic_write_bytes", flaky)
    with pytest.raises(KeyboardInterrupt):
        builder.build_report([run], tmp_path / "report")
    monkeypatch.undo()
    assert len(written) == 3  # the manifest and two report files
    code, _, err = run_cli(capsys, "report", str(run), "--out", str(tmp_path / "report"))
    assert code == 0, err
    manifest = json.loads((tmp_path / "report" / builder.MANIFEST).read_text())
    assert all((tmp_path / "report" / rel).is_file() for rel in manifest["files"])


def test_run_ends_with_one_line_per_claim(capsys, tmp_path):
    code, out, err = run_cli(capsys, "run", "deep-tanh-mlp", "--quick", "--out", str(tmp_path),
                             *SMALL)
    assert code == 0, err
    (run_dir,) = (tmp_path / "deep-tanh-mlp").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    last = err.strip().splitlines()[-len(summary["claims"]):]
    for index, (line, claim) in enumerate(zip(last, summary["claims"], strict=True), 1):
        assert line == f"claim {index}/{len(summary['claims'])}: {claim['label']}: {claim['claim']}"


def test_a_failed_run_exits_non_zero(capsys, tmp_path, monkeypatch):
    from signalprop.experiments import context

    run_dir = tmp_path / "deep-tanh-mlp" / "x"
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps({"claims": [{
        "claim": "it learns", "verdict": "not checked", "label": "not checked",
        "our_value": "not checked: the run failed (deep: final train loss nan)"}]}))
    monkeypatch.setattr(context, "run_experiment", lambda *a, **k: run_dir)
    code, out, err = run_cli(capsys, "run", "deep-tanh-mlp", "--out", str(tmp_path))
    assert code == EXIT_RUN_FAILED != 0
    assert out.strip() == str(run_dir)
    assert ("claim 1/1: not checked (the run failed (deep: final train loss nan)): it learns"
            in err)
    assert err.strip().endswith(f"the run failed (see above); its files are in {run_dir}")


def test_reproduce_labels_a_continued_run_resumed(tmp_path, monkeypatch):
    from signalprop import reproduce

    out = tmp_path / "runs"
    monkeypatch.setattr(reproduce, "find_previous", lambda *a, **k: Path(out / "old"))
    monkeypatch.setattr(reproduce, "run_experiment", lambda *a, **k: out / "old")
    outcome = reproduce.run_one("deep-tanh-mlp", out, True, 0, None, "cpu")
    assert outcome.status == "resumed"
