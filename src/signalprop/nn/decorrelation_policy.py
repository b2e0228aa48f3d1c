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
* a conv the decorrelated conv cannot express (``groups > 1``, string or non-zero padding
  modes) raises ``ConfigError`` naming it, unless excluded;
* an ``nn.TransformerEncoderLayer`` whose feed-forward linears are wrapped has its inference
  fast path turned off (that kernel reads ``linear1.weight`` directly and would skip ``R``).

Presets set defaults that explicit options override: ``"ahmad"`` (normalised rule, first 10%
of the batch, centred: Ahmad's code) and ``"dalm"`` (whitening rule with ``kappa = 0.01``, no
centring, ``floor(0.1 B)`` rows drawn with replacement: the decorbp code's ResNet-18 settings).
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from torch import nn

from signalprop.errors import ConfigError
from signalprop.nn.decorrelated_layers import DecorrelatedConv2d, DecorrelatedLinear

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


def _attention_children(model: nn.Module) -> set[str]:
    """Qualified names of modules inside ``nn.MultiheadAttention`` blocks."""
    names = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            prefix = f"{name}." if name else ""
            names.update(prefix + child for child, _ in module.named_modules() if child)
    return names


def layers_to_decorrelate(model: nn.Module, include: Selector | Iterable[Selector] | None = None,
                          exclude: Selector | Iterable[Selector] | None = None
                          ) -> list[tuple[str, nn.Module]]:
    """``(qualified name, layer)`` of every layer :func:`decorrelate` would wrap."""
    wanted, unwanted = _selectors(include, "include"), _selectors(exclude, "exclude")
    attention = _attention_children(model)
    chosen = []
    for name, module in model.named_modules():
        if not name or _matches(name, module, unwanted):
            continue
        if wanted and not _matches(name, module, wanted):
            continue
        if name in attention:
            if wanted and any(isinstance(s, str) for s in wanted) and _matches(
                    name, module, tuple(s for s in wanted if isinstance(s, str))):
                raise ConfigError(
                    f"cannot decorrelate {name!r}: nn.MultiheadAttention reads its projection "
                    "weights directly (F.multi_head_attention_forward), so R would be bypassed; "
                    "drop it from include")
            continue
        if type(module) not in WRAPPED_TYPES:
            continue
        if type(module) is nn.Conv2d and (module.groups != 1 or module.padding_mode != "zeros"
                                          or isinstance(module.padding, str)):
            raise ConfigError(
                f"cannot decorrelate conv {name!r} (groups={module.groups}, padding="
                f"{module.padding!r}, padding_mode={module.padding_mode!r}): only groups=1 with "
                f"numeric zero padding is supported; add {name!r} to exclude")
        chosen.append((name, module))
    return chosen


def decorrelate(model: nn.Module, *, include: Selector | Iterable[Selector] | None = None,
                exclude: Selector | Iterable[Selector] | None = None, convolutions: bool = True,
                preset: str | None = None, **options: Any) -> nn.Module:
    """Replace the chosen ``nn.Linear`` / ``nn.Conv2d`` of ``model`` in place (see the module
    docstring for the policy), keeping their weight Parameters; returns ``model``.

    ``options`` go to :class:`~signalprop.nn.decorrelation.Decorrelator` (rule, lr, kappa,
    sample_fraction, subsample, center, block_size, ...) and, for Linear, ``fuse``; ``preset``
    (``"ahmad"`` or ``"dalm"``) fills in the options not given. ``convolutions=False`` leaves
    every conv plain. Layers already decorrelated are left alone.
    """
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"decorrelation preset must be one of {list(PRESETS)}, "
                              f"got {preset!r}")
        options = {**PRESETS[preset], **options}
    unwanted = _selectors(exclude, "exclude") + (() if convolutions else (nn.Conv2d,))
    conv_options = {k: v for k, v in options.items() if k != "fuse"}
    for name, layer in layers_to_decorrelate(model, include, unwanted):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        if type(layer) is nn.Linear:
            new: nn.Module = DecorrelatedLinear.from_linear(layer, **options)
        else:
            new = DecorrelatedConv2d.from_conv(layer, **conv_options)
        setattr(parent, child, new)
        if isinstance(parent, nn.TransformerEncoderLayer):
            parent.activation_relu_or_gelu = 0  # the fused inference kernel would skip R
    return model
