"""Node perturbation (NP): gradients from the loss change caused by noise on every layer.

As in Ahmad (arXiv 2407.10780; also Dalm et al., arXiv 2310.00965): one forward pass on the
batch, clean, then again where every Linear/Conv2d output (pre-activation) gets
``p_l = sigma * xi``, ``xi ~ N(0, I)``, and the noise propagates. With per-sample losses
``L_n`` (clean) and ``L~_n`` (noisy), the estimate for layer ``l`` is

    g_W = (1/B) sum_n (L~_n - L_n) p_{l,n} z_{l,n}^T / sigma^2

(``z`` the layer's clean, decorrelated input; the same with ``z = 1`` for the bias). Its
expectation is the true gradient to first order in ``sigma``. The trainer's optimiser (Adam in
the paper) then applies it. For a conv layer the sum also runs over positions.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import vmap

from signalprop.config import require_number
from signalprop.errors import ConfigError
from signalprop.learning.base import LearningRule, LossFn
from signalprop.learning.feedback_alignment import feedback_layers
from signalprop.nn.decorrelation import batch_means_frozen


def per_sample_loss(loss_fn: LossFn, output: Tensor, targets: Tensor) -> Tensor:
    """``loss_fn`` applied to each sample separately, shape ``(N,)`` (NaN -> 0)."""
    try:
        losses = vmap(lambda o, t: loss_fn(o.unsqueeze(0), t.unsqueeze(0)))(output, targets)
    except Exception:  # loss functions vmap cannot trace: fall back to a loop
        losses = torch.stack([loss_fn(o.unsqueeze(0), t.unsqueeze(0))
                              for o, t in zip(output, targets, strict=True)])
    return torch.nan_to_num(losses, nan=0.0)


class NodePerturbation(LearningRule):
    """NP gradient estimate for every Linear/Conv2d layer (decorrelated layers included).

    Args:
        sigma: noise standard deviation (Ahmad's code: 1e-6).
        float64: compute the clean/noisy forward pass in float64 to limit round-off in
            ``L~ - L`` (slower); the model is restored to its dtype afterwards.
    """

    name = "np"

    def __init__(self, sigma: float = 1e-6, float64: bool = False) -> None:
        require_number("NodePerturbation", "sigma", sigma, low=0.0, open_low=True)
        if not (math.isfinite(sigma) and sigma > 0):
            raise ConfigError(f"node perturbation sigma must be a finite number > 0, got {sigma!r}")
        self.sigma = float(sigma)
        self.float64 = bool(float64)
        self._layers: list[tuple[str, nn.Module]] = []

    def attach(self, model: nn.Module) -> None:
        self._layers = feedback_layers(model)
        if not self._layers:
            raise ConfigError("node perturbation needs a model with Linear or Conv2d layers")

    def compute_gradients(self, model: nn.Module, inputs: Tensor, targets: Tensor,
                          loss_fn: LossFn) -> tuple[Tensor, Tensor]:
        if not self._layers:
            self.attach(model)
        batch = inputs.shape[0]
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
                try:
                    with batch_means_frozen(model):
                        noisy = model(x)
                finally:
                    for h in handles:
                        h.remove()
        finally:
            if wide:
                model.to(dtype)
        clean, noisy = clean.to(dtype), noisy.to(dtype)
        with torch.no_grad():
            loss = loss_fn(clean, targets)
            delta = per_sample_loss(loss_fn, noisy.double(), targets) - per_sample_loss(
                loss_fn, clean.double(), targets)
        scale = (delta / (self.sigma**2 * batch)).to(clean.dtype)
        with torch.enable_grad(), batch_means_frozen(model):
            for name, module in self._layers:
                if name not in saved:
                    continue
                layer_input, noise = saved[name]
                params = [p for p in module.parameters(recurse=False) if p.requires_grad]
                if not params:
                    continue
                if self.float64:
                    layer_input, noise = layer_input.to(params[0].dtype), noise.to(params[0].dtype)
                activity = module(layer_input)
                weight = scale.reshape(-1, *([1] * (noise.dim() - 1))) * noise
                grads = torch.autograd.grad(activity, params, weight, allow_unused=True)
                for p, g in zip(params, grads, strict=True):
                    if g is not None:
                        p.grad = g if p.grad is None else p.grad + g
        return loss, clean

    def state_dict(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "float64": self.float64}
