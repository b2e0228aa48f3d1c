"""Per-layer measurements inside a stacked module (e.g. ``AdditiveFilterStack``'s ``L`` layers).

A stacked module keeps its layers in the leading dimension of its parameters and runs them in
one call, so hooks see one module. Diagnose then re-runs its layers one by one from the input
it recorded and sends back the gradient it recorded at the module's output, which gives every
stacked layer ``l`` what an ordinary layer gets: ``||dL/dh_l||`` (so its backward gain),
activation statistics and neuron sensitivities of ``phi(W_l h_l + c_l)``. Memory stays
``O(sqrt(L))`` states: layers are re-run in segments of ``ceil(sqrt(L))`` from saved states,
last segment first, as the stack's own backward does. The values equal plain backprop's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from signalprop.diagnose.capture import ActivationStats, activation_peak
from signalprop.diagnostics.sensitivity import activation_derivatives, neuron_sensitivity
from signalprop.nn.activations import SATURATING
from signalprop.nn.orthogonal import AdditiveFilterStack, activate, filter_layer


@dataclass
class StackLayer:
    """What one stacked layer measured: gradient norms at its input and output and the
    statistics of its activation ``phi(W_l h_l + c_l)``."""

    input_grad_norm: float
    output_grad_norm: float
    act: ActivationStats
    sensitivity_mean: float
    sensitivity_log_rms: float


def can_unroll(module: nn.Module) -> bool:
    """Whether :func:`unroll` knows how to run ``module``'s layers one by one."""
    return isinstance(module, AdditiveFilterStack)


def _stats(stack: AdditiveFilterStack, u: Tensor, weight: Tensor) -> tuple[ActivationStats,
                                                                         float, float]:
    name = stack.activation
    stats = ActivationStats(name, saturating=name in SATURATING)
    stats.add_values(activate(name, u))
    stats.add_slopes(activation_derivatives(name, u)[0].abs(), -1, activation_peak(name, name))
    s = neuron_sensitivity(u, weight, name).double()
    log_rms = 0.5 * math.log(max(float(s.pow(2).mean()), 1e-300))
    return stats, float(s.mean(0).mean()), log_rms


def unroll(stack: AdditiveFilterStack, h0: Tensor, grad_out: Tensor) -> list[StackLayer]:
    """Per layer of ``stack``, in order, from its input ``h0`` and ``grad_out = dL/dh_L``."""
    weight, bias = stack.weight.detach(), stack.bias.detach()
    filt = None if stack.filter is None else stack.filter.detach()
    depth, segment = stack.depth, max(1, math.ceil(math.sqrt(stack.depth)))
    config = (stack.a, stack.b, stack.skip, stack.activation)
    starts = []
    with torch.no_grad():
        h = h0.detach()
        for layer in range(depth):
            if layer % segment == 0:
                starts.append(h)
            h, _ = filter_layer(h, weight[layer], bias[layer], filt, *config)
    found: list[StackLayer | None] = [None] * depth
    g = grad_out.detach()
    for index in range(len(starts) - 1, -1, -1):
        lo, hi = index * segment, min((index + 1) * segment, depth)
        with torch.enable_grad():
            states = [starts[index].clone().requires_grad_(True)]
            for layer in range(lo, hi):
                h, _ = filter_layer(states[-1], weight[layer], bias[layer], filt, *config)
                states.append(h)
            grads = torch.autograd.grad(states[-1], states[:-1], grad_outputs=g)
        after = float(torch.linalg.vector_norm(g.double()))
        with torch.no_grad():
            for offset in range(hi - lo - 1, -1, -1):
                layer = lo + offset
                u = torch.addmm(bias[layer], states[offset].detach(), weight[layer].t())
                stats, sens, log_rms = _stats(stack, u, weight[layer])
                before = float(torch.linalg.vector_norm(grads[offset].double()))
                found[layer] = StackLayer(before, after, stats, sens, log_rms)
                after = before
        g = grads[0].detach()
    return [f for f in found if f is not None]
