"""Node perturbation (NP): gradients from the loss change caused by noise on every layer.

As in Ahmad (arXiv 2407.10780; also Dalm et al., arXiv 2310.00965): one forward pass on the
batch, clean, then again where every Linear/Conv2d output (pre-activation) gets
``p_l = sigma * xi``, ``xi ~ N(0, I)``, and the noise propagates. With per-sample losses
``L_n`` (clean) and ``L~_n`` (noisy), the estimate for layer ``l`` is

    g_W = (1/B) sum_n (L~_n - L_n) p_{l,n} z_{l,n}^T / sigma^2

(``z`` the layer's clean, decorrelated input; the same with ``z = 1`` for the bias). Its
expectation is the true gradient to first order in ``sigma``. The trainer's optimiser (Adam in
the paper) then applies it. For a conv layer the sum also runs over positions.

Inside an additive-filter stack (Ceni, arXiv 2210.01245) every layer's branch sum
``z_l = W_l u_l + c_l`` gets its own noise (a :class:`~signalprop.nn.stack_tap.StackTap`) and
``g_{W_l} = (1/B) sum_n (L~_n - L_n) p_{l,n} u_{l,n}^T / sigma^2``; the filter ``O`` is fixed.
Layers with no trainable parameters (the frozen gates of an FRNPF gated network) get no noise,
and any other layer with trainable weights is refused by name. Under autocast the passes run
in float32 (by policy, like the additive filters): ``sigma`` is far below bfloat16's resolution
``2^-8``, so bfloat16 loss differences would be rounding.

The estimates are written to ``.grad`` outside ``loss.backward()``, so DDP does not all-reduce
them: inside an initialised process group (``sync=True``) they are averaged over ranks here, so
every rank applies the same step.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import vmap

from signalprop.config import require_number
from signalprop.distributed import all_reduce_mean, is_distributed
from signalprop.errors import ConfigError
from signalprop.learning.base import LearningRule, LossFn
from signalprop.learning.coverage import refuse_unreached
from signalprop.learning.feedback_alignment import feedback_layers
from signalprop.nn.decorrelation import batch_means_frozen
from signalprop.nn.orthogonal import AdditiveFilterStack
from signalprop.nn.precision import autocast_off
from signalprop.nn.stack_tap import StackTap


def per_sample_loss(loss_fn: LossFn, output: Tensor, targets: Tensor) -> Tensor:
    """``loss_fn`` applied to each sample separately, shape ``(N,)`` (NaN -> 0)."""
    try:
        losses = vmap(lambda o, t: loss_fn(o.unsqueeze(0), t.unsqueeze(0)))(output, targets)
    except Exception:  # loss functions vmap cannot trace: fall back to a loop
        losses = torch.stack([loss_fn(o.unsqueeze(0), t.unsqueeze(0))
                              for o, t in zip(output, targets, strict=True)])
    return torch.nan_to_num(losses, nan=0.0)


class _StackNoise(StackTap):
    """Records each layer's clean branch input ``u_l``, then perturbs ``z_l`` in the noisy pass."""

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma
        self.noisy = False
        self.inputs: dict[int, Tensor] = {}
        self.noise: dict[int, Tensor] = {}

    def pre_activation(self, layer: int, u: Tensor, z: Tensor) -> Tensor:
        if not self.noisy:
            self.inputs[layer] = u.detach()
            return z
        noise = self.sigma * torch.randn_like(z)
        self.noise[layer] = noise
        return z + noise


def _trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters(recurse=False))


class NodePerturbation(LearningRule):
    """NP gradient estimate for every trainable Linear/Conv2d layer (decorrelated layers
    included) and every layer of an additive-filter stack.

    Args:
        sigma: noise standard deviation (Ahmad's code: 1e-6).
        float64: compute the clean/noisy forward pass in float64 to limit round-off in
            ``L~ - L`` (slower); the model is restored to its dtype afterwards.
        sync: average the estimates over DDP ranks (no-op without a process group).
    """

    name = "np"

    def __init__(self, sigma: float = 1e-6, float64: bool = False, sync: bool = True) -> None:
        require_number("NodePerturbation", "sigma", sigma, low=0.0, open_low=True)
        if not (math.isfinite(sigma) and sigma > 0):
            raise ConfigError(f"node perturbation sigma must be a finite number > 0, got {sigma!r}")
        self.sigma = float(sigma)
        self.float64 = bool(float64)
        self.sync = bool(sync)
        self._layers: list[tuple[str, nn.Module]] = []
        self._stacks: list[tuple[str, AdditiveFilterStack]] = []

    def attach(self, model: nn.Module) -> None:
        self.detach()
        self._layers = [(n, m) for n, m in feedback_layers(model) if _trainable(m)]
        stacks = [(n, m) for n, m in model.named_modules() if isinstance(m, AdditiveFilterStack)]
        for name, module in model.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                raise ConfigError(
                    f"node perturbation cannot train a model with BatchNorm ({name}): the noisy "
                    "pass's batch statistics mix every sample's noise, so the per-sample loss "
                    "differences no longer estimate the gradient; build it without BatchNorm or "
                    "use rule 'bp' or 'fa'")
            if isinstance(module, nn.MultiheadAttention):
                raise ConfigError(
                    f"node perturbation cannot train attention ({name}): "
                    "nn.MultiheadAttention applies its projections without calling a Linear "
                    "module, so they get no noise and no gradient; use rule 'bp' or 'fa'")
        refuse_unreached("node perturbation", model,
                         {id(m) for _, m in self._layers + stacks},
                         consequence="would never change", hint="use rule 'bp' or 'fa'")
        if not self._layers and not stacks:
            raise ConfigError("node perturbation needs a model with Linear or Conv2d layers")
        for _, stack in stacks:
            stack.tap = _StackNoise(self.sigma)
        self._stacks = stacks

    def detach(self) -> None:
        """Forget the model's layers and remove the additive-filter taps."""
        self._layers = []
        for _, stack in self._stacks:
            stack.tap = None
        self._stacks = []

    def compute_gradients(self, model: nn.Module, inputs: Tensor, targets: Tensor,
                          loss_fn: LossFn) -> tuple[Tensor, Tensor]:
        if not self._layers and not self._stacks:
            self.attach(model)
        with autocast_off(inputs.device.type):  # float32 by policy (module docstring)
            return self._perturbed_gradients(model, inputs, targets, loss_fn)

    def _perturbed_gradients(self, model: nn.Module, inputs: Tensor, targets: Tensor,
                             loss_fn: LossFn) -> tuple[Tensor, Tensor]:
        batch = inputs.shape[0]
        taps = [stack.tap for _, stack in self._stacks]
        for tap in taps:
            tap.noisy, tap.inputs, tap.noise = False, {}, {}
        saved: dict[str, tuple[Tensor, Tensor]] = {}

        def make_hook(name: str):
            def hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
                noise = self.sigma * torch.randn_like(output)
                saved[name] = (clean_inputs[name], noise)
                return output + noise
            return hook

        def make_clean_hook(name: str):
            def hook(module: nn.Module, args: tuple) -> None:
                clean_inputs[name] = args[0].detach()
            return hook

        clean_inputs: dict[str, Tensor] = {}
        dtype = next(model.parameters()).dtype
        wide = self.float64 and inputs.is_floating_point()
        if wide:
            model.double()
        try:
            with torch.no_grad():
                x = inputs.double() if wide else inputs
                handles = [m.register_forward_pre_hook(make_clean_hook(n))
                           for n, m in self._layers]
                try:
                    clean = model(x)
                finally:
                    for h in handles:
                        h.remove()
                handles = [m.register_forward_hook(make_hook(n)) for n, m in self._layers]
                for tap in taps:
                    tap.noisy = True
                try:
                    with batch_means_frozen(model):
                        noisy = model(x)
                finally:
                    for h in handles:
                        h.remove()
                    for tap in taps:
                        tap.noisy = False
        finally:
            if wide:
                model.to(dtype)
        clean, noisy = clean.to(dtype), noisy.to(dtype)
        with torch.no_grad():
            loss = loss_fn(clean, targets)
            delta = per_sample_loss(loss_fn, noisy.double(), targets) - per_sample_loss(
                loss_fn, clean.double(), targets)
        scale = (delta / (self.sigma**2 * batch)).to(clean.dtype)
        params, grads = self._estimates(model, saved, scale)
        if self.sync and is_distributed():  # same list, order and shapes on every rank
            grads = all_reduce_mean([torch.zeros_like(p) if g is None else g
                                     for p, g in zip(params, grads, strict=True)])
        for p, g in zip(params, grads, strict=True):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
        return loss, clean

    def _estimates(self, model: nn.Module, saved: dict[str, tuple[Tensor, Tensor]],
                   scale: Tensor) -> tuple[list[Tensor], list[Tensor | None]]:
        """Every trainable parameter of the layers and its estimate (None when not perturbed)."""
        params: list[Tensor] = []
        grads: list[Tensor | None] = []
        with torch.enable_grad(), batch_means_frozen(model):
            for name, module in self._layers:
                own = [p for p in module.parameters(recurse=False) if p.requires_grad]
                found: tuple[Tensor | None, ...] = (None,) * len(own)
                if own and name in saved:
                    layer_input, noise = saved[name]
                    if self.float64:
                        layer_input, noise = layer_input.to(own[0].dtype), noise.to(own[0].dtype)
                    activity = module(layer_input)
                    weight = scale.reshape(-1, *([1] * (noise.dim() - 1))) * noise
                    found = torch.autograd.grad(activity, own, weight, allow_unused=True)
                params.extend(own)
                grads.extend(found)
        for _, stack in self._stacks:
            params.extend(p for p in (stack.weight, stack.bias) if p.requires_grad)
            grads.extend(self._stack_estimates(stack, scale))
        return params, grads

    @staticmethod
    def _stack_estimates(stack: AdditiveFilterStack, scale: Tensor) -> list[Tensor | None]:
        """``g_{W_l} = sum_n s_n p_{l,n} u_{l,n}^T`` and ``g_{c_l} = sum_n s_n p_{l,n}`` per
        layer (``s_n = (L~_n - L_n) / (B sigma^2)``), for the trainable stack parameters."""
        tap = stack.tap
        assert isinstance(tap, _StackNoise)
        if len(tap.noise) != stack.depth or len(tap.inputs) != stack.depth:
            return [None for p in (stack.weight, stack.bias) if p.requires_grad]
        weighted = torch.stack([tap.noise[i] for i in range(stack.depth)])  # (L, B, n)
        weighted = weighted * scale.to(weighted.dtype).reshape(1, -1, 1)
        inputs = torch.stack([tap.inputs[i] for i in range(stack.depth)])
        grads = {"weight": (weighted.transpose(1, 2) @ inputs).to(stack.weight.dtype),
                 "bias": weighted.sum(1).to(stack.bias.dtype)}
        tap.inputs, tap.noise = {}, {}
        return [grads[name] for name, p in (("weight", stack.weight), ("bias", stack.bias))
                if p.requires_grad]

    def state_dict(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "float64": self.float64, "sync": self.sync}
