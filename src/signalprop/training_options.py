"""The optional parts of ``fit``: mixed precision, torch.compile, learning-rate schedules,
gradient clipping and a TensorBoard mirror of ``metrics.jsonl``. Every one is off by default.

Precision policy (``train.amp``): the forward pass and loss of backprop steps run under
``torch.autocast(device.type, dtype)``; parameters, optimiser state, gradients and learning
rules' ``after_step`` stay float32. ``fp16`` scales the loss with ``torch.amp.GradScaler`` (on
CUDA and on CPU alike), unscales before clipping, and skips a step whose gradients overflow;
``bf16`` needs no scaler. Rules that compute their own gradients (feedback alignment, node
perturbation) run at full precision and unscaled.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from signalprop.config import in_range, non_negative, one_of, positive
from signalprop.errors import ConfigError

if TYPE_CHECKING:
    from signalprop.learning.base import LossFn
    from signalprop.train_config import TrainConfig

AMP_MODES = ("none", "bf16", "fp16")
LR_SCHEDULES = ("none", "cosine", "step")
LOGGERS = ("jsonl", "tensorboard")
TENSORBOARD_DIR = "tensorboard"
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class MixedPrecision:
    """Autocast context, loss scaling and the scaled optimiser step for ``train.amp``."""

    def __init__(self, mode: str, device: torch.device) -> None:
        self.mode = mode
        self.device_type = torch.device(device).type
        self.dtype = _AMP_DTYPES.get(mode)
        self.scaler: torch.amp.GradScaler | None = None
        available = getattr(torch.amp, "is_autocast_available", lambda _: True)
        if self.dtype is not None and not available(self.device_type):
            raise ConfigError(f"train.amp={mode}: torch has no autocast for device "
                              f"{self.device_type!r}; use train.amp=none")
        if mode == "fp16":
            try:
                self.scaler = torch.amp.GradScaler(self.device_type)
            except (AttributeError, RuntimeError, TypeError) as exc:
                raise ConfigError(
                    f"train.amp=fp16 needs torch.amp.GradScaler on {self.device_type} ({exc}); "
                    "use train.amp=bf16 or a newer torch"
                ) from None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """``torch.autocast`` in the chosen dtype, or a no-op for ``train.amp=none``."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scale(self, loss: Tensor) -> Tensor:
        """The loss times the current fp16 loss scale (unchanged without a scaler)."""
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def backprop(
        self, model: nn.Module, inputs: Tensor, targets: Tensor, loss_fn: LossFn
    ) -> tuple[Tensor, Tensor]:
        """Forward and loss under autocast, backward (of the scaled loss) outside it."""
        with self.autocast():
            output = model(inputs)
            loss = loss_fn(output, targets)
        if torch.isfinite(loss):
            self.scale(loss).backward()
        return loss, output

    def unscale(self, optimizer: torch.optim.Optimizer, scaled: bool) -> None:
        """Divide scaled gradients by the loss scale in place (before checks and clipping)."""
        if scaled and self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def overflow_is_skipped(self, scaled: bool) -> bool:
        """True if non-finite gradients here are an fp16 overflow the scaler handles by
        skipping the step and halving the scale. At a scale <= 1 the unscaled gradient itself
        is non-finite: that is divergence, not an overflow."""
        return scaled and self.scaler is not None and self.scaler.get_scale() > 1.0

    def step(self, optimizer: torch.optim.Optimizer, scaled: bool) -> bool:
        """Optimiser step (through the scaler for scaled gradients); False if it was skipped."""
        if not (scaled and self.scaler is not None):
            optimizer.step()
            return True
        before = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= before

    def state_dict(self) -> dict[str, Any] | None:
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def compiled(model: nn.Module, enabled: bool) -> nn.Module:
    """``torch.compile(model)`` for ``train.compile``, else ``model`` itself."""
    return torch.compile(model) if enabled else model


def clip_gradients(model: nn.Module, max_norm: float) -> None:
    """Scale all gradients so their joint L2 norm is at most ``max_norm`` (0 = off).

    Under DDP the gradients are already averaged over ranks, so every rank clips alike.
    """
    if max_norm:
        nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None],
                                 max_norm)


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The ``train.lr_schedule`` scheduler, stepped once per optimiser step.

    ``cosine``: ``lr_t = lr_min + (lr - lr_min) (1 + cos(pi t / T)) / 2`` with ``T = epochs *
    steps_per_epoch`` (Loshchilov & Hutter, SGDR, arXiv 1608.03983, without restarts).
    ``step``: ``lr_t = lr * lr_gamma ** floor(t / (lr_step_epochs * steps_per_epoch))``.
    """
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=cfg.epochs * steps_per_epoch, eta_min=cfg.lr_min)
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=cfg.lr_step_epochs * steps_per_epoch, gamma=cfg.lr_gamma)
    return None


def scheduled_lr(cfg: TrainConfig, steps_per_epoch: int, t: int) -> float:
    """The closed-form learning rate after ``t`` optimiser steps (what the scheduler follows)."""
    if cfg.lr_schedule == "cosine":
        total = cfg.epochs * steps_per_epoch
        return cfg.lr_min + (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * t / total)) / 2
    if cfg.lr_schedule == "step":
        return cfg.lr * cfg.lr_gamma ** (t // (cfg.lr_step_epochs * steps_per_epoch))
    return cfg.lr


def step_scheduler(scheduler: torch.optim.lr_scheduler.LRScheduler | None) -> None:
    """Advance the schedule by one optimiser step, also when fp16 skipped that step (the
    schedule follows the step count; torch's warning about the order is then moot)."""
    if scheduler is None:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
        scheduler.step()


def option_states(
    scheduler: torch.optim.lr_scheduler.LRScheduler | None, precision: MixedPrecision
) -> dict[str, Any]:
    """What a checkpoint keeps of the scheduler and the fp16 loss scaler."""
    return {"scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": precision.state_dict()}


def load_option_states(
    state: dict[str, Any], scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    precision: MixedPrecision, path: Path | str = "the checkpoint",
) -> None:
    """Restore :func:`option_states` from a checkpoint ``state``."""
    if scheduler is not None:
        saved = state.get("scheduler")
        if saved is None:
            raise ConfigError(
                f"{path} holds no learning-rate schedule state (it was trained with "
                "train.lr_schedule=none); resume with the run's own config"
            )
        scheduler.load_state_dict(saved)
    precision.load_state_dict(state.get("scaler"))


class TensorBoardLog:
    """Writes every numeric value of each metrics record as a TensorBoard scalar.

    The tag is ``<kind>/<key>`` (nested dicts such as ``grad_norms`` add ``/<name>``) at
    ``global_step = record["step"]``. On resume, events at or after the checkpoint's step are
    purged, as ``metrics.jsonl`` is truncated to it.
    """

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        writer_class = tensorboard_writer()
        self.writer = writer_class(log_dir=str(log_dir), purge_step=purge_step)

    def write(self, record: dict[str, Any]) -> None:
        kind, step = record.get("kind", "metrics"), int(record.get("step", 0))
        for tag, value in _scalars(record, str(kind)):
            self.writer.add_scalar(tag, value, global_step=step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _scalars(record: dict[str, Any], prefix: str) -> Iterator[tuple[str, float]]:
    for key, value in record.items():
        if key == "kind":
            continue
        if isinstance(value, dict):
            yield from _scalars(value, f"{prefix}/{key}")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            yield f"{prefix}/{key}", float(value)


def tensorboard_writer() -> type:
    """``torch.utils.tensorboard.SummaryWriter``, or a ConfigError saying how to install it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "train.log=tensorboard needs the tensorboard package: pip install "
            "signalprop[tensorboard] (or set train.log=jsonl)"
        ) from None
    return SummaryWriter


class MetricsTee:
    """``metrics.jsonl`` (always) plus an optional TensorBoard copy of every record."""

    def __init__(self, jsonl: Any, board: TensorBoardLog | None) -> None:
        self.jsonl, self.board = jsonl, board

    def write(self, record: dict[str, Any]) -> None:
        self.jsonl.write(record)
        if self.board is not None:
            self.board.write(record)

    def sync(self) -> None:
        self.jsonl.sync()
        if self.board is not None:
            self.board.flush()

    def tell(self) -> int:
        return self.jsonl.tell()

    def close(self) -> None:
        self.jsonl.close()
        if self.board is not None:
            self.board.close()


def open_metrics(jsonl: Any, cfg: TrainConfig, run_dir: Path, step: int) -> MetricsTee:
    """The run's metrics sink: ``jsonl`` plus TensorBoard under ``run_dir/tensorboard`` when
    ``train.log=tensorboard`` (resuming at ``step > 0`` purges its later events)."""
    board = None
    if cfg.log == "tensorboard":
        # events after the checkpoint's step are purged, as metrics.jsonl is truncated
        board = TensorBoardLog(Path(run_dir) / TENSORBOARD_DIR,
                               purge_step=step + 1 if step else None)
    return MetricsTee(jsonl, board)


def validate(cfg: TrainConfig) -> None:
    """Check the optional fields of ``cfg`` (called from ``TrainConfig.__post_init__``)."""
    one_of("train.amp", cfg.amp, AMP_MODES)
    one_of("train.lr_schedule", cfg.lr_schedule, LR_SCHEDULES)
    one_of("train.log", cfg.log, LOGGERS)
    positive("train.lr_step_epochs", cfg.lr_step_epochs)
    in_range("train.lr_gamma", cfg.lr_gamma, 0.0, 1.0)
    positive("train.lr_gamma", cfg.lr_gamma)
    non_negative("train.lr_min", cfg.lr_min)
    if cfg.lr_schedule == "cosine" and cfg.lr_min >= cfg.lr:
        raise ConfigError(f"train.lr_min ({cfg.lr_min}) must be below train.lr ({cfg.lr}) for "
                          "train.lr_schedule=cosine")
