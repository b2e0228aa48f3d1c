"""Long Expressive Memory (LEM; Rusch, Mishra, Erichson & Mahoney, "Long Expressive Memory for
Sequence Modeling", ICLR 2022, arXiv 2110.04744).

LEM discretises a system of two multiscale ODEs. With input ``u_n`` and states ``y``, ``z``::

    Δt_n  = Δt · σ(W_1 y_{n-1} + V_1 u_n + b_1)
    Δt̄_n  = Δt · σ(W_2 y_{n-1} + V_2 u_n + b_2)
    z_n   = (1 − Δt_n) ⊙ z_{n-1} + Δt_n ⊙ tanh(W_z y_{n-1} + V_z u_n + b_z)
    y_n   = (1 − Δt̄_n) ⊙ y_{n-1} + Δt̄_n ⊙ tanh(W_y z_n + V_y u_n + b_y)

``σ`` is the logistic sigmoid and ``Δt`` a fixed maximal step. The learnt time steps
``Δt_n, Δt̄_n ∈ (0, Δt)`` give each unit its own time scale, which is what lets LEM learn the
adding problem at T = 10,000. signalprop uses it as the positive control of the long-memory
experiments: a model known to solve the task, run in the same harness.

Layout: the four input maps ``[V_1; V_2; V_y; V_z]`` are one ``Linear(input, 4 n)`` applied
to all steps at once, the three state maps ``[W_1; W_2; W_z]`` one ``Linear(n, 3 n)``, and
``W_y`` its own ``Linear(n, n)``; every weight and bias starts uniform in ``±1/sqrt(n)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from signalprop.config import require_int
from signalprop.errors import ConfigError
from signalprop.nn.cell_layer import CellLayer
from signalprop.nn.precision import autocast_off, float32_inputs

__all__ = ["LEM", "LEMCell"]


class LEMCell(nn.Module):
    """One LEM step ``(y, z) -> (y', z')`` (equations in the module docstring)."""

    def __init__(self, input_size: int, hidden_size: int, dt: float = 1.0,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.input_size = require_int("LEMCell", "input_size", input_size)
        self.hidden_size = require_int("LEMCell", "hidden_size", hidden_size)
        if not (isinstance(dt, int | float) and 0 < dt <= 1):
            raise ConfigError(f"LEMCell dt must be in (0, 1], got {dt!r}")
        self.dt = float(dt)
        factory = {"device": device, "dtype": dtype}
        self.input_maps = nn.Linear(input_size, 4 * hidden_size, **factory)
        self.state_maps = nn.Linear(hidden_size, 3 * hidden_size, **factory)
        self.z_to_y = nn.Linear(hidden_size, hidden_size, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-bound, bound)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, dt={self.dt:g}"

    def step(self, projected: Tensor, y: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """One step from the input's projection ``input_maps(u_n)`` (B, 4n)."""
        u_dt, u_dt_bar, u_y, u_z = projected.chunk(4, dim=-1)
        s_dt, s_dt_bar, s_z = self.state_maps(y).chunk(3, dim=-1)
        dt = self.dt * torch.sigmoid(u_dt + s_dt)
        dt_bar = self.dt * torch.sigmoid(u_dt_bar + s_dt_bar)
        z = torch.lerp(z, torch.tanh(u_z + s_z), dt)
        y = torch.lerp(y, torch.tanh(self.z_to_y(z) + u_y), dt_bar)
        return y, z

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, Tensor]:
        """``(y', z')`` from ``x`` (B, input_size) and ``(y, z)`` (zeros if None); float32
        under autocast, like the sequence layer."""
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        device_type = x.device.type
        if torch.is_autocast_enabled(device_type):
            with autocast_off(device_type):
                x, y, z = float32_inputs(device_type, x, *state)
                return self.step(self.input_maps(x), y, z)
        return self.step(self.input_maps(x), *state)


class LEM(CellLayer):
    """A single-layer LEM over a sequence, with the ``torch.nn.LSTM`` calling convention.

    ``forward(input, (y0, z0)=None) -> (output, (y_n, z_n))``: input ``(B, T, input_size)``
    when ``batch_first`` (default) else ``(T, B, input_size)``; ``output`` holds every ``y_t``;
    ``y0, z0, y_n, z_n`` have shape ``(1, B, hidden_size)``. The input maps of all steps are one
    matrix product before the loop. Under autocast the recurrence runs in float32 (see
    :mod:`signalprop.nn.precision`). Works with
    :class:`~signalprop.nn.readout.LastStepClassifier`.
    """

    def __init__(self, input_size: int, hidden_size: int, dt: float = 1.0,
                 batch_first: bool = True, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.cell = LEMCell(input_size, hidden_size, dt, device=device, dtype=dtype)
        self.batch_first = bool(batch_first)

    def forward(self, input: Tensor, state: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if input.dim() != 3:
            raise ValueError(f"LEM expects a 3-d input, got shape {tuple(input.shape)}")
        device_type = input.device.type
        if torch.is_autocast_enabled(device_type):  # the recurrence runs in float32
            with autocast_off(device_type):
                inputs = float32_inputs(device_type, input, *(state or ()))
                return self._run(inputs[0], tuple(inputs[1:]) if state is not None else None)
        return self._run(input, state)

    def _run(self, input: Tensor, state: tuple[Tensor, ...] | None
             ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        time_major = input.transpose(0, 1) if self.batch_first else input
        steps, batch, _ = time_major.shape
        n = self.hidden_size
        if state is None:
            y = z = time_major.new_zeros(batch, n)
        else:
            y0, z0 = state
            for name, s in (("y0", y0), ("z0", z0)):
                if s.shape != (1, batch, n):
                    raise ValueError(f"{name} must have shape (1, {batch}, {n}), got "
                                     f"{tuple(s.shape)}")
            y, z = y0[0], z0[0]
        projected = self.cell.input_maps(time_major)
        outputs = []
        for p_t in projected.unbind(0):
            y, z = self.cell.step(p_t, y, z)
            outputs.append(y)
        output = torch.stack(outputs) if outputs else time_major.new_zeros(0, batch, n)
        if self.batch_first:
            output = output.transpose(0, 1)
        return output, (y.unsqueeze(0), z.unsqueeze(0))
