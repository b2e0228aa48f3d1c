"""Which layers of a model a learning rule reaches, and the one-line refusal for those it cannot.

A rule that replaces backprop's gradients (feedback alignment, direct feedback alignment, node
perturbation) or adds a local update (sensitivity adjustment) acts on some layer types only. A
layer it does not reach would silently keep exact backprop gradients (or, for node
perturbation, never change), so each rule calls :func:`refuse_unreached` in ``attach``: every
layer with its own trainable parameters must be one the rule reaches, or the rule raises one
:class:`~signalprop.errors.ConfigError` line naming the first layer it cannot train and why.
Normalisation layers are not counted: their affine parameters receive whatever error the rule
propagates, as in the papers.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterator

from torch import nn

from signalprop.errors import ConfigError

NORMALISATION = tuple(t for t in (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm,
                                   getattr(nn, "RMSNorm", None)) if t is not None)


def trainable_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Every sub-module (not the model itself, not a normalisation layer) with a trainable
    weight of its own (a parameter of two or more dimensions; scales and biases alone receive
    whatever error the rule sends, like normalisation), in registration order."""
    for name, module in model.named_modules():
        if not name or isinstance(module, NORMALISATION):
            continue
        if any(p.requires_grad and p.dim() >= 2 for p in module.parameters(recurse=False)):
            yield name, module


def why_unreached(module: nn.Module) -> str:
    """The reason a gradient rule cannot reach ``module``, for the refusal message."""
    kind = type(module).__name__
    if isinstance(module, nn.MultiheadAttention):
        return ("nn.MultiheadAttention applies its projections through "
                "F.multi_head_attention_forward without calling a Linear module")
    if "Target" in kind:
        return ("its weights are solved by least squares from targets on x_bar, and the "
                "targets have no layer output of their own")
    if isinstance(module, nn.RNNBase) or "RNN" in kind or "Cell" in kind:
        return "its recurrent weights act inside the recurrence, which the rule has no path into"
    if isinstance(module, nn.Linear | nn.Conv2d):
        return (f"a subclass of nn.{'Linear' if isinstance(module, nn.Linear) else 'Conv2d'} "
                "whose forward the rule cannot replace")
    return f"the rule has no update for {kind} layers"


def refuse_unreached(rule: str, model: nn.Module, reached: Container[int], *,
                     exempt_last: bool = False, consequence: str = "would keep exact backprop "
                     "gradients", hint: str = "use rule 'bp'",
                     why: Callable[[nn.Module], str] = why_unreached) -> None:
    """Raise a one-line ``ConfigError`` for the first trainable layer whose ``id`` is not in
    ``reached`` (the last trainable layer is allowed with ``exempt_last``); ``why(layer)``
    gives the reason."""
    layers = list(trainable_layers(model))
    if exempt_last and layers:
        layers = layers[:-1]
    for name, module in layers:
        if id(module) not in reached:
            raise ConfigError(
                f"{rule} cannot train {name!r} ({type(module).__name__}): "
                f"{why(module)}, so it {consequence}; {hint}")
