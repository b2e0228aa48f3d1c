"""Thresholds of the per-layer verdicts of :func:`signalprop.diagnose.core.diagnose`.

Every layer gets exactly one verdict, the first that applies in this order:

1. ``dead``: at least :data:`DEAD_FRACTION` of the layer's units have a zero activation slope
   ``f'(U) = 0`` for every example of the batch (a ReLU unit that never fires);
2. ``saturated``: at least :data:`SATURATED_FRACTION` of the (unit, example) pairs of a
   saturating activation (tanh, sigmoid, softsign, hardtanh) have ``|f'(U)|`` below
   :data:`SATURATION_SLOPE` times the activation's peak slope;
3. ``exploding``: a non-finite gradient, or the backward gain
   ``r_l = ||dL/dx_l|| / ||dL/dy||`` (the gradient reaching the layer's input ``x_l``, summed
   over all its uses, e.g. a skip path, over the gradient at the network output ``y``) above
   :data:`EXPLODING_RATIO`, or (recurrent layers) a largest Lyapunov exponent above
   :data:`LYAPUNOV_EXPLODING`;
4. ``vanishing``: ``r_l`` below :data:`VANISHING_RATIO`, or (recurrent layers) a largest
   Lyapunov exponent below :data:`LYAPUNOV_VANISHING`;
5. ``healthy`` otherwise.

Network-level warnings use the estimated input-output Jacobian singular values.
"""

from __future__ import annotations

#: Backward gain ``r_l`` below which a layer's gradient counts as vanished (100x smaller than
#: at the network output).
VANISHING_RATIO = 1e-2
#: Backward gain ``r_l`` above which a layer's gradient counts as exploded.
EXPLODING_RATIO = 1e2
#: ``|f'(U)| < SATURATION_SLOPE * max f'`` marks a saturated (unit, example); the same fraction
#: as the saturation guard of :class:`signalprop.learning.sensitivity.SensitivityAdjustment`.
SATURATION_SLOPE = 0.05
#: Fraction of saturated (unit, example) pairs from which a layer is called saturated.
SATURATED_FRACTION = 0.5
#: Fraction of dead units (zero slope on the whole batch) from which a layer is called dead.
DEAD_FRACTION = 0.5
#: Largest Lyapunov exponent (per step) above which a recurrent layer is chaotic: tangent
#: vectors, and hence gradients through time, grow like ``exp(lambda t)``.
LYAPUNOV_EXPLODING = 0.01
#: Largest Lyapunov exponent below which gradients through time shrink by ``e`` in fewer than
#: 10 steps.
LYAPUNOV_VANISHING = -0.1
#: Jacobian warnings: largest singular value above / below these, or condition number above.
JACOBIAN_EXPLODING = 1e3
JACOBIAN_VANISHING = 1e-3
JACOBIAN_ILL_CONDITIONED = 1e4

LAYER_VERDICTS = ("healthy", "vanishing", "exploding", "saturated", "dead")
