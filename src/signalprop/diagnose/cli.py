"""The ``signalprop diagnose`` sub-command: a gradient-health check of an experiment's model or
of a user's factory function.

``signalprop diagnose deep-tanh-mlp [--model shallow]`` (an experiment's model, from the
registry) or ``signalprop diagnose path/to/file.py:make_model``;
the factory takes no arguments and returns a model (then the batch is random inputs of the
shape its first Linear/RNN layer expects) or ``(model, batch)`` with ``batch`` = inputs or
``(inputs, targets)``.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import sys
import uuid
from pathlib import Path
from typing import Any

from signalprop.errors import SignalpropError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="EXPERIMENT or path/to/file.py:factory")
    parser.add_argument("--batch-size", type=int, default=64, help="examples (default 64)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write the diagnosis as JSON")
    parser.add_argument("--plot", type=Path, default=None, metavar="PATH",
                        help="also plot gradient norm and sensitivity vs depth (PNG)")
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="seed for the model and batch")
    parser.add_argument("--model", default=None, metavar="NAME",
                        help="experiments: which of its models (default: its main model; "
                             "docs/diagnose.md lists them)")
    parser.add_argument("--quick", action="store_true",
                        help="experiments: use the --quick config (e.g. smaller depth)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="experiments: override a config field")
    from signalprop.cli_checks import add_threads_option

    add_threads_option(parser)


def _is_file_target(target: str) -> bool:
    path, sep, _ = target.rpartition(":")
    return bool(sep) and (path.endswith(".py") or "/" in path or Path(path).exists())


def load_factory_target(target: str) -> Any:
    """Import ``path/to/file.py`` and return its attribute ``factory``; clear errors."""
    path_text, _, factory = target.rpartition(":")
    path = Path(path_text)
    if not factory:
        raise SignalpropError(f"{target!r}: name the factory after the colon, e.g. "
                              f"{path_text}:make_model")
    if not path.is_file():
        raise SignalpropError(f"model file not found: {path}")
    name = f"_signalprop_diagnose_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SignalpropError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise SignalpropError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.modules.pop(name, None)
    if not hasattr(module, factory):
        names = [n for n in vars(module) if not n.startswith("_") and callable(vars(module)[n])]
        close = difflib.get_close_matches(factory, names, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SignalpropError(f"{path} has no factory {factory!r}{hint}")
    found = getattr(module, factory)
    if not callable(found):
        raise SignalpropError(f"{path}:{factory} is not callable")
    return found


def _random_batch(model: Any, batch_size: int) -> tuple[Any, str]:
    """Random ``N(0, 1)`` inputs shaped for the model's first Linear or recurrent layer, and
    how the shape was guessed."""
    import torch
    from torch import nn

    from signalprop.diagnose.recurrent import is_recurrent

    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            shape = (batch_size, module.in_features)
            why = f"in_features of its first Linear layer {name or 'model'!r}"
            return torch.randn(shape), f"{_shape(shape)} ({why})"
        if is_recurrent(module):
            size = getattr(module, "input_size", None) or module.cell.input_size
            shape = (batch_size, 32, size)
            why = (f"batch, 32 time steps, input_size of its first recurrent layer "
                   f"{name or 'model'!r}")
            if not getattr(module, "batch_first", True):
                why += f"; it is not batch_first, so it reads {batch_size} steps of 32 sequences"
            return torch.randn(shape), f"{_shape(shape)} ({why})"
    raise SignalpropError("cannot infer the model's input shape (no Linear or RNN layer "
                          "first): return (model, batch) from the factory")


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def model_from_factory(target: str, batch_size: int) -> tuple[Any, Any, str]:
    from torch import nn

    factory = load_factory_target(target)
    try:
        made = factory()
    except Exception as exc:
        raise SignalpropError(f"{target} raised {type(exc).__name__}: {exc}") from exc
    if isinstance(made, nn.Module):
        batch, guessed = _random_batch(made, batch_size)
        return made, batch, (f"{target}; it returned no batch, so the inputs are random "
                             f"N(0,1) of guessed shape {guessed}")
    if isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], nn.Module):
        return made[0], made[1], target
    raise SignalpropError(f"{target} must return an nn.Module or (model, batch), got "
                          f"{type(made).__name__}")


def run(args: argparse.Namespace) -> int:
    import torch

    from signalprop.device import resolve_device
    from signalprop.diagnose.adapters import experiment_model
    from signalprop.diagnose.core import diagnose

    if args.batch_size < 1:
        raise SignalpropError(f"--batch-size must be >= 1, got {args.batch_size}")
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    if _is_file_target(args.target):
        if args.model is not None:
            raise SignalpropError("--model names an experiment's model; a file target's "
                                  "factory returns its own model, so drop --model")
        model, batch, what = model_from_factory(args.target, args.batch_size)
    else:
        model, batch, what = experiment_model(args.target, batch_size=args.batch_size,
                                              seed=args.seed, quick=args.quick,
                                              overrides=args.overrides, model=args.model)
    model = model.to(device)
    print(f"model: {what}", flush=True)
    result = diagnose(model, batch, seed=args.seed)
    print(result)
    if args.json is not None:
        print(f"json: {result.to_json(args.json)}")
    if args.plot is not None:
        print(f"plot: {result.plot(args.plot)}")
    return 0
