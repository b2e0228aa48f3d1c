"""The fixed filters ``O`` of the additive-filter RNN (:mod:`signalprop.nn.orthogonal_rnn`).

A value written into the state at step ``t`` reaches ``h_T`` rotated by ``O^(T-t)`` (and damped
by ``a^(T-t)``). A linear readout of ``h_T`` can read such a value back only along directions
that ``O^(T-t)`` leaves (nearly) in place for every ``t``, i.e. along eigenvectors whose
eigen-angle ``θ`` has ``|θ| T ≪ 1``: a *fixed direction* (``θ = 0``, eigenvalue +1) is read
at every ``t`` alike. The filters differ exactly there:

- ``"haar"``: a Haar-random orthogonal matrix (QR with sign correction); its determinant is
  +1 or −1 with probability 1/2 each. For even ``n``, ``det O = −1`` forces one eigenvalue +1
  and one −1 (a fixed direction), ``det O = +1`` generically has no real eigenvalue at all.
- ``"haar-det+1"`` / ``"haar-det-1"``: the same draw with its determinant fixed (column 0's
  sign flipped when it differs; the result is Haar on that half of ``O(n)``). For even ``n``
  ``"haar-det-1"`` is the Haar filter **with** a fixed direction, ``"haar-det+1"`` the one
  without.
- ``"haar-no-fixed"``: the ``"haar-det-1"`` draw with its fixed direction removed: on the
  plane of its +1 and −1 eigenvectors the reflection ``diag(1, −1)`` is replaced by a rotation
  by π/2, the rest of ``O`` unchanged (det +1, no real eigenvalue). For odd ``n`` a det −1
  draw already has no +1 eigenvalue (its real one is −1) and is returned as it is.
- ``"permutation"``: a random permutation matrix (every cycle of the permutation gives a +1
  eigenvalue); ``"cycle"``: the cyclic shift ``(O h)_i = h_{i-1}`` (eigenvalues the ``n``-th
  roots of unity, +1 among them: the all-ones direction); ``"identity"``: ``O = I`` (every
  direction fixed; an ablation, not the paper's filter). These three are gathers, not GEMMs.

Measured (``orthogonal-filter-mechanism``, adding problem, hidden 32, 2,000 Adam steps at
3e-3, 3 seeds; docs/methods/orthogonal.md): a fixed direction is **not** what learning needs.
At T = 100 the filters without one (``"haar-det+1"``, ``"haar-no-fixed"``) learned in some
seeds like those with one; at T = 400 none learned, ``"haar-det-1"``, ``"cycle"`` and
``"identity"`` included. ``"haar-det-1"`` is the option that keeps the fixed direction; it
is not the default.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from signalprop.errors import ConfigError
from signalprop.nn.orthogonal import random_orthogonal

FILTERS = ("haar", "haar-det+1", "haar-det-1", "haar-no-fixed", "permutation", "cycle",
           "identity")
GATHERS = ("permutation", "cycle", "identity")

__all__ = ["FILTERS", "make_filter", "smallest_angle"]


def make_filter(kind: str, n: int, *, generator: torch.Generator | None = None,
                dtype: torch.dtype | None = None, device: torch.device | str | None = None
                ) -> tuple[Tensor, Tensor | None]:
    """``(O, perm)``: the ``n x n`` filter of ``kind`` (see the module docstring) and, for a
    gather filter ``O = I[perm]``, the index tensor ``perm`` (else None)."""
    if kind not in FILTERS:
        raise ConfigError(f"filter must be one of {FILTERS}, got {kind!r}")
    dtype = dtype or torch.get_default_dtype()
    if kind in GATHERS:
        perm = {"permutation": lambda: torch.randperm(n, generator=generator),
                "cycle": lambda: torch.arange(n).roll(1),
                "identity": lambda: torch.arange(n)}[kind]()
        return torch.eye(n, dtype=dtype)[perm].to(device), perm.to(device)
    q = random_orthogonal(n, generator=generator, dtype=torch.float64)
    if kind != "haar":
        q = _with_det(q, 1.0 if kind == "haar-det+1" else -1.0)
    if kind == "haar-no-fixed" and n % 2 == 0:
        q = _without_fixed_direction(q)
    return q.to(dtype=dtype, device=device), None


def _with_det(q: Tensor, sign: float) -> Tensor:
    if float(torch.linalg.det(q)) * sign < 0:
        q = q.clone()
        q[:, 0] = -q[:, 0]
    return q


def _without_fixed_direction(q: Tensor) -> Tensor:
    """``q`` (even size, det −1) with the reflection on its (+1, −1) eigenplane turned into a
    rotation by π/2: ``q + V (R − D) V^T``, ``V = [v+, v-]``, ``D = diag(1, −1)``."""
    eye = torch.eye(q.shape[0], dtype=q.dtype)
    v_plus = torch.linalg.svd(q - eye).Vh[-1]  # null vector of O − I
    v_minus = torch.linalg.svd(q + eye).Vh[-1]  # null vector of O + I
    v = torch.stack([v_plus, v_minus], dim=1)
    rotation = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=q.dtype)
    reflection = torch.diag(torch.tensor([1.0, -1.0], dtype=q.dtype))
    return q + v @ (rotation - reflection) @ v.t()


def smallest_angle(o: Tensor) -> float:
    """``min |arg λ|`` over the eigenvalues ``λ`` of ``o`` (0 when ``o`` has a fixed direction),
    in radians; a direction stays readable after ``T`` steps only when ``|θ| T ≪ 1``."""
    angles = torch.angle(torch.linalg.eigvals(o.detach().double().cpu())).abs()
    return float(angles.min()) if angles.numel() else math.nan
