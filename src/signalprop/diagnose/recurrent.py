"""Largest Lyapunov exponent of a recurrent module along one example's trajectory.

The exponent ``lambda_1 = lim (1/T) ln ||J_T ... J_1 v||`` (``J_t = dh_t / dh_{t-1}``) is the
average per-step log growth of gradients through time: ``lambda_1 > 0`` means they explode,
``lambda_1 << 0`` that they vanish after about ``1 / |lambda_1|`` steps. It is computed with
:func:`signalprop.diagnostics.lyapunov.largest_lyapunov_exponent` (tangent propagation by
``torch.func.jvp``) from a step function ``F(h, x)`` built here for ``nn.RNN`` (one layer:
:func:`~signalprop.diagnostics.lyapunov.rnn_step_function`),
:class:`signalprop.nn.elman.ElmanRNN`, ``nn.GRU``, ``nn.LSTM`` (state ``[h, c]``) and
:class:`signalprop.nn.orthogonal_rnn.AdditiveFilterRNN`. Stacked RNNs use their first layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from signalprop.diagnostics.lyapunov import (
    StepFn,
    largest_lyapunov_exponent,
    rnn_step_function,
)
from signalprop.nn.activations import get_activation
from signalprop.nn.elman import ElmanRNN
from signalprop.nn.orthogonal_rnn import AdditiveFilterRNN

#: At most this many time steps of the trajectory are used; the first quarter (at most
#: :data:`MAX_WARMUP`) aligns the tangent vector and is not averaged.
MAX_STEPS = 400
MAX_WARMUP = 100


def is_recurrent(module: nn.Module) -> bool:
    return isinstance(module, nn.RNNBase | ElmanRNN | AdditiveFilterRNN)


def _first_layer(module: nn.Module, name: str) -> Tensor | None:
    return getattr(module, f"{name}_l0", None)


def _gru_step(rnn: nn.GRU) -> StepFn:
    w_ih, w_hh = rnn.weight_ih_l0, rnn.weight_hh_l0
    b_ih, b_hh = _first_layer(rnn, "bias_ih"), _first_layer(rnn, "bias_hh")

    def step(h: Tensor, x: Tensor) -> Tensor:
        gi = F.linear(x, w_ih, b_ih).chunk(3)
        gh = F.linear(h, w_hh, b_hh).chunk(3)
        reset = torch.sigmoid(gi[0] + gh[0])
        update = torch.sigmoid(gi[1] + gh[1])
        new = torch.tanh(gi[2] + reset * gh[2])
        return (1 - update) * new + update * h

    return step


def _lstm_step(rnn: nn.LSTM) -> StepFn:
    w_ih, w_hh = rnn.weight_ih_l0, rnn.weight_hh_l0
    b_ih, b_hh = _first_layer(rnn, "bias_ih"), _first_layer(rnn, "bias_hh")
    size = rnn.hidden_size

    def step(state: Tensor, x: Tensor) -> Tensor:
        h, c = state[:size], state[size:]
        gates = (F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)).chunk(4)
        i, f, g, o = (torch.sigmoid(gates[0]), torch.sigmoid(gates[1]), torch.tanh(gates[2]),
                      torch.sigmoid(gates[3]))
        c = f * c + i * g
        return torch.cat([o * torch.tanh(c), c])

    return step


def _filter_step(rnn: AdditiveFilterRNN) -> StepFn:
    cell = rnn.cell

    def step(h: Tensor, x: Tensor) -> Tensor:
        return cell(x.unsqueeze(0), h.unsqueeze(0)).squeeze(0)

    return step


def step_function(module: nn.Module) -> tuple[StepFn, int]:
    """``(F(h, x), state size)`` of a recurrent module's first layer."""
    if isinstance(module, AdditiveFilterRNN):
        return _filter_step(module), module.cell.hidden_size
    if isinstance(module, nn.LSTM):
        if getattr(module, "proj_size", 0):
            raise ValueError("LSTM with proj_size is not supported")
        return _lstm_step(module), 2 * module.hidden_size
    if isinstance(module, nn.GRU):
        return _gru_step(module), module.hidden_size
    if isinstance(module, nn.RNN | ElmanRNN):
        if getattr(module, "num_layers", 1) == 1 and not getattr(module, "bidirectional", False):
            return rnn_step_function(module), module.hidden_size
        return _stacked_rnn_first_layer(module), module.hidden_size
    raise ValueError(f"no step function for {type(module).__name__}")


def _stacked_rnn_first_layer(rnn: nn.Module) -> StepFn:
    act = get_activation(rnn.nonlinearity).function
    w_ih, w_hh = rnn.weight_ih_l0, rnn.weight_hh_l0
    b_ih, b_hh = _first_layer(rnn, "bias_ih"), _first_layer(rnn, "bias_hh")

    def step(h: Tensor, x: Tensor) -> Tensor:
        return act(F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh))

    return step


def sequence_of_first_example(module: nn.Module, inputs: Tensor) -> Tensor:
    """The first example's input sequence (T, I) from a recurrent module's call argument."""
    if inputs.dim() == 2:  # unbatched (T, I)
        return inputs
    batch_first = getattr(module, "batch_first", False)
    return inputs[0] if batch_first else inputs[:, 0]


@torch.no_grad()
def largest_exponent(module: nn.Module, sequence: Tensor) -> float:
    """``lambda_1`` (per step, natural log) along the sequence (T, I), zero initial state."""
    step, size = step_function(module)
    sequence = sequence[:MAX_STEPS].detach()
    warmup = min(MAX_WARMUP, sequence.shape[0] // 4)
    h0 = sequence.new_zeros(size)
    generator = torch.Generator().manual_seed(0)
    return largest_lyapunov_exponent(step, h0, sequence, warmup=warmup, generator=generator)
