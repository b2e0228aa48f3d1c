import json

import pytest
import torch
from cli_runner import run_cli


def test_list_shows_experiments_and_claims(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0 and "deep-tanh-mlp" in out and "claim:" in out
    assert "rule v4: On the paper's protocol (NPF notebook" in out  # gated-kernel's rule, versioned
    assert "models: deep, shallow" in out  # the registry's model names (issue 18.6)


def test_list_config_keys(capsys):
    code, out, _ = run_cli(capsys, "list", "--config", "deep-tanh-mlp")
    assert code == 0 and "train.lr = 0.001" in out


@pytest.mark.parametrize("argv, fragment", [
    (("lst",), "did you mean list"),
    (("run", "deep-tanh"), "did you mean deep-tanh-mlp"),
    (("run", "deep-tanh-mlp", "--quik"), "did you mean --quick"),
    (("run", "deep-tanh-mlp", "--set", "train.lrr=1"), "did you mean train.lr"),
    (("run", "deep-tanh-mlp", "--set", "model.depth=0"), "model.depth must be > 0"),
    (("run", "deep-tanh-mlp", "--set", "model.gain=nan"), "finite"),
    (("run", "deep-tanh-mlp", "--device", "tpu"), "unknown device"),
    (("run", "deep-tanh-mlp", "--resume"), "nothing to resume"),
    (("report", "/nonexistent/run"), "/nonexistent/run"),
    (("reproduce", "--only", "zzz*"), "matches no experiment"),
])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, argv, fragment):
    code, out, err = run_cli(capsys, *argv, *(("--out", str(tmp_path)) if argv[0] == "run" else ()))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert fragment in lines[0]
    assert "Traceback" not in err


def test_run_quick_then_report(capsys, tmp_path):
    code, out, err = run_cli(capsys, "run", "deep-tanh-mlp", "--quick", "--out",
                             str(tmp_path / "runs"), "--set", "train.epochs=2",
                             "--set", "model.depth=6", "--no-progress")
    assert code == 0, err
    run_dir = tmp_path / "runs" / "deep-tanh-mlp"
    (run,) = list(run_dir.iterdir())
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["model"]["depth"] == 6 and config["quick"] is True
    assert config["meta"]["torch"] and config["meta"]["device"] == "cpu"
    assert config["meta"]["threads"] == torch.get_num_threads()
    summary = json.loads((run / "summary.json").read_text())
    shallow, deep = summary["results"]["rows"]
    ratio = deep["grad_ratio_last_to_first"]
    expected = "reproduced" if ratio >= 100 else "partly" if ratio >= 10 else "not reproduced"
    claim = summary["claims"][0]
    assert claim["verdict"] == expected and claim["rule_version"] == 1
    assert claim["label"].startswith(expected) and claim["label"].endswith(
        "indicative (quick run)")
    assert (shallow["variant"], deep["variant"], deep["depth"]) == ("shallow", "deep", 6)
    code, out, err = run_cli(capsys, "report", str(run), "--out", str(tmp_path / "report"))
    assert code == 0, err
    assert (tmp_path / "report" / "index.html").exists()
    assert list((tmp_path / "report" / "figures").glob("*grad-norms.png"))
    # resuming a finished run re-uses its sub-runs and rewrites the same summary
    code, out, err = run_cli(capsys, "run", "deep-tanh-mlp", "--resume", "--out",
                             str(tmp_path / "runs"))
    assert code == 0, err
    again = json.loads((run / "summary.json").read_text())
    assert again["results"] == summary["results"]
