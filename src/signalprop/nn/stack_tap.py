"""The hook protocol through which learning rules reach the layers of an additive-filter stack.

:class:`~signalprop.nn.orthogonal.AdditiveFilterStack` keeps its ``L`` layers
``h_{l+1} = a O h_l + b phi(W_l u_l + c_l)`` (``u_l = h_l``, or ``R_l (h_l - mu_l)`` when the
branch is decorrelated) in one ``(L, n, n)`` weight, so module hooks cannot see a single layer.
A rule that must (direct feedback alignment injects its error at each layer, node perturbation
adds noise to each ``z_l = W_l u_l + c_l`` and records ``u_l``) sets ``stack.tap`` to a
:class:`StackTap`; while one is set the stack runs its layers one by one with plain autograd and
calls the tap at each. ``tap`` is a plain attribute: never part of ``state_dict``, and the rule
clears it in ``detach``.
"""

from __future__ import annotations

from torch import Tensor


class StackTap:
    """Called by the stack at every layer ``l``; the defaults change nothing."""

    def state(self, layer: int, h: Tensor) -> Tensor:
        """The layer's input state ``h_l`` (before decorrelation); return what the layer uses."""
        return h

    def pre_activation(self, layer: int, u: Tensor, z: Tensor) -> Tensor:
        """``z_l = W_l u_l + c_l`` and the branch input ``u_l``; return the ``z_l`` to use."""
        return z
