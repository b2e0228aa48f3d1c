"""A linear readout of a recurrent layer's final state, for sequence classification."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from signalprop.errors import ConfigError


class LastStepClassifier(nn.Module):
    """``y = W_out (scale * h_T) + b_out`` on the last layer's final state of a batch-first RNN.

    Works with anything following the ``torch.nn.RNN`` convention ``forward(x) -> (output,
    h_n)`` or ``(output, (h_n, c_n))``: ``nn.RNN``, ``nn.LSTM``, :class:`~signalprop.nn.elman.
    ElmanRNN`, :class:`~signalprop.nn.orthogonal_rnn.AdditiveFilterRNN`. ``scale`` rescales the
    state before the head (the additive-filter state's natural scale is ``b``, so reading
    ``h_T / b`` helps). Reading ``h_n`` rather than ``output[:, -1]`` leaves the full output
    unused, which the additive filter's hand-written BPTT turns into a cheaper backward.
    """

    def __init__(self, rnn: nn.Module, out_features: int, scale: float = 1.0,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if not getattr(rnn, "batch_first", False):
            raise ConfigError("LastStepClassifier needs a batch_first RNN "
                              "(construct it with batch_first=True)")
        hidden = getattr(rnn, "hidden_size", None)
        if not isinstance(hidden, int):
            raise ConfigError(f"LastStepClassifier needs an RNN with an int hidden_size, got "
                              f"{type(rnn).__name__}")
        self.rnn = rnn
        self.scale = float(scale)
        self.head = nn.Linear(hidden, out_features, device=device, dtype=dtype)

    def extra_repr(self) -> str:
        return f"scale={self.scale:.6g}"

    def forward(self, x: Tensor) -> Tensor:
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state
        last = h_n[-1]
        return self.head(last * self.scale if self.scale != 1.0 else last)
