import pytest
import torch

from signalprop.errors import CheckpointCorrupt
from signalprop.storage import (
    MetricsLog,
    load_checkpoint,
    previous_checkpoint,
    read_jsonl,
    save_checkpoint,
)


def test_checkpoint_round_trip_keeps_previous(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"a": torch.arange(3)})
    save_checkpoint(path, {"a": torch.arange(4)})
    assert torch.equal(load_checkpoint(path)["a"], torch.arange(4))
    assert torch.equal(load_checkpoint(previous_checkpoint(path))["a"], torch.arange(3))
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_checkpoint_is_named(tmp_path, damage):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"a": torch.randn(100)})
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointCorrupt, match="ck.pt"):
        load_checkpoint(path)


def test_metrics_log_skips_half_written_line(tmp_path):
    path = tmp_path / "m.jsonl"
    with MetricsLog(path) as log:
        log.write({"kind": "step", "loss": 1.0})
    with open(path, "a") as handle:
        handle.write('{"kind": "ste')
    assert read_jsonl(path) == [{"kind": "step", "loss": 1.0}]
