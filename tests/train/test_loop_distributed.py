"""GradNorm after the all-reduce: two gloo processes hold identical weights and parameters.

No Ray here: torch.multiprocessing starts two ranks on 127.0.0.1, which is what Ray
Train's TorchTrainer does for the same loop, and takes seconds instead of a cluster start.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

from adc_dist.balancing import make_balancer
from adc_dist.config import TrainConfig
from adc_dist.data.torch_sampler import samplers_for
from adc_dist.train.loop import epoch_batches, train_step
from adc_dist.model.network import ADC, domain_losses
from synthetic import make_task
from procs import free_port

WORLD = 2
STEPS_CHECKED = 2  # epochs; every step of each is compared across ranks


def _cfg(balancer: str) -> TrainConfig:
    return TrainConfig(d=16, batch_size=256, balancer=balancer, gamma=1.5, balancer_lr=0.05, lr=5e-3,
                       static_weights=[1.5, 0.5] if balancer == "static" else None).validate()


def _rank_main(rank: int, port: int, balancer: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        cfg, task = _cfg(balancer), make_task(seed=3)
        torch.manual_seed(cfg.seed)
        model = ADC.from_config(cfg, task.n_users, task.n_items)
        net = DDP(model)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        bal = make_balancer(cfg, task.num_domains)
        samplers = samplers_for(task)
        spreads, first = [], None
        for epoch in range(STEPS_CHECKED):
            for users, items in epoch_batches(samplers, cfg, epoch, rank, WORLD):
                _, grads = train_step(net, model, bal, opt, users, items, WORLD)
                if first is None:
                    first = {"users": users, "items": items, "grads": grads}
                state = torch.cat([bal.weights().double(), *[p.detach().double().reshape(-1) for p in model.parameters()]])
                gathered = [torch.empty_like(state) for _ in range(WORLD)]
                dist.all_gather(gathered, state)
                # Bitwise: the balancer's inputs are identical after the all-reduce.
                spreads.append(float((gathered[0] - gathered[1]).abs().max()))
        torch.save({"spreads": spreads, "first": first, "weights": bal.weights()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _run_two_ranks(balancer: str, tmp_path) -> list[dict]:
    mp.spawn(_rank_main, args=(free_port(), balancer, str(tmp_path)), nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory):
    """balancer -> both ranks' records; each configuration is spawned once per module."""
    cache: dict[str, list[dict]] = {}

    def get(balancer: str) -> list[dict]:
        if balancer not in cache:
            cache[balancer] = _run_two_ranks(balancer, tmp_path_factory.mktemp(balancer))
        return cache[balancer]

    return get


@pytest.mark.parametrize("balancer", ["gradnorm", "uncertainty"])
def test_two_ranks_hold_bitwise_identical_weights_and_parameters_after_every_step(balancer, two_rank_runs):
    out = two_rank_runs(balancer)
    spreads = out[0]["spreads"]
    assert len(spreads) >= 4
    assert max(spreads) == 0.0
    # The weights did move (otherwise identical weights would prove nothing).
    assert not torch.allclose(out[0]["weights"], torch.ones(2))


def test_all_reduced_domain_gradients_equal_one_process_on_the_union_of_the_batches(two_rank_runs):
    out = two_rank_runs("gradnorm")
    cfg, task = _cfg("gradnorm"), make_task(seed=3)
    torch.manual_seed(cfg.seed)
    model = ADC.from_config(cfg, task.n_users, task.n_items)  # the same initial parameters
    firsts = [o["first"] for o in out]
    users = [torch.cat([f["users"][k] for f in firsts]) for k in range(task.num_domains)]
    items = [torch.cat([f["items"][k] for f in firsts]) for k in range(task.num_domains)]
    losses = domain_losses(model(users, items))
    union = torch.stack([torch.autograd.grad(losses[k], model.shared_weight, retain_graph=True)[0].reshape(-1)
                         for k in range(task.num_domains)])
    for f in firsts:
        torch.testing.assert_close(f["grads"], union, rtol=1e-5, atol=1e-7)
    # Equal-size shards: the mean of the two ranks' means is the mean over the union.
    assert all(len(firsts[0]["users"][k]) == len(firsts[1]["users"][k]) for k in range(task.num_domains))
    assert np.isfinite(union.numpy()).all() and union.abs().sum() > 0
