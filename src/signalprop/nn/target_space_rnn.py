"""A recurrent network in target space (arXiv 2006.01578, section 5.4 and the authors' scripts).

The Elman network ``h_t = tanh(W_ih x_t + W_hh h_{t-1} + b)``, ``y_t = W_out h_t + c`` is
parameterised by targets for the recurrent sums on every step of ``n_bar`` realisation
sequences, ``T_rec`` (n_bar, T_bar, hidden), and for the output sums, ``T_out``
(n_bar * T_bar, out). The solve is the paper's hybrid:

* recurrent layer, OCU: the inputs ``[1, x_t, tanh(T_rec[t-1])]`` of every step and sequence
  are stacked and one ridge solve gives ``[b; W_ih; W_hh]`` (``h_{-1} = 0``);
* output layer, SCU (default): the hidden states are realised with the solved recurrent
  weights, then the output weights are solved from them. ``mode="ocu"`` uses
  ``tanh(T_rec)`` instead.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from signalprop.errors import ConfigError
from signalprop.nn.target_space import TargetLayer, TargetSpaceModule, Weights, solve_affine


class WeightSpaceElmanRNN(nn.Module):
    """Weight-space tanh RNN with a linear read-out at every step, (N, T, in) -> (N, T, out):
    what :class:`TargetSpaceRNN` exports to and imports from. (The general Elman network of
    the other methods is :class:`signalprop.nn.elman.ElmanRNN`.)"""

    def __init__(self, input_size: int, hidden_size: int, output_size: int,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("output_size", output_size)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True, nonlinearity="tanh",
                          device=device, dtype=dtype)
        self.head = nn.Linear(hidden_size, output_size, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.rnn(x)[0])

    def extra_repr(self) -> str:
        return "h_t = tanh(W_ih x_t + W_hh h_(t-1) + b), y_t = W_out h_t + c"


#: The former name, kept only until ``experiments/target_space.py`` (being rewritten for issue 26)
#: imports :class:`WeightSpaceElmanRNN`; the general Elman network is ``nn.elman.ElmanRNN``.
ElmanRNN = WeightSpaceElmanRNN


class _RecurrentTargets(TargetLayer):
    """Targets (n_bar, T_bar, hidden) for the recurrent sums; design rows [x_t, tanh(T_{t-1})]."""

    def __init__(self, input_size: int, hidden_size: int, **factory: Any) -> None:
        super().__init__(**factory)
        self.input_size, self.out_features = input_size, hidden_size

    def design(self, a_bar: Tensor) -> Tensor:
        previous = torch.tanh(self.targets[:, :-1]) if self.targets.dim() == 3 else None
        if previous is None:  # before targets exist only the row count matters
            previous = a_bar.new_zeros(a_bar.shape[0], a_bar.shape[1] - 1, self.out_features)
        h_prev = torch.cat([a_bar.new_zeros(a_bar.shape[0], 1, self.out_features), previous], 1)
        return torch.cat([a_bar, h_prev], 2).reshape(-1, self.input_size + self.out_features)

    def init_targets(self, a_bar: Tensor, std: float) -> None:
        values = torch.empty(*a_bar.shape[:2], self.out_features, dtype=a_bar.dtype,
                             device=a_bar.device)
        nn.init.trunc_normal_(values, std=std, a=-2 * std, b=2 * std)
        self.targets = nn.Parameter(values)

    def solve(self, a_bar: Tensor, ridge: float, regularise_bias: bool) -> tuple[Tensor, Tensor]:
        weight, bias = solve_affine(self.design(a_bar), self.targets.reshape(-1, self.out_features),
                                    ridge, regularise_bias=regularise_bias, layer=self.label)
        return weight, bias


class _OutputTargets(TargetLayer):
    def __init__(self, hidden_size: int, output_size: int, **factory: Any) -> None:
        super().__init__(**factory)
        self.out_features = output_size

    def design(self, a_bar: Tensor) -> Tensor:
        return a_bar.reshape(-1, a_bar.shape[-1])


def run_tanh_rnn(x: Tensor, w_ih: Tensor, w_hh: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """Hidden states and sums of ``h_t = tanh(x_t W_ih^T + h_{t-1} W_hh^T + b)``, h_{-1} = 0."""
    drive = F.linear(x, w_ih, bias)
    h = x.new_zeros(x.shape[0], w_hh.shape[0])
    states, sums = [], []
    for t in range(x.shape[1]):
        z = drive[:, t] + F.linear(h, w_hh)
        h = torch.tanh(z)
        states.append(h)
        sums.append(z)
    return torch.stack(states, 1), torch.stack(sums, 1)


class TargetSpaceRNN(TargetSpaceModule):
    """Elman RNN in target space, trained through targets on realisation sequences ``x_bar``.

    ``x_bar`` is (n_bar, T_bar, input_size); training sequences may be longer than ``T_bar``.
    Paper defaults for the bit-sequence task: lambda = 0.1 in its d = 90 run (0.001 in the
    script default), SCU hybrid, truncated-normal targets with std 1, projected.
    """

    def __init__(
        self, x_bar: Tensor, hidden_size: int, output_size: int, *, ridge: float = 0.1,
        mode: str = "scu", regularise_bias: bool = True, init_std: float = 1.0,
        project: bool = True, device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(x_bar, ridge=ridge, mode=mode, regularise_bias=regularise_bias,
                         init_std=init_std, project=project, device=device, dtype=dtype)
        if self.x_bar.dim() != 3:
            raise ConfigError(f"x_bar must be (n_bar, T_bar, input_size), got "
                              f"{tuple(self.x_bar.shape)}")
        for name, value in (("hidden_size", hidden_size), ("output_size", output_size)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        self.input_size = self.x_bar.shape[2]
        self.hidden_size, self.output_size = hidden_size, output_size
        factory = {"device": self.x_bar.device, "dtype": self.x_bar.dtype}
        self.recurrent = _RecurrentTargets(self.input_size, hidden_size, **factory)
        self.output = _OutputTargets(hidden_size, output_size, **factory)
        self._name_layers()
        self.reset_parameters()

    def solve_weights(
        self, *, realised: list[Tensor] | None = None, init_std: float | None = None
    ) -> Weights:
        if init_std is not None:
            self.recurrent.init_targets(self.x_bar, init_std)
        weight, bias = self.recurrent.solve(self.x_bar, self.ridge, self.regularise_bias)
        w_ih, w_hh = weight[:, : self.input_size], weight[:, self.input_size:]
        need_states = realised is not None or self.mode == "scu"
        if need_states:
            states, sums = run_tanh_rnn(self.x_bar, w_ih, w_hh, bias)
        if self.mode == "ocu":
            states = torch.tanh(self.recurrent.targets)
        if init_std is not None:
            self.output.init_targets(states, init_std)
        out_weight, out_bias = self.output.solve(states, self.ridge, self.regularise_bias)
        if realised is not None:
            realised.append(sums)
            realised.append(self.output.design(F.linear(states, out_weight, out_bias)))
        return [(weight, bias), (out_weight, out_bias)]

    def apply_weights(self, x: Tensor, weights: Weights) -> Tensor:
        (weight, bias), (out_weight, out_bias) = weights
        states, _ = run_tanh_rnn(x, weight[:, : self.input_size], weight[:, self.input_size:], bias)
        return F.linear(states, out_weight, out_bias)

    def export(self, weights: Weights) -> WeightSpaceElmanRNN:
        (weight, bias), (out_weight, out_bias) = weights
        plain = WeightSpaceElmanRNN(self.input_size, self.hidden_size, self.output_size)
        plain = plain.to(dtype=weight.dtype, device=weight.device)
        plain.rnn.weight_ih_l0.data.copy_(weight[:, : self.input_size])
        plain.rnn.weight_hh_l0.data.copy_(weight[:, self.input_size:])
        plain.rnn.bias_ih_l0.data.copy_(bias)
        plain.rnn.bias_hh_l0.data.zero_()
        plain.head.weight.data.copy_(out_weight)
        plain.head.bias.data.copy_(out_bias)
        return plain

    @classmethod
    def from_weight_space(cls, module: WeightSpaceElmanRNN, x_bar: Tensor,
                          **options) -> TargetSpaceRNN:
        """Import a :class:`WeightSpaceElmanRNN`: targets = its recurrent and output sums on
        ``x_bar``."""
        project = options.pop("project", True)
        rnn = module.rnn
        imported = cls(x_bar, rnn.hidden_size, module.head.out_features, project=False, **options)
        with torch.no_grad():
            states, sums = run_tanh_rnn(imported.x_bar, rnn.weight_ih_l0, rnn.weight_hh_l0,
                                        rnn.bias_ih_l0 + rnn.bias_hh_l0)
            imported.recurrent.targets.copy_(sums)
            imported.output.targets.copy_(imported.output.design(module.head(states)))
        imported.project = project
        imported._cache = None
        return imported

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"output_size={self.output_size}, " + super().extra_repr())
