"""Remedies for each problem, with the one-line code change that applies it.

:func:`fitting_remedies` gives the ones that keep the user's model, with its layer names filled
in (rescale those layers' initial weights, add normalisation after them, wrap its blocks in the
additive filter, clip gradients, lower the learning rate, SAL as a learning rule); the
library's architecture swaps (``BY_VERDICT``) follow only for the library's own ``MLP``, and
the recurrent swaps (``RECURRENT``) for recurrent layers with the problem.
"""

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
    "rnn = AdditiveFilterRNN(input_size, hidden_size, beta=1 / seq_len)  # in place of your "
    "recurrent layer",
)
SAL = Remedy(
    "sensitivity adjustment learning, SAL (Shibata et al., arXiv 2012.13134)",
    "raises each neuron's sensitivity f'(U)||w|| towards 1 after every optimiser step; its "
    "saturation guard revives saturated neurons",
    "from signalprop.learning.sensitivity import SensitivityAdjustment; "
    "rules = (SensitivityAdjustment(),)  # then fit(model, train, test, cfg, run_dir, "
    "rules=rules)",
)
TARGET_SPACE = Remedy(
    "learning in target space (Fairbank et al., arXiv 2006.01578)",
    "trains per-layer targets; weights are re-solved by least squares, which untangles the "
    "gradient through depth",
    "from signalprop.nn.target_space import TargetSpaceMLP, target_minibatch; "
    "import torch; model = TargetSpaceMLP(target_minibatch(torch.randn(100, in_features), 100), "
    "width, depth, out_features)  # pass your first 100 training inputs for torch.randn(...)",
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
    "from signalprop.nn.decorrelation_policy import decorrelate; "
    "from signalprop.learning.decorrelation_rule import DecorrelationRule; "
    "decorrelate(model); rules = (DecorrelationRule(),)  # then fit(model, ..., rules=rules)",
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
    "vanishing": (ADDITIVE_FILTER_RNN,),
    "exploding": (CLIP, ADDITIVE_FILTER_RNN),
    "saturated": (ADDITIVE_FILTER_RNN,),
}


# -- remedies that keep the user's model ------------------------------------------------------
#: Runs of at least this many names ``prefix.N`` with evenly spaced ``N`` are written as a
#: ``range`` (``*[f'stack.{i}' for i in range(200)]``), so a remedy's code stays one short line
#: that runs as printed.
MIN_RANGE = 4
LOWER_LR = Remedy(
    "lower the learning rate",
    "a 10x smaller step keeps updates bounded while gradients are large",
    "from signalprop.train import TrainConfig; cfg = TrainConfig(lr=TrainConfig().lr / 10)  "
    "# or your own lr / 10; signalprop run: --set train.lr=<lr / 10>",
)
#: The library's own fully connected baseline, whose architecture the library's models replace.
LIBRARY_MLPS = ("signalprop.nn.mlp.MLP",)


@dataclass(frozen=True)
class LayerInfo:
    """What a remedy needs to know of one diagnosed layer."""

    index: int
    name: str
    module: object  # the nn.Module
    gain: float | None
    verdict: str
    recurrent: bool
    #: SAL adjusts this layer (a ``Linear -> activation`` pair or a one-layer RNN it finds)
    sensitive: bool = False
    #: recurrent layers: the length of the diagnosed sequences
    steps: int | None = None


def _split_name(name: str) -> tuple[str, int | None]:
    prefix, _, last = name.rpartition(".")
    return (prefix, int(last)) if prefix and last.isdigit() else (name, None)


def names_code(names: list[str]) -> str:
    """A Python list expression of ``names``; runs ``p.a, p.(a+s), ...`` become ranges."""
    parts: list[str] = []
    i = 0
    while i < len(names):
        prefix, first = _split_name(names[i])
        j, step = i + 1, None
        if first is not None and i + 1 < len(names):
            nxt_prefix, nxt = _split_name(names[i + 1])
            if nxt_prefix == prefix and nxt is not None and nxt > first:
                step = nxt - first
                while j < len(names) and _split_name(names[j]) == (prefix, first + step * (j - i)):
                    j += 1
        if step is not None and j - i >= MIN_RANGE:
            stop = first + step * (j - i)  # type: ignore[operator]
            bounds = f"{first}, {stop}" + (f", {step}" if step != 1 else "")
            parts.append(f"*[f'{prefix}.{{i}}' for i in range({bounds})]")
            i = j
        else:
            parts.append(repr(names[i]))
            i += 1
    if len(parts) == 1 and parts[0].startswith("*"):
        return parts[0][1:]
    return "[" + ", ".join(parts) + "]"


def _names_code(targets: list[LayerInfo]) -> str:
    return names_code([t.name for t in targets])


def _span(problem: str, layers: list[LayerInfo]) -> tuple[list[LayerInfo], float | None]:
    """The layers that change the gradient in the problem's direction, from the first layer
    with the problem to the output, and the weight factor that would undo their mean change.

    The backward gain multiplies by ``q_l = r_l / r_{l+1}`` in layer ``l`` (``r`` after the last
    layer is 1, the output). From the first affected layer on, the layers with ``q_l > 1``
    (exploding) or ``q_l < 1`` (vanishing) are the cause; over the ``k`` layers from the first
    affected to the last cause, the mean factor is ``(r_first / r_after)^(1/k)``, and a weight
    scale of its inverse undoes it exactly in a chain of positively homogeneous layers (ReLU,
    linear) and approximately otherwise.
    """
    first = next(i for i, lay in enumerate(layers) if lay.verdict == problem)
    gains = [lay.gain for lay in layers] + [1.0]
    causes = []
    for i in range(first, len(layers)):
        here, after = gains[i], gains[i + 1]
        if here is None or after is None or after <= 0:
            continue
        ratio = here / after
        if (ratio > 1) if problem == "exploding" else (ratio < 1):
            causes.append(i)
    if not causes:
        return [], None
    last = causes[-1]
    if any(lay.verdict == problem and not hasattr(lay.module, "weight")
           for lay in layers[first:last + 1]):
        return [], None  # an affected layer (e.g. a GRU) has no weight that rescale could fix
    span = [lay for lay in layers[first:last + 1] if hasattr(lay.module, "weight")]
    start, end = gains[first], gains[last + 1]
    if not span or start is None or end is None or start <= 0 or end <= 0:
        return span, None
    return span, (end / start) ** (1.0 / (last + 1 - first))


def _blocks(targets: list[LayerInfo], modules: dict[str, object]) -> list[str]:
    """Width-preserving blocks (the user's own module around each layer) to wrap in a filter."""
    from torch import nn

    from signalprop.diagnose.fixes import block_width

    found: list[str] = []
    for target in targets:
        parent = target.name.rpartition(".")[0]
        block = modules.get(parent)
        containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
        if parent and block is not None and not isinstance(block, containers):
            if block_width(block) is not None and parent not in found:  # type: ignore[arg-type]
                found.append(parent)
    return found


def fitting_remedies(problem: str, layers: list[LayerInfo], modules: dict[str, object],
                     model_type: str) -> tuple[Remedy, ...]:
    """Remedies for ``problem`` that keep the model (gate biases, rescale, normalise, wrap,
    clip, lr, SAL), with the layer names filled in, each only where it applies (rescale when
    every affected layer has a weight, SAL when it adjusts an affected layer); the library's
    architecture swaps follow only for the library's own MLP, recurrent swaps only for
    recurrent layers with the problem, after the remedies that keep them."""
    from torch import nn

    affected = [lay for lay in layers if lay.verdict == problem]
    recurrent = any(lay.recurrent for lay in affected)
    found: list[Remedy] = []
    gated = [lay for lay in affected if lay.recurrent and isinstance(lay.module, nn.LSTM | nn.GRU)]
    if problem == "vanishing" and gated:
        steps = max(lay.steps or 2 for lay in gated)
        found.append(Remedy(
            f"gate biases that remember (chrono initialisation, Tallec & Ollivier, arXiv "
            f"1804.11188) for {len(gated)} gated recurrent layers",
            "sets the forget (LSTM) or update (GRU) gate biases to log U(1, T-1), so units keep "
            f"their state for up to T = {steps} steps and gradients through time last as long",
            f"from signalprop.diagnose.fixes import chrono_init; "
            f"chrono_init(model, {_names_code(gated)}, steps={steps})"))
    if problem in ("exploding", "vanishing"):
        span, factor = _span(problem, layers)
        if span and factor is not None:
            found.append(Remedy(
                f"rescale the initial weights of {len(span)} layers by {factor:.3g}",
                f"from {span[0].name} to {span[-1].name} each layer multiplies the gradient "
                f"by {1 / factor:.3g} on average; scaling their weights by the inverse undoes "
                "it (exactly for ReLU/linear chains); rerun diagnose to check",
                f"from signalprop.diagnose.fixes import rescale; "
                f"rescale(model, {_names_code(span)}, {factor:.3g})"))
        blocks = _blocks(span, modules) if span else []
        if blocks:
            found.append(Remedy(
                f"orthogonal additive filter around your {len(blocks)} blocks "
                "(Ceni, arXiv 2210.01245)",
                "h' = (1-b) O h + b block(h) with b = 1/blocks keeps each block's Jacobian "
                "near an orthogonal matrix; the blocks stay as they are",
                f"from signalprop.diagnose.fixes import add_additive_filter; "
                f"add_additive_filter(model, {blocks!r})"))
    else:
        span = [lay for lay in affected if hasattr(lay.module, "weight")]
    linear = [lay for lay in (span if problem == "exploding" else affected)
              if isinstance(lay.module, nn.Linear | nn.modules.conv._ConvNd)]
    if linear and problem in ("exploding", "saturated", "dead"):
        found.append(Remedy(
            f"add normalisation after {len(linear)} layers",
            "LayerNorm (GroupNorm(1, C) after a conv) keeps each layer's output at zero mean "
            "and unit scale, so activations neither blow up, saturate nor stay off",
            f"from signalprop.diagnose.fixes import add_layer_norm; "
            f"add_layer_norm(model, {_names_code(linear)})"))
    if problem in ("vanishing", "saturated", "dead") and any(lay.sensitive for lay in affected):
        found.append(SAL)  # only where SAL finds the affected neurons
    if problem == "exploding":
        found += [CLIP, LOWER_LR]
    if recurrent:  # replacing the recurrent layer comes after everything that keeps it
        rnn = next(lay for lay in affected if lay.recurrent)
        sizes = _recurrent_sizes(rnn)
        found += [_filled(r, sizes) for r in RECURRENT.get(problem, ())]
    if model_type in LIBRARY_MLPS:
        sizes = _mlp_sizes(modules.get(""))
        found += [_filled(r, sizes) for r in BY_VERDICT.get(problem, ())]
    elif problem == "ill-conditioned":
        found.append(DECORRELATION)
    return tuple(dict.fromkeys(found))


def _filled(remedy: Remedy, sizes: dict[str, int]) -> Remedy:
    """``remedy`` with the sizes it names (``in_features``, ``width``, ...) written in, so its
    code runs as printed."""
    import re

    code = remedy.code
    for name, value in sizes.items():
        code = re.sub(rf"\b{name}\b(?!=)", str(value), code)
    return Remedy(remedy.name, remedy.why, code)


def _mlp_sizes(model: object) -> dict[str, int]:
    """``in_features``, ``width``, ``depth``, ``out_features`` of the library's ``MLP``."""
    from torch import nn

    linears = [m for m in getattr(model, "hidden", []) if isinstance(m, nn.Linear)]
    head = getattr(model, "head", None)
    if not linears or not isinstance(head, nn.Linear):
        return {}
    return {"in_features": linears[0].in_features, "width": linears[0].out_features,
            "depth": len(linears), "out_features": head.out_features}


def _recurrent_sizes(layer: LayerInfo) -> dict[str, int]:
    """``input_size``, ``hidden_size`` and ``seq_len`` of a diagnosed recurrent layer."""
    module = layer.module
    cell = getattr(module, "cell", module)
    sizes = {k: getattr(cell, k, getattr(module, k, None)) for k in ("input_size", "hidden_size")}
    found = {k: v for k, v in sizes.items() if isinstance(v, int)}
    if layer.steps:
        found["seq_len"] = layer.steps
    return found
