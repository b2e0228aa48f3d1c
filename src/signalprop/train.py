"""The one training loop: seeded, resumable, checksummed, with per-step and per-epoch metrics.

``fit`` trains a model in a run directory. It writes ``metrics.jsonl`` (``kind`` = ``step`` or
``epoch``; step 1, the untrained model's loss, is always logged), a checkpoint after every
epoch and ``result.json`` when done. Called again on the same directory it resumes from the
last good checkpoint (or returns the finished result), and ends with exactly the metrics an
uninterrupted run would have produced. On a finished directory it loads the final weights (and
learning-rule state) into the model it was given before returning the saved result;
:func:`signalprop.load_run` does the same without ``fit``. Resuming with a different ``lr``
rescales the optimiser's learning rate (and a schedule's base rates) from the checkpoint on, and
a larger ``epochs`` continues a finished run.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from signalprop import ddp_training as ddp
from signalprop import distributed, threads
from signalprop import training_options as options
from signalprop.diagnostics.gradients import GradNormRecorder
from signalprop.divergence import diverged
from signalprop.errors import CheckpointCorrupt, ConfigError
from signalprop.heartbeat import Heartbeat
from signalprop.learning.base import LearningRule, LossFn
from signalprop.runs import CHECKPOINT, METRICS, RESULT
from signalprop.storage import (
    MetricsLog,
    atomic_write_json,
    load_checkpoint,
    previous_checkpoint,
    read_jsonl,
    save_checkpoint,
    sha256_prefix,
)
from signalprop.train_config import OPTIMIZERS, TrainConfig

__all__ = [
    "OPTIMIZERS", "TrainConfig", "classification_loss", "default_loss", "epoch_records",
    "evaluate", "fit", "make_optimizer", "regression_loss", "seed_everything",
]

def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Build the optimiser named by ``cfg.optimizer``."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.RMSprop(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


def classification_loss(output: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy; per-step outputs ``(N, T, C)`` with targets ``(N, T)`` are flattened."""
    if output.dim() == 3 and target.dim() == 2:
        output, target = output.reshape(-1, output.shape[-1]), target.reshape(-1)
    return nn.functional.cross_entropy(output, target, ignore_index=-100)


def regression_loss(output: Tensor, target: Tensor) -> Tensor:
    """Mean squared error."""
    return nn.functional.mse_loss(output, target.reshape(output.shape))


def default_loss(task: str) -> LossFn:
    return classification_loss if task == "classification" else regression_loss


def _correct(output: Tensor, target: Tensor) -> tuple[int, int]:
    if output.dim() == 3 and target.dim() == 2:
        output, target = output.reshape(-1, output.shape[-1]), target.reshape(-1)
    mask = target != -100
    hits = (output.argmax(-1) == target) & mask
    return int(hits.sum()), int(mask.sum())


class _Batches:
    """Seeded shuffled mini-batches; tensors are indexed directly, other datasets via DataLoader."""

    def __init__(self, dataset: Dataset, batch_size: int, device: torch.device) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.device = device
        self.tensors: tuple[Tensor, ...] | None = None
        if isinstance(dataset, TensorDataset):
            self.tensors = tuple(t.to(device) for t in dataset.tensors)

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.batch_size)  # type: ignore[arg-type]

    def epoch(self, generator: torch.Generator | None):
        if self.tensors is not None:
            n = self.tensors[0].shape[0]
            order = (
                torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
            ).to(self.device)
            for start in range(0, n, self.batch_size):
                index = order[start : start + self.batch_size]
                yield tuple(t[index] for t in self.tensors)
            return
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=generator is not None,
            generator=generator,
        )
        for batch in loader:
            yield tuple(t.to(self.device) for t in batch)


#: Fragments of torch's messages for a model that does not fit its data's shape.
SHAPE_MESSAGES = ("cannot be multiplied", "size mismatch", "must match the size",
                  "Expected input", "expected input", "shape '[")


@contextlib.contextmanager
def _shape_errors_named(inputs: Tensor, targets: Tensor, first: bool) -> Iterator[None]:
    """On the first training step, a shape error from the model becomes one ConfigError line
    that names the batch's shapes and the fix (the first step is where a model built for other
    data fails; later errors pass through unchanged)."""
    try:
        yield
    except RuntimeError as exc:
        if not first or not any(m in str(exc) for m in SHAPE_MESSAGES):
            raise
        first_line = str(exc).splitlines()[0]
        raise ConfigError(
            f"the model does not fit the data: inputs {tuple(inputs.shape)}, targets "
            f"{tuple(targets.shape)} ({first_line}); build the model for these shapes (input "
            "size, flatten=True for an MLP on images) or load the data it was built for"
        ) from exc


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset: Dataset, loss_fn: LossFn, device: torch.device, batch_size: int,
    task: str,
) -> dict[str, float]:
    """Mean loss (and accuracy for classification) over ``dataset`` in eval mode."""
    was_training = model.training
    model.eval()
    total_loss, count, hits, labelled = 0.0, 0, 0, 0
    for inputs, targets in _Batches(dataset, batch_size, device).epoch(None):
        output = model(inputs)
        total_loss += float(loss_fn(output, targets)) * inputs.shape[0]
        count += inputs.shape[0]
        if task == "classification":
            h, n = _correct(output, targets)
            hits, labelled = hits + h, labelled + n
    model.train(was_training)
    result = {"loss": total_loss / max(count, 1)}
    if task == "classification":
        result["acc"] = hits / max(labelled, 1)
    return result


def _nonfinite_grad_layer(model: nn.Module) -> str | None:
    for name, param in model.named_parameters():
        if param.grad is not None and not torch.isfinite(param.grad).all():
            return name
    return None


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain data, so the checkpoint loads with weights_only."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": numpy_state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    keys = keys.numpy() if isinstance(keys, Tensor) else keys
    np.random.set_state((kind, keys.astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _warn(message: str) -> None:
    print(f"signalprop: warning: {message}", file=sys.stderr)


def _restore(
    run_dir: Path, device: torch.device
) -> tuple[dict[str, Any] | None, Path | None]:
    """Newest checkpoint whose own checksum and metrics-prefix checksum both verify, and its
    file (``metrics.jsonl`` is truncated to match it)."""
    metrics = run_dir / METRICS
    candidates = (run_dir / CHECKPOINT, previous_checkpoint(run_dir / CHECKPOINT))
    for path in candidates:
        if not path.exists():
            continue
        try:
            state = load_checkpoint(path, map_location=device)
        except CheckpointCorrupt as exc:
            _warn(f"{exc}; falling back to the previous checkpoint")
            continue
        length, digest = state["metrics_bytes"], state["metrics_sha256"]
        if not metrics.exists() or metrics.stat().st_size < length or (
            sha256_prefix(metrics, length) != digest
        ):
            _warn(f"metrics file {metrics} does not match checkpoint {path} (truncated or "
                  "corrupted); falling back to the previous checkpoint")
            continue
        with open(metrics, "r+b") as handle:
            handle.truncate(length)
        return state, path
    if metrics.exists() and metrics.stat().st_size:
        kept = metrics.with_name(f"{METRICS}.unrecoverable-{int(time.time())}")
        metrics.replace(kept)
        why = ("no usable checkpoint" if any(p.exists() for p in candidates) else
               "no checkpoint (the run stopped before its first epoch ended)")
        _warn(f"{why} in {run_dir}; old metrics kept as {kept.name}, starting over")
    return None, None


def _restore_shared(run_dir: Path, device: torch.device) -> dict[str, Any] | None:
    """:func:`_restore` on rank 0; every other rank then loads the same checkpoint file."""
    main = distributed.is_main_process()
    state, path = _restore(run_dir, device) if main else (None, None)
    path = distributed.broadcast_object(path)
    if not main and path is not None:
        state = load_checkpoint(path, map_location=device)
    distributed.barrier()  # nobody trains (and rank 0 saves nothing) until all have loaded
    return state


def _finished_result(result_path: Path) -> dict[str, Any] | None:
    """The saved final metrics of a finished run (rank 0 reads, every rank gets them)."""
    result = None
    if distributed.is_main_process() and result_path.exists():
        try:
            result = json.loads(result_path.read_text())
        except json.JSONDecodeError:
            _warn(f"{result_path} is corrupt; recomputing from the checkpoint")
    return distributed.broadcast_object(result)


def fit(
    model: nn.Module,
    train_data: Dataset,
    test_data: Dataset | None,
    cfg: TrainConfig,
    run_dir: Path,
    *,
    seed: int = 0,
    task: str = "classification",
    device: torch.device | None = None,
    rules: Sequence[LearningRule] = (),
    loss_fn: LossFn | None = None,
    on_epoch: Callable[[nn.Module, int], dict[str, Any]] | None = None,
    progress: bool | None = None,
    desc: str = "",
) -> dict[str, Any]:
    """Train ``model`` in ``run_dir`` and return the final metrics (also in ``result.json``).

    ``on_epoch(model, epoch)`` may return extra values for the epoch record. Raises
    :class:`DivergenceError` on a NaN/Inf loss or gradient, leaving the last good checkpoint.
    """
    run_dir = Path(run_dir)
    main = distributed.is_main_process()
    threads.apply_default()  # unless chosen: one thread per free core (signalprop.threads)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    result_path = run_dir / RESULT
    device = device or torch.device("cpu")
    finished = _finished_result(result_path)
    if finished is not None and finished.get("epoch", cfg.epochs) >= cfg.epochs:
        from signalprop.restore import load_final_state

        model.to(device)
        load_final_state(run_dir, model, rules, device, finished)
        return finished
    if distributed.is_distributed():
        ddp.check_shards(len(train_data), cfg)  # type: ignore[arg-type]
        ddp.check_rules(rules)
    loss_fn = loss_fn or default_loss(task)
    model.to(device)
    precision = options.MixedPrecision(cfg.amp, device)
    if cfg.log == "tensorboard":
        options.tensorboard_writer()  # a missing package fails before anything is trained
    recorder: GradNormRecorder | None = None
    log: options.MetricsTee | None = None
    try:  # from the first attach on, the rules are detached however fit ends
        for rule in rules:
            rule.attach(model)
        optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
        batches = _Batches(train_data, cfg.batch_size, device)
        steps_per_epoch = len(batches)
        if cfg.max_steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
        scheduler = options.make_scheduler(optimizer, cfg, steps_per_epoch)

        start_epoch, step, wall = 0, 0, 0.0
        state = _restore_shared(run_dir, device)
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            for rule, rule_state in zip(rules, state["rules"], strict=True):
                rule.load_state_dict(rule_state)
            options.load_option_states(state, scheduler, precision, run_dir / CHECKPOINT)
            start_epoch, step, wall = state["epoch"], state["step"], state["wall_s"]
            _set_rng_state(state["rng"])
            _apply_lr(optimizer, scheduler, state.get("lr"), cfg.lr)
        wrapped = ddp.wrap(model, device)
        sharded = wrapped is not model  # DistributedDataParallel across ranks
        net = options.compiled(wrapped, cfg.compile)

        recorder = GradNormRecorder(model) if cfg.grad_norms else None
        show = (sys.stderr.isatty() if progress is None else progress) and main
        last: dict[str, Any] = {}
        if main:
            log = options.open_metrics(MetricsLog(run_dir / METRICS), cfg, run_dir, step)
        from tqdm.auto import tqdm

        heartbeat = Heartbeat(desc, enabled=main and not show)
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            started = time.perf_counter()
            generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            losses: list[float] = []
            skipped = 0
            bar = tqdm(total=steps_per_epoch, disable=not show, leave=False,
                       desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}".strip())
            for index, (inputs, targets) in enumerate(batches.epoch(generator)):
                if index >= steps_per_epoch:
                    break
                if sharded:
                    (inputs, targets), share = ddp.shard((inputs, targets))
                optimizer.zero_grad(set_to_none=True)
                first = not losses and epoch == start_epoch
                with _shape_errors_named(inputs, targets, first):
                    computed = None
                    for rule in rules:
                        computed = rule.compute_gradients(model, inputs, targets, loss_fn)
                        if computed is not None:
                            break
                    if not sharded:
                        loss, _ = computed or precision.backprop(net, inputs, targets, loss_fn)
                        loss_value = float(loss.detach())
                    else:
                        loss_value = ddp.distributed_gradients(net, model, computed, inputs,
                                                            targets, loss_fn, share, precision)
                if not math.isfinite(loss_value):
                    with precision.autocast():
                        raise diverged(
                            f"loss became {loss_value} at epoch {epoch + 1}, step {step + 1}",
                            run_dir, epoch, cfg.lr, model, inputs)
                scaled = computed is None  # rules' own gradients are neither autocast nor scaled
                precision.unscale(optimizer, scaled)
                bad = _nonfinite_grad_layer(model)
                if bad is not None and not precision.overflow_is_skipped(scaled):
                    with precision.autocast():
                        raise diverged(
                            f"gradient of {bad} became NaN/Inf at epoch {epoch + 1}, "
                            f"step {step + 1}", run_dir, epoch, cfg.lr, model, inputs)
                if recorder is not None and bad is None:
                    recorder.record()
                if bad is None:
                    options.clip_gradients(model, cfg.grad_clip)
                skipped += not precision.step(optimizer, scaled)
                step_lr = optimizer.param_groups[0]["lr"]
                options.step_scheduler(scheduler)
                extra: dict[str, float] = {}
                for rule in rules:
                    extra.update(rule.after_step(model))
                step += 1
                losses.append(loss_value)
                if log is not None and (step % cfg.log_every == 0 or step == 1):
                    if scheduler is not None:
                        extra["lr"] = step_lr
                    log.write({"kind": "step", "step": step, "epoch": epoch + 1,
                               "loss": loss_value, **extra})
                bar.set_postfix(loss=f"{loss_value:.4f}")
                bar.update()
                heartbeat.tick(epoch + 1, cfg.epochs, index + 1, steps_per_epoch, loss_value)
            bar.close()
            wall += time.perf_counter() - started
            record: dict[str, Any] = {
                "kind": "epoch", "epoch": epoch + 1, "step": step, "wall_s": wall,
                "train_loss": float(np.mean(losses)) if losses else float("nan"),
                "lr": optimizer.param_groups[0]["lr"], "threads": torch.get_num_threads(),
            }
            if precision.scaler is not None:
                record.update(amp_skipped_steps=skipped, amp_scale=precision.scaler.get_scale())
            if main:  # evaluation and callbacks (which may write files): rank 0 only
                if test_data is not None:
                    with precision.autocast():
                        scores = evaluate(model, test_data, loss_fn, device,
                                          cfg.eval_batch_size, task)
                    record.update({f"test_{k}": v for k, v in scores.items()})
                if on_epoch is not None:
                    record.update(on_epoch(model, epoch + 1))
            if recorder is not None:
                record["grad_norms"] = recorder.pop_means()
            if log is None:
                continue
            log.write(record)
            log.sync()
            save_checkpoint(run_dir / CHECKPOINT, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "rules": [rule.state_dict() for rule in rules], "epoch": epoch + 1,
                "step": step, "wall_s": wall, "rng": _rng_state(), "lr": cfg.lr,
                "metrics_bytes": log.tell(),
                "metrics_sha256": sha256_prefix(run_dir / METRICS, log.tell()),
                **options.option_states(scheduler, precision),
            })
            last = {k: v for k, v in record.items() if k not in ("kind", "grad_norms")}
    finally:
        if log is not None:
            log.close()
        if recorder is not None:
            recorder.remove()
        for rule in rules:
            rule.detach()
    if main:
        if not last:
            epochs = epoch_records(run_dir)
            last = {k: v for k, v in epochs[-1].items() if k not in ("kind", "grad_norms")}
        atomic_write_json(result_path, last)
    return distributed.broadcast_object(last)  # rank 0's metrics, after its files are written


def _apply_lr(optimizer: torch.optim.Optimizer, scheduler: Any, saved: float | None,
              lr: float) -> None:
    """After resuming with a different configured ``lr``, rescale every group's learning rate
    (and a schedule's base rates) by ``lr / saved``; old checkpoints, which lack ``saved``, get
    ``lr`` itself."""
    if saved == lr:
        return
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * lr / saved if saved else lr
    if scheduler is not None:
        scheduler.base_lrs = [base * lr / saved if saved else lr for base in scheduler.base_lrs]


def epoch_records(run_dir: Path) -> list[dict[str, Any]]:
    """The ``kind == "epoch"`` records of a run directory's ``metrics.jsonl``."""
    return [r for r in read_jsonl(Path(run_dir) / METRICS) if r.get("kind") == "epoch"]
