"""Lyapunov exponents of a driven recurrent map ``h_{t+1} = F(h_t, x_t)`` by tangent propagation.

Largest exponent (Benettin et al. 1980): propagate one tangent vector ``v`` with the step
Jacobian ``J_t = dF/dh (h_t, x_t)``, renormalise every step and average the log growth,
``lambda_1 = (1/T) sum_t ln ||J_t v_t||``. First ``k`` exponents (Shimada & Nagashima 1979):
propagate an orthonormal ``Q`` (H, k), re-orthonormalise by QR every step,
``J_t Q_t = Q_{t+1} R_t``, and average ``ln |diag R_t|``. Tangents are pushed forward with
``torch.func.jvp`` (vectorised over the ``k`` columns with ``torch.func.vmap``) or by
multiplying with the full Jacobian from ``torch.func.jacrev``.

For an RNN the log-RMS sensitivity along the same trajectory (Shibata et al., arXiv
2012.13134) is returned beside the exponent by :func:`rnn_lyapunov`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.autograd import forward_ad

from signalprop.config import one_of
from signalprop.errors import ConfigError
from signalprop.nn.activations import get_activation

StepFn = Callable[[Tensor, Tensor], Tensor]
METHODS = ("jvp", "jacrev")


def _push(step: StepFn, h: Tensor, x: Tensor, tangents: Tensor, method: str) -> Tensor:
    """``J(h, x) @ tangents`` for tangents (H, k)."""
    if method == "jacrev":
        jac = torch.func.jacrev(step, argnums=0)(h, x)
        return jac @ tangents

    def one(v: Tensor) -> Tensor:
        return torch.func.jvp(lambda state: step(state, x), (h,), (v,))[1]

    return torch.func.vmap(one, in_dims=1, out_dims=1)(tangents)


def _check(h0: Tensor, inputs: Tensor, warmup: int, method: str) -> None:
    one_of("method", method, METHODS)
    if h0.dim() != 1:
        raise ConfigError(f"h0 must be a single state vector (H,), got shape {tuple(h0.shape)}")
    if inputs.dim() != 2:
        raise ConfigError(f"inputs must be (T, I), got shape {tuple(inputs.shape)}")
    if not 0 <= warmup < inputs.shape[0]:
        raise ConfigError(f"warmup must be in [0, T={inputs.shape[0]}), got {warmup!r}")


@torch.no_grad()
def lyapunov_spectrum(
    step: StepFn,
    h0: Tensor,
    inputs: Tensor,
    k: int | None = None,
    warmup: int = 0,
    method: str = "jvp",
) -> Tensor:
    """The ``k`` largest Lyapunov exponents (per step, natural log), in decreasing order, by
    QR re-orthonormalisation along the trajectory from ``h0`` driven by ``inputs`` (T, I).
    The first ``warmup`` steps align the tangents and are not averaged."""
    _check(h0, inputs, warmup, method)
    size = h0.shape[0]
    k = size if k is None else k
    if not 1 <= k <= size:
        raise ConfigError(f"k must be in [1, {size}], got {k!r}")
    q = torch.eye(size, k, dtype=h0.dtype, device=h0.device)
    total = torch.zeros(k, dtype=torch.float64, device=h0.device)
    h = h0
    for t in range(inputs.shape[0]):
        moved = _push(step, h, inputs[t], q, method)
        q, r = torch.linalg.qr(moved)
        if t >= warmup:
            total += torch.log(torch.diagonal(r).abs().double().clamp_min(1e-300))
        h = step(h, inputs[t])
    exponents = total / (inputs.shape[0] - warmup)
    return torch.sort(exponents, descending=True).values.to(h0.dtype)


@torch.no_grad()
def largest_lyapunov_exponent(
    step: StepFn,
    h0: Tensor,
    inputs: Tensor,
    warmup: int = 0,
    method: str = "jvp",
    generator: torch.Generator | None = None,
) -> float:
    """``lambda_1`` by propagating one random tangent vector and renormalising every step."""
    _check(h0, inputs, warmup, method)
    v = torch.randn(h0.shape[0], 1, generator=generator, dtype=h0.dtype).to(h0.device)
    v = v / torch.linalg.vector_norm(v)
    if method == "jvp":
        return _largest_by_dual_numbers(step, h0, inputs, warmup, v[:, 0])
    total, h = 0.0, h0
    for t in range(inputs.shape[0]):
        v = _push(step, h, inputs[t], v, method)
        growth = float(torch.linalg.vector_norm(v))
        if not math.isfinite(growth) or growth == 0.0:
            return float("-inf") if growth == 0.0 else float("nan")
        v = v / growth
        if t >= warmup:
            total += math.log(growth)
        h = step(h, inputs[t])
    return total / (inputs.shape[0] - warmup)


def _largest_by_dual_numbers(
    step: StepFn, h: Tensor, inputs: Tensor, warmup: int, v: Tensor
) -> float:
    """Tangent propagation with forward-mode dual numbers: one step call per time step gives
    the next state and the pushed tangent together (far cheaper than ``torch.func.jvp``)."""
    growths = []
    with forward_ad.dual_level():
        for t in range(inputs.shape[0]):
            h, v = forward_ad.unpack_dual(step(forward_ad.make_dual(h, v), inputs[t]))
            growth = torch.linalg.vector_norm(v)
            v = v / growth
            growths.append(growth)
    stacked = torch.stack(growths)
    if bool((stacked == 0).any()):  # the tangent died (and later values are NaN)
        return float("-inf")
    if not bool(torch.isfinite(stacked).all()):
        return float("nan")
    return float(torch.log(stacked[warmup:]).mean())


def rnn_step_function(rnn: nn.Module) -> StepFn:
    """``F(h, x) = f(W_ih x + b_ih + W_hh h + b_hh)`` for a one-layer ``nn.RNN``/``ElmanRNN``,
    with the module's current weights."""
    if getattr(rnn, "num_layers", 1) != 1 or getattr(rnn, "bidirectional", False):
        raise ConfigError("rnn_step_function supports one-layer unidirectional RNNs only")
    act = get_activation(rnn.nonlinearity).function

    def step(h: Tensor, x: Tensor) -> Tensor:
        u = nn.functional.linear(x, rnn.weight_ih_l0, rnn.bias_ih_l0)
        return act(u + nn.functional.linear(h, rnn.weight_hh_l0, rnn.bias_hh_l0))

    return step


@torch.no_grad()
def rnn_lyapunov(
    rnn: nn.Module,
    inputs: Tensor,
    h0: Tensor | None = None,
    warmup: int = 100,
    k: int = 1,
    method: str = "jvp",
) -> dict[str, float]:
    """Largest exponent (``k=1``, renormalisation) or first ``k`` (QR) of an RNN driven by
    ``inputs`` (T, I), with the log-RMS sensitivity along the same trajectory after warm-up:
    ``mean_t ln sqrt(mean_j s_tj^2)``, ``s_tj = f'(U_tj) ||[W_ih, W_hh]_j||``.

    Also ``log_rms_recurrent_sensitivity``: the same with ``||W_hh[j]||`` only (the part of
    ``s`` that acts on the state, so the input weights do not bias the comparison).

    Returns ``{"lambda_max", "log_rms_sensitivity", "log_rms_recurrent_sensitivity"}`` plus
    ``"lambda_<i>"`` for ``k > 1``.
    """
    step = rnn_step_function(rnn)
    weight = rnn.weight_hh_l0
    h0 = weight.new_zeros(rnn.hidden_size) if h0 is None else h0
    if k == 1:
        generator = torch.Generator().manual_seed(0)
        found = {"lambda_max": largest_lyapunov_exponent(step, h0, inputs, warmup, method,
                                                         generator)}
    else:
        spectrum = lyapunov_spectrum(step, h0, inputs, k, warmup, method)
        found = {"lambda_max": float(spectrum[0])}
        found.update({f"lambda_{i + 1}": float(v) for i, v in enumerate(spectrum)})
    # Sensitivity along the same trajectory (the state sequence is recomputed in one pass).
    norms = torch.linalg.vector_norm(torch.cat([rnn.weight_ih_l0, weight], 1), dim=1)
    recurrent_norms = torch.linalg.vector_norm(weight, dim=1)
    activation = get_activation(rnn.nonlinearity)
    h, logs, recurrent_logs = h0, [], []
    for t in range(inputs.shape[0]):
        u = nn.functional.linear(inputs[t], rnn.weight_ih_l0, rnn.bias_ih_l0)
        u = u + nn.functional.linear(h, weight, rnn.bias_hh_l0)
        if t >= warmup:
            slope = activation.derivative(u).abs()
            logs.append(_log_rms(slope * norms))
            recurrent_logs.append(_log_rms(slope * recurrent_norms))
        h = activation.function(u)
    found["log_rms_sensitivity"] = sum(logs) / len(logs)
    found["log_rms_recurrent_sensitivity"] = sum(recurrent_logs) / len(recurrent_logs)
    return found


def _log_rms(s: Tensor) -> float:
    return 0.5 * math.log(max(float(s.double().pow(2).mean()), 1e-300))
