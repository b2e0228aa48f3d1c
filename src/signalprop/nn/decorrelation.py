"""A learnt decorrelating matrix ``R`` in front of a layer: ``z = R (x - mu)``, trained locally.

Ahmad, "Correlations Are Ruining Your Gradient Descent", arXiv 2407.10780. ``R`` (d x d,
identity at start) is a buffer, not a parameter: the optimiser never sees it. It is changed by a
local rule computed from a sub-sample of the layer's own inputs (the first or a random
``sample_fraction`` of the batch, 10% in the paper). With ``C = Z_s^T Z_s / k`` over the ``k``
sampled decorrelated rows, the rules are:

``"decorrelate"``
    the original local decorrelation rule (Ahmad, Schrader & van Gerven 2023, arXiv 2203.13203):
    ``R <- R - lr * offdiag(C) R``. It removes correlations but does not fix variances.
``"whiten"``
    the whitening variant (Dalm et al. 2024, arXiv 2405.02385), a gradient step on
    ``(1-kappa) sum_{i!=j} C_ij^2 + kappa sum_i (C_ii - 1)^2``:
    ``R <- R - lr * [(1-kappa) offdiag(C) + kappa diag(C_ii - 1)] R``. With
    ``variance="columns"`` the variance term scales ``R``'s columns instead, as decorbp's code
    does (``v * W`` broadcasts over the last axis, ``decorrelation/decorrelation.py``):
    ``R <- R - lr * [(1-kappa) offdiag(C) R + kappa R diag(C_ii - 1)]``. Both have the same
    fixed points in ``C`` (``C = I``); they differ in how ``R`` moves towards them.
``"normalised"``
    the paper's new rule for distributed computing and computational neuroscience:
    ``g = mean_n ||x_n|| / ||z_n||`` (one scalar, ``x`` uncentred) and ``R <- (I - lr C) g R``.
    It whitens up to one global scale and keeps ``||z|| ~ ||x||``; each layer needs only its
    own input, output and one scalar.
``"foldiak"``
    Foldiak's anti-Hebbian lateral inhibition (Foldiak 1990; in Ahmad's code May-June 2024): the
    forward map is the steady state of a recurrent lateral circuit, ``z = R^-1 (x - mu)``, and
    ``R <- R + lr offdiag(C)`` (lateral weights only, no self-connections). With the full ``C``
    the diagonal grows without bound and the fixed point is ``cov(z) ~ cov(x)^(1/3)``, which is
    not decorrelated. ``R^-1`` is cached and recomputed only after ``R`` changes (one ``d^3``
    inverse per update, which is why the paper's sweeps leave the rule out).

Every rule is ``R <- s * R + alpha * P`` with a per-row (or scalar) ``s``, a scalar ``alpha`` and
``P = Z_s^T Z_s R`` (``offdiag(Z_s^T Z_s)`` for Foldiak). ``P`` is formed in the cheaper order:
``Z_s^T (Z_s R)`` (``2 k d^2``, no ``d^3``) when ``k <= d`` (dense layers), ``(Z_s^T Z_s) R``
(``k d^2 + d^3``) when ``k > d`` (conv patches). Locally the product is accumulated straight into
``R`` (``addmm_``). Every statistic is a sum over samples, so under DDP the sums are all-reduced
and every rank applies the same update (:func:`signalprop.distributed.all_reduce_sum`). A
non-finite ``R`` raises :class:`~signalprop.errors.DivergenceError` naming the layer.

``block_size=b`` (not in the paper, whose ``R`` is dense) restricts ``R`` to diagonal blocks of
``b`` consecutive features (:mod:`signalprop.nn.block_diagonal`): every rule then runs inside each
block, and applying ``R`` costs ``B d b`` instead of ``B d^2``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from signalprop.config import require_number
from signalprop.errors import ConfigError, DivergenceError
from signalprop.nn.block_diagonal import (
    BLOCK_MAC_COST,
    apply_rows,
    block_groups,
    block_mask,
    block_view,
    done_densely,
    right_multiply,
    split_rows,
)
from signalprop.nn.precision import under_transform

RULES = ("decorrelate", "whiten", "normalised", "foldiak")
VARIANCE_SIDES = ("rows", "columns")
SUBSAMPLING = ("first", "random", "replacement")
# attributes set every step; they are never Parameters, buffers or modules, so they skip
# nn.Module.__setattr__'s bookkeeping (a few microseconds per set, several sets per layer)
_TRANSIENT = frozenset({"_sample", "_last_mean", "_fixed_mean", "_inverse", "recording"})


def _detached_rows(x: Tensor, features: int) -> Tensor:
    """``x`` as detached ``(n, features)`` rows, without ops when it already is."""
    if x.requires_grad:
        x = x.detach()
    return x if x.dim() == 2 and x.shape[1] == features else x.reshape(-1, features)


def centre(rows: Tensor, mu: Tensor) -> Tensor:
    """``rows - mu``, written ``rows + (-mu)``: its backward sums the gradient once for ``mu``,
    where ``sub``'s first negates a full ``(n, d)`` copy of it."""
    return rows + mu.neg()


class Decorrelator(nn.Module):
    """``z = R (x - mu)`` over the last dimension, with ``R`` updated by :meth:`update`.

    Args:
        features: input dimension ``d`` (``C_in * k_h * k_w`` for a convolution's patches).
        rule: ``"normalised"`` (paper's new rule, default), ``"decorrelate"``, ``"whiten"`` or
            ``"foldiak"`` (forward ``z = R^-1 (x - mu)``).
        lr: decorrelation learning rate ``eta``; stability needs ``lr * lambda_max(C) < 1``.
        kappa: whitening weight of the variance term (``"whiten"`` only), in [0, 1].
        variance: which side of ``R`` the whitening variance term ``diag(C_ii - 1)`` scales:
            ``"rows"`` (``diag(v) R``, the gradient of the whitening loss; default) or
            ``"columns"`` (``R diag(v)``, decorbp's code). ``"whiten"`` only.
        sample_fraction: fraction of the batch used for the update, ``k = floor(f B) + 1``
            (``max(1, floor(f B))`` with ``"replacement"``).
        subsample: ``"first"`` rows (Ahmad's code), ``"random"`` rows without replacement, or
            ``"replacement"``: ``floor(f B)`` rows drawn with replacement (Dalm et al.'s decorbp).
        max_samples: cap on sampled rows (conv patches); None keeps all.
        center: subtract the batch mean in training and a running mean in eval.
        momentum: running-mean momentum.
        block_size: None (dense ``R``, the paper) or ``b``: ``R`` is block-diagonal with blocks
            of ``b`` consecutive features (the last takes the remainder); cost ``/ (d / b)``.
    """

    def __init__(
        self,
        features: int,
        rule: str = "normalised",
        lr: float = 1e-4,
        kappa: float = 0.5,
        sample_fraction: float = 0.1,
        subsample: str = "first",
        max_samples: int | None = None,
        center: bool = True,
        momentum: float = 0.1,
        block_size: int | None = None,
        variance: str = "rows",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(features, int) or features < 1:
            raise ConfigError(f"Decorrelator features must be a positive integer, got {features!r}")
        if rule not in RULES:
            raise ConfigError(f"decorrelation rule must be one of {list(RULES)}, got {rule!r}")
        require_number("Decorrelator", "lr", lr, low=0.0)
        require_number("Decorrelator", "sample_fraction", sample_fraction, low=0.0, high=1.0,
                       open_low=True)
        if not (math.isfinite(lr) and lr >= 0):
            raise ConfigError(f"decorrelation lr must be a finite number >= 0, got {lr!r}")
        if not 0.0 <= kappa <= 1.0:
            raise ConfigError(f"decorrelation kappa must be in [0, 1], got {kappa!r}")
        if not 0.0 < sample_fraction <= 1.0:
            raise ConfigError(
                f"decorrelation sample_fraction must be in (0, 1], got {sample_fraction!r}"
            )
        if variance not in VARIANCE_SIDES:
            raise ConfigError(f"decorrelation variance must be one of {list(VARIANCE_SIDES)}, "
                              f"got {variance!r}")
        if variance == "columns" and rule != "whiten":
            raise ConfigError(f"decorrelation variance='columns' needs rule='whiten' (the only "
                              f"rule with a variance term), got rule {rule!r}; drop variance")
        if subsample not in SUBSAMPLING:
            raise ConfigError(f"subsample must be one of {list(SUBSAMPLING)}, got {subsample!r}")
        if max_samples is not None and max_samples < 1:
            raise ConfigError(f"max_samples must be >= 1 or None, got {max_samples!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ConfigError(f"decorrelation momentum must be in [0, 1], got {momentum!r}")
        if block_size is not None and (isinstance(block_size, bool)
                                       or not isinstance(block_size, int) or block_size < 1):
            raise ConfigError(f"decorrelation block_size must be a positive integer or None "
                              f"(dense R), got {block_size!r}")
        self.features = features
        self.rule = rule
        self.lr = float(lr)
        self.kappa = float(kappa)
        self.variance = variance
        self.sample_fraction = float(sample_fraction)
        self.subsample = subsample
        self.max_samples = max_samples
        self.center = center
        self.momentum = float(momentum)
        self.block_size = block_size if block_size is not None and block_size < features else None
        self.groups = block_groups(features, self.block_size)
        # entries of R inside its blocks (d^2 when dense)
        self.block_entries = sum(g.count * g.size * g.size for g in self.groups)
        self.recording = True
        self.layer_name = ""
        factory = {"device": device, "dtype": dtype}
        self.register_buffer("R", torch.empty(features, features, **factory))
        self.register_buffer("running_mean", torch.empty(features, **factory))
        self._sample: tuple[Tensor, Tensor, Tensor | None] | None = None
        self._last_mean: Tensor | None = None
        self._fixed_mean: Tensor | None = None
        self._inverse: tuple[tuple[int, int, torch.dtype], Tensor] | None = None
        self.reset_parameters()

    def __setattr__(self, name: str, value: object) -> None:
        if name in _TRANSIENT:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.R.copy_(torch.eye(self.features, dtype=self.R.dtype, device=self.R.device))
            self.running_mean.zero_()
        self._sample = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        """Loading keeps ``R`` block-diagonal: entries off the blocks are zeroed."""
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if self.block_size is not None:
            with torch.no_grad():
                self.R.mul_(block_mask(self.features, self.groups).to(self.R.dtype))

    def extra_repr(self) -> str:
        extra = f", kappa={self.kappa}" if self.rule == "whiten" else ""
        if self.variance == "columns":
            extra += ", variance='columns'"
        if self.block_size is not None:
            extra += f", block_size={self.block_size}"
        return (f"{self.features}, rule={self.rule!r}, lr={self.lr}{extra}, "
                f"sample_fraction={self.sample_fraction}, center={self.center}")

    # -- forward ---------------------------------------------------------------------------
    def matrix(self) -> Tensor:
        """The forward map ``M`` in ``z = M (x - mu)``: ``R``, or the cached ``R^-1`` (Foldiak)."""
        if self.rule != "foldiak":
            return self.R
        if under_transform():  # R may be a transform's tensor: no cache, no data_ptr
            return self._block_inverse()
        key = (self.R._version, self.R.data_ptr(), self.R.dtype)
        if self._inverse is None or self._inverse[0] != key:
            try:
                with torch.no_grad():
                    self._inverse = (key, self._block_inverse())
            except torch.linalg.LinAlgError:
                raise DivergenceError(
                    f"Foldiak matrix R of layer {self.layer_name or 'decorrelator'!r} became "
                    f"singular (lr {self.lr}); lower the decorrelation lr") from None
        return self._inverse[1]

    def _block_inverse(self) -> Tensor:
        """``R^-1`` block by block (zeros off the blocks)."""
        if self.block_size is None:
            return torch.linalg.inv(self.R)
        inverse = torch.zeros_like(self.R)
        for g in self.groups:
            block_view(inverse, g).copy_(torch.linalg.inv(block_view(self.R, g)))
        return inverse

    def apply(self, centred: Tensor) -> Tensor:
        """``z = (x - mu) M^T`` for centred rows ``(n, d)``, using only ``M``'s blocks."""
        return apply_rows(centred, self.matrix(), self.groups)

    def right_multiply(self, weight: Tensor) -> Tensor:
        """``W M`` for a weight ``(out, d)``: the fused weight ``W_eff``."""
        return right_multiply(weight, self.matrix(), self.groups)

    def sample_count(self, batch: int) -> int:
        """Rows used for the update out of ``batch``: ``floor(fraction * batch) + 1``, or
        ``max(1, floor(fraction * batch))`` drawn with replacement (decorbp)."""
        if self.subsample == "replacement":
            return max(1, int(self.sample_fraction * batch))
        return min(batch, int(self.sample_fraction * batch) + 1)

    def sample_index(self, batch: int, device: torch.device) -> Tensor | slice:
        """Which rows of a batch feed the update (first ``k``, ``k`` random distinct ones, or
        ``k`` drawn with replacement)."""
        k = self.sample_count(batch)
        if self.subsample == "first":
            return slice(0, k)
        if self.subsample == "replacement":
            return torch.randint(batch, (k,), device=device)
        return torch.randperm(batch, device=device)[:k]

    def mean(self, rows: Tensor) -> Tensor:
        """The centring vector ``mu``: batch mean (training, differentiable) or running mean."""
        if not self.center:
            return torch.zeros_like(self.running_mean)
        if self._fixed_mean is not None:
            return self._fixed_mean.to(rows.dtype)
        if not self.training:
            return self.running_mean
        # sum * (1/n), not mean(): mean's backward writes a divided (n, d) copy of the gradient;
        # sum's expands it as a view
        mu = rows.sum(0) * (1.0 / rows.shape[0])
        if under_transform():  # a torch.func transform must stay pure: no state update
            return mu
        frozen = mu.detach()
        self._last_mean = frozen
        if self.recording:  # both detached: the in-place update records no graph
            running = self.running_mean
            running.lerp_(frozen if frozen.dtype == running.dtype else frozen.to(running.dtype),
                          self.momentum)
        return mu

    def updating(self) -> bool:
        """Whether this forward pass updates state (running mean, update sample): in training,
        while recording, and never inside a ``torch.func`` transform, which must stay pure."""
        return self.training and self.recording and not under_transform()

    def record(self, rows: Tensor, mu: Tensor, z: Tensor | None = None) -> None:
        """Keep ``rows`` (raw inputs, one per row), the batch mean and, when the forward pass
        computed them, the rows' decorrelated values ``z`` (saves one product in the update)."""
        if not self.updating():
            return
        # detach and reshape only where needed: each is an op dispatch, and callers usually pass
        # detached (k, d) slices
        rows = _detached_rows(rows, self.features)
        if z is not None:
            z = _detached_rows(z, self.features)
        if self.max_samples is not None and rows.shape[0] > self.max_samples:
            keep = torch.randperm(rows.shape[0], device=rows.device)[: self.max_samples]
            rows = rows[keep]
            z = z[keep] if z is not None else None
        self._sample = (rows, mu.detach() if mu.requires_grad else mu, z)

    def forward(self, x: Tensor) -> Tensor:
        """``z = (x - mu) R^T`` over the last dimension (records a sub-sample in training)."""
        rows = x.reshape(-1, self.features)
        mu = self.mean(rows)
        z = self.apply(centre(rows, mu))
        if self.updating():
            index = self.sample_index(rows.shape[0], rows.device)
            self.record(rows.detach()[index], mu, z.detach()[index])
        return z.reshape(x.shape)

    # -- the local rule ----------------------------------------------------------------------
    def has_sample(self) -> bool:
        return self._sample is not None

    def _sampled(self) -> tuple[Tensor, Tensor]:
        """The recorded raw rows ``x`` and their decorrelated values ``z`` (in ``R``'s dtype)."""
        assert self._sample is not None
        x, mu, z = self._sample
        dtype = self.R.dtype
        if x.dtype != dtype:
            x = x.to(dtype)
        if z is None:
            return x, self.apply(x - mu.to(dtype))
        return x, z if z.dtype == dtype else z.to(dtype)

    def _products(self, z: Tensor) -> list[Tensor]:
        """Per block group, ``P = Z^T Z R`` (``offdiag(Z^T Z)`` for Foldiak) as ``(count, b, b)``,
        in the cheaper order for ``k`` rows."""
        products = []
        for g in self.groups:
            zb = split_rows(z, g)
            if self.rule == "foldiak":
                product = zb.transpose(1, 2) @ zb
                product.diagonal(dim1=1, dim2=2).zero_()
            elif z.shape[0] > g.size:  # k b^2 + b^3 < 2 k b^2
                product = (zb.transpose(1, 2) @ zb) @ block_view(self.R, g)
            else:
                product = zb.transpose(1, 2) @ (zb @ block_view(self.R, g))
            products.append(product)
        return products

    def product_macs(self, rows: int) -> int:
        """Multiply-adds of ``rows`` rows times ``R`` as :meth:`apply` does it: dense
        (``rows d^2``) for a dense ``R`` or a small product, else ``rows`` times the block
        entries."""
        if done_densely(rows, self.groups):
            return rows * self.features**2
        return rows * self.block_entries

    def product_cost(self, rows: int) -> float:
        """:meth:`product_macs` in dense-matmul multiply-add units: a block product's count is
        weighted by ``BLOCK_MAC_COST`` (a batched small-block matmul runs slower per
        multiply-add)."""
        macs = self.product_macs(rows)
        return float(macs) if done_densely(rows, self.groups) else BLOCK_MAC_COST * macs

    def _update_blocks(self, scale: Tensor | float, alpha: float,
                       products: list[Tensor]) -> None:
        """``R_b <- s R_b + alpha P_b`` in every block (row scales ``s`` split by block), then
        the divergence check.

        Works on a contiguous copy of the blocks and writes it back: in-place products on the
        strided block views of ``R`` were 2-3x slower.
        """
        finite = True
        for g, product in zip(self.groups, products, strict=True):
            view = block_view(self.R, g)
            blocks = view.contiguous()
            if isinstance(scale, Tensor) and scale.dim() > 0:
                blocks.mul_(scale[g.start : g.stop].reshape(g.count, g.size, 1))
            else:
                blocks.mul_(scale)
            blocks.add_(product, alpha=alpha)
            if blocks.data_ptr() != view.data_ptr():
                view.copy_(blocks)
            finite = finite and math.isfinite(float(blocks.sum()))
        if not finite:  # one reduction per group: NaN/Inf anywhere poisons the sum
            self._diverged()

    @staticmethod
    def _gain_sums(x: Tensor, z: Tensor) -> tuple[float, float]:
        """``sum ||x_n||/||z_n||`` and the count, over rows with ``||z_n|| > 1e-6 ||x_n||``
        (``z = 0`` for a centred batch of one)."""
        norm = torch.linalg.vector_norm
        ratios = norm(x, dim=1).div_(norm(z, dim=1))
        total = float(ratios.sum())
        if math.isfinite(total) and total < 1e6:  # then every ratio is below 1e6: all valid
            return total, float(ratios.shape[0])
        valid = ratios < 1e6  # inf and nan (z = 0) fail too
        return float(ratios[valid].sum()), float(valid.sum())

    @torch.no_grad()
    def statistics(self) -> Tensor:
        """Flat sums ``[P (blocks), sum z^2, sum ||x||/||z||, #rows with z != 0, k]``.

        Zeros when nothing was recorded, so ranks without data still join the all-reduce.
        """
        d, size = self.features, self.block_entries
        out = torch.zeros(size + d + 3, dtype=self.R.dtype, device=self.R.device)
        if self._sample is None:
            return out
        x, z = self._sampled()
        out[:size] = torch.cat([p.reshape(-1) for p in self._products(z)])
        out[size : size + d] = (z * z).sum(0)
        if self.rule == "normalised":
            out[-3], out[-2] = self._gain_sums(x, z)
        out[-1] = x.shape[0]
        return out

    def _coefficients(self, sq_sum: Tensor | None, gain_sum: float, valid: float,
                      k: float) -> tuple[Tensor | float, float]:
        """``(s, alpha)`` of ``R <- s R + alpha P`` for this rule (``c = sq_sum / k``)."""
        lr = self.lr
        if self.rule in ("decorrelate", "whiten"):
            assert sq_sum is not None
        if self.rule == "decorrelate":  # R - lr (C - diag C) R
            return (1 + lr * sq_sum / k)[:, None], -lr / k
        if self.rule == "whiten":  # R - lr [(1-kappa)(C - diag C) + kappa diag(C - 1)] R
            c = sq_sum / k
            rows = 1 + lr * (1 - self.kappa) * c
            if self.variance == "rows":  # columns: added by _column_term
                rows = rows - lr * self.kappa * (c - 1)
            return rows[:, None], -lr * (1 - self.kappa) / k
        if self.rule == "normalised":  # g (R - lr C R)
            gain = gain_sum / valid if valid else 1.0
            return gain, -lr * gain / k
        return 1.0, lr / k  # foldiak: R + lr offdiag(C)

    def _column_term(self, sq_sum: Tensor | None, k: float) -> Tensor | None:
        """``R diag(C_ii - 1)`` from the current ``R`` (zero off the blocks, like ``R``), for
        ``variance="columns"``; None otherwise. Taken before ``R`` is changed in place."""
        if self.variance != "columns" or sq_sum is None:
            return None
        return self.R * (sq_sum / k - 1)[None, :]

    def _add_column_term(self, term: Tensor | None) -> None:
        if term is None:
            return
        self.R.add_(term, alpha=-self.lr * self.kappa)
        if not math.isfinite(float(self.R.sum())):
            self._diverged()

    @torch.no_grad()
    def apply_statistics(self, stats: Tensor) -> None:
        """Apply the rule from (possibly all-reduced) :meth:`statistics`."""
        self._sample = None
        d, size = self.features, self.block_entries
        k = float(stats[-1])
        if k == 0 or self.lr == 0:
            return
        scale, alpha = self._coefficients(stats[size : size + d], float(stats[-3]),
                                          float(stats[-2]), k)
        column = self._column_term(stats[size : size + d], k)
        products, start = [], 0
        for g in self.groups:
            n = g.count * g.size * g.size
            products.append(stats[start : start + n].reshape(g.count, g.size, g.size))
            start += n
        self._update_blocks(scale, alpha, products)
        self._add_column_term(column)

    @torch.no_grad()
    def update(self) -> None:
        """One local update of ``R`` from the recorded sub-sample (no-op without one).

        Same maths as ``apply_statistics(statistics())`` without the flat buffer: for dense
        layers ``Z^T (Z R)`` is accumulated straight into ``R``.
        """
        if self._sample is None:
            return
        x, z = self._sampled()
        self._sample = None
        if self.lr == 0:
            return
        gain_sum, valid = self._gain_sums(x, z) if self.rule == "normalised" else (0.0, 0.0)
        sq_sum = (z * z).sum(0) if self.rule in ("decorrelate", "whiten") else None
        scale, alpha = self._coefficients(sq_sum, gain_sum, valid, float(z.shape[0]))
        column = self._column_term(sq_sum, float(z.shape[0]))
        if self.rule == "foldiak":
            self._update_blocks(scale, alpha, self._products(z))
        elif self.block_size is None and z.shape[0] <= self.features:
            zr = z @ self.R  # dense: Z^T (Z R) accumulated straight into R
            self.R.mul_(scale).addmm_(z.T, zr, alpha=alpha)
            if not math.isfinite(float(self.R.sum())):
                self._diverged()
        else:
            self._update_in_place(z, scale, alpha)
        self._add_column_term(column)

    def _update_in_place(self, z: Tensor, scale: Tensor | float, alpha: float) -> None:
        """``R_b <- s R_b + alpha Z_b^T Z_b R_b`` per block group with one ``baddbmm`` that reads
        the strided blocks of ``R`` and writes a new ``(count, b, b)`` tensor copied back."""
        total = 0.0
        for g in self.groups:
            view = block_view(self.R, g)
            zb = split_rows(z, g)
            start = view
            if isinstance(scale, Tensor) and scale.dim() > 0:
                start = view * scale[g.start : g.stop].reshape(g.count, g.size, 1)
                beta = 1.0
            else:
                beta = float(scale)
            zt = zb.transpose(1, 2)
            if z.shape[0] > g.size:  # (Z^T Z) R: k b^2 + b^3 < 2 k b^2
                new = torch.baddbmm(start, torch.bmm(zt, zb), view, beta=beta, alpha=alpha)
            else:
                new = torch.baddbmm(start, zt, torch.bmm(zb, view), beta=beta, alpha=alpha)
            view.copy_(new)
            total += float(new.sum())
        if not math.isfinite(total):
            self._diverged()

    def _diverged(self) -> None:
        name = self.layer_name or "decorrelator"
        raise DivergenceError(
            f"decorrelation matrix R of layer {name!r} became NaN/Inf (rule {self.rule!r}, "
            f"lr {self.lr}); lower the decorrelation lr (stability needs lr * largest "
            "input-covariance eigenvalue < 1)"
        )

    # -- diagnostics -----------------------------------------------------------------------
    @torch.no_grad()
    def output_covariance(self, x: Tensor) -> Tensor:
        """Covariance ``E[z z^T]`` of the decorrelated outputs for inputs ``x`` (rows)."""
        rows = x.reshape(-1, self.features).to(self.R.dtype)
        z = self.apply(rows - rows.mean(0) if self.center else rows)
        return z.T @ z / rows.shape[0]


def correlation_error(cov: Tensor) -> float:
    """Mean absolute off-diagonal correlation ``|C_ij| / sqrt(C_ii C_jj)`` of a covariance."""
    std = cov.diagonal().clamp_min(1e-30).sqrt()
    corr = cov / std[:, None] / std[None, :]
    d = cov.shape[0]
    if d < 2:
        return 0.0
    off = corr - torch.diag(corr.diagonal())
    return float(off.abs().sum() / (d * (d - 1)))


def decorrelators(model: nn.Module) -> Iterator[tuple[str, Decorrelator]]:
    """Every :class:`Decorrelator` in ``model`` with the name of the layer that owns it."""
    for name, module in model.named_modules():
        if isinstance(module, Decorrelator):
            owner = name.rsplit(".", 1)[0] if name.endswith("decorrelator") else name
            if owner == "decorrelator":
                owner = ""
            owner = owner or type(model).__name__
            if module.layer_name != owner:
                module.layer_name = owner
            yield owner, module


@contextmanager
def batch_means_frozen(model: nn.Module) -> Iterator[None]:
    """Within the block, centring uses the last training batch's mean and nothing is recorded.

    Node perturbation runs its noisy pass like this, so the noise of one sample cannot move
    another sample's centring.
    """
    mods = [m for _, m in decorrelators(model)]
    with recording_paused(model):
        for m in mods:
            m._fixed_mean = m._last_mean
        try:
            yield
        finally:
            for m in mods:
                m._fixed_mean = None


@contextmanager
def recording_paused(model: nn.Module) -> Iterator[None]:
    """Within the block, decorrelators neither record samples nor move their running means."""
    mods = [m for _, m in decorrelators(model)]
    saved = [m.recording for m in mods]
    for m in mods:
        m.recording = False
    try:
        yield
    finally:
        for m, flag in zip(mods, saved, strict=True):
            m.recording = flag
