"""Under DDP (2 gloo processes) a decorrelated ResNet-18 keeps identical R on every rank."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_ddp_train import _free_port
from torch import nn

STEPS = 2


def _train(rank: int, sync: bool) -> dict[str, torch.Tensor]:
    import torch.nn.functional as F

    from signalprop.learning.decorrelation_rule import decorrelation_step
    from signalprop.nn.decorrelation_policy import decorrelate
    from signalprop.nn.resnet import resnet18

    torch.manual_seed(0)  # same initial model on every rank
    model = decorrelate(resnet18(num_classes=10, in_channels=1), lr=1e-3, block_size=32,
                        sample_fraction=0.5)
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
    data = torch.Generator().manual_seed(100 + rank)  # different data per rank
    for _ in range(STEPS):
        x = torch.randn(2, 1, 28, 28, generator=data) * (1 + rank)
        y = torch.randint(0, 10, (2,), generator=data)
        opt.zero_grad()
        F.cross_entropy(ddp(x), y).backward()
        opt.step()
        decorrelation_step(model, sync=sync)
    # digests of every decorrelation buffer (the dense R buffers hold 90M floats), plus a few Rs
    state = {k: v for k, v in model.state_dict().items() if "decorrelator" in k}
    kept = ("conv1.decorrelator.R", "layer4.1.conv2.decorrelator.R", "fc.decorrelator.R")
    return {"digests": {k: hashlib.sha256(v.numpy().tobytes()).hexdigest()
                        for k, v in state.items()},
            "R": {k: state[k].diagonal().clone() if k.startswith("layer4") else state[k].clone()
                  for k in kept}}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        for sync in (True, False):
            torch.save(_train(rank, sync), f"{out}/rank{rank}-{sync}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_resnet18_ranks_keep_identical_r(tmp_path):
    mp.set_forkserver_preload(["torch", "signalprop.nn.decorrelated_layers"])
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="forkserver")
    synced = [torch.load(tmp_path / f"rank{r}-True.pt") for r in range(2)]
    drifted = [torch.load(tmp_path / f"rank{r}-False.pt") for r in range(2)]
    assert len([k for k in synced[0]["digests"] if k.endswith(".R")]) == 21
    assert synced[0]["digests"] == synced[1]["digests"]  # bit-identical on both ranks
    diagonal = synced[0]["R"]["layer4.1.conv2.decorrelator.R"]
    assert not torch.allclose(diagonal, torch.ones_like(diagonal))
    assert not torch.allclose(synced[0]["R"]["fc.decorrelator.R"], torch.eye(512))
    assert synced[0]["digests"] != drifted[0]["digests"]
    assert not torch.allclose(drifted[0]["R"]["conv1.decorrelator.R"],
                              drifted[1]["R"]["conv1.decorrelator.R"])
