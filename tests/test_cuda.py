"""CUDA checks (``pytest -m cuda``): every custom autograd Function, the additive-filter RNN
against cuDNN ``nn.RNN``/``nn.LSTM``, and a two-rank nccl ``fit``.

Each check is a helper taking a device; the ``cpu`` variant runs in the default suite (so the
check itself is known to work), the ``cuda`` variant is marked ``cuda`` and skipped without a GPU
(the nccl run needs two). Results are compared with a float64 CPU reference computed by another
path (plain autograd, or cuDNN's own RNN). TF32 is switched off for these tests, so float32 on
the GPU is compared at float32 tolerances.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from test_ddp_train import _data, _free_port, _model
from torch import Tensor, nn

from signalprop.learning.feedback_alignment import DirectFeedbackAlignment
from signalprop.nn.feedback import Conv2dFeedback, LinearFeedback
from signalprop.nn.orthogonal import AdditiveFilterStack
from signalprop.nn.orthogonal_rnn import AdditiveFilterRNN
from signalprop.train import TrainConfig, fit

NEEDS_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
NEEDS_TWO_GPUS = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, NEEDS_GPU])]
DTYPES = [torch.float32, torch.float64]
TOLERANCE = {torch.float32: {"rtol": 2e-4, "atol": 2e-5},
             torch.float64: {"rtol": 1e-9, "atol": 1e-11}}


@pytest.fixture(autouse=True)
def _no_tf32(monkeypatch):
    """Full float32 matmuls and convolutions on the GPU (cuDNN allows TF32 by default)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(precision)


def _assert_matches(got: dict[str, Tensor], want: dict[str, Tensor], dtype: torch.dtype) -> None:
    assert got.keys() == want.keys()
    for name, value in got.items():
        assert value.dtype == dtype, name
        torch.testing.assert_close(value.cpu().double(), want[name].cpu().double(),
                                   msg=lambda m, n=name: f"{n}: {m}", **TOLERANCE[dtype])


def _weights(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def _leaf(t: Tensor, device: str, dtype: torch.dtype) -> Tensor:
    return t.to(device, dtype).requires_grad_()


def _grads(module: nn.Module, **leaves: Tensor) -> dict[str, Tensor]:
    found = {f"d_{name}": p.grad for name, p in module.named_parameters()}
    found.update({f"d_{name}": t.grad for name, t in leaves.items()})
    return found


# additive-filter stack: _CheckpointedStack against plain autograd

def stack_run(device: str, dtype: torch.dtype, skip: str, act: str,
              checkpoint: bool) -> dict[str, Tensor]:
    stack = AdditiveFilterStack(8, 10, beta=0.3, skip=skip, activation=act, segment=4,
                                checkpoint=checkpoint, generator=torch.Generator().manual_seed(1),
                                dtype=torch.float64).to(device, dtype)
    h0 = _leaf(_weights(5, 8, seed=2), device, dtype)
    out = stack(h0)
    assert ("_CheckpointedStack" in type(out.grad_fn).__name__) == checkpoint
    (out * _weights(5, 8, seed=3).to(device, dtype)).sum().backward()
    return {"out": out.detach(), **_grads(stack, h0=h0)}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("skip", "act"), [("orthogonal", "tanh"), ("identity", "relu"),
                                           ("none", "identity")])
def test_checkpointed_stack_matches_float64_cpu_autograd(device, dtype, skip, act):
    want = stack_run("cpu", torch.float64, skip, act, checkpoint=False)
    _assert_matches(stack_run(device, dtype, skip, act, checkpoint=True), want, dtype)


# additive-filter RNN: _AdditiveFilterBPTT against the autograd loop

def rnn_run(device: str, dtype: torch.dtype, act: str, filt: str, impl: str,
            beta: float = 0.2) -> dict[str, Tensor]:
    rnn = AdditiveFilterRNN(3, 8, beta=beta, activation=act, filter=filt, impl=impl,
                            generator=torch.Generator().manual_seed(1),
                            dtype=torch.float64).to(device, dtype)
    x = _leaf(_weights(4, 7, 3, seed=2), device, dtype)
    h0 = _leaf(_weights(1, 4, 8, seed=3) * 0.5, device, dtype)
    out, last = rnn(x, h0)
    recurrence = type(out.grad_fn.next_functions[0][0]).__name__  # under the transpose
    assert recurrence.startswith("_AdditiveFilterBPTT") == (impl == "bptt")
    loss = (out * _weights(4, 7, 8, seed=4).to(device, dtype)).sum() + \
        (last * _weights(1, 4, 8, seed=5).to(device, dtype)).sum()
    loss.backward()
    return {"out": out.detach(), "last": last.detach(), **_grads(rnn, x=x, h0=h0)}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("act", "filt"), [("tanh", "haar"), ("relu", "haar"),
                                           ("tanh", "permutation")])
def test_additive_filter_bptt_matches_float64_cpu_autograd(device, dtype, act, filt):
    want = rnn_run("cpu", torch.float64, act, filt, impl="loop")
    _assert_matches(rnn_run(device, dtype, act, filt, impl="bptt"), want, dtype)


# the filter RNN next to cuDNN's nn.RNN and nn.LSTM

def rnn_against_torch(device: str, dtype: torch.dtype, act: str) -> None:
    """With ``beta = 1`` (``a = 0``) the filter RNN is ``h_t = phi(W h + U x + c)``, i.e.
    ``nn.RNN`` with ``bias_hh = 0``: outputs and gradients must agree (cuDNN on a GPU). An
    ``nn.LSTM`` of the same size runs on the same input with the same output shape."""
    ours = rnn_run(device, dtype, act, "haar", impl="bptt", beta=1.0)
    rnn = AdditiveFilterRNN(3, 8, beta=1.0, activation=act,
                            generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    reference = nn.RNN(3, 8, nonlinearity=act, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        reference.weight_ih_l0.copy_(rnn.cell.weight_ih)
        reference.weight_hh_l0.copy_(rnn.cell.weight_hh)
        reference.bias_ih_l0.copy_(rnn.cell.bias)
        reference.bias_hh_l0.zero_()
    reference.to(device, dtype)
    x = _leaf(_weights(4, 7, 3, seed=2), device, dtype)
    h0 = _leaf(_weights(1, 4, 8, seed=3) * 0.5, device, dtype)
    out, last = reference(x, h0)
    ((out * _weights(4, 7, 8, seed=4).to(device, dtype)).sum()
     + (last * _weights(1, 4, 8, seed=5).to(device, dtype)).sum()).backward()
    theirs = {"out": out.detach(), "last": last.detach(),
              "d_cell.weight_ih": reference.weight_ih_l0.grad,
              "d_cell.weight_hh": reference.weight_hh_l0.grad,
              "d_cell.bias": reference.bias_ih_l0.grad, "d_x": x.grad, "d_h0": h0.grad}
    _assert_matches(ours, theirs, dtype)

    lstm = nn.LSTM(3, 8, batch_first=True, device=device, dtype=dtype)
    lstm_out, (lstm_last, _) = lstm(x)
    lstm_out.square().sum().backward()
    assert lstm_out.shape == ours["out"].shape and lstm_last.shape == ours["last"].shape
    assert all(torch.isfinite(p.grad).all() for p in lstm.parameters())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_filter_rnn_with_beta_one_equals_torch_rnn(device, dtype, act):
    rnn_against_torch(device, dtype, act)


@pytest.mark.cuda
@NEEDS_GPU
@pytest.mark.parametrize("impl", ["bptt", "loop"])
def test_filter_rnn_on_cuda_equals_its_cpu_run(impl):
    want = rnn_run("cpu", torch.float32, "tanh", "haar", impl)
    _assert_matches(rnn_run("cuda", torch.float32, "tanh", "haar", impl), want, torch.float32)


# feedback alignment: LinearFeedback and Conv2dFeedback against autograd with B in W's place

def linear_feedback_run(device: str, dtype: torch.dtype, through: str) -> dict[str, Tensor]:
    """``through="function"``: LinearFeedback; ``"autograd"``: dx from ``F.linear(x, B)`` and
    dW, db from ``F.linear(x, W, b)`` (what FA's backward must equal)."""
    x = _leaf(_weights(2, 3, 5, seed=0), device, dtype)
    weight = _leaf(_weights(4, 5, seed=1), device, dtype)
    bias = _leaf(_weights(4, seed=2), device, dtype)
    feedback = _weights(4, 5, seed=3).to(device, dtype)
    upstream = _weights(2, 3, 4, seed=4).to(device, dtype)
    if through == "function":
        out = LinearFeedback.apply(x, weight, bias, feedback)
        (out * upstream).sum().backward()
        return {"out": out.detach(), "dx": x.grad, "dw": weight.grad, "db": bias.grad}
    out = F.linear(x, weight, bias)
    (out * upstream).sum().backward()
    x.grad = None
    (F.linear(x, feedback) * upstream).sum().backward(inputs=[x])
    return {"out": out.detach(), "dx": x.grad, "dw": weight.grad, "db": bias.grad}


def conv_feedback_run(device: str, dtype: torch.dtype, through: str) -> dict[str, Tensor]:
    conf = {"stride": 2, "padding": 1, "dilation": 1, "groups": 2}
    x = _leaf(_weights(2, 4, 9, 9, seed=0), device, dtype)
    weight = _leaf(_weights(6, 2, 3, 3, seed=1), device, dtype)
    bias = _leaf(_weights(6, seed=2), device, dtype)
    feedback = _weights(6, 2, 3, 3, seed=3).to(device, dtype)
    upstream = _weights(2, 6, 5, 5, seed=4).to(device, dtype)
    if through == "function":
        out = Conv2dFeedback.apply(x, weight, bias, feedback, *conf.values())
        (out * upstream).sum().backward()
        return {"out": out.detach(), "dx": x.grad, "dw": weight.grad, "db": bias.grad}
    out = F.conv2d(x, weight, bias, **conf)
    (out * upstream).sum().backward()
    x.grad = None
    (F.conv2d(x, feedback, None, **conf) * upstream).sum().backward(inputs=[x])
    return {"out": out.detach(), "dx": x.grad, "dw": weight.grad, "db": bias.grad}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("run", [linear_feedback_run, conv_feedback_run],
                         ids=["linear", "conv2d"])
def test_feedback_functions_match_float64_cpu_autograd(device, dtype, run):
    want = run("cpu", torch.float64, "autograd")
    _assert_matches(run(device, dtype, "function"), want, dtype)


def test_feedback_reference_differs_from_backprop():
    """The reference's ``dx`` really is the feedback one (B differs from W)."""
    x = _weights(2, 3, 5, seed=0).requires_grad_()
    (F.linear(x, _weights(4, 5, seed=1)) * _weights(2, 3, 4, seed=4)).sum().backward()
    assert not torch.allclose(x.grad, linear_feedback_run("cpu", torch.float64, "autograd")["dx"])


# direct feedback alignment: _Inject

def dfa_run(device: str, dtype: torch.dtype, derivative: bool) -> dict[str, Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 10), nn.Tanh(),
                          nn.Linear(10, 3)).double().to(device, dtype)
    rule = DirectFeedbackAlignment(derivative=derivative, seed=2)
    rule.attach(model)
    x = _weights(12, 6, seed=1).to(device, dtype)
    y = torch.arange(12, device=device) % 3
    loss, output = rule.compute_gradients(model, x, y, F.cross_entropy)
    rule.detach()
    return {"loss": loss.detach().reshape(1), "out": output.detach(), **_grads(model)}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("derivative", [True, False])
def test_dfa_injection_matches_float64_cpu(device, dtype, derivative):
    want = dfa_run("cpu", torch.float64, derivative)
    got = dfa_run(device, dtype, derivative)
    _assert_matches(got, want, dtype)
    torch.manual_seed(0)  # the injected gradient is not backprop's
    model = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 10), nn.Tanh(),
                          nn.Linear(10, 3)).double()
    F.cross_entropy(model(_weights(12, 6, seed=1)), torch.arange(12) % 3).backward()
    assert not torch.allclose(model[0].weight.grad, want["d_0.weight"])


# two-rank fit: nccl on two GPUs, gloo on CPU

WORLD = 2
CFG = TrainConfig(epochs=2, batch_size=16, lr=0.05, optimizer="sgd", momentum=0.9, log_every=1)


def _fit_rank(rank: int, device_type: str, port: int, out: str) -> None:
    """One rank with torchrun's environment: ``fit`` on this rank's device inside the group."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": str(WORLD)})
    torch.set_num_threads(1)
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    from signalprop import distributed

    with distributed.process_group(torch.device(device_type)) as device:
        backend = torch.distributed.get_backend()
        train, test = _data()
        model = _model()
        result = fit(model, train, test, CFG, Path(out) / "ddp", seed=3, device=device,
                     progress=False)
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    torch.save(state, Path(out) / f"rank{rank}.pt")
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(
        {"result": result, "backend": backend, "device": str(device)}, sort_keys=True))


def _launch(fn: Callable[..., None], device_type: str, out: Path, timeout: float = 120.0) -> None:
    mp.set_forkserver_preload(["torch", "signalprop.train"])
    context = mp.start_processes(fn, args=(device_type, _free_port(), str(out)), nprocs=WORLD,
                                 join=False, start_method="forkserver")
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
            pytest.fail(f"ranks still running after {timeout} s (hung in a collective?)")


def two_rank_fit(device_type: str, out: Path) -> None:
    """Two ranks (nccl on ``cuda:0``/``cuda:1``, gloo on CPU) follow the single-process run."""
    train, test = _data()
    single = _model()
    device = torch.device(device_type, 0) if device_type == "cuda" else torch.device("cpu")
    expected = fit(single, train, test, CFG, out / "single", seed=3, device=device,
                   progress=False)
    _launch(_fit_rank, device_type, out)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert [r["backend"] for r in ranks] == ["nccl" if device_type == "cuda" else "gloo"] * 2
    if device_type == "cuda":
        assert [r["device"] for r in ranks] == ["cuda:0", "cuda:1"]
    assert ranks[0]["result"] == ranks[1]["result"]
    assert ranks[0]["result"]["test_acc"] == expected["test_acc"]
    assert ranks[0]["result"]["train_loss"] == pytest.approx(expected["train_loss"], abs=1e-5)
    states = [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]
    for key, value in single.state_dict().items():
        torch.testing.assert_close(states[0][key], states[1][key], rtol=0, atol=0)
        torch.testing.assert_close(states[0][key], value.cpu(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("device", ["cpu", pytest.param(
    "cuda", marks=[pytest.mark.cuda, NEEDS_GPU, NEEDS_TWO_GPUS])])
def test_two_rank_fit_follows_the_single_process_run(device, tmp_path):
    two_rank_fit(device, tmp_path)
