"""fit's optional features: mixed precision, torch.compile, learning-rate schedules, gradient
clipping and the TensorBoard logger (all off by default)."""

from __future__ import annotations

import dataclasses
import math
import sys

import pytest
import torch
from torch import nn

from signalprop.config import apply_overrides
from signalprop.errors import ConfigError, DivergenceError
from signalprop.learning.base import LearningRule
from signalprop.storage import load_checkpoint, read_jsonl
from signalprop.train import TrainConfig, fit, seed_everything

CFG = TrainConfig(epochs=3, batch_size=32, lr=1e-2, log_every=1)
STEPS = 8  # 240 training samples / batch 32


def make_model() -> nn.Module:
    seed_everything(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))


def _strip_wall(records):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in records]


class GradNorms(LearningRule):
    """Records, after every optimiser step, the total gradient norm that step used and the
    dtypes of the parameters and gradients the rule sees."""

    def __init__(self) -> None:
        self.norms: list[float] = []
        self.dtypes: set[torch.dtype] = set()

    def after_step(self, model):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g) for g in grads]))))
        self.dtypes |= {p.dtype for p in model.parameters()} | {g.dtype for g in grads}
        return {}


@dataclasses.dataclass(frozen=True)
class _Experiment:
    train: TrainConfig = TrainConfig()


def test_docs_example_runs(tmp_path, capsys):
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parent.parent / "docs" / "training-options.md"
    (code,) = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    code = code.replace('"runs/options-example"', repr(str(tmp_path / "run")))
    exec(compile(code, "docs/training-options.md example", "exec"), {})
    accuracy, lr = re.fullmatch(r"test accuracy (\S+), final lr (\S+)\n",
                                capsys.readouterr().out).groups()
    assert float(accuracy) > 0.9 and float(lr) == pytest.approx(1e-4)


# -- config -----------------------------------------------------------------------------------

def test_every_option_is_off_by_default():
    cfg = TrainConfig()
    assert (cfg.amp, cfg.compile, cfg.lr_schedule, cfg.grad_clip, cfg.log) == (
        "none", False, "none", 0.0, "jsonl")


def test_options_are_set_and_type_checked_by_set_overrides():
    cfg = apply_overrides(_Experiment(), [
        "train.amp=bf16", "train.compile=true", "train.lr_schedule=step",
        "train.lr_step_epochs=2", "train.lr_gamma=0.5", "train.grad_clip=1.5",
        "train.log=tensorboard"]).train
    assert (cfg.amp, cfg.compile, cfg.lr_schedule, cfg.lr_step_epochs, cfg.lr_gamma,
            cfg.grad_clip, cfg.log) == ("bf16", True, "step", 2, 0.5, 1.5, "tensorboard")
    for override, message in [
        ("train.amp=fp8", "train.amp must be one of ['none', 'bf16', 'fp16']"),
        ("train.compile=maybe", "train.compile expects true or false"),
        ("train.lr_schedule=cosin", "did you mean cosine"),
        ("train.lr_step_epochs=0", "train.lr_step_epochs must be > 0"),
        ("train.lr_step_epochs=1.5", "train.lr_step_epochs expects an integer"),
        ("train.lr_gamma=2", "train.lr_gamma must be in [0.0, 1.0]"),
        ("train.lr_gamma=0", "train.lr_gamma must be > 0"),
        ("train.grad_clip=-1", "train.grad_clip must be >= 0"),
        ("train.log=wandb", "train.log must be one of ['jsonl', 'tensorboard']"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            apply_overrides(_Experiment(), [override])
    with pytest.raises(ConfigError, match=r"train.lr_min \(0.01\) must be below train.lr"):
        apply_overrides(_Experiment(), ["train.lr_schedule=cosine", "train.lr=0.01",
                                        "train.lr_min=0.01"])


def test_cli_rejects_a_bad_option_in_one_line(capsys, tmp_path):
    from signalprop.cli import main

    code = main(["run", "deep-tanh-mlp", "--out", str(tmp_path), "--set", "train.amp=fp32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "train.amp must be one of" in err[0]
    assert not any(tmp_path.iterdir())


# -- mixed precision --------------------------------------------------------------------------

def test_bf16_autocast_runs_matmuls_in_bf16_and_keeps_fp32_state(tmp_path, blobs):
    train, test = blobs
    model = make_model()
    seen: list[torch.dtype] = []
    model[0].register_forward_hook(
        lambda m, args, out: seen.append(out.dtype) if m.training else None)
    rule = GradNorms()
    cfg = dataclasses.replace(CFG, amp="bf16")
    result = fit(model, train, test, cfg, tmp_path, rules=(rule,))
    assert set(seen) == {torch.bfloat16} and len(seen) == 3 * STEPS
    assert rule.dtypes == {torch.float32}  # parameters and gradients seen by after_step
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert result["test_acc"] > 0.8

    seen.clear()  # the control: without train.amp the same layer computes in float32
    plain = make_model()
    plain[0].register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    fit(plain, train, None, dataclasses.replace(CFG, epochs=1), tmp_path / "fp32")
    assert set(seen) == {torch.float32}


def test_bf16_decorrelation_rule_updates_fp32_state(tmp_path):
    from torch.utils.data import TensorDataset

    from signalprop.learning.decorrelation_rule import DecorrelationRule
    from signalprop.nn.decorrelation_policy import decorrelate

    seed_everything(0)
    x = torch.randn(256, 6) @ torch.randn(6, 6)
    y = (x[:, 0] > x[:, 1]).long()
    model = decorrelate(nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2)), lr=1e-2)
    before = [b.clone() for b in model.buffers()]
    cfg = TrainConfig(epochs=1, batch_size=64, lr=1e-2, amp="bf16")
    fit(model, TensorDataset(x, y), None, cfg, tmp_path, rules=(DecorrelationRule(),))
    after = list(model.buffers())
    assert [b.dtype for b in after] == [b.dtype for b in before]
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))


def _summed_loss(output, target):
    """A sum (not mean) over the batch of 32: its fp16 gradients overflow at the initial loss
    scale 2**16, so the scaler must skip steps (4 here) and lower the scale."""
    return nn.functional.cross_entropy(output, target, reduction="sum")


def test_fp16_scaler_skips_overflowing_steps_then_trains(tmp_path, blobs):
    train, test = blobs
    rule = GradNorms()
    cfg = dataclasses.replace(CFG, epochs=2, lr=1e-5, amp="fp16", grad_clip=0.5)
    model = make_model()
    start = [p.detach().clone() for p in model.parameters()]
    fit(model, train, test, cfg, tmp_path, rules=(rule,), loss_fn=_summed_loss)
    epochs = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["kind"] == "epoch"]
    skipped = epochs[0]["amp_skipped_steps"]
    assert 1 <= skipped < STEPS
    assert epochs[0]["amp_scale"] == 2.0 ** (16 - skipped)  # halved on every overflow
    # gradients were finite and clipped after unscaling (before: norms of 0.5 / scale)
    finite = [n for n in rule.norms if math.isfinite(n)]
    assert max(finite) == pytest.approx(0.5, rel=1e-5)
    assert all(not math.isfinite(n) for n in rule.norms[:skipped])
    assert all(math.isfinite(n) for n in rule.norms[skipped:])
    assert any(not torch.equal(a, b) for a, b in zip(start, model.parameters(), strict=True))
    scaler = load_checkpoint(tmp_path / "checkpoint.pt")["scaler"]
    assert scaler["scale"] == epochs[-1]["amp_scale"]


def test_fp16_skipped_steps_leave_parameters_unchanged(tmp_path, blobs):
    train, _ = blobs
    model = make_model()
    start = [p.detach().clone() for p in model.parameters()]
    cfg = TrainConfig(epochs=1, batch_size=32, lr=1e-2, amp="fp16", max_steps_per_epoch=2)
    fit(model, train, None, cfg, tmp_path, loss_fn=_summed_loss)
    assert read_jsonl(tmp_path / "metrics.jsonl")[-1]["amp_skipped_steps"] == 2
    assert all(torch.equal(a, b) for a, b in zip(start, model.parameters(), strict=True))


def test_fp16_still_stops_on_a_truly_nonfinite_gradient(tmp_path, blobs):
    train, test = blobs

    def inf_grad(module, grad_input, grad_output):
        return (torch.full_like(grad_input[0], float("inf")),)

    model = make_model()
    model[2].register_full_backward_hook(inf_grad)
    cfg = dataclasses.replace(CFG, amp="fp16")
    # it gives up once the loss scale is 1 (2**16 halved 16 times), not at the first overflow
    with pytest.raises(DivergenceError, match=r"gradient of 0\.weight became NaN/Inf at epoch 3, "
                       r"step 17 \(every parameter"):
        fit(model, train, test, cfg, tmp_path)


def test_rules_computing_their_own_gradients_run_at_full_precision(tmp_path, blobs):
    from signalprop.learning.feedback_alignment import FeedbackAlignment

    train, test = blobs
    results, seen = [], []
    for amp in ("none", "fp16"):
        model = make_model()
        model[0].register_forward_hook(
            lambda m, args, out: seen.append(out.dtype) if m.training else None)
        fit(model, train, None, dataclasses.replace(CFG, amp=amp), tmp_path / amp,
            rules=(FeedbackAlignment(),))
        results.append([r for r in read_jsonl(tmp_path / amp / "metrics.jsonl")
                        if r["kind"] == "step"])
    assert set(seen) == {torch.float32}
    assert [r["loss"] for r in results[0]] == [r["loss"] for r in results[1]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_on_cuda_uses_the_cuda_scaler(tmp_path, blobs):
    train, test = blobs
    model = make_model()
    seen: list[torch.dtype] = []
    model[0].register_forward_hook(
        lambda m, args, out: seen.append(out.dtype) if m.training else None)
    cfg = dataclasses.replace(CFG, amp="fp16", grad_clip=0.5)
    result = fit(model, train, test, cfg, tmp_path, device=torch.device("cuda"),
                 loss_fn=_summed_loss)
    assert set(seen) == {torch.float16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    epochs = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["kind"] == "epoch"]
    assert epochs[0]["amp_skipped_steps"] >= 1 and result["amp_scale"] < 2.0 ** 16
    assert result["test_acc"] > 0.8


# -- gradient clipping ------------------------------------------------------------------------

def test_grad_clip_bounds_the_total_gradient_norm(tmp_path, blobs):
    train, test = blobs
    free, clipped = GradNorms(), GradNorms()
    fit(make_model(), train, test, CFG, tmp_path / "free", rules=(free,))
    fit(make_model(), train, test, dataclasses.replace(CFG, grad_clip=0.1), tmp_path / "clip",
        rules=(clipped,))
    assert max(free.norms) > 0.2  # so the bound below is not met trivially
    assert max(clipped.norms) <= 0.1 * (1 + 1e-5)
    assert max(clipped.norms) == pytest.approx(0.1, rel=1e-5)


# -- learning-rate schedules ------------------------------------------------------------------

def test_cosine_schedule_follows_the_formula(tmp_path, blobs):
    train, test = blobs
    cfg = dataclasses.replace(CFG, lr_schedule="cosine", lr_min=1e-4)
    fit(make_model(), train, test, cfg, tmp_path)
    total = cfg.epochs * STEPS

    def cosine(t: int) -> float:
        return 1e-4 + (1e-2 - 1e-4) * (1 + math.cos(math.pi * t / total)) / 2

    records = read_jsonl(tmp_path / "metrics.jsonl")
    steps = [r for r in records if r["kind"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, total + 1))
    for r in steps:  # the rate that step used: after step - 1 scheduler steps
        assert r["lr"] == pytest.approx(cosine(r["step"] - 1), rel=1e-9, abs=1e-12)
    epochs = [r for r in records if r["kind"] == "epoch"]
    for r in epochs:
        assert r["lr"] == pytest.approx(cosine(r["step"]), rel=1e-9, abs=1e-12)
    assert epochs[-1]["lr"] == pytest.approx(1e-4)


def test_step_schedule_decays_by_gamma_every_n_epochs(tmp_path, blobs):
    train, test = blobs
    cfg = dataclasses.replace(CFG, epochs=5, lr_schedule="step", lr_step_epochs=2, lr_gamma=0.5)
    fit(make_model(), train, test, cfg, tmp_path)
    records = read_jsonl(tmp_path / "metrics.jsonl")
    epoch_lrs = [r["lr"] for r in records if r["kind"] == "epoch"]
    assert epoch_lrs == pytest.approx([1e-2, 5e-3, 5e-3, 2.5e-3, 2.5e-3])
    step_lrs = {r["step"]: r["lr"] for r in records if r["kind"] == "step"}
    assert step_lrs[2 * STEPS] == pytest.approx(1e-2)  # last step of epoch 2
    assert step_lrs[2 * STEPS + 1] == pytest.approx(5e-3)


def test_no_schedule_keeps_the_step_records_unchanged(tmp_path, blobs):
    train, test = blobs
    fit(make_model(), train, test, CFG, tmp_path)
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert {tuple(r) for r in records if r["kind"] == "step"} == {
        ("kind", "step", "epoch", "loss")}
    assert load_checkpoint(tmp_path / "checkpoint.pt")["scheduler"] is None


class Interrupt(Exception):
    pass


def _stop_at_two(model, epoch):
    if epoch == 2:
        raise Interrupt
    return {}


def test_resume_restores_schedule_and_loss_scale(tmp_path, blobs):
    train, test = blobs
    cfg = dataclasses.replace(CFG, lr_schedule="cosine", amp="fp16", lr=1e-5)
    full = make_model()
    fit(full, train, test, cfg, tmp_path / "full", seed=4, loss_fn=_summed_loss)
    with pytest.raises(Interrupt):
        fit(make_model(), train, test, cfg, tmp_path / "cut", seed=4, loss_fn=_summed_loss,
            on_epoch=_stop_at_two)
    state = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert state["scheduler"]["last_epoch"] == STEPS
    assert state["scaler"]["scale"] < 2.0 ** 16
    resumed = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    fit(resumed, train, test, cfg, tmp_path / "cut", seed=4, loss_fn=_summed_loss)
    assert _strip_wall(read_jsonl(tmp_path / "cut" / "metrics.jsonl")) == _strip_wall(
        read_jsonl(tmp_path / "full" / "metrics.jsonl"))
    for a, b in zip(full.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resuming_with_a_lower_lr_scales_the_schedule_too(tmp_path, blobs):
    """--resume --set train.lr=...: the cosine schedule continues from the new base rate."""
    train, test = blobs
    cfg = dataclasses.replace(CFG, lr_schedule="cosine")
    fit(make_model(), train, test, cfg, tmp_path / "full", seed=4)
    with pytest.raises(Interrupt):
        fit(make_model(), train, test, cfg, tmp_path / "cut", seed=4, on_epoch=_stop_at_two)
    fit(make_model(), train, test, dataclasses.replace(cfg, lr=cfg.lr / 4), tmp_path / "cut",
        seed=4)
    rates = {path: [r["lr"] for r in read_jsonl(tmp_path / path / "metrics.jsonl")
                    if r.get("kind") == "step" and r["step"] > 2 * STEPS]
             for path in ("full", "cut")}
    assert rates["full"] and len(rates["full"]) == len(rates["cut"])
    for full, cut in zip(rates["full"], rates["cut"], strict=True):
        assert cut == pytest.approx(full / 4)


def test_resuming_a_run_without_schedule_state_under_a_schedule_is_refused(tmp_path, blobs):
    train, test = blobs
    with pytest.raises(Interrupt):
        fit(make_model(), train, test, CFG, tmp_path, on_epoch=_stop_at_two)
    with pytest.raises(ConfigError, match="holds no learning-rate schedule state"):
        fit(make_model(), train, test, dataclasses.replace(CFG, lr_schedule="cosine"), tmp_path)


# -- torch.compile ----------------------------------------------------------------------------

def test_compile_trains_through_the_compiled_module(tmp_path, blobs, monkeypatch):
    """The option is wired: fit trains through torch.compile's module (the fast ``eager``
    backend traces with Dynamo but skips code generation), with eager's exact numbers."""
    train, test = blobs
    compiled: list[nn.Module] = []
    real_compile = torch.compile

    def spy(model, **kwargs):
        module = real_compile(model, backend="eager")
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", spy)
    eager = fit(make_model(), train, test, CFG, tmp_path / "eager")
    assert not compiled
    model = make_model()
    result = fit(model, train, test, dataclasses.replace(CFG, compile=True), tmp_path / "compiled")
    assert len(compiled) == 1 and compiled[0]._orig_mod is model
    assert result == {**eager, "wall_s": result["wall_s"]}
    saved = load_checkpoint(tmp_path / "compiled" / "checkpoint.pt")["model"]
    assert set(saved) == set(model.state_dict())  # no "_orig_mod." prefixes


@pytest.mark.slow
def test_compile_with_inductor_matches_eager(tmp_path, blobs):
    train, test = blobs
    eager = fit(make_model(), train, test, CFG, tmp_path / "eager")
    result = fit(make_model(), train, test, dataclasses.replace(CFG, compile=True),
                 tmp_path / "compiled")
    assert result["train_loss"] == pytest.approx(eager["train_loss"], rel=1e-4)
    assert result["test_acc"] == pytest.approx(eager["test_acc"], abs=1 / 60)


# -- TensorBoard ------------------------------------------------------------------------------

def _tensorboard_scalars(log_dir) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)}
            for tag in events.Tags()["scalars"]}


def _jsonl_scalars(records) -> dict[str, dict[int, float]]:
    scalars: dict[str, dict[int, float]] = {}

    def add(prefix, record, step):
        for key, value in record.items():
            if isinstance(value, dict):
                add(f"{prefix}/{key}", value, step)
            elif key != "kind":
                assert step not in scalars.get(f"{prefix}/{key}", {})
                scalars.setdefault(f"{prefix}/{key}", {})[step] = float(value)

    for record in records:
        add(record["kind"], record, record["step"])
    return scalars


def _assert_same_scalars(board, jsonl):
    assert board.keys() == jsonl.keys()
    for tag, values in jsonl.items():
        assert board[tag].keys() == values.keys(), tag
        for step, value in values.items():  # TensorBoard stores float32
            assert board[tag][step] == pytest.approx(value, rel=1e-6, abs=1e-30), (tag, step)


def test_tensorboard_log_holds_the_metrics_jsonl_scalars(tmp_path, blobs):
    pytest.importorskip("tensorboard")
    train, test = blobs
    cfg = dataclasses.replace(CFG, log="tensorboard", grad_norms=True, lr_schedule="cosine")
    fit(make_model(), train, test, cfg, tmp_path)
    records = read_jsonl(tmp_path / "metrics.jsonl")
    jsonl = _jsonl_scalars(records)
    assert {"step/loss", "step/lr", "epoch/test_acc", "epoch/grad_norms/0"} <= jsonl.keys()
    _assert_same_scalars(_tensorboard_scalars(tmp_path / "tensorboard"), jsonl)


def test_tensorboard_log_after_resume_has_no_stale_events(tmp_path, blobs):
    pytest.importorskip("tensorboard")
    train, test = blobs
    cfg = dataclasses.replace(CFG, log="tensorboard")
    with pytest.raises(Interrupt):
        fit(make_model(), train, test, cfg, tmp_path, on_epoch=_stop_at_two)
    fit(make_model(), train, test, cfg, tmp_path)
    jsonl = _jsonl_scalars(read_jsonl(tmp_path / "metrics.jsonl"))
    _assert_same_scalars(_tensorboard_scalars(tmp_path / "tensorboard"), jsonl)


def test_missing_tensorboard_is_one_clear_error_before_training(tmp_path, blobs, monkeypatch):
    train, test = blobs
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(ConfigError) as error:
        fit(make_model(), train, test, dataclasses.replace(CFG, log="tensorboard"), tmp_path)
    message = str(error.value)
    assert "pip install signalprop[tensorboard]" in message and "\n" not in message
    assert not (tmp_path / "metrics.jsonl").exists()
