"""The compiled BPTT loops of the additive-filter RNN against the torch-op reference."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad

from signalprop.nn import filter_kernels
from signalprop.nn.orthogonal_rnn import AdditiveFilterRNN

pytestmark = pytest.mark.skipif(not filter_kernels.AVAILABLE, reason="numba not installed")


def _run(model, x, h0, last_only):
    out, h_n = model(x, h0)
    loss = h_n.square().sum() if last_only else out.sin().sum() + h_n.square().sum()
    return out, torch.autograd.grad(loss, [x, h0, *model.parameters()])


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("filt", ["haar", "permutation"])
@pytest.mark.parametrize("last_only", [False, True])
def test_compiled_loops_match_the_reference_in_float64(activation, filt, last_only):
    torch.manual_seed(0)
    kw = {"beta": 0.2, "activation": activation, "filter": filt, "dtype": torch.float64}
    models = {impl: AdditiveFilterRNN(3, 7, impl=impl, **kw)
              for impl in ("bptt", "bptt-torch", "loop")}
    for m in models.values():
        m.load_state_dict(models["bptt"].state_dict())
    x = torch.randn(4, 13, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 4, 7, dtype=torch.float64, requires_grad=True)
    results = {impl: _run(m, x, h0, last_only) for impl, m in models.items()}
    out, grads = results["bptt"]
    for impl in ("bptt-torch", "loop"):
        ref_out, ref_grads = results[impl]
        assert torch.allclose(out, ref_out, atol=1e-6, rtol=0)
        for g, r in zip(grads, ref_grads, strict=True):
            assert torch.allclose(g, r, atol=1e-6, rtol=0)


def test_the_compiled_path_is_taken_on_cpu_and_skipped_under_torch_func(monkeypatch):
    calls = []
    real = filter_kernels.KernelBPTT.apply

    def spy(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(filter_kernels.KernelBPTT, "apply", spy)
    model = AdditiveFilterRNN(2, 5)
    x = torch.randn(3, 6, 2)
    model(x)[1].sum().backward()
    assert calls == [1]
    params = dict(model.named_parameters())
    grads = grad(lambda p: functional_call(model, p, (x,))[1].sum())(params)
    assert calls == [1] and all(torch.isfinite(g).all() for g in grads.values())
    with torch.no_grad():
        model(x)
    assert calls == [1, 1]  # evaluation runs the same compiled forward


def test_float32_compiled_loops_agree_with_the_reference():
    torch.manual_seed(1)
    fast, ref = AdditiveFilterRNN(2, 16, beta=0.01), AdditiveFilterRNN(2, 16, beta=0.01,
                                                                       impl="bptt-torch")
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(5, 200, 2)
    (out_f, h_f), (out_r, h_r) = fast(x), ref(x)
    assert torch.allclose(out_f, out_r, atol=1e-5)
    h_f.sum().backward()
    h_r.sum().backward()
    assert torch.allclose(fast.cell.weight_hh.grad, ref.cell.weight_hh.grad, atol=1e-4)
