"""Learning rules the trainer runs each step: backprop and its alternatives.

Select one in an experiment config with ``--set learning.rule=fa`` (bp, fa, dfa, np); add
local updates (decorrelation, sensitivity adjustment) as extra rules.
"""

from signalprop.learning.base import LearningRule, LossFn, backprop
from signalprop.learning.decorrelation_rule import DecorrelationRule, decorrelation_step
from signalprop.learning.feedback_alignment import DirectFeedbackAlignment, FeedbackAlignment
from signalprop.learning.perturbation import NodePerturbation
from signalprop.learning.registry import LearningConfig, build_rules, make_rule, rule_names
from signalprop.learning.sensitivity import SensitivityAdjustment, sal_update

__all__ = [
    "DecorrelationRule",
    "DirectFeedbackAlignment",
    "FeedbackAlignment",
    "LearningConfig",
    "LearningRule",
    "LossFn",
    "NodePerturbation",
    "SensitivityAdjustment",
    "backprop",
    "build_rules",
    "decorrelation_step",
    "make_rule",
    "rule_names",
    "sal_update",
]
