"""Input-output Jacobian singular values, and the additive-filter bound at depth >= 1000.

Bound (derived in docs/methods/orthogonal.md): the layer Jacobian is ``a O + b D_l W_l`` with
``O`` orthogonal and ``||D_l|| <= 1``, so by Weyl's inequality its singular values lie in
``[a - b ||W_l||, a + b ||W_l||]`` and the product's in
``[prod_l (a - b ||W_l||), prod_l (a + b ||W_l||)]``.
"""

from __future__ import annotations

import math

import torch

from signalprop.diagnostics.jacobian import (
    input_output_jacobian,
    jacobian_singular_values,
    spectrum_summary,
)
from signalprop.nn.orthogonal import AdditiveFilterStack


def test_linear_map_singular_values_are_exact():
    torch.manual_seed(0)
    a = torch.randn(5, 7, dtype=torch.float64)
    x = torch.randn(3, 7, dtype=torch.float64)
    for mode in ("rev", "fwd"):
        jac = input_output_jacobian(lambda v: v @ a.T, x, mode=mode)
        assert torch.allclose(jac, a.expand(3, 5, 7))
    values = jacobian_singular_values(lambda v: v @ a.T, x, reduce="mean")
    assert torch.allclose(values, torch.linalg.svdvals(a))


def test_nonlinear_jacobian_matches_finite_differences():
    torch.manual_seed(0)
    w = torch.randn(4, 4, dtype=torch.float64)
    x = torch.randn(2, 4, dtype=torch.float64)

    def f(v):
        return torch.tanh(v @ w.T)

    jac = input_output_jacobian(f, x)
    eps = 1e-6
    for i in range(4):
        e = torch.zeros(4, dtype=torch.float64)
        e[i] = eps
        column = (f(x + e) - f(x - e)) / (2 * eps)
        assert torch.allclose(jac[:, :, i], column, atol=1e-8)


def _bounds(stack: AdditiveFilterStack) -> tuple[float, float]:
    norms = stack.layer_weight_norms().double()
    lower = float(torch.log(stack.a - stack.b * norms).sum().exp())
    upper = float(torch.log(stack.a + stack.b * norms).sum().exp())
    return lower, upper


def test_filter_mlp_jacobian_within_bound_at_depth_1000_and_tanh_mlp_not():
    torch.manual_seed(0)
    depth, width = 1000, 16
    x = torch.randn(4, width, dtype=torch.float64)
    stack = AdditiveFilterStack(width, depth, checkpoint=False).double()  # b = 1 / depth
    values = jacobian_singular_values(stack, x, mode="fwd").detach()
    lower, upper = _bounds(stack)
    assert lower <= float(values.min()) and float(values.max()) <= upper
    # the bound itself is depth independent: [e^{-c(1+w)}, e^{c(w-1)}] with c = b L = 1
    w = float(stack.layer_weight_norms().max())
    assert lower >= math.exp(-(1 + w)) * 0.99 and upper <= math.exp(w - 1) * 1.01
    assert spectrum_summary(values)["condition"] < 100

    plain = AdditiveFilterStack(width, depth, skip="none", checkpoint=False).double()
    plain_values = jacobian_singular_values(plain, x, mode="fwd").detach()
    assert float(plain_values.max()) < 1e-3 * lower  # vanishes far below the bound

    chaotic = AdditiveFilterStack(width, depth, skip="none", gain=4.0,
                                  checkpoint=False).double()
    assert float(jacobian_singular_values(chaotic, x, mode="fwd").detach().max()) > 1e3 * upper
