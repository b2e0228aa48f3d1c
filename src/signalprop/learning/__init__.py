"""Learning rules: backprop and the alternatives the trainer can select with learning.rule."""

from signalprop.learning.base import LearningRule, LossFn, backprop

__all__ = ["LearningRule", "LossFn", "backprop"]
