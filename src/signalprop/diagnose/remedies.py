"""The library's remedies for each problem, with the one-line code change that applies it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Remedy:
    """A named fix: what it does and the code that applies it."""

    name: str
    why: str
    code: str


ADDITIVE_FILTER = Remedy(
    "orthogonal additive filter (Ceni, arXiv 2210.01245)",
    "h' = (1-b) O h + b tanh(W h + c) with b = 1/depth keeps every Jacobian singular value "
    "in a depth-independent band",
    "from signalprop.nn.orthogonal import AdditiveFilterMLP; "
    "model = AdditiveFilterMLP(in_features, width, depth, out_features)",
)
ADDITIVE_FILTER_RNN = Remedy(
    "orthogonal additive filter RNN (Ceni, arXiv 2210.01245)",
    "b ~ 1/T keeps gradients through T time steps bounded",
    "from signalprop.nn.orthogonal_rnn import AdditiveFilterRNN; "
    "rnn = AdditiveFilterRNN(input_size, hidden_size, beta=1 / seq_len)",
)
SAL = Remedy(
    "sensitivity adjustment learning, SAL (Shibata et al., arXiv 2012.13134)",
    "raises each neuron's sensitivity f'(U)||w|| towards 1 after every optimiser step; its "
    "saturation guard revives saturated neurons",
    "from signalprop.learning.sensitivity import SensitivityAdjustment; "
    "fit(model, train, test, cfg, run_dir, rules=(SensitivityAdjustment(),))",
)
TARGET_SPACE = Remedy(
    "learning in target space (Fairbank et al., arXiv 2006.01578)",
    "trains per-layer targets; weights are re-solved by least squares, which untangles the "
    "gradient through depth",
    "from signalprop.nn.target_space import TargetSpaceMLP, target_minibatch; "
    "model = TargetSpaceMLP(target_minibatch(train_x, 100), width, depth, out_features)",
)
GATED = Remedy(
    "deep gated network with fixed random gates (Lakshminarayanan & Singh, arXiv 2006.10529)",
    "gates come from a separate, frozen feature network, so value weights always get "
    "gradient on the active paths",
    "from signalprop.nn.gated import gated_mlp; "
    "model = gated_mlp('frnpf-di', in_features, width, depth, out_features)",
)
SOFT_GATES = Remedy(
    "soft-gated network (DLGN, arXiv 2110.03403)",
    "sigmoid gates never have an exactly zero slope, so no unit can die",
    "from signalprop.nn.gated import gated_mlp; "
    "model = gated_mlp('dlgn', in_features, width, depth, out_features)",
)
DECORRELATION = Remedy(
    "input decorrelation (Ahmad, arXiv 2407.10780)",
    "decorrelates every layer's inputs, improving the conditioning of the gradient",
    "from signalprop.nn.decorrelated_layers import decorrelate; "
    "from signalprop.learning.decorrelation_rule import DecorrelationRule; "
    "decorrelate(model); fit(..., rules=(DecorrelationRule(),))",
)
CLIP = Remedy(
    "gradient clipping",
    "bounds the update size while the cause is fixed",
    "from signalprop.train import TrainConfig; cfg = TrainConfig(grad_clip=1.0)",
)
GAIN = Remedy(
    "smaller initial weight scale",
    "a gain at the edge of chaos (1 for tanh) keeps forward and backward signals O(1)",
    "from signalprop.nn.mlp import MLP; model = MLP(in_features, width, depth, out_features, "
    "activation='tanh', gain=1.0)",
)

BY_VERDICT: dict[str, tuple[Remedy, ...]] = {
    "vanishing": (ADDITIVE_FILTER, SAL, TARGET_SPACE, GATED),
    "exploding": (ADDITIVE_FILTER, GAIN, CLIP),
    "saturated": (SAL, GAIN, ADDITIVE_FILTER),
    "dead": (SOFT_GATES, GATED, SAL),
    "ill-conditioned": (DECORRELATION, ADDITIVE_FILTER),
}
RECURRENT: dict[str, tuple[Remedy, ...]] = {
    "vanishing": (ADDITIVE_FILTER_RNN, SAL),
    "exploding": (ADDITIVE_FILTER_RNN, CLIP),
    "saturated": (SAL, ADDITIVE_FILTER_RNN),
}


def remedies_for(problem: str, recurrent: bool = False) -> tuple[Remedy, ...]:
    """Remedies for a verdict ("vanishing", ...) or "ill-conditioned"; recurrent layers first
    get the recurrent remedies."""
    found = RECURRENT.get(problem, ()) if recurrent else ()
    return tuple(dict.fromkeys(found + BY_VERDICT.get(problem, ())))
