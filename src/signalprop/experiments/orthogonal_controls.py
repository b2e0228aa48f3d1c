"""Controls for the deep additive-filter MLP (Ceni, arXiv 2210.01245): models without depth.

The filter net computes ``h_{l+1} = a O h_l + b tanh(W_l h_l + c_l)``. Without the nonlinear
branch it is the fixed linear map ``h_L = a^L O^L h_0``, so its input-to-output function is a
linear classifier of rank ``width``. If the deep net is no better than that rotation net (or than
logistic regression on the inputs), its depth did no work.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from signalprop.nn.orthogonal import AdditiveFilterMLP, AdditiveFilterStack


def linear_part(stack: AdditiveFilterStack) -> Tensor:
    """The stack with its nonlinear branch removed, as one matrix: ``a^L O^L`` (or ``I``)."""
    if stack.skip == "none":
        return torch.zeros(stack.width, stack.width, dtype=stack.weight.dtype)
    if stack.skip == "identity":
        return torch.eye(stack.width, dtype=stack.weight.dtype)
    power = torch.linalg.matrix_power(stack.filter.detach().double(), stack.depth)
    return (power * stack.a ** stack.depth).to(stack.weight.dtype)


class RotationControl(nn.Module):
    """``y = R (a^L O^L) P x``: the filter net's input ``P``, filter and readout ``R``, without the
    nonlinear branch. ``P`` and ``R`` train; the middle is a fixed buffer."""

    def __init__(self, filter_net: AdditiveFilterMLP) -> None:
        super().__init__()
        self.input, self.head = filter_net.input, filter_net.head
        self.register_buffer("rotation", linear_part(filter_net.stack))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.input(x.flatten(1)) @ self.rotation.t())


class LogisticRegression(nn.Module):
    """Multinomial logistic regression on the flattened inputs."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.flatten(1))


@torch.no_grad()
def nonlinear_share(model: AdditiveFilterMLP, x: Tensor) -> float:
    """How much of the stack's output the nonlinear branches make: ``||h_L - M h_0|| / ||h_L||``
    with ``M`` the stack's :func:`linear_part`, on the batch ``x`` (1.0 for a plain MLP)."""
    h0 = model.input(x.flatten(1))
    h_final = model.stack(h0)
    linear = h0 @ linear_part(model.stack).to(h0).t()
    return float(torch.linalg.vector_norm(h_final - linear)
                 / torch.linalg.vector_norm(h_final).clamp_min(1e-30))
