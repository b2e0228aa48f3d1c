"""Target space (arXiv 2006.01578): solves, gradients, export/import, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from signalprop.errors import ConfigError, DivergenceError
from signalprop.nn.least_squares import SolveReport, ridge_solve, with_bias_column
from signalprop.nn.target_space import (
    ShortcutMLP,
    TargetConv2d,
    TargetLinear,
    TargetSpaceMLP,
    TargetSpaceSequential,
    target_minibatch,
)
from signalprop.nn.target_space_rnn import TargetSpaceRNN, WeightSpaceElmanRNN

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- the least-squares solve ------------------------------------------------------------------

@pytest.mark.parametrize("form", ["primal", "dual", "auto"])
def test_ridge_solve_matches_numpy_closed_form(form: str) -> None:
    a = torch.randn(30, 8, generator=_gen(), dtype=F64)
    t = torch.randn(30, 3, generator=_gen(1), dtype=F64)
    ridge = 0.3
    a_np, t_np = a.numpy(), t.numpy()
    expected = np.linalg.solve(a_np.T @ a_np + ridge * np.eye(8), a_np.T @ t_np)
    got = ridge_solve(a, t, ridge, form=form)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_underdetermined_solve_meets_targets_exactly() -> None:
    # fewer target rows than unknowns: with lambda = 0 every target is met exactly
    a = torch.randn(6, 15, generator=_gen(), dtype=F64)
    t = torch.randn(6, 4, generator=_gen(1), dtype=F64)
    w = ridge_solve(a, t, 0.0)
    torch.testing.assert_close(a @ w, t, rtol=0, atol=1e-10)
    # and it is the minimum-norm solution
    torch.testing.assert_close(w, torch.linalg.pinv(a) @ t, rtol=0, atol=1e-10)


def test_consistent_overdetermined_solve_recovers_weights() -> None:
    a = torch.randn(40, 5, generator=_gen(), dtype=F64)
    w_true = torch.randn(5, 2, generator=_gen(2), dtype=F64)
    torch.testing.assert_close(ridge_solve(a, a @ w_true, 0.0), w_true, rtol=0, atol=1e-10)


def test_gradient_through_solve_matches_finite_differences() -> None:
    a = torch.randn(12, 4, generator=_gen(), dtype=F64, requires_grad=True)
    t = torch.randn(12, 3, generator=_gen(1), dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, t: ridge_solve(a, t, 0.05), (a, t))
    wide = torch.randn(4, 9, generator=_gen(3), dtype=F64, requires_grad=True)
    tw = torch.randn(4, 2, generator=_gen(4), dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, t: ridge_solve(a, t, 0.05), (wide, tw))


def test_rank_deficient_solve_falls_back_to_a_larger_ridge() -> None:
    column = torch.randn(20, 1, generator=_gen(), dtype=torch.float32)
    a = torch.cat([column, column, column], 1)  # rank 1, Gram singular
    t = torch.randn(20, 2, generator=_gen(1))
    report: list[SolveReport] = []
    w = ridge_solve(a, t, 0.0, form="primal", report=report)
    assert torch.isfinite(w).all()
    assert report[0].ridge > 0 and report[0].retries >= 1
    # the fallback still gives the least-squares fit: residual orthogonal to the column
    residual = t - a @ w
    assert float((column.T @ residual).abs().max()) < 1e-2 * float(t.abs().sum())


def test_solve_falls_back_to_qr_when_cholesky_keeps_failing(monkeypatch) -> None:
    import signalprop.nn.least_squares as ls

    monkeypatch.setattr(ls, "_cholesky_solve", lambda gram, rhs, ridge: None)
    a = torch.randn(15, 4, generator=_gen(), dtype=F64)
    t = torch.randn(15, 2, generator=_gen(1), dtype=F64)
    report: list[SolveReport] = []
    w = ridge_solve(a, t, 0.1, report=report)
    assert report[0].method == "qr"
    ridge = report[0].ridge
    expected = np.linalg.solve(a.numpy().T @ a.numpy() + ridge * np.eye(4), a.numpy().T @ t.numpy())
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-8)


def test_failed_solve_raises_divergence_naming_the_layer(monkeypatch) -> None:
    import signalprop.nn.least_squares as ls

    monkeypatch.setattr(ls, "_cholesky_solve", lambda gram, rhs, ridge: None)
    monkeypatch.setattr(ls, "_qr_solve", lambda design, targets, ridge: None)
    with pytest.raises(DivergenceError, match="layers.2"):
        ridge_solve(torch.randn(5, 2), torch.randn(5, 1), 0.1, layer="net.layers.2")


def test_nan_targets_raise_divergence_naming_the_layer() -> None:
    model = TargetSpaceMLP(torch.randn(20, 3, generator=_gen()), 4, 2, 2)
    with torch.no_grad():
        model.linears[1].targets[0, 0] = float("nan")
    with pytest.raises(DivergenceError, match=r"linears\.1.*targets"):
        model(torch.randn(2, 3))


def test_bad_arguments_raise_config_error() -> None:
    x = torch.randn(10, 2)
    with pytest.raises(ConfigError, match="ridge"):
        TargetSpaceMLP(x, 4, 2, 2, ridge=-1.0)
    with pytest.raises(ConfigError, match="mode"):
        TargetSpaceMLP(x, 4, 2, 2, mode="fast")
    with pytest.raises(ConfigError, match="width"):
        TargetSpaceMLP(x, 0, 2, 2)
    with pytest.raises(ConfigError, match="TargetLayer"):
        TargetSpaceSequential(x, [nn.Linear(2, 2)])
    with pytest.raises(ConfigError, match="x_bar"):
        TargetSpaceRNN(x, 4, 2)
    with pytest.raises(ConfigError):
        target_minibatch(x, 11)


def test_unregularised_bias_is_the_exact_intercept() -> None:
    from signalprop.nn.target_space import solve_affine

    a = torch.randn(25, 3, generator=_gen(), dtype=F64)
    w_true, b_true = torch.randn(2, 3, dtype=F64), torch.tensor([5.0, -7.0], dtype=F64)
    t = a @ w_true.T + b_true
    w, b = solve_affine(a, t, 1e-9, regularise_bias=False)
    torch.testing.assert_close(b, b_true, rtol=0, atol=1e-6)
    w_reg, b_reg = solve_affine(a, t, 10.0, regularise_bias=True)
    assert float((b_reg - b_true).abs().max()) > 1e-3  # the ridge shrinks the bias too


# --- networks --------------------------------------------------------------------------------

def test_weights_from_targets_reproduce_solvable_targets_exactly() -> None:
    # a one-layer net whose targets are realisable (n_bar <= fan_in + 1) is met exactly
    x_bar = torch.randn(6, 10, generator=_gen(), dtype=F64)
    model = TargetSpaceMLP(x_bar, 4, 1, 3, ridge=0.0, project=False)
    (w0, b0), (w1, b1) = model.solve_weights()
    torch.testing.assert_close(x_bar @ w0.T + b0, model.linears[0].targets, rtol=0, atol=1e-9)
    h = torch.tanh(x_bar @ w0.T + b0)
    # second layer: 6 rows but only 5 unknowns -> least squares, checked against numpy
    design = with_bias_column(h).detach().numpy()
    expected, *_ = np.linalg.lstsq(design, model.linears[1].targets.detach().numpy(), rcond=None)
    np.testing.assert_allclose(torch.cat([b1[None], w1.T]).detach().numpy(), expected,
                               rtol=1e-7, atol=1e-9)


def test_projection_makes_targets_realisable() -> None:
    # with lambda = 0 the projected targets are a fixed point of the solve (up to rounding,
    # which the cascade amplifies on badly conditioned draws, hence the fixed seed)
    torch.manual_seed(0)
    x_bar = torch.randn(30, 2, generator=_gen(), dtype=F64)
    model = TargetSpaceMLP(x_bar, 5, 3, 2, shortcuts=True, ridge=0.0)
    realised: list[torch.Tensor] = []
    with torch.no_grad():
        model.solve_weights(realised=realised)
    for layer, sums in zip(model.linears, realised, strict=True):
        torch.testing.assert_close(sums, layer.targets.detach(), rtol=0, atol=1e-5)
    unprojected = TargetSpaceMLP(x_bar, 5, 3, 2, shortcuts=True, ridge=0.0, project=False)
    realised = []
    with torch.no_grad():
        unprojected.solve_weights(realised=realised)
    assert float((realised[-1] - unprojected.linears[-1].targets.detach()).abs().max()) > 0.1


def test_gradient_wrt_targets_matches_finite_differences() -> None:
    x_bar = torch.randn(8, 2, generator=_gen(), dtype=F64)
    x = torch.randn(5, 2, generator=_gen(1), dtype=F64)
    model = TargetSpaceMLP(x_bar, 3, 2, 2, shortcuts=True, ridge=0.01)
    names = [n for n, _ in model.named_parameters()]
    inputs = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    assert torch.autograd.gradcheck(
        lambda *ts: torch.func.functional_call(model, dict(zip(names, ts, strict=True)), (x,)),
        inputs)


def test_rnn_gradient_matches_finite_differences() -> None:
    x_bar = torch.randn(3, 4, 1, generator=_gen(), dtype=F64)
    model = TargetSpaceRNN(x_bar, 3, 2, ridge=0.05).to(F64)
    x = torch.randn(2, 5, 1, generator=_gen(1), dtype=F64)
    names = [n for n, _ in model.named_parameters()]
    inputs = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    assert torch.autograd.gradcheck(
        lambda *ts: torch.func.functional_call(model, dict(zip(names, ts, strict=True)), (x,)),
        inputs)


@pytest.mark.parametrize("mode", ["scu", "ocu"])
def test_mlp_export_import_preserves_outputs(mode: str) -> None:
    x_bar = torch.randn(40, 3, generator=_gen(), dtype=F64)
    model = TargetSpaceMLP(x_bar, 6, 3, 2, shortcuts=True, mode=mode).to(F64)
    x = torch.randn(9, 3, generator=_gen(1), dtype=F64)
    exported = model.to_weight_space()
    assert isinstance(exported, ShortcutMLP)
    assert not any(isinstance(m, TargetLinear) for m in exported.modules())
    torch.testing.assert_close(exported(x), model(x), rtol=0, atol=1e-10)
    imported = TargetSpaceMLP.from_weight_space(exported, x_bar, ridge=0.0, mode="scu")
    torch.testing.assert_close(imported(x), exported(x), rtol=0, atol=1e-7)


def test_cnn_export_import_preserves_outputs() -> None:
    x_bar = torch.randn(12, 2, 7, 7, generator=_gen(), dtype=F64)
    layers = [TargetConv2d(2, 3, 3, stride=2, padding=1), nn.Tanh(), TargetConv2d(3, 4, 2),
              nn.ReLU(), nn.Flatten(), TargetLinear(4 * 3 * 3, 5)]
    model = TargetSpaceSequential(x_bar, layers, ridge=0.1, init_std=0.1).to(F64)
    x = torch.randn(4, 2, 7, 7, generator=_gen(1), dtype=F64)
    exported = model.to_weight_space()
    assert [type(m) for m in exported] == [nn.Conv2d, nn.Tanh, nn.Conv2d, nn.ReLU, nn.Flatten,
                                           nn.Linear]
    torch.testing.assert_close(exported(x), model(x), rtol=0, atol=1e-10)
    imported = TargetSpaceSequential.from_weight_space(exported, x_bar, ridge=0.0)
    torch.testing.assert_close(imported(x), exported(x), rtol=0, atol=1e-7)


def test_conv_targets_match_an_independent_convolution() -> None:
    # import a random Conv2d: the solved weights must be the conv's own weights
    conv = nn.Conv2d(2, 3, 3, padding=1).to(F64)
    x_bar = torch.randn(5, 2, 6, 6, generator=_gen(), dtype=F64)
    imported = TargetSpaceSequential.from_weight_space(nn.Sequential(conv), x_bar, ridge=0.0)
    (weight, bias), = imported.solve_weights()
    torch.testing.assert_close(weight, conv.weight, rtol=0, atol=1e-9)
    torch.testing.assert_close(bias, conv.bias, rtol=0, atol=1e-9)


def test_rnn_export_import_preserves_outputs() -> None:
    x_bar = torch.randn(10, 6, 2, generator=_gen(), dtype=F64)
    model = TargetSpaceRNN(x_bar, 4, 3).to(F64)
    x = torch.randn(3, 11, 2, generator=_gen(1), dtype=F64)  # longer than T_bar
    exported = model.to_weight_space()
    assert isinstance(exported, WeightSpaceElmanRNN)
    torch.testing.assert_close(exported(x), model(x), rtol=0, atol=1e-10)
    imported = TargetSpaceRNN.from_weight_space(exported, x_bar, ridge=0.0)
    torch.testing.assert_close(imported(x), exported(x), rtol=0, atol=1e-7)


def test_works_with_any_optimiser_and_learns() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 2, generator=_gen())
    y = (x[:, 0] * x[:, 1] > 0).long()
    for make in (lambda p: torch.optim.Adam(p, lr=0.05), lambda p: torch.optim.SGD(p, lr=5.0),
                 lambda p: torch.optim.RMSprop(p, lr=0.01)):
        model = TargetSpaceMLP(x, 8, 2, 2)
        optimiser = make(model.parameters())
        first = float(nn.functional.cross_entropy(model(x), y).detach())
        for _ in range(40):
            optimiser.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimiser.step()
        assert float(loss.detach()) < 0.7 * first


def test_eval_cache_tracks_parameter_updates() -> None:
    x = torch.randn(20, 2, generator=_gen())
    model = TargetSpaceMLP(x, 4, 1, 2)
    with torch.no_grad():
        before = model(x).clone()
        assert model(x).equal(before)
        model.linears[1].targets.add_(1.0)
        after = model(x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, model.to_weight_space()(x))


def test_state_dict_round_trip() -> None:
    x = torch.randn(20, 1, 6, 6, generator=_gen())
    build = lambda: TargetSpaceSequential(  # noqa: E731
        x, [TargetConv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), TargetLinear(32, 3)])
    a, b = build(), build()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(b(x[:3]), a(x[:3]))
