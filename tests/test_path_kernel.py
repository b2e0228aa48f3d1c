"""Neural path kernel against brute-force path enumeration, and E[value NTK] ∝ NPK."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from signalprop.diagnostics.path_kernel import (
    condition_number,
    expected_value_ntk_scale,
    gate_overlap,
    kernel_spectrum,
    label_alignment,
    mean_off_diagonal,
    normalised_kernel,
    normalised_path_kernel,
    ntk,
    path_kernel,
)
from signalprop.errors import ConfigError
from signalprop.nn.gated import gated_mlp


def _paths(model, x):
    """Brute force: every path's feature φ_x(p) and value v(p), enumerated one by one."""
    gates = [g.double() for g in model.gates(x)]
    v_in = model.value_input_of(x).double()
    weights = [layer.weight.double() for layer in model.value_layers] + [
        model.head.weight.double()]
    dims = [v_in.shape[1]] + [g.shape[1] for g in gates]
    feats, values = [], []
    for path in itertools.product(*(range(d) for d in dims)):
        phi = v_in[:, path[0]].clone()
        for layer, unit in enumerate(path[1:]):
            phi = phi * gates[layer][:, unit]
        value = torch.ones(model.head.weight.shape[0], dtype=torch.float64)
        for layer in range(len(path) - 1):
            value = value * weights[layer][path[layer + 1], path[layer]]
        value = value * weights[-1][:, path[-1]]
        feats.append(phi)
        values.append(value)
    return torch.stack(feats, 1), torch.stack(values, 0)  # (N, P), (P, C)


@pytest.mark.parametrize("variant", ["relu", "frnpf-di", "dlnpf", "dlgn"])
def test_path_kernel_equals_brute_force_enumeration(variant):
    torch.manual_seed(1)
    model = gated_mlp(variant, 3, 4, 3, 2, bias=False, init="gaussian")
    x, x2 = torch.randn(5, 3), torch.randn(4, 3)
    with torch.no_grad():
        phi, value = _paths(model, x)
        phi2, _ = _paths(model, x2)
        assert phi.shape[1] == 3 * 4**3
        torch.testing.assert_close(path_kernel(model, x), phi @ phi.T, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(path_kernel(model, x, x2), phi @ phi2.T, rtol=1e-5,
                                   atol=1e-5)
        # the output is the inner product of path features and path values
        torch.testing.assert_close(model(x).double(), phi @ value, rtol=1e-4, atol=1e-5)


def test_path_kernel_constant_one_input():
    torch.manual_seed(2)
    model = gated_mlp("dlgn", 3, 3, 2, 1, bias=False, value_input="ones")
    x = torch.randn(4, 3)
    with torch.no_grad():
        phi, value = _paths(model, x)
        torch.testing.assert_close(path_kernel(model, x), phi @ phi.T)
        torch.testing.assert_close(path_kernel(model, x), 3 * gate_overlap(model.gates(x)))
        torch.testing.assert_close(model(x).double(), phi @ value, rtol=1e-4, atol=1e-5)


def test_normalised_path_kernel_in_log_domain():
    torch.manual_seed(8)
    model = gated_mlp("frnpf-di", 6, 8, 3, 2)
    x = torch.randn(7, 6)
    torch.testing.assert_close(normalised_path_kernel(model, x),
                               normalised_kernel(path_kernel(model, x)))
    deep = gated_mlp("frnpf-di", 6, 64, 400, 2, init="gaussian", bias=False)
    assert not torch.isfinite(path_kernel(deep, x)).all()  # (~32)^400 overflows float64
    nk = normalised_path_kernel(deep, x)
    assert torch.isfinite(nk).all()
    torch.testing.assert_close(nk.diagonal(), torch.ones(7, dtype=torch.float64))


def test_gate_overlap_counts_shared_active_paths():
    g1 = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    g2 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    overlap = gate_overlap([g1, g2])
    assert overlap.tolist() == [[2.0, 1.0], [1.0, 4.0]]


def _draw_value_weights(model, kind, stds):
    with torch.no_grad():
        for layer, std in zip([*model.value_layers, model.head], stds, strict=True):
            if kind == "bernoulli":
                layer.weight.copy_((torch.randint(0, 2, layer.weight.shape) * 2 - 1) * std)
            else:
                layer.weight.normal_(0.0, std)


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian"])
def test_expected_value_ntk_is_proportional_to_path_kernel(kind):
    """E[Kᵛ] = (Π σ_l²)(Σ σ_l⁻²) H for fixed gates, checked within 4 Monte-Carlo std errors."""
    torch.manual_seed(3)
    model = gated_mlp("frnpf-di", 4, 8, 2, 1, bias=False, init=kind)
    x = torch.randn(5, 4)
    stds = model.value_init_stds()
    assert stds == pytest.approx([math.sqrt(2 / 4), math.sqrt(2 / 8), math.sqrt(2 / 8)])
    expected = expected_value_ntk_scale(stds) * path_kernel(model, x)
    draws = []
    for _ in range(1000):
        _draw_value_weights(model, kind, stds)
        draws.append(ntk(model, x))
    draws = torch.stack(draws)
    mean, sem = draws.mean(0), draws.std(0) / math.sqrt(draws.shape[0])
    assert (path_kernel(model, x).diagonal() > 0).all()
    assert ((mean - expected).abs() <= 4 * sem + 1e-6).all()
    # the test has power: a 25% wrong scale is far outside the Monte-Carlo error
    assert ((mean - 1.25 * expected).abs() > 4 * sem).any()


def test_expected_scale_equal_stds():
    assert expected_value_ntk_scale([0.5] * 4) == pytest.approx(4 * 0.5 ** 6)
    with pytest.raises(ConfigError):
        expected_value_ntk_scale([])


def test_ntk_matches_autograd_gradients():
    torch.manual_seed(4)
    model = gated_mlp("dlnpf", 3, 5, 2, 2)
    x = torch.randn(3, 3)
    names = list(model.value_parameters())
    kernel = ntk(model, x)
    params = [dict(model.named_parameters())[n] for n in names]
    grads = []
    for i in range(3):
        per_output = []
        for c in range(2):
            g = torch.autograd.grad(model(x[i : i + 1])[0, c], params)
            per_output.append(torch.cat([t.flatten() for t in g]))
        grads.append(torch.stack(per_output))
    grads = torch.stack(grads)  # (N, C, P)
    manual = torch.einsum("acp,bcp->ab", grads, grads) / 2
    torch.testing.assert_close(kernel, manual, rtol=1e-5, atol=1e-6)
    full = ntk(model, x, params=[n for n, _ in model.named_parameters()])
    assert (full.diagonal() > kernel.diagonal()).all()  # feature weights add to the NTK
    with pytest.raises(ConfigError):
        ntk(model, x, params=["nope"])


def test_label_alignment_and_spectrum():
    torch.manual_seed(5)
    a = torch.randn(6, 6)
    kernel = a @ a.T + 0.5 * torch.eye(6)
    y = torch.randn(6)
    normalised = kernel / kernel.trace()
    direct = float(y @ torch.linalg.inv(normalised.double()).float() @ y)
    assert label_alignment(kernel, y, ridge=0.0) == pytest.approx(direct, rel=1e-4)
    assert label_alignment(kernel, y) == pytest.approx(direct, rel=1e-3)
    # labels along the top eigenvector are better aligned (smaller ν) than along the bottom
    eigval, eigvec = torch.linalg.eigh(kernel)
    assert label_alignment(kernel, eigvec[:, -1]) < label_alignment(kernel, eigvec[:, 0])
    assert label_alignment(kernel, torch.stack([y, y], 1)) == pytest.approx(2 * direct, rel=1e-3)
    nk = normalised_kernel(kernel)
    torch.testing.assert_close(nk.diagonal(), torch.ones(6))
    spectrum = kernel_spectrum(kernel)
    assert (spectrum[:-1] >= spectrum[1:]).all()
    assert float(spectrum.sum()) == pytest.approx(6.0, rel=1e-5)
    assert condition_number(kernel) == pytest.approx(float(spectrum[0] / spectrum[-1]), rel=1e-5)
    assert mean_off_diagonal(torch.eye(4)) == 0.0
    assert mean_off_diagonal(torch.ones(4, 4)) == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        label_alignment(kernel, torch.randn(5))
