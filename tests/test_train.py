import json

import pytest
import torch
from torch import nn

from signalprop.errors import DivergenceError
from signalprop.learning.base import LearningRule
from signalprop.storage import read_jsonl
from signalprop.train import TrainConfig, fit, seed_everything

CFG = TrainConfig(epochs=3, batch_size=32, lr=1e-2, log_every=2, grad_norms=True)


def make_model() -> nn.Module:
    seed_everything(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, 3))


def _strip_wall(records):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in records]


class Interrupt(Exception):
    pass


def test_fit_writes_metrics_checkpoint_and_result(tmp_path, blobs):
    train, test = blobs
    result = fit(make_model(), train, test, CFG, tmp_path, seed=1)
    records = read_jsonl(tmp_path / "metrics.jsonl")
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert any(r["kind"] == "step" for r in records)
    assert result["test_acc"] > 0.8
    assert list(epochs[-1]["grad_norms"]) == ["0", "2", "4"]  # forward order
    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert (tmp_path / "checkpoint.pt").exists()


def test_grad_norms_of_a_stacked_model_are_per_layer(tmp_path, blobs):
    """Issue 21.8: the 1,000-layer additive-filter MLP logs one norm per stacked layer."""
    from signalprop.nn.orthogonal import AdditiveFilterMLP

    train, test = blobs
    seed_everything(0)
    model = AdditiveFilterMLP(8, 8, 1000, 3)
    cfg = TrainConfig(epochs=1, batch_size=32, lr=1e-3, grad_norms=True, max_steps_per_epoch=2)
    fit(model, train, test, cfg, tmp_path, seed=0)
    epoch = next(r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["kind"] == "epoch")
    names = list(epoch["grad_norms"])
    assert names == ["input", *(f"stack.{i}" for i in range(1000)), "head"]
    assert all(v > 0 for v in epoch["grad_norms"].values())


def test_resume_ends_like_an_uninterrupted_run(tmp_path, blobs):
    train, test = blobs
    full_model = make_model()
    fit(full_model, train, test, CFG, tmp_path / "full", seed=5)

    def stop_at_two(model, epoch):
        if epoch == 2:
            raise Interrupt
        return {}

    with pytest.raises(Interrupt):
        fit(make_model(), train, test, CFG, tmp_path / "cut", seed=5, on_epoch=stop_at_two)
    resumed_model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                                  nn.Linear(16, 3))  # different init: must come from checkpoint
    fit(resumed_model, train, test, CFG, tmp_path / "cut", seed=5)
    full = _strip_wall(read_jsonl(tmp_path / "full" / "metrics.jsonl"))
    cut = _strip_wall(read_jsonl(tmp_path / "cut" / "metrics.jsonl"))
    assert cut == full
    for a, b in zip(full_model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_finished_run_returns_its_result(tmp_path, blobs):
    train, test = blobs
    first = fit(make_model(), train, test, CFG, tmp_path, seed=0)
    assert fit(make_model(), train, test, CFG, tmp_path, seed=0) == first


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, blobs):
    train, test = blobs

    class Poison(LearningRule):
        calls = 0

        def after_step(self, model):
            self.calls += 1
            if self.calls == 12:  # during epoch 2 (8 steps per epoch)
                with torch.no_grad():
                    model[0].weight.fill_(float("nan"))
            return {}

    with pytest.raises(DivergenceError, match="loss became nan at epoch 2"):
        fit(make_model(), train, test, CFG, tmp_path, seed=0, rules=(Poison(),))
    from signalprop.storage import load_checkpoint

    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 1
    assert torch.isfinite(state["model"]["0.weight"]).all()
    assert not (tmp_path / "result.json").exists()


def test_nonfinite_gradient_names_the_parameter(tmp_path, blobs):
    train, test = blobs

    class InfGrad(LearningRule):
        def compute_gradients(self, model, x, y, loss_fn):
            out = model(x)
            loss = loss_fn(out, y)
            loss.backward()
            model[2].weight.grad[0, 0] = float("inf")
            return loss, out

    with pytest.raises(DivergenceError, match="gradient of 2.weight"):
        fit(make_model(), train, test, CFG, tmp_path, seed=0, rules=(InfGrad(),))


def test_regression_task(tmp_path):
    from torch.utils.data import TensorDataset

    x = torch.randn(64, 3)
    y = x.sum(1, keepdim=True)
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-2)
    result = fit(nn.Linear(3, 1), TensorDataset(x, y), TensorDataset(x, y), cfg, tmp_path,
                 task="regression")
    assert "test_acc" not in result and result["test_loss"] < 5


def test_exploding_rnn_state_names_the_layer(tmp_path):
    from torch.utils.data import TensorDataset

    from signalprop.nn.elman import ElmanRNN

    class LastState(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = ElmanRNN(1, 16, nonlinearity="relu", gain=50.0)
            self.head = nn.Linear(16, 2)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    x = torch.ones(32, 200, 1)
    y = torch.zeros(32, dtype=torch.long)
    with pytest.raises(DivergenceError, match=r"first non-finite output: rnn \(ElmanRNN\)"):
        fit(LastState(), TensorDataset(x, y), None, TrainConfig(epochs=1, batch_size=32),
            tmp_path)


def test_a_model_built_for_other_shapes_is_one_clear_error(tmp_path, blobs):
    from signalprop.errors import ConfigError

    train, test = blobs
    wrong = nn.Sequential(nn.Linear(7, 4), nn.Tanh(), nn.Linear(4, 3))  # blobs have 8 features
    with pytest.raises(ConfigError, match=r"does not fit the data: inputs \(16, 8\)") as info:
        fit(wrong, train, test, TrainConfig(epochs=1, batch_size=16), tmp_path / "run")
    assert "flatten=True" in str(info.value) and "\n" not in str(info.value)


def test_a_later_runtime_error_is_not_renamed(tmp_path, blobs):
    class FailsOnSecondStep(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear, self.calls = nn.Linear(8, 3), 0

        def forward(self, x):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (a later step)")
            return self.linear(x)

    train, test = blobs
    with pytest.raises(RuntimeError, match="later step") as info:
        fit(FailsOnSecondStep(), train, test, TrainConfig(epochs=1, batch_size=16),
            tmp_path / "run")
    assert not isinstance(info.value, ValueError)
