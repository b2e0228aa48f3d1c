"""Models and batches of registered experiments, for ``signalprop diagnose EXPERIMENT``.

Every experiment declares its models in the registry (``Experiment.models``, see
:mod:`signalprop.experiments.registry`); diagnose builds the one asked for (``--model NAME``,
by default the experiment's main model) from the experiment's config (defaults, ``--quick``
overrides, ``--set`` overrides) on a batch of the experiment's own sample data. A
target-space model is diagnosed as its weight-space export (``to_weight_space()``, the same
function).
"""

from __future__ import annotations

import difflib

import torch
from torch import nn

from signalprop.errors import ConfigError
from signalprop.nn.target_space import TargetSpaceModule

#: A target-space model solves its layers' weights from targets inside its own forward, so its
#: layers never run as modules; diagnose sees the same function as ordinary layers.
WEIGHT_SPACE_NOTE = ("diagnosed as its weight-space export (the weights its targets solve to, "
                     "the same function as ordinary layers)")

Batch = tuple[torch.Tensor, torch.Tensor] | torch.Tensor


def diagnosable() -> dict[str, dict[str, str]]:
    """``{experiment: {model name: description}}``, the main model first."""
    from signalprop.experiments.registry import all_experiments

    return {e.name: {name: m.description for name, m in e.models.items()}
            for e in all_experiments() if e.models}


def models_table() -> str:
    """docs/diagnose.md's table of the models diagnose can build, one row per model."""
    rows = ["| experiment | model | what it is |", "|---|---|---|"]
    rows += [f"| `{e}` | `{n}` | {d} |" for e, models in diagnosable().items()
             for n, d in models.items()]
    return "\n".join(rows)


def experiment_model(name: str, *, batch_size: int, seed: int = 0, quick: bool = False,
                     overrides: list[str] | None = None, model: str | None = None
                     ) -> tuple[nn.Module, Batch, str]:
    """``(model, batch, description)``: model ``model`` (the main one for None) of the
    registered experiment ``name``, seeded by ``seed``, and the first ``batch_size`` training
    examples of its sample data (inputs alone where the data have no targets)."""
    from signalprop.experiments.context import resolve_config
    from signalprop.experiments.registry import get_experiment

    supported = diagnosable()
    if name not in supported:
        close = difflib.get_close_matches(name, sorted(supported), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown experiment {name!r}{hint} (`signalprop list` shows all; "
                          "or pass path/to/file.py:factory)")
    experiment = get_experiment(name)
    model_name, spec = experiment.model(model)
    cfg = resolve_config(experiment, quick, list(overrides or []))
    splits = experiment.sample_splits(cfg, batch_size, seed)
    if spec.image_only and len(splits.input_shape) != 3:
        raise ConfigError(f"model {model_name!r} of {name} needs images, but the sample data "
                          f"fell back to {splits.name} (the image dataset is missing); install "
                          "it or pick another --model")
    torch.manual_seed(seed)
    net = spec.build(cfg, splits)
    what = f"{name}: {model_name}, {spec.description}"
    if isinstance(net, TargetSpaceModule):
        net, what = net.to_weight_space(), f"{what}; {WEIGHT_SPACE_NOTE}"
    tensors = splits.train.tensors
    batch = tuple(t[:batch_size] for t in tensors) if len(tensors) > 1 else tensors[0][:batch_size]
    return net, batch, what
