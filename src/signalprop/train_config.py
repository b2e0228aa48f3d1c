"""``TrainConfig``: the optimisation settings of :func:`signalprop.train.fit`.

Its own module so that the modules ``fit`` is built from (:mod:`signalprop.training_options`,
:mod:`signalprop.ddp_training`) and the experiments can name it without importing the training
loop; ``from signalprop.train import TrainConfig`` keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass

from signalprop import training_options as options
from signalprop.config import non_negative, non_negative_fields, one_of, positive, positive_fields

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every experiment.

    ``grad_clip`` clips the total gradient norm (0 = off). The options ``amp``, ``compile``,
    ``lr_schedule`` (with ``lr_min``, ``lr_step_epochs``, ``lr_gamma``) and ``log`` are
    implemented in :mod:`signalprop.training_options` (docs/training-options.md); all are off
    by default.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    log_every: int = 10
    grad_norms: bool = False
    max_steps_per_epoch: int = 0
    eval_batch_size: int = 1000
    amp: str = "none"
    compile: bool = False
    lr_schedule: str = "none"
    lr_min: float = 0.0
    lr_step_epochs: int = 1
    lr_gamma: float = 0.1
    log: str = "jsonl"

    def __post_init__(self) -> None:
        positive_fields(self, "train", "epochs", "batch_size", "lr")
        one_of("train.optimizer", self.optimizer, OPTIMIZERS)
        non_negative_fields(self, "train", "momentum", "weight_decay", "grad_clip")
        positive("train.log_every", self.log_every)
        non_negative("train.max_steps_per_epoch", self.max_steps_per_epoch)
        positive("train.eval_batch_size", self.eval_batch_size)
        options.validate(self)
