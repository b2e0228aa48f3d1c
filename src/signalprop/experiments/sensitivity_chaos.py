"""``sensitivity-chaos``: SAL alone on a tanh RNN from small random weights (Shibata et al.,
arXiv 2012.13134).

Driven by ``N(0, 1)`` input, the Elman RNN ``h_t = tanh(W_hh h_{t-1} + W_ih x_t)`` is adjusted by
SAL after every batch (no task loss). Every ``run.eval_every`` steps we measure, on one fixed
probe sequence, the largest Lyapunov exponent ``λ_max`` (the mean log growth rate of a
perturbation, QR method) and the log-RMS sensitivity; the paper says the two agree until
``λ_max`` reaches 0, the edge of chaos. The same two quantities are also measured for random
weights at each gain in ``run.gains``. No learning rate is tuned and nothing is compared over
seeds, so this experiment does not use the study runner; its measurements are still tidy rows
(variant ``sal`` at each step, ``random-weights`` at each gain) in ``rows.jsonl``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import TensorDataset

from signalprop.config import config_part, non_negative, one_of, positive
from signalprop.data.splits import Splits
from signalprop.diagnostics.lyapunov import rnn_lyapunov
from signalprop.errors import ConfigError
from signalprop.experiments.common import at_most
from signalprop.experiments.context import RunContext
from signalprop.experiments.evidence import Row, select
from signalprop.experiments.registry import Claim, Experiment, Model, register
from signalprop.experiments.sensitivity_models import PAPER, SOURCE, SALConfig, series
from signalprop.nn.elman import RNN_ACTIVATIONS, ElmanRNN


@dataclass(frozen=True)
class ChaosModelConfig:
    hidden: int = 200
    input_size: int = 10
    init_gain: float = 0.1
    input_gain: float = 0.1
    nonlinearity: str = "tanh"

    def __post_init__(self) -> None:
        positive("model.hidden", self.hidden)
        positive("model.input_size", self.input_size)
        positive("model.init_gain", self.init_gain)
        non_negative("model.input_gain", self.input_gain)
        one_of("model.nonlinearity", self.nonlinearity, sorted(RNN_ACTIVATIONS))


@config_part("run", positive=("steps", "batch_size", "seq_len", "eval_every", "eval_len"),
             non_negative=("warmup",))
class ChaosRunConfig:
    """SAL steps, the probe (``eval_len`` steps, the first ``warmup`` discarded), the gains of
    the random-weight table and the edge below which the two quantities are compared."""

    steps: int = 300
    batch_size: int = 16
    seq_len: int = 50
    eval_every: int = 10
    eval_len: int = 500
    warmup: int = 100
    gains: tuple[float, ...] = (0.2, 0.5, 0.8, 1.0, 1.2, 1.5, 2.0, 3.0)
    edge: float = -0.05

    def __post_init__(self) -> None:
        if self.warmup >= self.eval_len:
            raise ConfigError("run.warmup must be < run.eval_len")
        if not self.gains or any(g <= 0 for g in self.gains):
            raise ConfigError("run.gains must be a non-empty list of numbers > 0")


@dataclass(frozen=True)
class ChaosConfig:
    model: ChaosModelConfig = field(default_factory=ChaosModelConfig)
    sal: SALConfig = field(default_factory=lambda: SALConfig(lr=0.01, beta=0.9))
    run: ChaosRunConfig = field(default_factory=ChaosRunConfig)


def chaos_rnn(cfg: ChaosModelConfig, gain: float) -> ElmanRNN:
    """The Elman RNN whose recurrent weights have gain ``gain``."""
    return ElmanRNN(cfg.input_size, cfg.hidden, cfg.nonlinearity, gain=gain,
                    input_gain=cfg.input_gain)


MODELS = {"rnn": Model("the Elman RNN at the small initial gain (before SAL)",
                       lambda cfg, splits: chaos_rnn(cfg.model, cfg.model.init_gain))}


def sample(cfg: ChaosConfig, n: int, seed: int) -> Splits:
    """The experiment's drive: ``N(0, 1)`` input sequences (``run.seq_len`` steps), no
    targets (SAL needs none)."""
    gen = torch.Generator().manual_seed(seed + 7)
    x = torch.randn(2, n, cfg.run.seq_len, cfg.model.input_size, generator=gen)
    return Splits("gaussian-noise-input", TensorDataset(x[0]), TensorDataset(x[1]),
                  task="unsupervised", num_classes=None,
                  input_shape=(cfg.run.seq_len, cfg.model.input_size))


def _measure(rnn: ElmanRNN, probe: torch.Tensor, warmup: int) -> dict[str, float]:
    found = rnn_lyapunov(rnn, probe, warmup=warmup)
    return {"lambda_max": found["lambda_max"],
            "log_rms_sensitivity": found["log_rms_sensitivity"],
            "log_rms_recurrent_sensitivity": found["log_rms_recurrent_sensitivity"]}


def _rnn(cfg: ChaosConfig, gain: float, ctx: RunContext) -> ElmanRNN:
    torch.manual_seed(ctx.seed)
    return chaos_rnn(cfg.model, gain).to(ctx.device)


def measure_rows(ctx: RunContext, gen: torch.Generator, probe: torch.Tensor) -> list[Row]:
    """The random-weight rows (one per gain), then the SAL trace (every ``eval_every``)."""
    cfg: ChaosConfig = ctx.config
    run = cfg.run
    rows = [Row("random-weights", ctx.seed, _measure(_rnn(cfg, gain, ctx), probe, run.warmup),
                point=gain) for gain in run.gains]
    rnn = _rnn(cfg, cfg.model.init_gain, ctx)
    rule = cfg.sal.rule()
    rule.attach(rnn)
    sal: dict[str, float] = {}
    for step in range(run.steps + 1):
        if step % run.eval_every == 0 or step == run.steps:
            rows.append(Row("sal", ctx.seed, {
                **_measure(rnn, probe, run.warmup),
                "sal_log_rms_s": sal.get("sal_log_rms_s", math.nan),
                "saturated": sal.get("sal_saturated_frac", 0.0)}, point=step))
        if step == run.steps:
            break
        with torch.no_grad():
            noise = torch.randn(run.batch_size, run.seq_len, cfg.model.input_size, generator=gen)
            rnn(noise.to(ctx.device))
        sal = rule.after_step(rnn)
    rule.detach()
    return rows


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(rows: list[Row], edge: float) -> dict[str, Any]:
    """The scalar results the claims read: the gap ``|log-sens − λ_max|`` below ``edge``."""
    trace, table = select(rows, "sal"), select(rows, "random-weights")
    trace.sort(key=lambda r: r.point)
    below = [r for r in trace if r.value("lambda_max") < edge]
    gaps = [abs(r.value("log_rms_sensitivity") - r.value("lambda_max")) for r in below]
    return {
        "dataset": "gaussian-noise-input", "edge": edge,
        "initial_lambda_max": trace[0].value("lambda_max"),
        "final_lambda_max": trace[-1].value("lambda_max"),
        "initial_log_sensitivity": trace[0].value("log_rms_sensitivity"),
        "final_log_sensitivity": trace[-1].value("log_rms_sensitivity"),
        "points_below_edge": len(below),
        "mean_abs_gap_below_edge": _mean(gaps),
        "max_abs_gap_below_edge": max(gaps) if gaps else None,
        "mean_abs_gap_recurrent_only_below_edge": _mean(
            [abs(r.value("log_rms_recurrent_sensitivity") - r.value("lambda_max"))
             for r in below]),
        "gain_table_mean_abs_gap_g_le_1": _mean(
            [abs(r.value("log_rms_sensitivity") - r.value("lambda_max"))
             for r in table if r.point <= 1.0]),
        "final_saturated_frac": trace[-1].value("saturated"),
    }


def _lines(rows: list[Row], keys: dict[str, str]) -> dict[str, list[list[float]]]:
    return {label: [[r.point, r.value(key)] for r in rows] for label, key in keys.items()}


def run(ctx: RunContext) -> dict[str, Any]:
    cfg: ChaosConfig = ctx.config
    gen = torch.Generator().manual_seed(ctx.seed + 7)
    probe = torch.randn(cfg.run.eval_len, cfg.model.input_size, generator=gen).to(ctx.device)
    rows = measure_rows(ctx, gen, probe)
    table = select(rows, "random-weights")
    ctx.log("gain table: " + "; ".join(
        f"g={r.point} lam={r.value('lambda_max'):.4f} logsens="
        f"{r.value('log_rms_sensitivity'):.4f}" for r in table))
    if ctx.is_main:
        ctx.write_jsonl("rows.jsonl", [r.to_dict() for r in rows])
    both = {"lambda_max": "lambda_max", "log-RMS sensitivity": "log_rms_sensitivity"}
    return {
        "results": {**summarise(rows, cfg.run.edge), "rows": [r.to_dict() for r in rows]},
        "tables": {"lyapunov_vs_gain": {
            "columns": ["gain", "lambda_max", "log_rms_sensitivity", "difference"],
            "rows": [[r.point, round(r.value("lambda_max"), 4),
                      round(r.value("log_rms_sensitivity"), 4),
                      round(r.value("log_rms_sensitivity") - r.value("lambda_max"), 4)]
                     for r in table]}},
        "series": {
            "sal_trace": series(
                "SAL alone on a tanh RNN from small weights", "SAL step", "per-step exponent",
                _lines(select(rows, "sal"), {
                    **both, "log-RMS sensitivity, W_hh only": "log_rms_recurrent_sensitivity"})),
            "gain_table": series("Random weights: exponent and log-sensitivity vs gain", "gain",
                                 "per-step exponent", _lines(table, both)),
        },
    }


def _agree(results: dict[str, Any]) -> tuple[str, str]:
    gap, n = results["mean_abs_gap_below_edge"], results["points_below_edge"]
    if n < 3 or gap is None or not math.isfinite(gap):
        return f"only {n} points below the edge", "not checked"
    rec = results.get("mean_abs_gap_recurrent_only_below_edge")
    ours = (f"mean |log-sens - lambda_max| = {gap:.3f} over {n} points below 0 "
            f"(lambda {results['initial_lambda_max']:.2f} -> {results['final_lambda_max']:.2f})")
    if isinstance(rec, int | float) and math.isfinite(rec):
        ours += f"; W_hh-only log-sens: {rec:.3f}"
    return ours, at_most(gap, 0.1, 0.25)


def _edge(results: dict[str, Any]) -> tuple[str, str]:
    lam0, lam = results["initial_lambda_max"], results["final_lambda_max"]
    ours = f"lambda_max {lam0:.3f} -> {lam:.3f}"
    if lam0 > -0.3:
        return ours + " (did not start far from the edge)", "not checked"
    return ours, at_most(abs(lam), 0.1, 0.3)


register(Experiment(
    name="sensitivity-chaos",
    summary="SAL alone lifts a small-weight tanh RNN to the edge of chaos; log-RMS sensitivity "
    "tracks the largest Lyapunov exponent until 0.",
    paper=PAPER,
    make_config=ChaosConfig,
    run=run,
    models=MODELS,
    sample=sample,
    quick={"model.hidden": 40, "run.steps": 100, "run.eval_every": 10, "run.eval_len": 120,
           "run.warmup": 30, "run.gains": (0.2, 0.5, 1.0, 2.0), "sal.lr": 0.02},
    tiny={"model.hidden": 20, "run.steps": 30, "run.eval_len": 60, "run.warmup": 10,
          "run.gains": (0.3, 2.0), "sal.lr": 0.05},
    claims=(
        Claim(
            text="With SAL on an RNN from small random weights, log-RMS sensitivity equals the "
            "largest Lyapunov exponent until it reaches 0",
            source=SOURCE, paper_value="equivalent until 0.0",
            check=_agree,
            rule="mean |log-RMS sensitivity − λ_max| over >= 3 points below the edge: "
                 "reproduced <= 0.1, partly <= 0.25, else not reproduced",
            paper_data="RNN on random input (setting not read)",
        ),
        Claim(
            text="SAL brings the network to the edge of chaos (largest exponent near 0)",
            source="Neural Networks 143 (2021), Highlights", paper_value="lambda_max -> 0",
            check=_edge,
            rule="from λ_max <= −0.3: final |λ_max| reproduced <= 0.1, partly <= 0.3, else not "
                 "reproduced",
            paper_data="RNN on random input (setting not read)",
        ),
    ),
))
