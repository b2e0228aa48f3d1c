"""Which layers of a model get a decorrelator, and the reference presets.

:func:`decorrelate` puts ``z = R (x - mu)`` (Ahmad, arXiv 2407.10780; Dalm et al., arXiv
2405.02385) in front of chosen layers of any model, torchvision's ResNet-18 and a ViT built from
``nn.TransformerEncoderLayer`` included. The policy:

* wrapped by default: every module whose type is exactly ``nn.Linear`` or ``nn.Conv2d``
  (weights kept, ``R = I``); ``include`` / ``exclude`` narrow this by qualified module name
  (``fnmatch`` patterns such as ``"layer4.*"``) or by module type;
* never wrapped: normalisation layers (BatchNorm, LayerNorm, GroupNorm keep their own affine
  parameters and statistics and sit after the decorrelated conv/linear), and the attention
  projections of ``nn.MultiheadAttention``: its ``in_proj_weight`` is a bare Parameter and its
  ``out_proj`` is read by ``F.multi_head_attention_forward`` without calling the module, so a
  decorrelator there would be bypassed (naming one in ``include`` raises ``ConfigError``);
* inside an :class:`~signalprop.nn.orthogonal.AdditiveFilterStack` every layer's nonlinear
  branch gets its own ``R_l`` (``phi(W_l R_l (h_l - mu_l) + c_l)``; the orthogonal filter path
  stays as it is);
* left plain, and said so in :func:`decorrelation_summary`: frozen layers (every parameter has
  ``requires_grad=False``, e.g. the fixed random gates of an FRNPF gated network), since a
  learnt ``R`` would change what they compute; embeddings (no input vector);
* refused with a one-line ``ConfigError`` naming the layer, unless ``exclude`` names it: a conv
  the decorrelated conv cannot express (``groups > 1``, string or non-zero padding modes),
  ``Conv1d``/``Conv3d`` and transposed convs, subclasses of ``nn.Linear``/``nn.Conv2d`` (their
  ``forward`` may differ from the one a decorrelated layer would replace it with), recurrent
  layers (their products run inside the recurrence), target-space layers (weights solved from
  targets) and any other module with a trainable weight of its own (two or more dimensions;
  one holding only scales or biases is left plain);
* an ``nn.TransformerEncoderLayer`` whose feed-forward linears are wrapped has its inference
  fast path turned off (that kernel reads ``linear1.weight`` directly and would skip ``R``).

Presets set defaults that explicit options override: ``"ahmad"`` (normalised rule, first 10%
of the batch, centred: Ahmad's code) and ``"dalm"`` (whitening rule with ``kappa = 0.01``, no
centring, ``floor(0.1 B)`` rows drawn with replacement: the decorbp code's ResNet-18 settings).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from torch import nn

from signalprop.errors import ConfigError
from signalprop.nn.decorrelated_layers import DecorrelatedConv2d, DecorrelatedLinear
from signalprop.nn.decorrelation import Decorrelator
from signalprop.nn.decorrelation_summary import DecorrelationSummary
from signalprop.nn.orthogonal import AdditiveFilterStack

PRESETS: dict[str, dict[str, Any]] = {
    "ahmad": {"rule": "normalised", "subsample": "first", "sample_fraction": 0.1,
              "center": True},
    "dalm": {"rule": "whiten", "kappa": 0.01, "subsample": "replacement",
             "sample_fraction": 0.1, "center": False},
}
WRAPPED_TYPES = (nn.Linear, nn.Conv2d)
Selector = str | type[nn.Module]


def _selectors(value: Selector | Iterable[Selector] | None, what: str) -> tuple[Selector, ...]:
    if value is None:
        return ()
    items = (value,) if isinstance(value, str | type) else tuple(value)
    for item in items:
        if not (isinstance(item, str) or (isinstance(item, type)
                                           and issubclass(item, nn.Module))):
            raise ConfigError(f"decorrelate {what} entries must be module-name patterns or "
                              f"nn.Module types, got {item!r}")
    return items


def _matches(name: str, module: nn.Module, selectors: tuple[Selector, ...]) -> bool:
    return any(fnmatchcase(name, s) if isinstance(s, str) else isinstance(module, s)
               for s in selectors)


NORMALISATION = tuple(t for t in (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm,
                                   getattr(nn, "RMSNorm", None)) if t is not None)
_ATTENTION = ("attention: nn.MultiheadAttention reads its projection weights directly "
              "(F.multi_head_attention_forward), so R would be bypassed")


def _attention_children(model: nn.Module) -> set[str]:
    """Qualified names of modules inside ``nn.MultiheadAttention`` blocks."""
    names = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            prefix = f"{name}." if name else ""
            names.update(prefix + child for child, _ in module.named_modules() if child)
    return names


def _own_parameters(module: nn.Module) -> list[nn.Parameter]:
    return list(module.parameters(recurse=False))


def _refusal(name: str, module: nn.Module) -> str:
    """Why ``decorrelate`` cannot wrap ``module`` (one line, with the way out)."""
    kind = type(module).__name__
    if isinstance(module, nn.Conv2d) and type(module) is nn.Conv2d:
        why = (f"groups={module.groups}, padding={module.padding!r}, padding_mode="
               f"{module.padding_mode!r}: only groups=1 with numeric zero padding is supported")
        return f"cannot decorrelate conv {name!r} ({why}); add {name!r} to exclude"
    if isinstance(module, nn.Linear | nn.Conv2d):
        why = (f"a subclass of nn.{'Linear' if isinstance(module, nn.Linear) else 'Conv2d'} "
               "may compute something else in forward, which a decorrelated layer would "
               "replace")
    elif isinstance(module, nn.modules.conv._ConvNd):
        why = "only nn.Conv2d convolutions have a decorrelated form (DecorrelatedConv2d)"
    elif isinstance(module, nn.RNNBase) or "RNN" in kind or "Cell" in kind:
        why = ("a recurrent layer's input and recurrent products run inside its recurrence, "
               "where no R can be put in front of them")
    elif "Target" in kind:
        why = ("target-space weights are solved by least squares from targets on x_bar at every "
               "forward pass, so there is no weight to put R in front of")
    else:
        why = "decorrelate has no decorrelated form of this module"
    return f"cannot decorrelate {name!r} ({kind}): {why}; add {name!r} to exclude to leave it plain"


def _plan(model: nn.Module, include: Selector | Iterable[Selector] | None,
          exclude: Selector | Iterable[Selector] | None
          ) -> list[tuple[str, nn.Module, str, str]]:
    """``(name, module, action, detail)`` for every layer with parameters or a decorrelator:
    action ``wrap`` (plain Linear/Conv2d), ``branch`` (additive-filter stack), ``done``
    (already decorrelated) or ``plain`` (``detail`` says why). Raises for refused layers."""
    wanted, unwanted = _selectors(include, "include"), _selectors(exclude, "exclude")
    attention = _attention_children(model)
    plan: list[tuple[str, nn.Module, str, str]] = []
    skip_below: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(prefix) for prefix in skip_below):
            continue
        done = isinstance(getattr(module, "decorrelator", None), Decorrelator) or (
            isinstance(module, AdditiveFilterStack) and module.decorrelators is not None)
        if isinstance(module, Decorrelator):
            continue
        if done:
            kind = (f"AdditiveFilterStack branch, {module.depth} layers"
                    if isinstance(module, AdditiveFilterStack) else type(module).__name__)
            plan.append((name, module, "done", kind))
            skip_below.append(f"{name}.")
            continue
        own = _own_parameters(module)
        if not own and not isinstance(module, nn.MultiheadAttention):
            continue
        if _matches(name, module, unwanted):
            plan.append((name, module, "plain", "excluded"))
            continue
        if wanted and not _matches(name, module, wanted):
            plan.append((name, module, "plain", "not included"))
            continue
        if name in attention or isinstance(module, nn.MultiheadAttention):
            if wanted and _matches(name, module, tuple(s for s in wanted if isinstance(s, str))):
                raise ConfigError(
                    f"cannot decorrelate {name!r}: nn.MultiheadAttention reads its projection "
                    "weights directly (F.multi_head_attention_forward), so R would be bypassed; "
                    "drop it from include")
            if isinstance(module, nn.MultiheadAttention):
                plan.append((name, module, "plain", _ATTENTION))
            continue
        if isinstance(module, NORMALISATION):
            plan.append((name, module, "plain", "normalisation: keeps its own statistics"))
            continue
        if all(not p.requires_grad for p in own):
            plan.append((name, module, "plain",
                         "frozen: requires_grad=False, a learnt R would change what it computes"))
            continue
        if isinstance(module, nn.Embedding | nn.EmbeddingBag):
            plan.append((name, module, "plain", "embedding: a lookup, no input vector"))
            continue
        if all(p.dim() < 2 for p in own):
            plan.append((name, module, "plain", "no weight matrix: only scales or biases"))
            continue
        if isinstance(module, AdditiveFilterStack):
            plan.append((name, module, "branch",
                         f"AdditiveFilterStack branch, {module.depth} layers"))
            continue
        if type(module) in WRAPPED_TYPES and not (
                type(module) is nn.Conv2d and (module.groups != 1 or module.padding_mode != "zeros"
                                               or isinstance(module.padding, str))):
            plan.append((name, module, "wrap", f"Decorrelated{type(module).__name__}"))
            continue
        raise ConfigError(_refusal(name, module))
    return plan


def layers_to_decorrelate(model: nn.Module, include: Selector | Iterable[Selector] | None = None,
                          exclude: Selector | Iterable[Selector] | None = None
                          ) -> list[tuple[str, nn.Module]]:
    """``(qualified name, layer)`` of every plain Linear/Conv2d :func:`decorrelate` would wrap
    (an additive-filter stack, whose branch it decorrelates, is listed too)."""
    return [(name, module) for name, module, action, _ in _plan(model, include, exclude)
            if action in ("wrap", "branch")]


def decorrelation_summary(model: nn.Module, *,
                          include: Selector | Iterable[Selector] | None = None,
                          exclude: Selector | Iterable[Selector] | None = None,
                          convolutions: bool = True) -> DecorrelationSummary:
    """The layers of ``model`` that carry a decorrelator, or would after :func:`decorrelate`
    with the same options, and those left plain with the reason; raises the ``ConfigError``
    ``decorrelate`` would raise."""
    unwanted = _selectors(exclude, "exclude") + (() if convolutions else (nn.Conv2d,))
    wrapped, plain = [], []
    for name, _, action, detail in _plan(model, include, unwanted):
        (plain if action == "plain" else wrapped).append((name, detail))
    return DecorrelationSummary(tuple(wrapped), tuple(plain))


def decorrelate(model: nn.Module, *, include: Selector | Iterable[Selector] | None = None,
                exclude: Selector | Iterable[Selector] | None = None, convolutions: bool = True,
                preset: str | None = None, verbose: bool = False,
                **options: Any) -> nn.Module:
    """Replace the chosen ``nn.Linear`` / ``nn.Conv2d`` of ``model`` in place (see the module
    docstring for the policy), keeping their weight Parameters; returns ``model``.

    ``options`` go to :class:`~signalprop.nn.decorrelation.Decorrelator` (rule, lr, kappa,
    sample_fraction, subsample, center, block_size, ...) and, for Linear, ``fuse``; ``preset``
    (``"ahmad"`` or ``"dalm"``) fills in the options not given. ``convolutions=False`` leaves
    every conv plain. Layers already decorrelated are left alone. ``verbose=True`` prints
    :meth:`DecorrelationSummary.line` to stderr; :func:`decorrelation_summary` gives the table.

    Example: everything but the output layer and the first stage,
    ``decorrelate(resnet, exclude=["fc", "layer1.*"])``.
    """
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"decorrelation preset must be one of {list(PRESETS)}, "
                              f"got {preset!r}")
        options = {**PRESETS[preset], **options}
    unwanted = _selectors(exclude, "exclude") + (() if convolutions else (nn.Conv2d,))
    conv_options = {k: v for k, v in options.items() if k != "fuse"}
    for name, layer, action, _ in _plan(model, include, unwanted):
        if action == "branch":
            layer.decorrelate_branch(**conv_options)
            continue
        if action != "wrap":
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        if type(layer) is nn.Linear:
            new: nn.Module = DecorrelatedLinear.from_linear(layer, **options)
        else:
            new = DecorrelatedConv2d.from_conv(layer, **conv_options)
        setattr(parent, child, new)
        if isinstance(parent, nn.TransformerEncoderLayer):
            parent.activation_relu_or_gelu = 0  # the fused inference kernel would skip R
    if verbose:
        summary = decorrelation_summary(model, include=include, exclude=exclude,
                                        convolutions=convolutions)
        print(f"signalprop: {summary.line()}", file=sys.stderr)
    return model
