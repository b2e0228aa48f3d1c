"""Neural path kernel, value-weight NTK, label alignment and kernel spectra of gated networks.

A path ``p = (i₀, i₁, …, i_{d-1})`` through a fully connected gated network has feature
``φ_x(p) = x(i₀) Π_l G_x(i_l, l)`` and value ``v(p) = Π_l Θᵛ(l)``, with ``ŷ(x) = ⟨φ_x, v⟩``.
The neural path kernel (NPK, Lakshminarayanan & Singh, arXiv 2006.10529) is

    H(x, x') = ⟨φ_x, φ_x'⟩ = ⟨x, x'⟩ · Λ(x, x'),   Λ(x, x') = Π_l Σ_i G_x(i, l) G_x'(i, l),

so ``H = (X Xᵀ) ⊙ Π_l (G_l G_lᵀ)`` needs no path enumeration. For fixed gates and value
weights i.i.d. zero-mean with per-layer std ``σ_l``, the value-weight NTK has expectation
``E[Kᵛ] = (Π_l σ_l²) (Σ_l σ_l⁻²) · H`` (``d σ^{2(d-1)} H`` for equal ``σ``): cross-path terms
have zero mean. Gated networks with a value bias or pooling have extra terms; the formulas here
are for the bias-free fully connected :class:`~signalprop.nn.gated.GatedMLP`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev

from signalprop.errors import ConfigError


def gate_overlap(gates: Sequence[Tensor], gates2: Sequence[Tensor] | None = None) -> Tensor:
    """``Λ = Π_l G_l G2_lᵀ``: per pair of inputs, the number of shared active sub-network
    paths (products of gate overlaps). Each gate tensor is ``(N, units)``.

    Computed in float64 (``Λ`` grows like ``(width/2)^depth``); see
    :func:`normalised_path_kernel` for depths where even float64 overflows.
    """
    gates2 = gates if gates2 is None else gates2
    if len(gates) != len(gates2) or not gates:
        raise ConfigError("gate_overlap needs the same non-zero number of gate layers")
    overlap = None
    for a, b in zip(gates, gates2, strict=True):
        term = a.flatten(1).double() @ b.flatten(1).double().T
        overlap = term if overlap is None else overlap * term
    return overlap  # type: ignore[return-value]


def path_kernel_from_gates(
    x: Tensor, gates: Sequence[Tensor], x2: Tensor | None = None,
    gates2: Sequence[Tensor] | None = None,
) -> Tensor:
    """``H = (X X2ᵀ) ⊙ Λ`` (float64) from inputs ``(N, D)`` and per-layer gates ``(N, units)``."""
    x2 = x if x2 is None else x2
    gates2 = gates if gates2 is None else gates2
    gram = x.flatten(1).double() @ x2.flatten(1).double().T
    return gram * gate_overlap(gates, gates2)


def _require_fully_connected(model: nn.Module) -> None:
    if not hasattr(model, "gates") or getattr(model, "pool_after", None) is not None:
        raise ConfigError(f"path_kernel needs a fully connected gated network (GatedMLP), got "
                          f"{type(model).__name__}; use ntk() for convolutional networks")


@torch.no_grad()
def path_kernel(model: nn.Module, x: Tensor, x2: Tensor | None = None) -> Tensor:
    """Neural path kernel (float64) of a fully connected gated network on ``x`` (and ``x2``).

    Uses ``model.gates`` and ``model.value_input_of`` (the value network's input, which is all
    ones for a DLGN with constant input).
    """
    _require_fully_connected(model)
    gates = model.gates(x)  # type: ignore[operator]
    v = model.value_input_of(x)  # type: ignore[operator]
    if x2 is None:
        return path_kernel_from_gates(v, gates)
    return path_kernel_from_gates(v, gates, model.value_input_of(x2),  # type: ignore[operator]
                                  model.gates(x2))  # type: ignore[operator]


@torch.no_grad()
def normalised_path_kernel(model: nn.Module, x: Tensor) -> Tensor:
    """``H_ij / sqrt(H_ii H_jj)`` computed in the log domain, so any depth is safe:
    ``cos(x_i, x_j) · exp(Σ_l [log o_l(i,j) − ½ log o_l(i,i) − ½ log o_l(j,j)])`` with
    ``o_l = G_l G_lᵀ``."""
    _require_fully_connected(model)
    v = model.value_input_of(x).flatten(1).double()  # type: ignore[operator]
    log_overlap = torch.zeros(v.shape[0], v.shape[0], dtype=torch.float64, device=v.device)
    for g in model.gates(x):  # type: ignore[operator]
        o = g.double() @ g.double().T
        d = o.diagonal().clamp_min(torch.finfo(torch.float64).tiny).log()
        log_overlap += o.clamp_min(0).log() - d[:, None] / 2 - d[None, :] / 2
    unit = v / v.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    return (unit @ unit.T) * log_overlap.exp()


def expected_value_ntk_scale(stds: Sequence[float]) -> float:
    """``(Π_l σ_l²) Σ_l σ_l⁻²``: the factor with ``E[Kᵛ] = factor · H`` (``d σ^{2(d-1)}``)."""
    if not stds or any(s <= 0 for s in stds):
        raise ConfigError(f"expected_value_ntk_scale needs positive stds, got {list(stds)}")
    log_prod = sum(2 * math.log(s) for s in stds)
    return sum(math.exp(log_prod - 2 * math.log(s)) for s in stds)


def _jacobian(model: nn.Module, names: Sequence[str], x: Tensor, output: int | None) -> Tensor:
    """``(N, C, P)`` Jacobian of the outputs (or of output unit ``output`` only, C = 1) w.r.t.
    the named parameters, via torch.func."""
    params = dict(model.named_parameters())
    chosen = {n: params[n].detach() for n in names}
    fixed = {n: p.detach() for n, p in params.items() if n not in chosen}
    fixed.update(dict(model.named_buffers()))

    def outputs_of(p: dict[str, Tensor]) -> Tensor:
        out = functional_call(model, {**fixed, **p}, (x,))
        out = out.reshape(out.shape[0], -1)
        return out if output is None else out[:, output : output + 1]

    jac = jacrev(outputs_of)(chosen)
    n, c = x.shape[0], next(iter(jac.values())).shape[1]
    return torch.cat([jac[name].reshape(n, c, -1) for name in names], dim=2)


def ntk(
    model: nn.Module, x: Tensor, x2: Tensor | None = None, *,
    params: Sequence[str] | None = None, output: int | None = None,
) -> Tensor:
    """Empirical NTK restricted to the named parameters, averaged over output units:
    ``K(x, x') = (1/C) Σ_c ⟨∂ŷ_c(x)/∂θ, ∂ŷ_c(x')/∂θ⟩`` (only unit ``output`` if given).

    ``params`` defaults to ``model.value_parameters()`` when the model has it (the value-weight
    NTK ``Kᵛ`` of a gated network), else all trainable parameters.
    """
    if params is None:
        if hasattr(model, "value_parameters"):
            params = list(model.value_parameters())  # type: ignore[operator]
        else:
            params = [n for n, p in model.named_parameters() if p.requires_grad]
    names = list(params)
    if not names:
        raise ConfigError("ntk needs at least one parameter")
    known = dict(model.named_parameters())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"ntk: unknown parameter names {unknown}")
    j1 = _jacobian(model, names, x, output)
    j2 = j1 if x2 is None else _jacobian(model, names, x2, output)
    return torch.einsum("acp,bcp->ab", j1, j2) / j1.shape[1]


def normalised_kernel(kernel: Tensor) -> Tensor:
    """``K_ij / sqrt(K_ii K_jj)`` (unit diagonal)."""
    diag = kernel.diagonal().clamp_min(torch.finfo(kernel.dtype).tiny).sqrt()
    return kernel / diag[:, None] / diag[None, :]


def kernel_spectrum(kernel: Tensor, normalise: bool = True) -> Tensor:
    """Eigenvalues, largest first, of the (optionally normalised) symmetric kernel."""
    k = normalised_kernel(kernel) if normalise else kernel
    k = (k + k.T) / 2
    return torch.linalg.eigvalsh(k.double()).flip(0).to(kernel.dtype)


def condition_number(kernel: Tensor, normalise: bool = True) -> float:
    """``λ_max / λ_min`` of the (optionally normalised) kernel (inf if singular)."""
    eig = kernel_spectrum(kernel, normalise)
    lo = float(eig[-1])
    return float("inf") if lo <= 0 else float(eig[0]) / lo


def mean_off_diagonal(kernel: Tensor) -> float:
    """Mean ``|K_ij|`` over ``i ≠ j`` of the normalised kernel (1 = rank one, 0 = diagonal)."""
    k = normalised_kernel(kernel)
    n = k.shape[0]
    if n < 2:
        return 0.0
    return float((k.abs().sum() - k.diagonal().abs().sum()) / (n * (n - 1)))


def label_alignment(kernel: Tensor, y: Tensor, ridge: float = 1e-6) -> float:
    """Label alignment ``ν = yᵀ (Ĥ + ridge · I)⁻¹ y`` of the trace-normalised kernel
    ``Ĥ = H / tr(H)`` (as in the NPF code, arXiv 2006.10529).

    Smaller ``ν`` means the labels lie along the kernel's large eigendirections. ``y`` is
    ``(N,)`` or ``(N, C)`` (then ``tr(Yᵀ Ĥ⁻¹ Y)``). Solved with ``torch.linalg.solve`` in
    float64; ``ridge`` is relative to the mean diagonal of ``Ĥ``.
    """
    if ridge < 0:
        raise ConfigError(f"label_alignment ridge must be >= 0, got {ridge}")
    k = kernel.double()
    n = k.shape[0]
    if k.shape != (n, n) or y.shape[0] != n:
        raise ConfigError(f"label_alignment: kernel {tuple(kernel.shape)} and labels "
                          f"{tuple(y.shape)} do not match")
    k = (k + k.T) / 2
    k = k / k.trace()
    k = k + ridge / n * torch.eye(n, dtype=k.dtype, device=k.device)
    yy = y.double().reshape(n, -1)
    return float((yy * torch.linalg.solve(k, yy)).sum())
