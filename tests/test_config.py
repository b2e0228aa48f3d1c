from dataclasses import dataclass, field

import pytest

from signalprop.config import apply_overrides, field_names, from_dict, positive, to_dict
from signalprop.errors import ConfigError
from signalprop.train import TrainConfig


@dataclass(frozen=True)
class Model:
    depth: int = 3
    gain: float = 1.0
    kind: str = "tanh"
    sizes: tuple[int, ...] = (4, 4)
    bias: bool = True
    limit: int | None = None

    def __post_init__(self) -> None:
        positive("model.depth", self.depth)
        positive("model.gain", self.gain)


@dataclass(frozen=True)
class Root:
    model: Model = field(default_factory=Model)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0


def test_overrides_parse_by_type():
    cfg = apply_overrides(Root(), [
        "model.depth=7", "model.gain=0.5", "model.kind=relu", "model.sizes=1,2,3",
        "model.bias=false", "model.limit=none", "train.lr=1e-2", "seed=3", "train.epochs=2e1",
    ])
    assert cfg.model == Model(7, 0.5, "relu", (1, 2, 3), False, None)
    assert cfg.train.lr == 0.01 and cfg.seed == 3 and cfg.train.epochs == 20


@pytest.mark.parametrize("override, fragment", [
    ("model.depth=0", "model.depth must be > 0"),
    ("model.depth=2.5", "expects an integer"),
    ("model.gain=nan", "finite"),
    ("train.lr=-1", "train.lr must be > 0"),
    ("model.bias=maybe", "true or false"),
    ("model.dept=3", "did you mean model.depth"),
    ("model=3", "is a group"),
    ("depth", "key=value"),
    ("train.optimizer=adamm", "did you mean adam"),
])
def test_bad_overrides_name_the_problem(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        apply_overrides(Root(), [override])


def test_round_trip_through_dict():
    cfg = apply_overrides(Root(), ["model.sizes=5,6", "train.epochs=4"])
    assert from_dict(Root(), to_dict(cfg)) == cfg
    assert "train.lr" in field_names(cfg)


def test_positive_values_names_the_option_and_the_fix():
    from signalprop.config import positive_values

    positive_values("lrs", (1e-3, 0.1))
    with pytest.raises(ConfigError, match=r"^lrs must not be empty: e\.g\. lrs=\[0\.001\]$"):
        positive_values("lrs", (), ": e.g. lrs=[0.001]")
    with pytest.raises(ConfigError, match="lrs entry must be > 0, got -1"):
        positive_values("lrs", (1e-3, -1))
