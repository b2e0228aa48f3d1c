"""Results under which each registered claim holds, half-holds and fails.

``CASES["<experiment>#<claim index>"]`` maps each of "reproduced", "partly" and
"not reproduced" to a ``results`` dict that the claim's rule must judge that way.
tests/test_claim_rules.py checks every registered claim against its entry, so a claim added
without cases fails the suite.
"""

from __future__ import annotations

from typing import Any

R, P, N = "reproduced", "partly", "not reproduced"


def _seeds(values: list[float]) -> dict[str, Any]:
    return {"values": values}


def _approx(rule: str, decor: list[float]) -> dict[str, Any]:
    plain = [0.50, 0.51, 0.49]
    return {"seeds": 3, "bp_test_acc": 0.85, f"{rule}_test_acc_per_seed": plain,
            f"{rule}_test_acc": sum(plain) / 3, f"{rule}+decor_test_acc_per_seed": decor,
            f"{rule}+decor_test_acc": sum(decor) / 3, "bp_train_loss": 0.2,
            f"{rule}_train_loss": 1.0, f"{rule}+decor_train_loss": 0.4}


def _speedup(key: str, values: list[float]) -> dict[str, Any]:
    """Judged on ``values``; the paper code's decorrelation lr (1e-5) beside it, not judged."""
    out: dict[str, Any] = {"archs": "mlp,cnn", "seeds": 3, "decor_lr": 1e-3,
                           "extra_decor_lrs": [1e-5]}
    for arch in ("mlp", "cnn"):
        for prefix, series in (("", values), ("dlr1e-05_", [1.1] * 3)):
            out[f"{arch}_{prefix}step_time_ratio"] = 1.3
            out[f"{arch}_{prefix}{key}_per_seed"] = series
            out[f"{arch}_{prefix}{key}"] = sum(series) / len(series)
            for lr_key in ("plain_lr", "decor_lr_tuned"):
                out[f"{arch}_{prefix}{lr_key}_per_seed"] = [1e-3] * 3
    return out


def _resnet(wall: list[float], dbp_acc: list[float]) -> dict[str, Any]:
    bp_acc = [0.80, 0.81, 0.79]
    out: dict[str, Any] = {"dataset": "fashion-mnist", "seeds": 3, "resnet18_dbp_step_ratio": 2.2,
                           "resnet18_dbp_epoch_speedup": 3.0}
    for key, values in (("dbp_wall_speedup", wall), ("dbp_test_acc", dbp_acc),
                        ("bp_test_acc", bp_acc)):
        out[f"resnet18_{key}_per_seed"] = values
        out[f"resnet18_{key}"] = sum(values) / len(values)
    return out


def _row(variant: str, seed: int, point: Any = None, **metrics: float) -> dict[str, Any]:
    """One study row (``Row.to_dict()`` form)."""
    return {"variant": variant, "point": point, "seed": seed, "status": "ok", **metrics}


def _depth_speed(d1: list[float], d4: list[float], d16: list[float]) -> dict[str, Any]:
    return {"seeds": 3, "rows": [_row("frnpf-di", seed, d, mean_train_loss=v)
                                 for d, values in ((1, d1), (4, d4), (16, d16))
                                 for seed, v in enumerate(values)]}


def _depth_kernel(off: list[float], cond: list[float], dev: list[float]) -> dict[str, Any]:
    return {"rows": [_row("frnpf-di", 0, d, off_diagonal=o, condition=c, deviation=v)
                     for d, o, c, v in zip((1, 2, 4, 8), off, cond, dev, strict=True)]}


def _alignment(relu: list[float], permuted: list[float] | None = None) -> dict[str, Any]:
    """The paper-protocol arm: the ReLU net's ν_end/ν_0 per seed and, on the same kernels, the
    permuted labels' (1.0 unless given); gates fixed at init stay at 1. Our protocol's arm
    beside it (not judged) falls far in every case, so only the paper arm can decide."""
    permuted = permuted or [1.0] * len(relu)
    rows = [_row("relu", seed, "paper", alignment_ratio=r, permuted_ratio=q)
            for seed, (r, q) in enumerate(zip(relu, permuted, strict=True))]
    rows += [_row("frnpf-ii", seed, "paper", alignment_ratio=1.0, permuted_ratio=1.0)
             for seed in range(len(relu))]
    rows += [_row("relu", seed, "ours", alignment_ratio=0.5, permuted_ratio=1.0)
             for seed in range(len(relu))]
    return {"seeds": len(relu), "rows": rows}


def _variants(**means: float) -> dict[str, Any]:
    """Test accuracy (a fraction) per seed: each variant's mean (in %) ± 0.2 points."""
    return {"seeds": 3, "rows": [_row(v, seed, test_acc=(m + d) / 100)
                                 for v, m in means.items()
                                 for seed, d in enumerate((-0.2, 0.0, 0.2))]}


def _deep(acc: float, spread: float, control: float = 0.4) -> dict[str, Any]:
    results = {"chance": 0.1, "filter_grad_spread": spread, "depth": 50000, "peak_rss_gib": 2.0,
               "seeds": 3}
    for model, mean in (("filter", acc), ("rotation", control), ("logistic", control)):
        results[f"{model}_test_acc_per_seed"] = [mean - 0.01, mean, mean + 0.01]
        results[f"{model}_test_acc"] = mean
    return results


def _memory(task: str, per_length: dict[int, dict[str, float]]) -> dict[str, Any]:
    """orthogonal-long-memory results: ``{T: {model: mean}}``, three seeds spread ±0.002."""
    metric = "test_mse" if task == "adding" else "test_acc"
    out: dict[str, Any] = {"seeds": 3, "recall_classes": 8, "lag_classes": 8,
                           f"{task}_lengths": list(per_length)}
    for length, models in per_length.items():
        for kind, mean in models.items():
            out[f"{task}_T{length}_{kind}_{metric}_per_seed"] = [mean - 0.002, mean, mean + 0.002]
            out[f"{task}_T{length}_{kind}_{metric}"] = mean
    return out


_FAIL = {"frozen": 0.17, "rnn": 0.168, "lstm": 0.167}  # adding MSE of models that do not learn
_LEM = {"lem": 0.001}  # the positive control learned (adding MSE)


def _psmnist(key: str, acc: float) -> dict[str, Any]:
    return {"dataset": "mnist-permuted", f"mnist-permuted_filter_{key}": acc,
            "mnist-permuted_filter_epochs": 10}


_CHAOS = {"initial_lambda_max": -2.0, "final_lambda_max": -0.02, "points_below_edge": 10,
          "mean_abs_gap_below_edge": 0.05}


def _grad(sal: float) -> dict[str, Any]:
    return {"bp_log10_grad_first_over_last": -20.0,
            "bp-tuned-gain_log10_grad_first_over_last": -10.0,
            "bp-sal_log10_grad_first_over_last": sal}


def _deep_sal(sal: list[float], other: list[float], other_key: str = "bp") -> dict[str, Any]:
    return {"dataset": "mnist1d", "seeds": 3, "bp-sal_test_acc_per_seed": sal,
            "bp-sal_test_acc": sum(sal) / 3,
            f"{other_key}_test_acc_per_seed": other, f"{other_key}_test_acc": sum(other) / 3,
            "bp-sal_loss_drop": 0.3, "bp_loss_drop": 0.0,
            f"{other_key}_setting": {"init": "gaussian", "gain": 1.0, "lr": 1e-4}}


def lag_rows(accs: dict[str, list[float]], short: dict[str, list[float]] | None = None,
             lag: int = 300, control_lag: int = 20) -> dict[str, Any]:
    """sensitivity-lag results (rule v4) from per-seed test accuracies at ``lag`` and, at the
    control lag, ``short`` (default: every variant recalls perfectly there)."""
    short = short or {v: [1.0, 1.0, 1.0] for v in accs}
    rows = [{"variant": v, "point": point, "seed": s, "test_acc": a, "success": float(a >= 0.95),
             "status": "ok", "lr": 1e-3, "setting": "", "run": f"{point}-{v}-s{s}"}
            for point, by in ((control_lag, short), (lag, accs)) for v, seeds in by.items()
            for s, a in enumerate(seeds)]
    return {"lag": lag, "control_lag": control_lag, "classes": 8, "success_acc": 0.95,
            "epochs": 15, "hidden": 32, "n_train_used": 3500, "seeds": 3, "rows": rows}


_CHANCE = [0.12, 0.13, 0.125]


def _images(mlp_wins: bool, cnn_wins: bool) -> dict[str, Any]:
    """Target lower by > 2 SE where it wins, else lower in the mean but within the noise."""
    out: dict[str, Any] = {"seeds": 3}
    weight = [0.40, 0.41, 0.39]
    for arch, wins in (("mlp", mlp_wins), ("cnn", cnn_wins)):
        target = [0.30, 0.31, 0.29] if wins else [0.38, 0.45, 0.33]
        out.update({f"{arch}_target_train_loss_per_seed": target,
                    f"{arch}_target_train_loss": sum(target) / 3,
                    f"{arch}_weight_train_loss_per_seed": weight,
                    f"{arch}_weight_train_loss": sum(weight) / 3,
                    f"{arch}_target_test_acc": 0.8, f"{arch}_weight_test_acc": 0.8})
    return out


def _recall(target: dict[int, list[float]], weight: dict[int, list[float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"delays": sorted(target), "seeds": 3}
    for side, accs in (("target", target), ("weight", weight)):
        for k, values in accs.items():
            out[f"k{k}_{side}_test_acc_per_seed"] = values
            out[f"k{k}_{side}_test_acc"] = sum(values) / len(values)
    return out


_WEIGHT_RECALL = {5: [0.985, 0.99, 0.99], 10: [0.98, 0.985, 0.975], 20: [0.60, 0.62, 0.58],
                  40: [0.50, 0.51, 0.49]}


def _spirals(target: tuple[int, int], weight: tuple[int, int]) -> dict[str, Any]:
    """A stored run's per-seed iterations: ``(solved of 10, iterations each)`` per side."""
    out: dict[str, Any] = {"seeds": 10}
    for side, (solved, epochs) in (("target", target), ("weight", weight)):
        out[f"{side}_epochs_per_seed"] = [epochs] * solved + ["not solved"] * (10 - solved)
    return out


def _pairing(spread: float = 0.002, **means: float) -> dict[str, Any]:
    """A pairing study's rows: each variant's test accuracy mean ± ``spread`` over 3 seeds
    (variant names with ``_`` for ``-``)."""
    return {"seeds": 3, "dataset": "fashion-mnist", "rows": [
        _row(v.replace("_", "-"), seed, test_acc=m + d, train_loss=1.0 - m)
        for v, m in means.items() for seed, d in enumerate((-spread, 0.0, spread))]}


def _decor_fa(pair: float, control: float) -> dict[str, Any]:
    return _pairing(bp=0.84, fa=0.78, fa_decor=pair, readout=0.70, decor_readout=control)


def _sal_decor(pair: float, sal: float = 0.70, decor: float = 0.70) -> dict[str, Any]:
    return _pairing(bp=0.65, decor=decor, sal=sal, sal_decor=pair)


CASES: dict[str, dict[str, dict[str, Any]]] = {
    "decorrelation-approximate#0": {R: _approx("fa", [0.83, 0.84, 0.82]),
                                    P: _approx("fa", [0.60, 0.61, 0.59]),
                                    N: _approx("fa", [0.50, 0.52, 0.48])},
    "decorrelation-approximate#1": {R: _approx("np", [0.83, 0.84, 0.82]),
                                    P: _approx("np", [0.60, 0.61, 0.59]),
                                    N: _approx("np", [0.50, 0.52, 0.48])},
    "decorrelation-speedup#0": {R: _speedup("epoch_speedup", [2.0, 2.1, 1.9]),
                                P: _speedup("epoch_speedup", [1.2, 1.3, 1.25]),
                                N: _speedup("epoch_speedup", [0.9, 1.0, 0.95])},
    "decorrelation-speedup#1": {R: _speedup("wall_speedup", [1.5, 1.6, 1.4]),
                                P: _speedup("wall_speedup", [1.05, 1.1, 1.08]),
                                N: _speedup("wall_speedup", [0.5, 0.45, 0.48])},
    "decorrelation-resnet#0": {R: _resnet([2.4, 2.5, 2.3], [0.8] * 3),
                               P: _resnet([1.3, 1.4, 1.2], [0.8] * 3),
                               N: _resnet([0.5, 0.6, 0.4], [0.8] * 3)},
    "decorrelation-resnet#1": {R: _resnet([1.0] * 3, [0.85, 0.86, 0.84]),
                               P: _resnet([1.0] * 3, [0.81, 0.79, 0.815]),
                               N: _resnet([1.0] * 3, [0.70, 0.71, 0.69])},
    "deep-tanh-mlp#0": {R: {"deep_grad_ratio_last_to_first": 1000.0},
                        P: {"deep_grad_ratio_last_to_first": 50.0},
                        N: {"deep_grad_ratio_last_to_first": 2.0}},
    "gated-depth#0": {R: _depth_speed([1.0, 1.02, 0.98], [0.5, 0.52, 0.48], [0.9, 0.92, 0.88]),
                      P: _depth_speed([1.0, 1.02, 0.98], [0.5, 0.52, 0.48], [0.52, 0.5, 0.54]),
                      N: _depth_speed([0.3, 0.32, 0.28], [0.5, 0.52, 0.48], [0.9, 0.92, 0.88])},
    "gated-depth#1": {
        R: _depth_kernel([0.3, 0.15, 0.0375, 0.0023], [100, 50, 10, 2], [0.1, 0.2, 0.4, 0.8]),
        P: _depth_kernel([0.3, 0.15, 0.0375, 0.0023], [100, 50, 10, 2], [0.8, 0.4, 0.3, 0.1]),
        N: _depth_kernel([0.3, 0.05, 0.05, 0.049], [100, 120, 110, 130], [0.8, 0.4, 0.3, 0.1]),
    },
    "gated-kernel#0": {R: _alignment([0.65, 0.7, 0.75, 0.68, 0.72]),
                       P: _alignment([0.88, 0.9, 0.92, 0.89, 0.91]),
                       N: _alignment([0.9, 1.05, 0.97, 0.88, 1.05])},
    # (more cases, the permuted-label control failing among them: test_gated_experiments.py)
    "gated-variants#0": {
        R: _variants(**{"frnpf-ii": 85.0, "frnpf-di": 85.2, "flnpf": 88.0, "dlnpf": 88.5}),
        P: _variants(**{"frnpf-ii": 85.0, "frnpf-di": 85.2, "flnpf": 85.6, "dlnpf": 86.0}),
        N: _variants(**{"frnpf-ii": 85.0, "frnpf-di": 85.2, "flnpf": 84.0, "dlnpf": 88.0}),
    },
    "gated-variants#1": {
        R: _variants(**{"frnpf-ii": 85.0, "frnpf-di": 85.2, "flnpf": 88.0, "relu": 88.4}),
        P: _variants(**{"frnpf-ii": 85.0, "frnpf-di": 85.2, "flnpf": 86.5, "relu": 88.4}),
        N: _variants(**{"frnpf-ii": 85.0, "frnpf-di": 85.2, "flnpf": 85.6, "relu": 88.4}),
    },
    "orthogonal-deep-mlp#0": {R: _deep(0.6, 2.0), P: _deep(0.6, 2.0, control=0.6),
                              N: _deep(0.1, 50.0)},
    "orthogonal-long-memory#0": {
        R: _memory("adding", {1000: {"filter": 0.001, **_FAIL, **_LEM},
                              10000: {"filter": 0.01, "frozen": 0.17}}),
        P: _memory("adding", {100: {"filter": 0.05, **_FAIL, **_LEM},
                              10000: {"filter": 0.165, "frozen": 0.17, **_LEM}}),
        N: _memory("adding", {100: {"filter": 0.1, **_FAIL, **_LEM},
                              10000: {"filter": 0.01, "frozen": 0.011, "lem": 0.17}})},
    "orthogonal-long-memory#1": {
        R: _memory("adding", {100: {"filter": 0.001, **_FAIL, **_LEM},
                              1000: {"filter": 0.01, **_FAIL, **_LEM}}),
        P: _memory("adding", {100: {"filter": 0.001, **_FAIL, **_LEM},
                              1000: {"filter": 0.01, **_FAIL, "lstm": 0.005, **_LEM}}),
        N: _memory("adding", {100: {"filter": 0.1, **_FAIL, **_LEM},
                              1000: {"filter": 0.165, **_FAIL, "lem": 0.17}})},
    "orthogonal-long-memory#2": {
        R: _memory("recall", {10000: {"filter": 0.995, "frozen": 0.125, "lem": 0.9}}),
        P: _memory("recall", {1000: {"filter": 0.6, "frozen": 0.125, "lstm": 0.125, "lem": 0.9},
                              10000: {"filter": 0.13, "frozen": 0.125, "lem": 0.9}}),
        N: _memory("recall", {1000: {"filter": 0.126, "frozen": 0.125, "lem": 0.9}})},
    "orthogonal-long-memory#3": {
        R: _memory("lag", {10000: {"filter": 0.995, "frozen": 0.125, "lem": 0.99}}),
        P: _memory("lag", {100: {"filter": 0.5, "frozen": 0.125, "lem": 0.99},
                           10000: {"filter": 0.125, "frozen": 0.125, "lem": 0.99}}),
        N: _memory("lag", {100: {"filter": 0.126, "frozen": 0.125, "lem": 0.99}})},
    "orthogonal-psmnist#0": {R: _psmnist("acc_epoch1", 0.95), P: _psmnist("acc_epoch1", 0.9),
                             N: _psmnist("acc_epoch1", 0.5)},
    "orthogonal-psmnist#1": {R: _psmnist("acc_final", 0.985), P: _psmnist("acc_final", 0.95),
                             N: _psmnist("acc_final", 0.5)},
    "sensitivity-chaos#0": {R: _CHAOS, P: {**_CHAOS, "mean_abs_gap_below_edge": 0.2},
                            N: {**_CHAOS, "mean_abs_gap_below_edge": 0.5}},
    "sensitivity-chaos#1": {R: _CHAOS, P: {**_CHAOS, "final_lambda_max": -0.2},
                            N: {**_CHAOS, "final_lambda_max": -0.8}},
    "sensitivity-deep-mlp#0": {R: _grad(-1.0), P: _grad(-3.0), N: _grad(-9.0)},
    # Rule v3: reproduced needs BP+SAL's mean at or above MNIST-1D's linear reference (0.32);
    # the partly cases are the 3-seed full run's pattern (SAL 0.160 vs BP 0.089, tuned 0.120).
    "sensitivity-deep-mlp#1": {R: _deep_sal([0.45, 0.46, 0.44], [0.1, 0.11, 0.09]),
                               P: _deep_sal([0.19, 0.16, 0.13], [0.089, 0.089, 0.089]),
                               N: _deep_sal([0.1, 0.12, 0.08], [0.1, 0.11, 0.09])},
    "sensitivity-deep-mlp#2": {
        R: _deep_sal([0.45, 0.46, 0.44], [0.3, 0.31, 0.29], "bp-tuned-gain"),
        P: _deep_sal([0.21, 0.16, 0.11], [0.14, 0.12, 0.10], "bp-tuned-gain"),
        N: _deep_sal([0.15, 0.16, 0.14], [0.2, 0.21, 0.19], "bp-tuned-gain"),
    },
    # Rule v4: above BPTT and above the frozen-recurrence control; success >= 0.8 to reproduce.
    "sensitivity-lag#0": {
        R: lag_rows({"bptt-sal": [1.0, 0.99, 1.0], "bptt": _CHANCE, "readout-only": _CHANCE}),
        P: lag_rows({"bptt-sal": [0.6, 0.55, 0.62], "bptt": _CHANCE, "readout-only": _CHANCE}),
        # SAL beats BPTT, but not the frozen control; the LSTM shows the budget suffices
        N: lag_rows({"bptt-sal": [0.3, 0.32, 0.31], "bptt": _CHANCE,
                     "readout-only": [0.3, 0.31, 0.32], "lstm": [1.0, 1.0, 0.99]}),
    },
    "sensitivity-lag#1": {
        R: lag_rows({"bptt-sal": [1.0, 0.99, 1.0], "bptt-tuned-radius": [0.5, 0.6, 0.55],
                     "readout-only": _CHANCE}),
        P: lag_rows({"bptt-sal": [1.0, 0.6, 0.97], "bptt-tuned-radius": [0.9, 0.6, 0.8],
                     "readout-only": _CHANCE}),
        N: lag_rows({"bptt-sal": [0.5, 0.55, 0.6], "bptt-tuned-radius": [1.0, 1.0, 1.0],
                     "readout-only": _CHANCE}),
    },
    "target-space-images#0": {R: _images(True, True), P: _images(True, False),
                              N: _images(False, False)},
    "target-space-recall#0": {
        # target memorises every delay and is ahead beyond noise at 20 and 40
        R: _recall({k: [1.0, 1.0, 1.0] for k in _WEIGHT_RECALL}, _WEIGHT_RECALL),
        # ahead at 20 and 40, but below 0.99 at 40
        P: _recall({5: [1.0] * 3, 10: [1.0] * 3, 20: [0.995, 1.0, 0.99],
                    40: [0.90, 0.92, 0.88]}, _WEIGHT_RECALL),
        # never ahead beyond noise, and not memorising
        N: _recall({5: [0.99, 0.98, 0.985], 10: [0.97, 0.99, 0.98], 20: [0.55, 0.70, 0.60],
                    40: [0.50, 0.52, 0.48]}, _WEIGHT_RECALL),
    },
    "target-space-spirals#0": {
        R: _spirals((10, 40), (5, 300)),
        P: _spirals((10, 500), (5, 300)),  # more reliable, slower
        N: _spirals((4, 500), (5, 300)),
    },
    "pairing-decor-fa#0": {R: _decor_fa(0.80, 0.72),
                           P: _decor_fa(0.80, 0.80),  # no better than R alone on a readout
                           N: _decor_fa(0.779, 0.72)},
    "pairing-sal-decor#0": {R: _sal_decor(0.75), P: _sal_decor(0.705), N: _sal_decor(0.69)},
    "pairing-sal-decor#1": {R: _sal_decor(0.75), P: _sal_decor(0.705), N: _sal_decor(0.70)},
}
