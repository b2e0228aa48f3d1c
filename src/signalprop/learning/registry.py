"""Choose a learning rule by name: ``make_rule("fa", model)``; ``learning.rule=fa`` in configs.

Names: ``bp`` (backprop), ``fa`` (feedback alignment), ``dfa`` (direct feedback alignment),
``np`` (node perturbation). Every rule combines with decorrelation (Ahmad, arXiv 2407.10780):
:func:`build_rules` converts the model's layers and adds the :class:`DecorrelationRule`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from signalprop.config import in_range, non_negative, one_of, positive_fields, require_int
from signalprop.errors import ConfigError
from signalprop.learning.base import LearningRule
from signalprop.learning.decorrelation_rule import DecorrelationRule
from signalprop.learning.feedback_alignment import DirectFeedbackAlignment, FeedbackAlignment
from signalprop.learning.perturbation import NodePerturbation
from signalprop.nn.decorrelation import RULES as DECORRELATION_RULES
from signalprop.nn.decorrelation import SUBSAMPLING

RULES: dict[str, Callable[..., LearningRule]] = {
    "bp": LearningRule,
    "fa": FeedbackAlignment,
    "dfa": DirectFeedbackAlignment,
    "np": NodePerturbation,
}


def rule_names() -> list[str]:
    return list(RULES)


def make_rule(name: str, model: nn.Module | None = None, **options: Any) -> LearningRule:
    """The learning rule called ``name`` with its constructor ``options``.

    ``model`` is accepted for symmetry with :func:`build_rules`; the trainer attaches the rule.
    """
    one_of("learning.rule", name, RULES)
    try:
        return RULES[name](**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for learning rule {name!r}: {exc}") from None


@dataclass(frozen=True)
class LearningConfig:
    """``learning.*`` config: the gradient rule and the optional decorrelation in front of it.

    ``decorrelation`` is ``none`` or a rule name (``normalised``, ``decorrelate``, ``whiten``,
    ``foldiak``). ``block_size`` 0 keeps ``R`` dense (the paper); ``b > 0`` makes it
    block-diagonal with blocks of ``b`` features (cheaper, not in the paper).
    """

    rule: str = "bp"
    decorrelation: str = "none"
    decor_lr: float = 1e-4
    kappa: float = 0.5
    sample_fraction: float = 0.1
    subsample: str = "first"
    max_samples: int = 0
    block_size: int = 0
    feedback_scale: float = 1.0
    dfa_derivative: bool = True
    np_sigma: float = 1e-3

    def __post_init__(self) -> None:
        one_of("learning.rule", self.rule, RULES)
        one_of("learning.decorrelation", self.decorrelation, ("none", *DECORRELATION_RULES))
        non_negative("learning.decor_lr", self.decor_lr)
        in_range("learning.kappa", self.kappa, 0.0, 1.0)
        in_range("learning.sample_fraction", self.sample_fraction, 1e-9, 1.0)
        one_of("learning.subsample", self.subsample, SUBSAMPLING)
        non_negative("learning.max_samples", self.max_samples)
        require_int("learning", "block_size", self.block_size, minimum=0)
        positive_fields(self, "learning", "feedback_scale", "np_sigma")


def build_rules(cfg: LearningConfig, model: nn.Module, seed: int = 0) -> tuple[LearningRule, ...]:
    """Rules for ``fit``: converts ``model`` in place when decorrelation is on."""
    rules: list[LearningRule] = []
    if cfg.rule == "fa":
        rules.append(FeedbackAlignment(scale=cfg.feedback_scale, seed=seed))
    elif cfg.rule == "dfa":
        rules.append(DirectFeedbackAlignment(cfg.feedback_scale, cfg.dfa_derivative, seed=seed))
    elif cfg.rule == "np":
        rules.append(NodePerturbation(sigma=cfg.np_sigma))
    if cfg.decorrelation != "none":
        from signalprop.nn.decorrelation_policy import decorrelate

        decorrelate(model, rule=cfg.decorrelation, lr=cfg.decor_lr, kappa=cfg.kappa,
                    sample_fraction=cfg.sample_fraction, subsample=cfg.subsample,
                    max_samples=cfg.max_samples or None, block_size=cfg.block_size or None)
        rules.append(DecorrelationRule())
    return tuple(rules)
