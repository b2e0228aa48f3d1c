"""Models and batches of registered experiments, for ``signalprop diagnose EXPERIMENT``.

Each adapter builds, from the experiment's own config dataclass (defaults, ``--quick``
overrides, ``--set`` overrides), the model the experiment studies and one batch of its data.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from signalprop.errors import ConfigError, DatasetMissing

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Adapter:
    """``build(config, batch_size, seed) -> (model, (inputs, targets))``; ``model`` says which
    of the experiment's models it is."""

    experiment: str
    model: str
    build: Callable[[Any, int, int], tuple[nn.Module, Batch]]


def _batch(splits: Any, batch_size: int) -> Batch:
    x, y = splits.train.tensors
    return x[:batch_size], y[:batch_size]


def _load(name: str, seed: int, **options: Any) -> Any:
    from signalprop import data

    try:
        return data.load(name, seed=seed, **options)
    except DatasetMissing:
        if name == "mnist1d":
            raise
        return data.load("mnist1d", seed=seed)


def _flat_input_model(cfg: Any, batch_size: int, seed: int,
                      build: Callable[[int, int, Any], nn.Module],
                      **load: Any) -> tuple[nn.Module, Batch]:
    """``build(in_features, classes, cfg.model)`` on ``cfg.data.name`` and one batch of its
    inputs flattened to rows (``load`` goes to the dataset loader)."""
    splits = _load(cfg.data.name, seed, n_train=max(batch_size, 100), n_test=100, **load)
    torch.manual_seed(seed)
    model = build(math.prod(splits.input_shape), splits.num_classes, cfg.model)
    x, y = _batch(splits, batch_size)
    return model, (x.flatten(1), y)


def _deep_tanh_mlp(cfg: Any, batch_size: int, seed: int) -> tuple[nn.Module, Batch]:
    from signalprop.nn.mlp import MLP

    splits = _load(cfg.data.name, seed, n_train=max(batch_size, 100), n_test=100)
    torch.manual_seed(seed)
    m = cfg.model
    model = MLP(splits.input_shape[-1], m.width, m.depth, splits.num_classes, m.activation,
                m.gain)
    return model, _batch(splits, batch_size)


def _orthogonal_deep_mlp(cfg: Any, batch_size: int, seed: int) -> tuple[nn.Module, Batch]:
    from signalprop.nn.orthogonal import AdditiveFilterMLP

    def build(features: int, classes: int, m: Any) -> nn.Module:
        return AdditiveFilterMLP(features, m.width, m.depth, classes, skip="orthogonal",
                                 beta_scale=m.beta_scale, segment=m.segment or None)

    return _flat_input_model(cfg, batch_size, seed, build, flatten=True)


def _orthogonal_long_memory(cfg: Any, batch_size: int, seed: int) -> tuple[nn.Module, Batch]:
    from signalprop import data
    from signalprop.experiments.orthogonal_memory import filter_classifier

    length = cfg.adding.lengths[-1]
    splits = data.load("adding", seed=seed, T=length, n_train=batch_size, n_test=batch_size)
    torch.manual_seed(seed)
    return filter_classifier(2, 1, length, cfg.model), _batch(splits, batch_size)


def _gated_variants(cfg: Any, batch_size: int, seed: int) -> tuple[nn.Module, Batch]:
    from signalprop.nn.gated import gated_mlp

    def build(features: int, classes: int, m: Any) -> nn.Module:
        variant = "dlgn" if "dlgn" in m.variants else m.variants[0]
        if variant == "flnpf":
            variant = "relu"
        return gated_mlp(variant, features, m.width, m.depth, classes)

    return _flat_input_model(cfg, batch_size, seed, build, flatten=True)


def _sensitivity_deep_mlp(cfg: Any, batch_size: int, seed: int) -> tuple[nn.Module, Batch]:
    from signalprop.nn.mlp import MLP

    def build(features: int, classes: int, m: Any) -> nn.Module:
        return MLP(features, m.width, m.depth, classes, m.activation, m.small_gain)

    return _flat_input_model(cfg, batch_size, seed, build)


def _sensitivity_lag(cfg: Any, batch_size: int, seed: int) -> tuple[nn.Module, Batch]:
    from signalprop import data
    from signalprop.experiments.sensitivity import lag_model

    d = cfg.data
    splits = data.load("delayed-recall", seed=seed, T=d.lag, noise=d.noise, n_train=batch_size,
                       n_test=batch_size)
    return lag_model(cfg.model, cfg.model.small_radius, seed), _batch(splits, batch_size)


ADAPTERS: dict[str, Adapter] = {a.experiment: a for a in (
    Adapter("deep-tanh-mlp", "the deep tanh MLP (model.depth layers)", _deep_tanh_mlp),
    Adapter("orthogonal-deep-mlp", "the additive-filter MLP (model.depth layers)",
            _orthogonal_deep_mlp),
    Adapter("orthogonal-long-memory",
            "the additive-filter RNN on the adding problem (T = the last of adding.lengths)",
            _orthogonal_long_memory),
    Adapter("gated-variants", "the gated MLP (DLGN variant if selected, else the first)",
            _gated_variants),
    Adapter("sensitivity-deep-mlp", "the deep MLP at the small initial gain (before SAL)",
            _sensitivity_deep_mlp),
    Adapter("sensitivity-lag", "the tanh RNN at the small spectral radius (before SAL)",
            _sensitivity_lag),
)}


def experiment_model(name: str, *, batch_size: int, seed: int = 0, quick: bool = False,
                     overrides: list[str] | None = None) -> tuple[nn.Module, Batch, str]:
    """``(model, batch, description)`` of a registered experiment with an adapter."""
    from signalprop.experiments.context import resolve_config
    from signalprop.experiments.registry import all_experiments, get_experiment

    if name not in ADAPTERS:
        known = {e.name for e in all_experiments()}
        if name in known:
            raise ConfigError(f"experiment {name!r} has no diagnose adapter; supported: "
                              f"{', '.join(sorted(ADAPTERS))} (or pass path/to/file.py:factory)")
        close = difflib.get_close_matches(name, sorted(known | set(ADAPTERS)), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown experiment {name!r}{hint} (diagnose supports "
                          f"{', '.join(sorted(ADAPTERS))}, or path/to/file.py:factory)")
    adapter = ADAPTERS[name]
    cfg = resolve_config(get_experiment(name), quick, list(overrides or []))
    model, batch = adapter.build(cfg, batch_size, seed)
    return model, batch, f"{name}: {adapter.model}"
