"""``diagnose(model, batch)``: where do a model's gradients vanish, explode, saturate or die?

Works on any ``nn.Module`` without touching its code, only with hooks, a
``TorchFunctionMode`` and ``torch.func``; see docs/diagnose.md. Costs, for a batch of ``N``:

1. one forward pass with hooks (outputs, activation statistics, neuron sensitivities) and one
   reverse pass with ``torch.autograd.grad`` (parameter and layer-output gradients; ``.grad``
   is not touched);
2. the Jacobian estimate on :data:`~signalprop.diagnostics.jacobian.EXAMPLES` examples: at most
   :data:`~signalprop.diagnostics.jacobian.EXACT_SIDE` vectorised products when a side of ``J``
   is small, else ``2 (POWER_STEPS + 1)`` Gram products on blocks of ``BLOCK`` vectors;
3. per recurrent layer, one tangent propagation along one example's first
   :data:`~signalprop.diagnose.recurrent.MAX_STEPS` steps.

Together this is a few forward-backward passes of the batch (``benchmarks/diagnose_cost.py``
measures the ratio to one training step).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from signalprop.diagnose import thresholds as th
from signalprop.diagnose.capture import LayerRecord, Recorder, first_tensor, layer_parameters
from signalprop.diagnose.recurrent import is_recurrent, largest_exponent
from signalprop.diagnose.remedies import LayerInfo, fitting_remedies
from signalprop.diagnose.report import Diagnosis, LayerDiagnosis, Suggestion
from signalprop.diagnose.stacks import can_unroll, unroll
from signalprop.diagnostics.gradients import stacked_depth, stacked_layer_norms
from signalprop.diagnostics.jacobian import EXAMPLES, estimate_jacobian
from signalprop.diagnostics.sensitivity import SensitiveLayer, SensitivityProbe
from signalprop.errors import ConfigError, SignalpropError
from signalprop.nn.elman import ElmanRNN

__all__ = ["Diagnosis", "diagnose"]

#: Priority of the verdicts when one layer meets several conditions, and for the overall one.
PRIORITY = ("dead", "saturated", "exploding", "vanishing")


def _split_batch(batch: Any) -> tuple[Tensor, Tensor | None]:
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, tuple | list) and len(batch) in (1, 2):
        inputs = batch[0]
        targets = batch[1] if len(batch) == 2 else None
        if isinstance(inputs, Tensor) and (targets is None or isinstance(targets, Tensor)):
            return inputs, targets
    raise ConfigError("diagnose batch must be a tensor of inputs or a tuple (inputs, targets), "
                      f"got {type(batch).__name__}")


def _device(model: nn.Module, inputs: Tensor) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return inputs.device


def _loss(output: Tensor, targets: Tensor | None, loss_fn: Callable | None,
          seed: int) -> tuple[Tensor, str]:
    """The loss whose gradients are measured, and a short description of it."""
    if loss_fn is not None:
        loss = loss_fn(output) if targets is None else loss_fn(output, targets)
        return loss, getattr(loss_fn, "__name__", type(loss_fn).__name__)
    if targets is not None:
        from signalprop.train import classification_loss, regression_loss

        if targets.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
            return classification_loss(output, targets), "cross-entropy"
        return regression_loss(output, targets), "mse"
    # Inputs only: a random projection of the outputs, L = (1/N) sum_i <r_i, y_i>,
    # r ~ N(0, I): every output gets a unit-variance error whatever the output's scale.
    generator = torch.Generator().manual_seed(seed)
    r = torch.randn(output.shape, generator=generator, dtype=torch.float64)
    r = r.to(device=output.device, dtype=output.dtype)
    return (r * output).sum() / output.shape[0], "random projection"


def _norm(tensors: list[Tensor]) -> float | None:
    if not tensors:
        return None
    return float(torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(t.detach().double()) for t in tensors])))


def _rnn_probe(model: nn.Module) -> SensitivityProbe | None:
    layers = []
    for name, module in model.named_modules():
        one_layer = getattr(module, "num_layers", 1) == 1
        simple = not getattr(module, "bidirectional", False)
        if (isinstance(module, ElmanRNN) or type(module) is nn.RNN) and one_layer and simple:
            layers.append(SensitiveLayer(name or "rnn", module, module.nonlinearity, "rnn"))
    if not layers:
        return None
    return SensitivityProbe(model, layers, max_rows=4096, training_only=False)


def _no_sensitivity(module: nn.Module) -> str:
    """Why a recurrent layer has no sensitivity ``s = f'(U) ||w||`` (arXiv 2012.13134)."""
    if isinstance(module, nn.LSTM | nn.GRU):
        unit = ("an LSTM unit h = o * tanh(c) is a product of gates" if isinstance(module, nn.LSTM)
                else "a GRU unit is a gated mix of its state and a tanh neuron")
        return (f"s = f'(U)||w|| is defined for a neuron o = f(w.x + theta), but {unit}, with "
                "no single slope f'(U); its Lyapunov exponent (lyap) measures the growth of "
                "gradients through time instead")
    return ("sensitivity is measured for one-layer, unidirectional nn.RNN and ElmanRNN; "
            "this layer is stacked, bidirectional or another recurrent module (see lyap)")


def _layer_verdict(lay: LayerDiagnosis, finite: bool) -> tuple[str, list[str]]:
    found: list[tuple[str, str]] = []
    if lay.dead_fraction is not None and lay.dead_fraction >= th.DEAD_FRACTION:
        found.append(("dead", f"{lay.dead_fraction:.0%} of units have zero slope on the "
                      "whole batch"))
    if lay.saturated_fraction is not None and lay.saturated_fraction >= th.SATURATED_FRACTION:
        found.append(("saturated", f"{lay.saturated_fraction:.0%} of unit-examples have |f'| "
                      f"< {th.SATURATION_SLOPE} x peak slope"))
    gain, lyap = lay.backward_gain, lay.lyapunov
    if not finite:
        found.append(("exploding", "non-finite gradient"))
    if gain is not None and gain > th.EXPLODING_RATIO:
        found.append(("exploding", f"backward gain {gain:.3g} > {th.EXPLODING_RATIO:g}"))
    if lyap is not None and lyap > th.LYAPUNOV_EXPLODING:
        found.append(("exploding", f"Lyapunov exponent {lyap:.3g} > {th.LYAPUNOV_EXPLODING}"))
    if gain is not None and gain < th.VANISHING_RATIO:
        found.append(("vanishing", f"backward gain {gain:.3g} < {th.VANISHING_RATIO:g}"))
    if lyap is not None and lyap < th.LYAPUNOV_VANISHING:
        found.append(("vanishing", f"Lyapunov exponent {lyap:.3g} < {th.LYAPUNOV_VANISHING}"))
    verdicts = {v for v, _ in found}
    for verdict in PRIORITY:
        if verdict in verdicts:
            return verdict, [reason for _, reason in found]
    return "healthy", []


def _finite(x: float | None) -> bool:
    return x is None or (x == x and abs(x) != float("inf"))


def _layers(records: list[LayerRecord], grads: dict[int, Tensor], out_ref: float | None,
            rnn_sens: dict[str, Tensor]) -> tuple[list[LayerDiagnosis], list[LayerRecord]]:
    """One row per layer, a stacked module's layers one by one, and each row's record."""
    result: list[LayerDiagnosis] = []
    owners: list[LayerRecord] = []
    for rec in records:
        params = layer_parameters(rec.module)
        p_grads = [grads[id(p)] for p in params if id(p) in grads]
        o_grads = [grads[id(o)] for o in rec.outputs if id(o) in grads]
        i_grads = [grads[id(i)] for i in rec.inputs if id(i) in grads]
        depth = stacked_depth(rec.module)
        if depth is not None and p_grads:
            rows = _stack_rows(rec, depth, p_grads, o_grads, out_ref)
            result += rows
            owners += [rec] * len(rows)
            continue
        grad_norm, out_norm, in_norm = _norm(p_grads), _norm(o_grads), _norm(i_grads)
        gain = None
        if in_norm is not None and out_ref:
            gain = in_norm / out_ref
        act = rec.act
        sens = rec.sensitivity_mean
        log_rms = rec.log_rms_sensitivity
        if sens is None and rec.name in rnn_sens:
            s = rnn_sens[rec.name].double()
            sens = s.mean(0)
            log_rms = 0.5 * float(s.pow(2).mean().clamp_min(1e-300).log())
        note = None
        if sens is None and is_recurrent(rec.module):
            note = _no_sensitivity(rec.module)
        lay = LayerDiagnosis(
            index=len(result), name=rec.name, kind=rec.kind, grad_norm=grad_norm,
            output_grad_norm=out_norm, input_grad_norm=in_norm, backward_gain=gain,
            activation=act.activation if act else None,
            act_mean=act.mean if act else rec.out_stats.mean,
            act_std=act.std if act else rec.out_stats.std,
            saturated_fraction=act.saturated_fraction if act else None,
            dead_fraction=act.dead_fraction if act else None,
            sensitivity_mean=None if sens is None else float(sens.mean()),
            sensitivity_log_rms=log_rms, lyapunov=None, verdict="healthy",
            sensitivity_note=note,
        )
        result.append(lay)
        owners.append(rec)
    for index, lay in enumerate(result):
        lay.index = index
    return result, owners


def _stack_rows(rec: LayerRecord, depth: int, p_grads: list[Tensor], o_grads: list[Tensor],
                out_ref: float | None) -> list[LayerDiagnosis]:
    """A stacked module's layers as rows ``<name>.0`` ... ``<name>.<L-1>``, measured one by one
    (:mod:`signalprop.diagnose.stacks`) where the module is known, else with |dL/dW| only."""
    norms = stacked_layer_norms(depth, p_grads).tolist()
    measured = None
    if can_unroll(rec.module) and rec.inputs and o_grads:
        measured = unroll(rec.module, rec.inputs[0], o_grads[0])  # type: ignore[arg-type]
    rows = []
    for layer in range(depth):
        m = measured[layer] if measured else None
        act = m.act if m else None
        rows.append(LayerDiagnosis(
            index=0, name=f"{rec.name}.{layer}", kind="stack layer", grad_norm=norms[layer],
            output_grad_norm=m.output_grad_norm if m else None,
            input_grad_norm=m.input_grad_norm if m else None,
            backward_gain=m.input_grad_norm / out_ref if m and out_ref else None,
            activation=act.activation if act else None,
            act_mean=act.mean if act else None, act_std=act.std if act else None,
            saturated_fraction=act.saturated_fraction if act else None,
            dead_fraction=act.dead_fraction if act else None,
            sensitivity_mean=m.sensitivity_mean if m else None,
            sensitivity_log_rms=m.sensitivity_log_rms if m else None, lyapunov=None,
            verdict="healthy", stack=rec.name,
        ))
    return rows


def diagnose(
    model: nn.Module,
    batch: Any,
    loss_fn: Callable[..., Tensor] | None = None,
    *,
    jacobian: bool = True,
    lyapunov: bool = True,
    seed: int = 0,
) -> Diagnosis:
    """Gradient-health check of ``model`` on one batch; the model is left exactly as found.

    ``batch`` is ``(inputs, targets)`` or the inputs alone. The loss is ``loss_fn(output,
    targets)`` (``loss_fn(output)`` without targets); by default cross-entropy for integer
    targets, MSE for float targets, and without targets the random projection
    ``L = (1/N) sum_i <r_i, y_i>``, ``r_i ~ N(0, I)`` (seeded), which sends a unit-variance
    error into every output so the gradients measure the network alone. A model returning a
    tuple (an RNN's ``(output, h_n)``) is judged on its first tensor. The model runs in its
    current train/eval mode; buffers (e.g. BatchNorm statistics) and the global random state
    are restored afterwards.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"diagnose needs an nn.Module, got {type(model).__name__}")
    inputs, targets = _split_batch(batch)
    device = _device(model, inputs)
    inputs = inputs.to(device)
    targets = None if targets is None else targets.to(device)
    if inputs.shape[0] < 1:
        raise ConfigError("diagnose needs a batch with at least one example")
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    cuda = [device.index or 0] if device.type == "cuda" else []
    timings: dict[str, float] = {}
    try:
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            return _diagnose(model, inputs, targets, loss_fn, jacobian, lyapunov, seed,
                             timings)
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)


def _diagnose(model: nn.Module, inputs: Tensor, targets: Tensor | None, loss_fn: Any,
              want_jacobian: bool, want_lyapunov: bool, seed: int,
              timings: dict[str, float]) -> Diagnosis:
    start = time.perf_counter()
    probe = _rnn_probe(model)
    # the inputs get a gradient too, so the first layer's backward gain is measured
    tracked = inputs.detach().requires_grad_(True) if inputs.is_floating_point() else inputs
    try:
        with torch.enable_grad(), Recorder(model) as recorder:
            output = model(tracked)
        rnn_sens = probe.sensitivities() if probe is not None else {}
    finally:
        if probe is not None:
            probe.remove()
    y = first_tensor(output)
    if y is None:
        raise SignalpropError("diagnose: the model returned no floating-point tensor")
    records = recorder.ordered()
    if not records:
        raise SignalpropError("diagnose: the model has no module with parameters that ran")
    loss, loss_kind = _loss(y, targets, loss_fn, seed)
    if not loss.requires_grad:
        raise SignalpropError("diagnose: the loss does not depend on any trainable parameter")
    wanted: dict[int, Tensor] = {id(y): y}
    for rec in records:
        for p in layer_parameters(rec.module):
            wanted[id(p)] = p
        for o in rec.outputs + rec.inputs:
            if o.requires_grad:
                wanted[id(o)] = o
    keys = list(wanted)
    values = torch.autograd.grad(loss, [wanted[k] for k in keys], allow_unused=True)
    grads = {k: g for k, g in zip(keys, values, strict=True) if g is not None}
    del output, wanted, values
    out_ref = _norm([grads[id(y)]]) if id(y) in grads else None
    layers, owners = _layers(records, grads, out_ref, rnn_sens)
    finite = {lay.name: _finite(lay.grad_norm) and _finite(lay.output_grad_norm)
              and _finite(lay.input_grad_norm) for lay in layers}
    for rec in records:
        rec.outputs, rec.inputs = [], []
    grads.clear()
    timings["forward_backward_s"] = time.perf_counter() - start

    warnings: list[str] = []
    t0 = time.perf_counter()
    if want_lyapunov:
        for rec, lay in zip(owners, layers, strict=True):
            if is_recurrent(rec.module) and rec.sequence is not None:
                try:
                    lay.lyapunov = largest_exponent(rec.module, rec.sequence)
                except Exception as exc:  # unusual recurrent module: report, don't fail
                    warnings.append(f"{rec.name}: no Lyapunov exponent ({exc})")
    timings["lyapunov_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    jac: dict[str, Any] = {"method": "skipped"}
    if want_jacobian:
        k = min(EXAMPLES, inputs.shape[0])

        def fn(x: Tensor) -> Tensor:
            out = first_tensor(model(x))
            return out.reshape(x.shape[0], -1)

        est = estimate_jacobian(fn, inputs[:k].detach(), seed=seed)
        jac = {"sigma_max": est.sigma_max, "sigma_min": est.sigma_min,
               "condition": est.condition, "method": est.method, "examples": est.examples,
               "shape": list(est.shape)}
    timings["jacobian_s"] = time.perf_counter() - t0

    for lay in layers:
        lay.verdict, lay.reasons = _layer_verdict(lay, finite[lay.name])
    counts = Counter(lay.verdict for lay in layers if lay.verdict != "healthy")
    overall = "healthy"
    if counts:
        overall = max(counts, key=lambda v: (counts[v], -PRIORITY.index(v)))

    with_grad = [lay for lay in layers if lay.grad_norm is not None]
    ratio = None
    if len(with_grad) >= 2 and with_grad[-1].grad_norm:
        ratio = with_grad[0].grad_norm / with_grad[-1].grad_norm
    if out_ref == 0.0:
        warnings.append("the loss gradient at the output is zero: gains are undefined")
    sigma_max, cond = jac.get("sigma_max"), jac.get("condition")
    if sigma_max is not None:
        if sigma_max > th.JACOBIAN_EXPLODING:
            warnings.append(f"input-output Jacobian sigma_max {sigma_max:.3g} > "
                            f"{th.JACOBIAN_EXPLODING:g}: outputs explode with input changes")
        elif sigma_max < th.JACOBIAN_VANISHING:
            warnings.append(f"input-output Jacobian sigma_max {sigma_max:.3g} < "
                            f"{th.JACOBIAN_VANISHING:g}: the output ignores the input")
    ill = cond is not None and cond > th.JACOBIAN_ILL_CONDITIONED
    if ill:
        warnings.append(f"input-output Jacobian condition number {cond:.3g} > "
                        f"{th.JACOBIAN_ILL_CONDITIONED:g}")
    suggestions = _suggestions(model, layers, owners, overall, ill)
    timings["total_s"] = sum(timings.values())
    return Diagnosis(
        layers=layers, verdict=overall, grad_ratio_first_to_last=ratio,
        gain_first=layers[0].backward_gain, jacobian=jac, loss=float(loss.detach()),
        loss_kind=loss_kind, batch_size=inputs.shape[0], warnings=warnings,
        suggestions=suggestions, cost=timings,
    )


def _suggestions(model: nn.Module, layers: list[LayerDiagnosis], records: list[LayerRecord],
                 overall: str, ill: bool) -> list[Suggestion]:
    from signalprop.diagnostics.sensitivity import find_sensitive_layers

    try:
        sensitive = {layer.name for layer in find_sensitive_layers(model)}
    except ConfigError:  # e.g. a stacked nn.RNN, which SAL refuses
        sensitive = set()
    info = [LayerInfo(lay.index, lay.name, rec.module, lay.backward_gain, lay.verdict,
                      is_recurrent(rec.module), sensitive=lay.name in sensitive,
                      steps=None if rec.sequence is None else int(rec.sequence.shape[0]))
            for lay, rec in zip(layers, records, strict=True)]
    modules = dict(model.named_modules())
    model_type = f"{type(model).__module__}.{type(model).__qualname__}"
    order = [overall] + [v for v in PRIORITY if v != overall]
    found = []
    for problem in order:
        names = [lay.name for lay in layers if lay.verdict == problem]
        if not names:
            continue
        for remedy in fitting_remedies(problem, info, modules, model_type):
            found.append(Suggestion(problem, names, remedy))
    if ill:
        for remedy in fitting_remedies("ill-conditioned", info, modules, model_type):
            found.append(Suggestion("ill-conditioned", ["input-output Jacobian"], remedy))
    return found
