"""Singular values of the input-output Jacobian ``J = d f(x) / d x`` with ``torch.func``.

Dynamical isometry (Saxe et al. arXiv 1312.6120; Pennington et al. arXiv 1711.04735) asks for
all singular values of ``J`` near 1; the additive-filter networks of Ceni (arXiv 2210.01245)
bound them in ``[prod(a - b s_l), prod(a + b s_l)]``. Two ways to get them:

* :func:`jacobian_singular_values`: the full per-example Jacobian, ``vmap(jacrev(f))``
  (reverse mode, one pass per output) or ``vmap(jacfwd(f))`` (forward mode, one pass per
  input), then ``torch.linalg.svdvals``; for moderate depth and width.
* :func:`estimate_jacobian`: only the extreme singular values, for any size (used by
  :func:`signalprop.diagnose.diagnose`). Products ``J v`` come from ``torch.func.jvp`` and
  ``J^T u`` from ``torch.func.vjp``, both vectorised over a block of vectors with
  ``torch.func.vmap`` and batched over a few examples (each example's Jacobian is a diagonal
  block of the batched map, so the examples are assumed independent: true in eval mode or
  without batch statistics). When the Jacobian's smaller side ``s = min(in, out)`` is at most
  :data:`EXACT_SIDE`, that side's identity is pushed through in one vectorised call: ``J`` is
  then exact and ``torch.linalg.svdvals`` gives every singular value. Otherwise, randomized
  block subspace iteration (Halko, Martinsson & Tropp, arXiv 0909.4061) on the Gram operator
  ``G`` (``J J^T`` or ``J^T J``, the smaller) with :data:`BLOCK` vectors and
  :data:`POWER_STEPS` steps estimates ``sigma_max`` (converging from below), and the same
  iteration on the shifted operator ``c I - G`` estimates ``sigma_min`` from above (a
  Rayleigh-Ritz value, never below the true ``sigma_min``). If ``torch.func`` cannot
  differentiate the model (custom autograd Functions without forward mode or vmap support) and
  the output is small, the exact Jacobian is assembled from rows with ordinary reverse-mode
  ``torch.autograd.grad``; otherwise the estimate is reported unavailable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import jacfwd, jacrev, jvp, vjp, vmap

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

#: Largest smaller-side dimension for which the Jacobian is formed exactly.
EXACT_SIDE = 32
#: Block size and subspace-iteration steps of the randomized estimate.
BLOCK = 8
POWER_STEPS = 3
#: Examples of the batch whose Jacobians are estimated.
EXAMPLES = 2
#: Largest output for the reverse-mode fallback (one backward pass per output).
FALLBACK_ROWS = 64


@dataclass
class JacobianEstimate:
    """Per-example extreme singular values (averaged over the examples used)."""

    sigma_max: float | None
    sigma_min: float | None
    method: str  # "exact", "randomized", "exact (autograd rows)" or "unavailable: <reason>"
    examples: int
    shape: tuple[int, int]  # (out, in) of one example's Jacobian

    @property
    def condition(self) -> float | None:
        if self.sigma_max is None or self.sigma_min is None:
            return None
        return self.sigma_max / self.sigma_min if self.sigma_min > 0 else float("inf")


def _orth(block: Tensor) -> Tensor:
    """Orthonormal basis (k, dim, b) of each example's block of columns."""
    return torch.linalg.qr(block).Q


def _ritz(gram_apply: Callable[[Tensor], Tensor], basis: Tensor) -> Tensor:
    """Eigenvalues (k, b) of ``Q^T G Q`` for each example."""
    projected = basis.transpose(1, 2) @ gram_apply(basis)
    return torch.linalg.eigvalsh((projected + projected.transpose(1, 2)) / 2)


class _Products:
    """``J V`` and ``J^T U`` for blocks of vectors, batched over examples."""

    def __init__(self, fn: Callable[[Tensor], Tensor], x: Tensor) -> None:
        self.fn, self.x = fn, x
        self.k = x.shape[0]
        self.in_dim = x[0].numel()
        out, self._vjp = vjp(fn, x)
        self.out_dim = out.shape[1]

    def forward(self, v: Tensor) -> Tensor:  # v (k, in, b) -> (k, out, b)
        def one(col: Tensor) -> Tensor:
            return jvp(self.fn, (self.x,), (col.reshape(self.x.shape).to(self.x.dtype),))[1]

        return vmap(one, in_dims=2, out_dims=2)(v).to(v.dtype)

    def backward(self, u: Tensor) -> Tensor:  # u (k, out, b) -> (k, in, b)
        def one(col: Tensor) -> Tensor:
            return self._vjp(col.to(self.x.dtype))[0].reshape(self.k, -1)

        return vmap(one, in_dims=2, out_dims=2)(u).to(u.dtype)


def _exact(products: _Products) -> Tensor:
    return _exact_jacobian(products).detach()


def _exact_jacobian(products: _Products) -> Tensor:
    k, n_in, n_out = products.k, products.in_dim, products.out_dim
    dtype = torch.float64
    if n_out <= n_in:
        eye = torch.eye(n_out, dtype=dtype, device=products.x.device).expand(k, n_out, n_out)
        jac_t = products.backward(eye.contiguous())  # (k, in, out) = J^T
        return torch.linalg.svdvals(jac_t)
    eye = torch.eye(n_in, dtype=dtype, device=products.x.device).expand(k, n_in, n_in)
    return torch.linalg.svdvals(products.forward(eye.contiguous()))


def _randomized(products: _Products, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    k, n_in, n_out = products.k, products.in_dim, products.out_dim
    if n_out <= n_in:
        dim = n_out

        def gram(block: Tensor) -> Tensor:
            return products.forward(products.backward(block))
    else:
        dim = n_in

        def gram(block: Tensor) -> Tensor:
            return products.backward(products.forward(block))

    def start() -> Tensor:
        draw = torch.randn(k, dim, BLOCK, generator=generator, dtype=torch.float64)
        return _orth(draw.to(products.x.device))

    top = start()
    for _ in range(POWER_STEPS):
        top = _orth(gram(top))
    largest = _ritz(gram, top)[:, -1].clamp_min(0.0)
    shift = 1.01 * largest[:, None, None]
    bottom = start()
    for _ in range(POWER_STEPS):
        bottom = _orth(shift * bottom - gram(bottom))
    smallest = _ritz(gram, bottom)[:, 0].clamp_min(0.0)
    return largest.detach().sqrt(), smallest.detach().sqrt()


def _autograd_rows(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Exact per-example Jacobians (k, out, in) from one reverse pass per output."""
    with torch.enable_grad():
        inputs = x.detach().requires_grad_(True)
        out = fn(inputs)
        rows = []
        for j in range(out.shape[1]):
            (grad,) = torch.autograd.grad(out[:, j].sum(), inputs, retain_graph=True,
                                          allow_unused=True)
            grad = torch.zeros_like(inputs) if grad is None else grad
            rows.append(grad.reshape(x.shape[0], -1))
    return torch.stack(rows, 1).double()


def estimate_jacobian(
    fn: Callable[[Tensor], Tensor], x: Tensor, *, seed: int = 0
) -> JacobianEstimate:
    """Largest and smallest singular values of the Jacobians of ``fn`` (batched map
    ``(k, *in) -> (k, out)``) at the examples ``x``, averaged over the examples."""
    generator = torch.Generator().manual_seed(seed)
    k = x.shape[0]
    n_in = x[0].numel()
    try:
        products = _Products(fn, x)
        shape = (products.out_dim, n_in)
        if min(shape) <= EXACT_SIDE:
            values = _exact(products)
            return JacobianEstimate(float(values[:, 0].mean()), float(values[:, -1].mean()),
                                    "exact", k, shape)
        largest, smallest = _randomized(products, generator)
        return JacobianEstimate(float(largest.mean()), float(smallest.mean()), "randomized",
                                k, shape)
    except Exception as exc:  # torch.func cannot trace this model: fall back or give up
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    try:
        with torch.no_grad():
            n_out = fn(x).shape[1]
        if n_out > FALLBACK_ROWS:
            return JacobianEstimate(None, None, f"unavailable: {reason}", k, (n_out, n_in))
        values = torch.linalg.svdvals(_autograd_rows(fn, x))
        return JacobianEstimate(float(values[:, 0].mean()), float(values[:, -1].mean()),
                                "exact (autograd rows)", k, (n_out, n_in))
    except Exception as exc:
        return JacobianEstimate(None, None, f"unavailable: {type(exc).__name__}: {exc}"[:200],
                                k, (0, n_in))
