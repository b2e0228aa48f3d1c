"""The whitening rule's variance term on R's rows (ours) or columns (decorbp's code)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from signalprop.errors import ConfigError
from signalprop.nn.block_diagonal import block_mask
from signalprop.nn.decorrelation import Decorrelator, decorrelators
from signalprop.nn.decorrelation_policy import decorrelate

D = 12


def _data(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(D, D, generator=torch.Generator().manual_seed(99)) / D**0.5 + torch.eye(D)
    return 1.5 * torch.randn(n, D, generator=g) @ mix.T


def _start() -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return torch.eye(D) + 0.1 * torch.randn(D, D, generator=g)


def _expected(r: torch.Tensor, x: torch.Tensor, lr: float, kappa: float, side: str
              ) -> torch.Tensor:
    """decorbp's update, written out: X = Z^T Z / k, C = offdiag(X), v = mean(z^2) - 1,
    R - lr [(1-kappa) C R + kappa V], V = v * R (columns) or v[:, None] * R (rows)."""
    z = x @ r.T
    xx = z.T @ z / z.shape[0]
    c = xx - torch.diag(xx.diagonal())
    v = (z * z).mean(0) - 1.0
    variance = v * r if side == "columns" else v[:, None] * r
    return r - lr * ((1 - kappa) * c @ r + kappa * variance)


def _updated(side: str, x: torch.Tensor, path: str, lr: float = 0.02,
             kappa: float = 0.3, block_size: int | None = None) -> Decorrelator:
    dec = Decorrelator(D, rule="whiten", lr=lr, kappa=kappa, sample_fraction=1.0,
                       center=False, variance=side, block_size=block_size)
    dec.R.copy_(_start() * block_mask(D, dec.groups))  # block-diagonal when blocked
    dec(x)
    if path == "local":
        dec.update()
    else:
        dec.apply_statistics(dec.statistics())
    return dec


@pytest.mark.parametrize("side", ["rows", "columns"])
@pytest.mark.parametrize("batch", [6, 40])  # k < d: Z^T (Z R); k > d: (Z^T Z) R
@pytest.mark.parametrize("path", ["local", "all-reduce"])
def test_update_is_decorbps_formula(side, batch, path):
    x = _data(batch, 1)
    dec = _updated(side, x, path)
    torch.testing.assert_close(dec.R, _expected(_start(), x, 0.02, 0.3, side),
                               rtol=1e-5, atol=1e-6)


def test_rows_and_columns_differ():
    x = _data(40, 2)
    assert not torch.allclose(_updated("rows", x, "local").R, _updated("columns", x, "local").R)


def test_columns_whiten():
    dec = Decorrelator(D, rule="whiten", lr=0.02, kappa=0.5, sample_fraction=1.0,
                       center=False, variance="columns")
    for step in range(1500):
        dec(_data(256, step + 10))
        dec.update()
    cov = dec.output_covariance(_data(20000, 0))
    assert (cov - torch.eye(D)).abs().max() < 0.15


def test_columns_keep_a_block_diagonal_r():
    dec = _updated("columns", _data(40, 3), "local", block_size=4)
    off = dec.R.clone()
    for start in range(0, D, 4):
        off[start:start + 4, start:start + 4] = 0
    assert off.abs().max() == 0
    assert not torch.allclose(dec.R, torch.eye(D))


def test_bad_variance_side_is_a_config_error():
    with pytest.raises(ConfigError, match="variance must be one of"):
        Decorrelator(D, rule="whiten", variance="diagonal")
    with pytest.raises(ConfigError, match="needs rule='whiten'"):
        Decorrelator(D, rule="normalised", variance="columns")


def test_decorrelate_passes_the_side_to_every_layer():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    decorrelate(model, preset="dalm", variance="columns")
    sides = {dec.variance for _, dec in decorrelators(model)}
    assert sides == {"columns"}
    assert "variance='columns'" in repr(model)
