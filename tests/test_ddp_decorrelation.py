"""Under DDP (2 gloo processes on 127.0.0.1) every rank keeps the identical decorrelation R,
and with node perturbation (gradients written outside autograd) identical weights too."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

STEPS = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(rank: int, sync: bool, block_size: int | None = None) -> dict[str, torch.Tensor]:
    from signalprop.learning.decorrelation_rule import decorrelation_step
    from signalprop.nn.decorrelation_policy import decorrelate

    torch.manual_seed(0)  # same initial model on every rank
    model = decorrelate(
        nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 4 * 4, 5), nn.Tanh(),
                      nn.Linear(5, 2)),
        lr=1e-2, sample_fraction=0.5, block_size=block_size)
    ddp = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    data = torch.Generator().manual_seed(100 + rank)  # different data per rank
    for _ in range(STEPS):
        x = torch.randn(8, 2, 6, 6, generator=data) * (1 + rank)
        opt.zero_grad()
        ddp(x).square().mean().backward()
        opt.step()
        decorrelation_step(model, sync=sync)
    return {k: v for k, v in model.state_dict().items() if "decorrelator" in k}


def _train_np(rank: int, sync: bool) -> dict[str, torch.Tensor]:
    """Node perturbation + decorrelation; NP's estimates never pass through DDP's hooks."""
    import torch.nn.functional as F

    from signalprop.learning.decorrelation_rule import decorrelation_step
    from signalprop.learning.perturbation import NodePerturbation
    from signalprop.nn.decorrelation_policy import decorrelate

    torch.manual_seed(0)
    model = decorrelate(nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)),
                        lr=1e-2, sample_fraction=0.5)
    ddp = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    rule = NodePerturbation(sigma=1e-3, sync=sync)
    rule.attach(model)
    data = torch.Generator().manual_seed(200 + rank)
    torch.manual_seed(300 + rank)  # different noise per rank
    for _ in range(STEPS):
        x = torch.randn(16, 6, generator=data) * (1 + rank)
        y = torch.randint(0, 3, (16,), generator=data)
        opt.zero_grad()
        rule.compute_gradients(ddp, x, y, F.cross_entropy)
        opt.step()
        decorrelation_step(model)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        for sync in (True, False):
            torch.save(_train(rank, sync), f"{out}/rank{rank}-{sync}.pt")
            torch.save(_train(rank, sync, block_size=4), f"{out}/blk-rank{rank}-{sync}.pt")
            torch.save(_train_np(rank, sync), f"{out}/np-rank{rank}-{sync}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def states(tmp_path_factory) -> dict[bool, list[dict]]:
    out = tmp_path_factory.mktemp("ddp")
    # forkserver: one fresh server imports torch once and forks both ranks (fork-safe, unlike
    # forking a test process whose OpenMP pool is running; faster than spawn)
    mp.set_forkserver_preload(["torch", "signalprop.nn.decorrelated_layers"])
    mp.start_processes(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True,
                       start_method="forkserver")
    return {(kind, sync): [torch.load(out / f"{kind}rank{r}-{sync}.pt") for r in range(2)]
            for sync in (True, False) for kind in ("", "np-", "blk-")}


def _identical_ranks(states, kind: str) -> dict[str, torch.Tensor]:
    """Rank 0's synced state after checking rank 1 holds exactly the same tensors."""
    first, second = states[kind, True]
    assert set(first) == set(second)
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0, msg=key)
    return first


def test_ranks_keep_identical_r(states):
    first = _identical_ranks(states, "")
    assert not torch.allclose(first["4.decorrelator.R"], torch.eye(5))


def test_without_sync_ranks_drift(states):
    first, second = states["", False]
    assert not torch.allclose(first["0.decorrelator.R"], second["0.decorrelator.R"])


def test_node_perturbation_ranks_keep_identical_weights_and_r(states):
    first = _identical_ranks(states, "np-")
    assert not torch.allclose(first["0.decorrelator.R"], torch.eye(6))


def test_node_perturbation_without_sync_ranks_drift(states):
    first, second = states["np-", False]
    assert not torch.allclose(first["0.weight"], second["0.weight"])


def test_block_diagonal_ranks_keep_identical_r(states):
    first = _identical_ranks(states, "blk-")
    r = first["0.decorrelator.R"]  # conv patches: d = 18, blocks of 4 and a remainder of 2
    ids = torch.arange(18) // 4
    assert torch.count_nonzero(r[ids[:, None] != ids[None, :]]) == 0
    assert not torch.allclose(r, torch.eye(18))
    drift = states["blk-", False]
    assert not torch.allclose(drift[0]["0.decorrelator.R"], drift[1]["0.decorrelator.R"])
