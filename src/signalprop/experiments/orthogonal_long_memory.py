"""``orthogonal-long-memory``: does the additive-filter RNN (Ceni, arXiv 2210.01245) *learn* a
dependency T steps back?

Two tasks, each at several lengths T (one sweep point each, e.g. ``adding-T1000``), every model
on ``seeds`` seeds:

- the adding problem (Hochreiter & Schmidhuber 1997): the sum of the two marked values of a
  sequence of ``U[0, 1]`` numbers, scored by test MSE against 1/6 (always predicting 1);
- cue recall among distractors: one of ``k >= 8`` classes at step 0 (with a marker), a random
  distractor symbol at every later step, test sequences never seen in training.

Models: the filter RNN ``h_t = (1 - b) O h_{t-1} + b tanh(W h_{t-1} + U x_t + c)``, ``b = 1/T``,
read out at ``h_T / b``; ``nn.RNN`` and ``nn.LSTM`` of the same hidden size (up to
``baselines_up_to``); and the control ``frozen``: the same filter RNN with every recurrent-layer
weight (``W``, ``U``, ``c``; ``O`` is fixed anyway) frozen at initialisation and only the
readout trained. A claim of learning a T-step dependency needs the trained filter RNN to beat
this control by Welch's one-sided t-test over seeds. Every model gets the same number of Adam
steps and the same learning-rate sweep, chosen on a validation split by the study runner
(:mod:`~signalprop.experiments.study`). A diverged adding run scores the always-1 MSE, a
diverged recall run chance.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signalprop.config import in_range, positive
from signalprop.errors import ConfigError
from signalprop.experiments import orthogonal_models as om
from signalprop.experiments.context import RunContext
from signalprop.experiments.evidence import Row, per_seed, rows_of, select
from signalprop.experiments.lr_tuning import log_spaced
from signalprop.experiments.registry import Claim, Experiment, Model, register
from signalprop.experiments.samples import load_sample
from signalprop.experiments.stats import Difference
from signalprop.experiments.study import Study, Tuning, Variant, run_study
from signalprop.nn.readout import LastStepClassifier
from signalprop.train import TrainConfig

#: Adding problem: the MSE of always predicting 1, ``Var(u1 + u2) = 2/12`` for ``u ~ U[0, 1]``.
ALWAYS_ONE_MSE = 1 / 6
#: The MSE of a model that knows one marked value exactly and not the other (``Var(u) = 1/12``):
#: below it the model uses both marked values.
ONE_VALUE_MSE = 1 / 12
#: "Solved": a tenth of the always-1 MSE (R² >= 0.9). LEM's public T = 10,000 log
#: (tk-rusch/LEM src/adding) passes it after about 2,000 of its 30,000 steps and ends at 2-4e-5.
SOLVED_MSE = 1 / 60
#: Cue recall counts as solved at this test accuracy (the delayed-recall rule's threshold).
RECALL_SOLVED = 0.99
#: The paper's distance: "learns dependencies 10,000 time steps in the past".
PAPER_T = 10_000
KINDS = ("filter", "frozen", "rnn", "lstm")
METRIC = {"adding": "test_mse", "recall": "test_acc"}


@dataclass(frozen=True)
class AddingData:
    lengths: tuple[int, ...] = (100, 1000, 10000)
    steps: tuple[int, ...] = (2000, 800, 200)  # Adam steps per model at each length (CPU budget)
    baselines_up_to: int = 1000  # nn.RNN and nn.LSTM run at lengths <= this (CPU budget)

    def __post_init__(self) -> None:
        check_lengths("adding", self.lengths, self.steps)
        if min(self.lengths) < 2:
            raise ConfigError(f"adding.lengths must be >= 2, got {self.lengths}")


@dataclass(frozen=True)
class RecallData:
    lengths: tuple[int, ...] = (1000,)
    steps: tuple[int, ...] = (600,)
    classes: int = 8
    noise: float = 0.0  # Gaussian noise on every channel, on top of the distractor symbols
    baselines_up_to: int = 1000

    def __post_init__(self) -> None:
        check_lengths("recall", self.lengths, self.steps)
        if self.classes < 8:
            raise ConfigError(f"recall.classes must be >= 8 (a cue the readout cannot guess), "
                              f"got {self.classes}")
        if self.noise < 0:
            raise ConfigError(f"recall.noise must be >= 0, got {self.noise}")


@dataclass(frozen=True)
class MemoryData:
    max_elements: int = 40_000_000  # input values (steps x channels) per training set: 160 MB
    n_val: int = 200  # validation sequences (learning-rate choice), carved from the training set
    n_test: int = 500

    def __post_init__(self) -> None:
        for name in ("max_elements", "n_val", "n_test"):
            positive(f"data.{name}", getattr(self, name))


@dataclass(frozen=True)
class MemoryModel:
    hidden: int = 32
    beta_scale: float = 1.0  # b = beta_scale / T unless beta > 0
    beta: float = 0.0
    readout_scale: float = 0.0  # 0: read h_T / b (the state's natural scale is b)
    baselines: tuple[str, ...] = ("rnn", "lstm")
    filter: str = "haar"  # or "permutation", "cycle"
    control: bool = True  # the frozen-recurrence control

    def __post_init__(self) -> None:
        positive("model.hidden", self.hidden)
        positive("model.beta_scale", self.beta_scale)
        in_range("model.beta", self.beta, 0.0, 1.0)
        if self.readout_scale < 0:
            raise ConfigError(f"model.readout_scale must be >= 0, got {self.readout_scale}")
        om.check_rnn_choices(self.filter, self.baselines)

    def b(self, length: int) -> float:
        return self.beta if self.beta > 0 else min(1.0, self.beta_scale / length)


@dataclass(frozen=True)
class LongMemoryConfig:
    adding: AddingData = field(default_factory=AddingData)
    recall: RecallData = field(default_factory=RecallData)
    data: MemoryData = field(default_factory=MemoryData)
    model: MemoryModel = field(default_factory=MemoryModel)
    # every candidate trains the whole step budget (tuning.epochs=0)
    tuning: Tuning = field(default_factory=lambda: Tuning(lrs=log_spaced(1e-3, 3.16e-2, 4)))
    seeds: int = 3
    evals: int = 4  # test evaluations per training run (the step budget is split into epochs)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=1, batch_size=50, lr=1e-3, grad_clip=1.0, eval_batch_size=250))

    def __post_init__(self) -> None:
        positive("seeds", self.seeds)
        positive("evals", self.evals)


def check_lengths(name: str, lengths: tuple[int, ...], steps: tuple[int, ...]) -> None:
    for value in (*lengths, *steps):
        positive(f"{name}.lengths/steps", value)
    if not lengths:
        raise ConfigError(f"{name}.lengths must name at least one sequence length")


def points(cfg: LongMemoryConfig) -> dict[str, tuple[str, int, int]]:
    """``{"adding-T100": ("adding", 100, steps), ...}``; checked when the run starts (before any
    training), since ``--set`` changes one field at a time."""
    out = {}
    for task, spec in (("adding", cfg.adding), ("recall", cfg.recall)):
        if len(spec.lengths) != len(spec.steps):
            raise ConfigError(f"{task}.lengths {spec.lengths} and {task}.steps {spec.steps} "
                              "must be equally long (one step budget per length); set both")
        for length, steps in zip(spec.lengths, spec.steps, strict=True):
            out[f"{task}-T{length}"] = (task, length, steps)
    return out


def build_model(kind: str, inputs: int, outputs: int, length: int,
                m: MemoryModel) -> LastStepClassifier:
    """``filter`` (b from ``m.b(length)``, readout ``h_T / b``), ``frozen`` (the same, its
    recurrent layer frozen), ``rnn`` or ``lstm``."""
    if kind in ("rnn", "lstm"):
        return om.baseline_classifier(kind, inputs, outputs, m.hidden)
    model = om.filter_classifier(inputs, outputs, m.hidden, m.b(length), m.filter,
                                 m.readout_scale)
    if kind == "frozen":
        model.rnn.requires_grad_(False)
    return model


def train_config(cfg: LongMemoryConfig, steps: int) -> TrainConfig:
    """``steps`` Adam steps split into ``evals`` epochs (a test evaluation after each)."""
    per_epoch = max(1, math.ceil(steps / cfg.evals))
    return dataclasses.replace(cfg.train, epochs=math.ceil(steps / per_epoch),
                               max_steps_per_epoch=per_epoch)


def load(ctx: RunContext, cfg: LongMemoryConfig, task: str, length: int, steps: int) -> Any:
    """Training set: one fresh sequence per example of the step budget, capped at
    ``data.max_elements`` input values (then sequences repeat across epochs), plus the
    validation split; a test set never seen in training."""
    channels = 2 if task == "adding" else cfg.recall.classes + 1
    cap = max(cfg.train.batch_size, cfg.data.max_elements // ((length + 1) * channels))
    n_train = min(steps * cfg.train.batch_size, cap) + cfg.data.n_val
    if task == "adding":
        return ctx.load_data("adding", T=length, n_train=n_train, n_test=cfg.data.n_test)
    return ctx.load_data("cue-recall", T=length, classes=cfg.recall.classes,
                         noise=cfg.recall.noise, n_train=n_train, n_test=cfg.data.n_test)


def with_mse(rows: list[Row], run_dir: Path) -> list[Row]:
    """Adding rows gain ``test_mse`` (the test loss; the always-1 MSE for a diverged run)."""
    return [dataclasses.replace(r, metrics={**r.metrics, "test_mse": ALWAYS_ONE_MSE if
                                            r.status == "diverged" else r.value("test_loss")})
            if str(r.point).startswith("adding") else r for r in rows]


def study(ctx: RunContext) -> Study:
    cfg: LongMemoryConfig = ctx.config
    m, where = cfg.model, points(cfg)

    def variant(kind: str) -> Variant:
        def build(point: str, setting: Any, splits: Any, seed: int) -> Any:
            task, length, _ = where[point]
            outputs = 1 if task == "adding" else cfg.recall.classes
            return build_model(kind, splits.input_shape[-1], outputs, length, m), ()

        def runs_at(point: str) -> bool:
            task, length, _ = where[point]
            spec = cfg.adding if task == "adding" else cfg.recall
            return kind not in ("rnn", "lstm") or length <= spec.baselines_up_to

        return Variant(kind, build, where=runs_at,
                       train=lambda train, point: train_config(cfg, where[point][2]))

    kinds = ["filter", *(["frozen"] if m.control else []), *m.baselines]
    return Study(variants=[variant(k) for k in kinds], points=list(where), train=cfg.train,
                 data=lambda ctx, point: load(ctx, cfg, *where[point]), tuning=cfg.tuning,
                 seeds=cfg.seeds, derive=with_mse, curve="test_loss",
                 curve_title="Test loss (MSE for adding) per epoch, first seed")


def run(ctx: RunContext) -> dict[str, Any]:
    cfg: LongMemoryConfig = ctx.config
    summary = run_study(ctx, study(ctx), ("test_mse", "test_acc"))
    summary["results"].update(dataset="adding, cue-recall", recall_classes=cfg.recall.classes,
                              adding_always_one_mse=ALWAYS_ONE_MSE,
                              peak_rss_gib=om.peak_rss_gib())
    return summary


def legacy_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows from a run made before the study runner (``{task}_T{T}_{model}_{metric}_per_seed``;
    diverged runs were stored at the always-1 MSE or chance)."""
    rows = []
    for task, metric in METRIC.items():
        for length in results.get(f"{task}_lengths") or []:
            for kind in KINDS:
                key = f"{task}_T{length}_{kind}"
                for seed, value in enumerate(results.get(f"{key}_{metric}_per_seed") or []):
                    rows.append({"variant": kind, "point": f"{task}-T{length}", "seed": seed,
                                 "lr": results.get(f"{key}_lr"), metric: value})
    return rows


# ---------------------------------------------------------------- verdict rules
def lengths(rows: list[Row], task: str) -> list[int]:
    """The lengths ``task`` ran at, in run order; KeyError when it did not run."""
    found = [int(str(p).split("-T", 1)[1]) for p in dict.fromkeys(r.point for r in rows)
             if str(p).startswith(f"{task}-T")]
    if not found:
        raise KeyError(f"no {task} rows")
    return found


def ran(rows: list[Row], task: str, length: int, kind: str) -> bool:
    return bool(select(rows, kind, f"{task}-T{length}"))


def side(rows: list[Row], task: str, length: int, kind: str) -> Any:
    return per_seed(rows, variant=kind, metric=METRIC[task], point=f"{task}-T{length}")


def versus(rows: list[Row], task: str, length: int, better: str, worse: str) -> Difference:
    """``better`` against ``worse``, oriented so that a positive difference favours ``better``
    (lower MSE on the adding problem, higher accuracy on recall)."""
    a, b = side(rows, task, length, better), side(rows, task, length, worse)
    return Difference(b, a) if task == "adding" else Difference(a, b)


def beats(diff: Difference) -> bool:
    """Welch one-sided p < 0.05; one seed cannot decide (n >= 2 on both sides)."""
    return diff.a.n >= 2 and diff.b.n >= 2 and diff.beyond_noise()


def learned(rows: list[Row], task: str, length: int) -> bool:
    """The trained filter RNN beats its frozen control (and, for adding, uses both marked
    values: MSE below 1/12)."""
    if not ran(rows, task, length, "frozen"):
        return False
    ok = beats(versus(rows, task, length, "filter", "frozen"))
    if task == "adding":
        ok = ok and side(rows, task, length, "filter").mean < ONE_VALUE_MSE
    return ok


def length_text(rows: list[Row], task: str, length: int) -> str:
    fmt = ".3g" if task == "adding" else ".3f"
    parts = [f"{kind} {s.mean:{fmt}} ± {s.std:{fmt}}" for kind in KINDS
             if ran(rows, task, length, kind) for s in [side(rows, task, length, kind)]]
    text = f"T={length}: " + ", ".join(parts)
    if ran(rows, task, length, "frozen"):
        diff = versus(rows, task, length, "filter", "frozen")
        text += f" (filter vs frozen {diff.diff:+{fmt}}, SE {diff.se:{fmt}}, {diff.p_text()})"
    return text


def learns(task: str, solved: Any, tail: str):
    """Reproduced: at T >= 10,000 the filter RNN learned (:func:`learned`) and ``solved`` its
    mean. Partly: it learned at some length. Not reproduced: at no length."""
    def judge(results: dict[str, Any]) -> tuple[str, str]:
        rows = rows_of(results)
        ts = lengths(rows, task)
        done = [t for t in ts if learned(rows, task, t)]
        text = "; ".join(length_text(rows, task, t) for t in ts) + tail.format(**results)
        if any(t >= PAPER_T and solved(side(rows, task, t, "filter").mean) for t in done):
            return text, "reproduced"
        if done:
            return text + f"; learns up to T={max(done)}", "partly"
        return text + "; the filter RNN does not beat its frozen control at any T", \
            "not reproduced"
    return judge


def beats_baselines(results: dict[str, Any]) -> tuple[str, str]:
    """At each length where nn.RNN and nn.LSTM ran: does the filter RNN learn (beats its control)
    and reach a lower MSE than both (Welch p < 0.05)? Reproduced at the longest such length
    (>= 1,000), partly at a shorter one only, not reproduced at none."""
    rows = rows_of(results)
    shared = [t for t in lengths(rows, "adding")
              if all(ran(rows, "adding", t, k) for k in ("rnn", "lstm"))]
    if not shared:
        return "no baselines run", "not checked"
    wins = [t for t in shared if learned(rows, "adding", t) and all(
        beats(versus(rows, "adding", t, "filter", k)) for k in ("rnn", "lstm"))]
    text = "; ".join(length_text(rows, "adding", t) for t in shared)
    if wins and max(wins) == max(shared) and max(shared) >= 1000:
        return text, "reproduced"
    if wins:
        return text + f"; ahead of both (p < 0.05) only up to T={max(wins)}", "partly"
    return text + "; at no T ahead of both baselines (p < 0.05) while learning", "not reproduced"


MODELS = {
    kind: Model(description, lambda cfg, splits, kind=kind: build_model(
        kind, splits.input_shape[-1], 1, splits.input_shape[0], cfg.model))
    for kind, description in (
        ("filter", "the additive-filter RNN on the adding problem (T = the first of "
                   "adding.lengths; b = model.b(T), readout h_T / b)"),
        ("frozen", "the control: the same filter RNN with its recurrent layer frozen"),
        ("rnn", "the nn.RNN baseline (model.hidden units)"),
        ("lstm", "the nn.LSTM baseline (model.hidden units)"))}


def sample(cfg: LongMemoryConfig, n: int, seed: int) -> Any:
    return load_sample("adding", n, seed, fallback=None, T=cfg.adding.lengths[0])


SOURCE = "arXiv 2210.01245, abstract"
adding_learns = learns("adding", lambda mse: mse <= SOLVED_MSE,
                       " (n={seeds} seeds; always-1 MSE 0.167)")
recall_learns = learns("recall", lambda acc: acc >= RECALL_SOLVED,
                       " (chance 1/{recall_classes}, n={seeds} seeds)")
register(Experiment(
    name="orthogonal-long-memory",
    summary="Adding problem and cue recall at T up to 10,000: filter RNN vs nn.RNN, nn.LSTM and "
            "a frozen-recurrence control, tuned learning rates, equal step budgets.",
    paper=om.PAPER,
    make_config=LongMemoryConfig,
    run=run,
    models=MODELS,
    sample=sample,
    legacy_rows=legacy_rows,
    quick={"adding.lengths": (30, 100), "adding.steps": (120, 60), "adding.baselines_up_to": 30,
           "recall.lengths": (30,), "recall.steps": (60,), "seeds": 2, "evals": 2,
           "data.n_test": 100, "data.n_val": 50, "tuning.lrs": (1e-3, 3.16e-2),
           "tuning.epochs": 1, "tuning.max_extensions": 0},
    tiny={"adding.lengths": (6, 12), "adding.steps": (4, 3), "adding.baselines_up_to": 6,
          "recall.lengths": (5,), "recall.steps": (3,), "evals": 1, "data.n_test": 20,
          "data.n_val": 10, "tuning.lrs": (1e-3,), "model.hidden": 8},
    claims=(
        Claim(text="An Elman RNN with an orthogonal additive filter learns a dependency 10,000 "
              "steps in the past", source=SOURCE, paper_value="learns 10k-step dependencies",
              check=adding_learns,
              rule="adding problem, per T: learned = filter MSE < 1/12 and below the "
                   "frozen-recurrence control by Welch one-sided p < 0.05 (n >= 2 seeds); "
                   "reproduced: learned with MSE <= 1/60 at T >= 10,000; partly: learned at some "
                   "T; else not reproduced",
              rule_version=3, stochastic=True,
              paper_data="a 10,000-step task (not named in the abstract; LEM's adding log "
                         "is the public anchor)", same_data=("adding",)),
        Claim(text="The additive-filter RNN learns long dependencies where a tanh RNN and an "
              "LSTM of the same size, with tuned learning rates and the same steps, do worse",
              source=f"{SOURCE} (LSTM comparison)", paper_value="LSTMs less effective",
              check=beats_baselines,
              rule="adding problem at the T where nn.RNN and nn.LSTM ran: the filter RNN learned "
                   "(beats its control) and its MSE is below both by Welch one-sided p < 0.05: "
                   "reproduced at the longest such T (>= 1,000), partly at a shorter T only, "
                   "else not reproduced",
              rule_version=3, stochastic=True,
              paper_data="a 10,000-step task (not named in the abstract)",
              same_data=("adding",)),
        Claim(text="The additive-filter RNN learns to recall a cue (one of k >= 8 classes) "
              "across 10,000 steps of distractors", source=SOURCE,
              paper_value="learns 10k-step dependencies", check=recall_learns,
              rule="cue recall, per T: learned = filter acc above the frozen-recurrence control "
                   "by Welch one-sided p < 0.05 (n >= 2 seeds); reproduced: learned with acc "
                   ">= 0.99 at T >= 10,000; partly: learned at some T; else not reproduced",
              rule_version=2, stochastic=True,
              paper_data="a 10,000-step task (not named in the abstract)",
              same_data=("cue-recall",)),
    ),
))
