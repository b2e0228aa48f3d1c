"""Issue 18.6: every registered experiment declares its models; each builds from the registry
on small splits of its data (quick config), and one forward and backward pass gives every
trainable parameter a finite gradient, except those the model declares unused by backprop."""

from fnmatch import fnmatch
from functools import cache

import pytest
import torch
from torch import nn

from signalprop.errors import ConfigError
from signalprop.experiments.context import resolve_config
from signalprop.experiments.registry import all_experiments, get_experiment

N = 8
CASES = [(e.name, name) for e in all_experiments() for name in e.models]


def _tensors(output):
    """Every floating tensor in a model's output (RNNs return ``(output, h_n)``)."""
    if isinstance(output, torch.Tensor):
        return [output] if output.is_floating_point() else []
    if isinstance(output, tuple | list):
        return [t for item in output for t in _tensors(item)]
    return []


@cache
def _setup(experiment: str):
    """The quick config and its sample splits, loaded once per experiment."""
    exp = get_experiment(experiment)
    cfg = resolve_config(exp, True, [])
    return exp, cfg, exp.sample_splits(cfg, N, seed=0)


def gradient_problems(net: nn.Module, x: torch.Tensor, no_grad: tuple[str, ...]) -> list[str]:
    """One forward and backward pass of a random projection of every output (each output entry
    gets a unit-variance error); the problems found, empty when every trainable parameter
    outside ``no_grad`` has a finite gradient and those in it have none."""
    trainable = {n: p for n, p in net.named_parameters() if p.requires_grad}
    if not trainable:
        return ["no trainable parameter"]
    outputs = _tensors(net(x))
    if not outputs:
        return ["no floating output"]
    gen = torch.Generator().manual_seed(0)
    loss = sum((t * torch.randn(t.shape, generator=gen)).sum() / t.shape[0] for t in outputs)
    loss.backward()
    problems = []
    for glob in no_grad:  # declarations stay true: they name parameters left untouched
        named = [n for n in trainable if fnmatch(n, glob)]
        if not named:
            problems.append(f"no_grad {glob!r} matches no parameter")
        problems += [f"{n} is declared unused but gets a gradient" for n in named
                     if trainable[n].grad is not None and trainable[n].grad.any()]
    for n, p in trainable.items():
        if any(fnmatch(n, g) for g in no_grad):
            continue
        if p.grad is None:
            problems.append(f"no gradient reaches {n}")
        elif not torch.isfinite(p.grad).all():
            problems.append(f"non-finite gradient in {n}")
    return problems


def test_every_experiment_declares_models_and_sample_data():
    bare = [e.name for e in all_experiments() if not e.models or e.sample is None]
    assert not bare, f"experiments without models or sample data: {bare}"


@pytest.mark.parametrize(("experiment", "model"), CASES)
def test_model_builds_and_every_trainable_parameter_gets_a_finite_gradient(experiment, model):
    exp, cfg, splits = _setup(experiment)
    _, spec = exp.model(model)
    if spec.image_only and len(splits.input_shape) != 3:
        pytest.skip(f"{model} needs images; the sample fell back to {splits.name}")
    torch.manual_seed(0)
    net = exp.build_model(cfg, splits, model)
    assert not gradient_problems(net, splits.train.tensors[0][:N], spec.no_grad)
    assert not spec.no_grad or spec.no_grad_reason


class _Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used, self.spare = nn.Linear(3, 2), nn.Linear(3, 2)
        self.frozen = nn.Linear(3, 2).requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x) * self.scale if hasattr(self, "scale") else self.used(x)


def test_gradient_check_catches_unused_nonfinite_and_stale_declarations():
    x = torch.randn(4, 3)
    assert gradient_problems(_Unused(), x, ()) == [
        "no gradient reaches spare.weight", "no gradient reaches spare.bias"]
    assert gradient_problems(_Unused(), x, ("spare.*",)) == []
    assert gradient_problems(_Unused(), x, ("spare.*", "gone.*")) == [
        "no_grad 'gone.*' matches no parameter"]
    assert gradient_problems(_Unused(), x, ("spare.*", "used.bias")) == [
        "used.bias is declared unused but gets a gradient"]
    broken = _Unused()
    broken.scale = torch.tensor(float("inf"))
    assert "non-finite gradient in used.weight" in gradient_problems(broken, x, ("spare.*",))


def test_unknown_model_name_lists_the_experiments_models():
    exp = get_experiment("deep-tanh-mlp")
    with pytest.raises(ConfigError, match="has no model 'deeper'; did you mean deep"):
        exp.model("deeper")
    assert exp.model()[0] == "deep"


def test_registry_rebuilds_a_trained_sub_run_for_load_run(tmp_path):
    """docs/checkpoints.md: an experiment's sub-run is restored into the registered model."""
    import json

    import signalprop
    from signalprop import config as config_lib
    from signalprop.experiments.context import run_experiment

    exp = get_experiment("deep-tanh-mlp")
    run_dir = run_experiment(exp, out=tmp_path, quick=True, progress=False, overrides=[
        "train.epochs=1", "data.n_train=200", "data.n_test=100", "model.depth=4"])
    saved = json.loads((run_dir / "config.json").read_text())["config"]
    cfg = config_lib.from_dict(exp.make_config(), saved)
    model = exp.build_model(cfg, exp.sample_splits(cfg, 8), "deep")
    info = signalprop.load_run(run_dir / "deep", model)
    assert info["finished"] and info["epoch"] == 1
