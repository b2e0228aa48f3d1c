"""`signalprop diagnose EXPERIMENT [--model NAME]`: models come from the experiment registry,
and the docs list exactly them."""

import pytest

from signalprop.cli import main
from signalprop.diagnose.adapters import diagnosable, experiment_model, models_table
from signalprop.experiments.registry import all_experiments


@pytest.mark.parametrize("experiment", ["sensitivity-deep-mlp", "sensitivity-lag"])
def test_diagnose_runs_on_experiment_models(experiment, capsys):
    assert main(["diagnose", experiment, "--quick", "--batch-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "signalprop diagnosis: vanishing" in out  # both start from small weights


def test_diagnose_model_option_picks_a_named_model(capsys):
    assert main(["diagnose", "deep-tanh-mlp", "--quick", "--model", "shallow",
                 "--batch-size", "16"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model: deep-tanh-mlp: shallow, the shallow tanh MLP")
    assert "(3 layers," in out.splitlines()[1]  # 2 hidden Linear layers and the head


def test_unknown_model_names_the_experiments_models(capsys):
    assert main(["diagnose", "deep-tanh-mlp", "--model", "deeper"]) == 2
    err = capsys.readouterr().err
    assert "has no model 'deeper'" in err and "its models: deep, shallow" in err


def test_unknown_experiment_suggests_close_names(capsys):
    assert main(["diagnose", "deep-tanh-mpl"]) == 2
    assert "did you mean deep-tanh-mlp" in capsys.readouterr().err


def test_experiment_model_is_the_registry_model_on_the_sample_batch():
    """Issue 18.6: diagnose builds the registered model, not a copy of its construction."""
    import torch

    from signalprop.experiments.context import resolve_config
    from signalprop.experiments.registry import get_experiment

    model, (x, y), what = experiment_model("orthogonal-deep-mlp", batch_size=8, seed=3,
                                           quick=True, model="rotation")
    exp = get_experiment("orthogonal-deep-mlp")
    cfg = resolve_config(exp, True, [])
    splits = exp.sample_splits(cfg, 8, 3)
    torch.manual_seed(3)
    again = exp.build_model(cfg, splits, "rotation")
    assert type(model) is type(again) and what.startswith("orthogonal-deep-mlp: rotation")
    for (name, p), (_, q) in zip(model.state_dict().items(), again.state_dict().items(),
                                 strict=True):
        assert torch.equal(p, q), name
    assert torch.equal(x, splits.train.tensors[0][:8]) and len(y) == 8


def test_docs_list_exactly_the_registered_models():
    """docs/diagnose.md's table is the registry's models, in order, with their descriptions
    (after a change: print(signalprop.diagnose.adapters.models_table()) and paste it)."""
    from pathlib import Path

    docs = (Path(__file__).resolve().parent.parent / "docs" / "diagnose.md").read_text()
    table = docs[docs.index("| experiment | model | what it is |"):]
    table = table[:table.index("\n\n")]
    assert [row.strip() for row in table.splitlines()] == models_table().splitlines()
    assert set(diagnosable()) == {e.name for e in all_experiments()}
    assert len(models_table().splitlines()) == 2 + sum(len(e.models) for e in all_experiments())


def test_image_model_on_fallback_data_says_why(monkeypatch):
    from signalprop.errors import ConfigError
    from signalprop.experiments import decorrelation_resnet

    def mnist1d_only(name, n, seed, **options):  # as if Fashion-MNIST were not installed
        from signalprop.experiments.samples import load_sample
        return load_sample("mnist1d", n, seed)

    monkeypatch.setattr(decorrelation_resnet, "load_sample", mnist1d_only)
    with pytest.raises(ConfigError, match="needs images, but the sample data fell back to "
                                          "mnist1d"):
        experiment_model("decorrelation-resnet", batch_size=4, quick=True, model="vit")


def test_model_option_with_a_file_target_is_refused(tmp_path, capsys):
    path = tmp_path / "models.py"
    path.write_text("import torch\ndef make_model():\n    return torch.nn.Linear(3, 2)\n")
    assert main(["diagnose", f"{path}:make_model", "--model", "deep"]) == 2
    assert "drop --model" in capsys.readouterr().err


def test_target_space_model_is_diagnosed_as_its_weight_space_export(capsys):
    """Its layers' weights are solved inside its forward, so diagnose sees the export: the
    same function as ordinary layers."""
    import torch

    from signalprop.experiments.context import resolve_config
    from signalprop.experiments.registry import get_experiment

    model, (x, _), what = experiment_model("target-space-spirals", batch_size=8, quick=True)
    assert "weight-space export" in what
    exp = get_experiment("target-space-spirals")
    cfg = resolve_config(exp, True, [])
    torch.manual_seed(0)
    target = exp.build_model(cfg, exp.sample_splits(cfg, 8, 0), "target")
    torch.testing.assert_close(model(x), target(x))
    assert main(["diagnose", "target-space-spirals", "--quick", "--batch-size", "8"]) == 0
    assert "signalprop diagnosis:" in capsys.readouterr().out
