"""Singular values of the input-output Jacobian ``J = d f(x) / d x`` with ``torch.func``.

Dynamical isometry (Saxe et al. arXiv 1312.6120; Pennington et al. arXiv 1711.04735) asks for
all singular values of ``J`` near 1; the additive-filter networks of Ceni (arXiv 2210.01245)
bound them in ``[prod(a - b s_l), prod(a + b s_l)]``. For moderate depth and width the full
per-example Jacobian is cheap: ``vmap(jacrev(f))`` (reverse mode, one pass per output) or
``vmap(jacfwd(f))`` (forward mode, one pass per input), then ``torch.linalg.svdvals``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import jacfwd, jacrev, vmap

from signalprop.errors import ConfigError


def input_output_jacobian(
    fn: Callable[[Tensor], Tensor], x: Tensor, *, mode: str = "rev"
) -> Tensor:
    """Per-example Jacobians ``(N, out, in)`` of a batched function ``fn`` at inputs ``x``.

    ``fn`` maps ``(N, *in_shape)`` to ``(N, *out_shape)`` treating examples independently;
    input and output dimensions are flattened.
    """
    if mode not in ("rev", "fwd"):
        raise ConfigError(f"mode must be 'rev' or 'fwd', got {mode!r}")

    def single(example: Tensor) -> Tensor:
        return fn(example.unsqueeze(0)).reshape(-1)

    transform = jacrev if mode == "rev" else jacfwd
    jac = vmap(transform(single))(x)
    return jac.reshape(x.shape[0], jac.shape[1], -1)


def jacobian_singular_values(
    fn: Callable[[Tensor], Tensor], x: Tensor, *, mode: str = "rev", reduce: str = "none"
) -> Tensor:
    """Singular values (descending) of each example's input-output Jacobian.

    ``reduce="none"`` returns ``(N, k)``; ``"mean"`` averages the sorted spectra over examples
    to ``(k,)``; ``"all"`` pools them into one flat tensor.
    """
    if reduce not in ("none", "mean", "all"):
        raise ConfigError(f"reduce must be 'none', 'mean' or 'all', got {reduce!r}")
    values = torch.linalg.svdvals(input_output_jacobian(fn, x, mode=mode))
    if reduce == "mean":
        return values.mean(0)
    if reduce == "all":
        return values.reshape(-1)
    return values


def spectrum_summary(values: Tensor) -> dict[str, float]:
    """Min, max, median and the max/min condition number of a set of singular values."""
    flat = values.reshape(-1).double()
    low, high = float(flat.min()), float(flat.max())
    return {"min": low, "max": high, "median": float(flat.median()),
            "condition": high / low if low > 0 else float("inf")}
