"""Layering (``nn`` imports nothing from ``learning``), the package version, the custom Functions'
clear errors under transforms they do not support, and float32 least-squares solves."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest
import torch

import signalprop
from signalprop.errors import ConfigError
from signalprop.nn.least_squares import ridge_solve
from signalprop.nn.orthogonal import _CheckpointedStack
from signalprop.nn.orthogonal_rnn import _AdditiveFilterBPTT


def test_nn_does_not_import_learning():
    code = ("import pkgutil, importlib, sys, signalprop.nn as n\n"
            "for m in pkgutil.iter_modules(n.__path__): importlib.import_module('signalprop.nn.'"
            " + m.name)\n"
            "print(sorted(k for k in sys.modules if k.startswith('signalprop.learning')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_version_comes_from_the_installed_metadata():
    assert signalprop.__version__ == importlib.metadata.version("signalprop")


def test_functions_called_directly_under_vmap_name_the_transform():
    h, w, b = torch.randn(3, 1, 4), torch.randn(2, 4, 4), torch.zeros(2, 4)
    with pytest.raises(ConfigError, match="torch.func.vmap"):
        torch.func.vmap(lambda x: _CheckpointedStack.apply(x, w, b, None, 1.0, 0.5, "identity",
                                                           "tanh", 1)[0])(h)
    x = torch.randn(2, 5, 3, 1)  # vmap over dim 0 of (T, B, input)
    weight_ih, weight, filt = torch.randn(4, 1), torch.randn(4, 4), torch.eye(4)
    with pytest.raises(ConfigError, match="torch.func.vmap"):
        torch.func.vmap(lambda xs: _AdditiveFilterBPTT.apply(
            xs, torch.zeros(3, 4), weight_ih, None, weight, filt, 0.9, 0.1, "tanh")[0])(x)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_solve_runs_in_float32(dtype):
    g = torch.Generator().manual_seed(0)
    design, targets = torch.randn(12, 4, generator=g), torch.randn(12, 2, generator=g)
    exact = ridge_solve(design.to(dtype).float(), targets.to(dtype).float(), 1e-3)
    half = ridge_solve(design.to(dtype), targets.to(dtype), 1e-3)
    assert half.dtype == dtype
    torch.testing.assert_close(half.float(), exact.to(dtype).float())
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast does not lower the solve
        assert ridge_solve(design, targets, 1e-3).dtype == torch.float32
