"""Tests of signalprop.diagnose: verdicts, exact Jacobian agreement, no side effects, CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from signalprop.diagnose.core import diagnose
from signalprop.diagnose.remedies import BY_VERDICT, LOWER_LR, RECURRENT
from signalprop.diagnostics.jacobian import estimate_jacobian
from signalprop.nn.mlp import MLP
from signalprop.nn.orthogonal import AdditiveFilterBlock
from signalprop.train import TrainConfig


def _classification_batch(n: int = 32, d: int = 16, classes: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_deep_tanh_mlp_is_vanishing():
    torch.manual_seed(0)
    model = MLP(16, 32, 20, 4, "tanh", gain=1 / math.sqrt(3))
    d = diagnose(model, _classification_batch())
    assert d.verdict == "vanishing"
    assert d.layers[0].verdict == "vanishing"
    assert d.layers[-1].verdict == "healthy"
    # independent check of the first layer's gradient norm with plain backprop
    x, y = _classification_batch()
    nn.functional.cross_entropy(model(x), y).backward()
    first = model.hidden[0]
    expected = math.sqrt(first.weight.grad.norm() ** 2 + first.bias.grad.norm() ** 2)
    assert d.layers[0].grad_norm == pytest.approx(expected, rel=1e-4)
    assert d.grad_ratio_first_to_last < 1e-2


def test_badly_scaled_linear_network_is_exploding():
    torch.manual_seed(0)
    layers = [nn.Linear(16, 16) for _ in range(12)]
    for layer in layers:
        nn.init.normal_(layer.weight, std=3.0 / math.sqrt(16))
    model = nn.Sequential(*layers)
    d = diagnose(model, torch.randn(32, 16))
    assert d.verdict == "exploding"
    assert d.layers[0].verdict == "exploding"
    assert d.layers[0].backward_gain > 1e2
    assert d.loss_kind == "random projection"
    assert d.jacobian["sigma_max"] > 1e3


def test_relu_with_large_negative_biases_is_dead():
    torch.manual_seed(0)
    model = MLP(16, 32, 4, 4, "relu", gain=1.0)
    with torch.no_grad():
        for layer in model.hidden:
            if isinstance(layer, nn.Linear):
                layer.bias.fill_(-10.0)
    d = diagnose(model, _classification_batch())
    hidden = [lay for lay in d.layers if lay.name.startswith("hidden")]
    assert [lay.verdict for lay in hidden] == ["dead"] * 4
    assert hidden[0].dead_fraction == 1.0
    assert d.verdict == "dead"
    assert any(s.problem == "dead" for s in d.suggestions)


def test_saturated_tanh_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4))
    with torch.no_grad():
        model[0].weight.mul_(40.0)
    d = diagnose(model, _classification_batch())
    assert d.layers[0].verdict == "saturated"
    assert d.layers[0].saturated_fraction > 0.5


def test_additive_filter_mlp_is_healthy():
    torch.manual_seed(0)
    depth = 20
    blocks = [AdditiveFilterBlock(32, beta=1.0 / depth) for _ in range(depth)]
    model = nn.Sequential(nn.Linear(16, 32), *blocks, nn.Linear(32, 4))
    d = diagnose(model, _classification_batch())
    assert d.verdict == "healthy", str(d)
    assert all(lay.verdict == "healthy" for lay in d.layers)
    # the functional tanh inside each block is paired with the block's Linear
    assert d.layers[1].name == "1.linear" and d.layers[1].activation == "tanh"
    assert d.layers[1].sensitivity_mean is not None
    # a plain tanh stack of the same depth and scale is not healthy
    plain = MLP(16, 32, depth, 4, "tanh", gain=1 / math.sqrt(3))
    assert diagnose(plain, _classification_batch()).verdict == "vanishing"


def test_sensitivity_matches_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 2))
    x = torch.randn(20, 8)
    d = diagnose(model, x)
    u = model[0](x)
    s = (1 - torch.tanh(u) ** 2) * model[0].weight.norm(dim=1)
    s = s.detach()
    assert d.layers[0].sensitivity_mean == pytest.approx(float(s.mean()), rel=1e-5)
    assert d.layers[0].sensitivity_log_rms == pytest.approx(
        0.5 * math.log(float(s.pow(2).mean())), rel=1e-5)


def _full_jacobian_svals(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    jac = torch.func.vmap(torch.func.jacrev(lambda e: model(e.unsqueeze(0))[0]))(x)
    return torch.linalg.svdvals(jac.double())


@pytest.mark.parametrize("sizes", [(10, 6), (6, 10), (48, 40)])
def test_jacobian_estimate_matches_exact_svd(sizes):
    n_in, n_out = sizes
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(n_in, 48), nn.Tanh(), nn.Linear(48, n_out)).double()
    x = torch.randn(2, n_in, dtype=torch.float64)
    exact = _full_jacobian_svals(model, x)
    est = estimate_jacobian(model, x)
    if est.method == "exact":
        assert est.sigma_max == pytest.approx(float(exact[:, 0].mean()), rel=1e-9)
        assert est.sigma_min == pytest.approx(float(exact[:, -1].mean()), rel=1e-9)
    else:  # randomized: sigma_min is a Rayleigh-Ritz upper estimate
        assert est.method == "randomized"
        # subspace iteration approaches sigma_max from below
        assert est.sigma_max == pytest.approx(float(exact[:, 0].mean()), rel=0.03)
        assert est.sigma_max <= float(exact[:, 0].mean()) * (1 + 1e-9)
        assert est.sigma_min >= float(exact[:, -1].mean()) * (1 - 1e-9)
        assert est.sigma_min <= float(exact[:, 0].mean())


def test_jacobian_falls_back_for_custom_autograd_functions():
    from signalprop.nn.orthogonal import AdditiveFilterMLP

    torch.manual_seed(0)
    model = AdditiveFilterMLP(12, 16, 30, 3)  # checkpointed custom autograd Function
    x = torch.randn(2, 12)
    est = estimate_jacobian(model, x)
    plain = AdditiveFilterMLP(12, 16, 30, 3, checkpoint=False)
    plain.load_state_dict(model.state_dict())
    exact = _full_jacobian_svals(plain, x)
    assert est.sigma_max == pytest.approx(float(exact[:, 0].mean()), rel=1e-4)
    assert est.sigma_min == pytest.approx(float(exact[:, -1].mean()), rel=1e-3)


def _hooks(model: nn.Module) -> list:
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
             "_backward_pre_hooks", "_forward_hooks_with_kwargs",
             "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called")
    return [(n, tuple(getattr(m, n, {}).items())) for m in model.modules() for n in names]


@pytest.mark.parametrize("train_mode", [True, False])
def test_diagnose_leaves_the_model_as_found(train_mode):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))
    model.train(train_mode)
    model[0].register_forward_hook(lambda *a: None)  # the user's own hook stays
    x, y = _classification_batch()
    nn.functional.cross_entropy(model(x), y).backward()  # existing .grad must stay
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    hooks = _hooks(model)
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    d = diagnose(model, (x, y))
    assert d.layers
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    for n, p in model.named_parameters():
        assert torch.equal(p.grad, grads[n]), n
    assert _hooks(model) == hooks
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)


def test_recurrent_layers_get_lyapunov_exponents():
    from signalprop.diagnostics.lyapunov import rnn_lyapunov

    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self, cell: nn.Module) -> None:
            super().__init__()
            self.rnn, self.head = cell, nn.Linear(24, 2)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    rnn = nn.RNN(3, 24, batch_first=True)
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(6.0)  # chaotic: lambda_1 > 0
    x = torch.randn(4, 60, 3)
    d = diagnose(Net(rnn), x)
    lay = d.layer("rnn")
    expected = rnn_lyapunov(rnn, x[0], warmup=15)["lambda_max"]
    assert lay.lyapunov == pytest.approx(expected, rel=1e-4)
    assert lay.lyapunov > 0.01
    assert any("Lyapunov" in reason for reason in lay.reasons)
    assert lay.sensitivity_mean is not None
    for cls in (nn.GRU, nn.LSTM):
        assert diagnose(Net(cls(3, 24, batch_first=True)), x).layer("rnn").lyapunov < 0
    from signalprop.nn.orthogonal_rnn import AdditiveFilterRNN

    # parameters live in a cell the BPTT Function never calls: still one layer, near-isometric
    filt = diagnose(Net(AdditiveFilterRNN(3, 24, beta=0.02)), x).layer("rnn")
    assert filt.grad_norm > 0 and abs(filt.lyapunov) < 0.05 and filt.verdict == "healthy"


def test_outputs_table_json_and_plot(tmp_path):
    torch.manual_seed(0)
    model = MLP(16, 32, 6, 4, "tanh")
    d = diagnose(model, _classification_batch())
    text = str(d)
    assert "verdict" in text and "hidden.0" in text
    data = json.loads(d.to_json(tmp_path / "d.json").read_text())
    assert data["verdict"] == d.verdict and len(data["layers"]) == 7
    png = d.plot(tmp_path / "d.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_remedy_code_lines_run():
    torch.manual_seed(0)
    names = {"in_features": 8, "width": 16, "depth": 3, "out_features": 2, "seq_len": 50,
             "input_size": 2, "hidden_size": 8, "train_x": torch.randn(120, 8), "nn": nn}
    remedies = {r for group in (*BY_VERDICT.values(), *RECURRENT.values()) for r in group}
    for remedy in remedies:
        for statement in remedy.code.split("; "):
            if statement.startswith("fit(") or statement.startswith("decorrelate(model)"):
                continue
            exec(statement, names)  # imports and constructors must be real
    assert isinstance(names["model"], nn.Module)
    names["cfg"] = TrainConfig(lr=1e-3)
    exec(LOWER_LR.code, names)
    assert names["cfg"].lr == pytest.approx(1e-4)


class _Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _cli(capsys, *args: str) -> _Result:
    from signalprop.cli import main

    code = main(["diagnose", *args])
    out = capsys.readouterr()
    return _Result(code, out.out, out.err)


FACTORY = '''
import torch
from torch import nn

def make_model():
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))

def make_pair():
    return make_model(), (torch.randn(16, 5), torch.randint(0, 2, (16,)))

def broken():
    raise RuntimeError("no GPU here")
'''


def test_cli_on_a_factory_file_and_errors(tmp_path, capsys):
    path = tmp_path / "models.py"
    path.write_text(FACTORY)
    ok = _cli(capsys, f"{path}:make_pair", "--json", str(tmp_path / "d.json"), "--plot",
              str(tmp_path / "d.png"))
    assert ok.returncode == 0, ok.stderr
    assert "signalprop diagnosis: healthy" in ok.stdout
    assert json.loads((tmp_path / "d.json").read_text())["batch_size"] == 16
    assert (tmp_path / "d.png").exists()
    random_inputs = _cli(capsys, f"{path}:make_model", "--batch-size", "8")
    assert random_inputs.returncode == 0 and "batch 8" in random_inputs.stdout
    assert ("it returned no batch, so the inputs are random N(0,1) of guessed shape (8, 5) "
            "(in_features of its first Linear layer '0')") in random_inputs.stdout
    cases = {
        f"{path}:make_modle": "did you mean make_model",
        f"{tmp_path}/absent.py:make_model": "model file not found",
        f"{path}:broken": "raised RuntimeError: no GPU here",
        "deep-tanh-mpl": "did you mean deep-tanh-mlp",
    }
    for target, message in cases.items():
        bad = _cli(capsys, target)
        assert bad.returncode == 2, bad.stderr
        assert message in bad.stderr and "Traceback" not in bad.stderr


def test_cli_on_deep_tanh_mlp(tmp_path, capsys):
    out = _cli(capsys, "deep-tanh-mlp", "--quick", "--batch-size", "32", "--json",
               str(tmp_path / "d.json"))
    assert out.returncode == 0, out.stderr
    data = json.loads((tmp_path / "d.json").read_text())
    assert data["verdict"] == "vanishing"
    assert len(data["layers"]) == 21  # quick depth 20 + head
    assert "remedies" in out.stdout and "AdditiveFilterMLP" in out.stdout


def test_top_level_export_and_cli_import_together():
    """``signalprop.diagnose`` shadowed by the function (the top-level export) must not break
    ``import signalprop.diagnose.cli`` or the sub-command."""
    code = (
        "import signalprop\n"
        "from signalprop.diagnose.core import Diagnosis, diagnose\n"
        "signalprop.diagnose = diagnose  # what the top-level __init__ export does\n"
        "import signalprop.diagnose.cli\n"
        "from signalprop.diagnose.cli import run, add_arguments\n"
        "import importlib; importlib.import_module('signalprop.diagnose.adapters')\n"
        "import torch\n"
        "d = signalprop.diagnose(torch.nn.Linear(3, 2), torch.randn(4, 3))\n"
        "assert isinstance(d, Diagnosis), type(d)\n"
        "from signalprop.cli import main\n"
        "import sys; sys.exit(main(['diagnose', 'no-such-experiment']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr
    assert "unknown experiment 'no-such-experiment'" in proc.stderr
