"""Differentiable ridge least squares, the solve that turns targets into weights.

Target space (Fairbank, Samothrakis & Citi, arXiv 2006.01578, eq. 3 and section 3.2) computes
each layer's weights as ``W = argmin_W ||A W - T||^2 + lambda ||W||^2``, where ``A`` is the
layer's input on the target minibatch (a column of ones appended for the bias). This module
solves it with a Cholesky factorisation of the smaller Gram matrix, never an explicit inverse:

* primal (rows >= columns): ``(A^T A + lambda I) W = A^T T``;
* dual (rows < columns): ``W = A^T (A A^T + lambda I)^{-1} T`` (the same minimiser, cheaper).

When the factorisation fails or is not finite, the ridge term is raised tenfold (a few times),
then a QR factorisation of the stacked system ``[A; sqrt(lambda) I] W = [T; 0]`` is tried. If
nothing gives finite weights a :class:`DivergenceError` naming the layer is raised. Gradients
flow through every path by autograd.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from signalprop.errors import ConfigError, DivergenceError
from signalprop.nn.precision import autocast_off, solve_dtype

#: ridge used once lambda = 0 fails (relative to the mean diagonal of the Gram matrix)
_FALLBACK_RELATIVE_RIDGE = 1e-6


@dataclass
class SolveReport:
    """How a solve went: the ridge finally used and which method produced the weights."""

    ridge: float
    method: str  # "cholesky-primal", "cholesky-dual" or "qr"
    retries: int = 0


def with_bias_column(inputs: Tensor) -> Tensor:
    """``[1, A]``: a column of ones prepended to the rows of ``inputs`` (n, d) -> (n, d + 1)."""
    ones = torch.ones(inputs.shape[0], 1, dtype=inputs.dtype, device=inputs.device)
    return torch.cat([ones, inputs], dim=1)


def _cholesky_solve(gram: Tensor, rhs: Tensor, ridge: float) -> Tensor | None:
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    factor, info = torch.linalg.cholesky_ex(gram + ridge * eye)
    if int(info) != 0:
        return None
    solution = torch.cholesky_solve(rhs, factor)
    return solution if bool(torch.isfinite(solution).all()) else None


def _qr_solve(design: Tensor, targets: Tensor, ridge: float) -> Tensor | None:
    cols = design.shape[1]
    eye = torch.eye(cols, dtype=design.dtype, device=design.device)
    stacked = torch.cat([design, (ridge**0.5) * eye], dim=0)
    rhs = torch.cat([targets, targets.new_zeros(cols, targets.shape[1])], dim=0)
    q, r = torch.linalg.qr(stacked, mode="reduced")
    diag = r.diagonal().abs()
    if not bool(torch.isfinite(r).all()) or float(diag.min()) <= 1e-12 * float(diag.max()):
        return None
    solution = torch.linalg.solve_triangular(r, q.T @ rhs, upper=True)
    return solution if bool(torch.isfinite(solution).all()) else None


def ridge_solve(
    design: Tensor,
    targets: Tensor,
    ridge: float,
    *,
    layer: str = "layer",
    retries: int = 3,
    form: str = "auto",
    report: list[SolveReport] | None = None,
) -> Tensor:
    """``argmin_W ||design @ W - targets||^2 + ridge * ||W||^2`` (arXiv 2006.01578, eq. 3).

    ``design`` is (n, d), ``targets`` (n, k); returns W (d, k). ``form`` picks the Gram matrix:
    "primal" (d x d), "dual" (n x n) or "auto" (the smaller). On a failed factorisation the
    ridge is multiplied by 10 up to ``retries`` times, then QR is tried; a :class:`DivergenceError`
    naming ``layer`` is raised if all fail. If ``report`` is a list a :class:`SolveReport` is
    appended to it. Half-precision inputs are solved in float32 with autocast off and the
    weights cast back (no bf16/fp16 Cholesky kernels; see :mod:`signalprop.nn.precision`).
    """
    if ridge < 0:
        raise ConfigError(f"ridge must be >= 0, got {ridge!r}")
    if form not in ("auto", "primal", "dual"):
        raise ConfigError(f"form must be auto, primal or dual, got {form!r}")
    if design.dim() != 2 or targets.dim() != 2 or design.shape[0] != targets.shape[0]:
        raise ConfigError(
            f"{layer}: design {tuple(design.shape)} and targets {tuple(targets.shape)} must be "
            "2-D with the same number of rows"
        )
    out_dtype = torch.promote_types(design.dtype, targets.dtype)
    if design.device.type == "meta":  # shapes only (construction under torch.device("meta"))
        return design.new_empty(design.shape[1], targets.shape[1], dtype=out_dtype)
    work_dtype = solve_dtype(out_dtype)
    with autocast_off(design.device.type):
        solution = _solve(design.to(work_dtype), targets.to(work_dtype), ridge, layer, retries,
                          form, report)
    return solution.to(out_dtype)


def _solve(design: Tensor, targets: Tensor, ridge: float, layer: str, retries: int, form: str,
           report: list[SolveReport] | None) -> Tensor:
    if not bool(torch.isfinite(design).all()) or not bool(torch.isfinite(targets).all()):
        bad = "inputs on the target minibatch" if not bool(torch.isfinite(design).all()) else (
            "targets")
        raise DivergenceError(f"{layer}: the {bad} contain NaN/Inf; cannot solve for its weights")
    rows, cols = design.shape
    dual = form == "dual" or (form == "auto" and rows < cols)
    gram = design @ design.T if dual else design.T @ design
    scale = float(gram.diagonal().mean().detach().abs()) or 1.0
    current = ridge
    for attempt in range(retries + 1):
        if dual:
            alpha = _cholesky_solve(gram, targets, current)
            solution = None if alpha is None else design.T @ alpha
        else:
            solution = _cholesky_solve(gram, design.T @ targets, current)
        if solution is not None:
            if report is not None:
                method = "cholesky-dual" if dual else "cholesky-primal"
                report.append(SolveReport(current, method, attempt))
            return solution
        current = current * 10.0 if current > 0 else _FALLBACK_RELATIVE_RIDGE * scale
    qr_ridge = max(current, _FALLBACK_RELATIVE_RIDGE * scale)
    solution = _qr_solve(design, targets, qr_ridge)
    if solution is not None:
        if report is not None:
            report.append(SolveReport(qr_ridge, "qr", retries + 1))
        return solution
    raise DivergenceError(
        f"{layer}: the least-squares solve for its weights failed (Cholesky with ridge up to "
        f"{current:.3g}, then QR); the inputs on the target minibatch are degenerate. Raise the "
        "ridge or use a larger, more varied target minibatch"
    )
