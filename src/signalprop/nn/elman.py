"""A plain Elman RNN with any smooth activation, and a last-step readout for classification.

``h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`` (Elman 1990). The parameter names, shapes and
calling convention (``forward(x, h0=None) -> (output, h_n)``, ``h_n`` of shape (1, N, H)) follow
``torch.nn.RNN`` with one layer, so code written for ``nn.RNN`` (the sensitivity hooks, the
Lyapunov step function) works for both. Unlike ``nn.RNN`` the activation may be any of
:data:`RNN_ACTIVATIONS`, including the shifted sigmoid ``1/(1+e^-U) - 0.5`` that Shibata et al.
(arXiv 2012.13134) use.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from signalprop.errors import ConfigError
from signalprop.nn.activations import (
    ACTIVATIONS,
    ShiftedSigmoid,  # noqa: F401 - re-exported
    require_activation,
    shifted_sigmoid,  # noqa: F401 - re-exported
)
from signalprop.nn.readout import LastStepClassifier  # noqa: F401 - re-exported

#: The activations an :class:`ElmanRNN` accepts, name -> function (definitions and derivatives
#: in :mod:`signalprop.nn.activations`).
RNN_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    name: ACTIVATIONS[name].function
    for name in ("tanh", "shifted_sigmoid", "sigmoid", "relu", "softsign")
}


class ElmanRNN(nn.Module):
    """One-layer Elman RNN, batch-first by default, with the ``torch.nn.RNN`` interface.

    Weights are drawn from ``N(0, gain^2 / fan_in)`` separately for ``W_ih`` (fan-in
    ``input_size``) and ``W_hh`` (fan-in ``hidden_size``), biases are zero; ``gain`` is therefore
    the approximate spectral radius of ``W_hh``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = True,
        gain: float = 1.0,
        input_gain: float = 1.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"ElmanRNN {name} must be a positive integer, got {value!r}")
        require_activation("ElmanRNN", "nonlinearity", nonlinearity, sorted(RNN_ACTIVATIONS))
        for name, value in (("gain", gain), ("input_gain", input_gain)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"ElmanRNN {name} must be a finite number >= 0, got {value!r}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.nonlinearity, self.bias, self.batch_first = nonlinearity, bias, batch_first
        self.num_layers, self.bidirectional = 1, False
        self.gain, self.input_gain = float(gain), float(input_gain)
        kw = {"device": device, "dtype": dtype}
        self.weight_ih_l0 = nn.Parameter(torch.empty(hidden_size, input_size, **kw))
        self.weight_hh_l0 = nn.Parameter(torch.empty(hidden_size, hidden_size, **kw))
        if bias:
            self.bias_ih_l0 = nn.Parameter(torch.empty(hidden_size, **kw))
            self.bias_hh_l0 = nn.Parameter(torch.empty(hidden_size, **kw))
        else:
            self.register_parameter("bias_ih_l0", None)
            self.register_parameter("bias_hh_l0", None)
        self.reset_parameters()

    @property
    def activation(self) -> Callable[[Tensor], Tensor]:
        return RNN_ACTIVATIONS[self.nonlinearity]

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight_ih_l0.normal_(0.0, self.input_gain / math.sqrt(self.input_size))
            self.weight_hh_l0.normal_(0.0, self.gain / math.sqrt(self.hidden_size))
            if self.bias_ih_l0 is not None:
                self.bias_ih_l0.zero_()
                self.bias_hh_l0.zero_()

    def cell(self, x_t: Tensor, h: Tensor) -> Tensor:
        """One step: ``f(W_ih x_t + b_ih + W_hh h + b_hh)`` for x_t (N, I), h (N, H)."""
        u = nn.functional.linear(x_t, self.weight_ih_l0, self.bias_ih_l0)
        u = u + nn.functional.linear(h, self.weight_hh_l0, self.bias_hh_l0)
        return self.activation(u)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (N, T, I) if batch_first else (T, N, I); h0 (1, N, H). Returns (output, h_n)."""
        if x.dim() != 3:
            raise ConfigError(f"ElmanRNN expects a 3-d input, got shape {tuple(x.shape)}")
        seq = x.transpose(0, 1) if self.batch_first else x
        h = seq.new_zeros(seq.shape[1], self.hidden_size) if h0 is None else h0[0]
        # The input projection of every step at once; the recurrence stays a Python loop.
        drive = nn.functional.linear(seq, self.weight_ih_l0, self.bias_ih_l0)
        outputs = []
        for t in range(seq.shape[0]):
            h = self.activation(drive[t] + nn.functional.linear(h, self.weight_hh_l0,
                                                                self.bias_hh_l0))
            outputs.append(h)
        out = torch.stack(outputs, 0)
        if self.batch_first:
            out = out.transpose(0, 1)
        return out, h.unsqueeze(0)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}, "
                f"bias={self.bias}, batch_first={self.batch_first}, gain={self.gain}")
