"""What the three sensitivity-adjustment experiments share (Shibata et al., arXiv 2012.13134).

Sensitivity adjustment learning (SAL) raises each neuron's sensitivity
``s_j = |f'(U_j)| ‖w_j‖`` towards a target after every optimiser step
(:class:`~signalprop.learning.sensitivity.SensitivityAdjustment`). The paper's sizes, rates and
task details were not available (see docs/methods/sensitivity.md); every such constant is a
config field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from signalprop.config import in_range, non_negative, one_of, positive
from signalprop.experiments.stats import Difference
from signalprop.learning.sensitivity import GATES, OBJECTIVES, SensitivityAdjustment

PAPER = "Shibata, Ejima, Tokumaru & Matsuki 2021, arXiv 2012.13134"
SOURCE = "arXiv 2012.13134 v2, abstract"


@dataclass(frozen=True)
class SALConfig:
    """Options of :class:`SensitivityAdjustment` (``sal.*``; none confirmed from the paper's
    text)."""

    lr: float = 0.01
    beta: float = 0.0
    target: float = 1.0
    objective: str = "s"
    gate: str = "below_target"
    saturation_threshold: float = 0.05
    saturation_guard: bool = True

    def __post_init__(self) -> None:
        non_negative("sal.lr", self.lr)
        in_range("sal.beta", self.beta, 0.0, 0.999999)
        positive("sal.target", self.target)
        one_of("sal.objective", self.objective, OBJECTIVES)
        one_of("sal.gate", self.gate, GATES)
        in_range("sal.saturation_threshold", self.saturation_threshold, 0.0, 0.999)

    def rule(self) -> SensitivityAdjustment:
        return SensitivityAdjustment(
            lr=self.lr, beta=self.beta, target=self.target, objective=self.objective,
            gate=self.gate, saturation_threshold=self.saturation_threshold,
            saturation_guard=self.saturation_guard,
        )


def series(title: str, xlabel: str, ylabel: str, lines: dict[str, Any],
           logy: bool = False) -> dict[str, Any]:
    """One entry of an experiment's ``series`` (a figure of named lines)."""
    return {"title": title, "xlabel": xlabel, "ylabel": ylabel, "logy": logy, "lines": lines}


def better(d: Difference, margin: float) -> str:
    """The paper's direction (a > b): reproduced by >= ``margin`` and Welch one-sided
    p < 0.05; partly when in that direction at all; not reproduced otherwise."""
    if d.diff >= margin and d.beyond_noise():
        return "reproduced"
    return "partly" if d.diff > 0 else "not reproduced"
