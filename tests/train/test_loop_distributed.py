"""GradNorm after the all-reduce: two gloo processes hold identical weights and parameters.

No Ray here: torch.multiprocessing starts two ranks on 127.0.0.1, which is what Ray
Train's TorchTrainer does for the same loop, and takes seconds instead of a cluster start.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from adc_dist.balancing import make_balancer
from adc_dist.config import TrainConfig, from_mapping
from adc_dist.data.torch_sampler import samplers_for
from adc_dist.train.loop import epoch_batches, train_step
from adc_dist.train.optim import TableAdam, make_optimizer, wrap_ddp
from adc_dist.model.network import ADC, domain_losses
from synthetic import make_task
from procs import file_rendezvous

WORLD = 2
STEPS_CHECKED = 2  # epochs; every step of each is compared across ranks


# Model variants checked across ranks (docs/model.md): the paper's MLP, and a GMF model whose
# GradNorm weight is the shared user table P, with BPR and L2 on the batch's embeddings, with
# dense tables (DDP averages them) and with sparse ones (averaged by all_gather: train/sparse_rows.py).
GMF = {"interaction": "gmf", "user_repr": "shared+specific", "item_bias": True, "loss": "bpr", "l2": 1e-3}
VARIANTS = {"paper": {"preset": "paper"}, "gmf": {**GMF, "sparse_tables": "false"},
            "gmf-sparse": {**GMF, "sparse_tables": "true"}}
TABLES = ("user_emb.weight", "item_embs.0.weight", "item_embs.1.weight")


def _cfg(balancer: str, variant: str = "paper") -> TrainConfig:
    return from_mapping({"d": 16, "batch_size": 256, "balancer": balancer, "gamma": 1.5, "balancer_lr": 0.05,
                         "lr": 5e-3, "static_weights": [1.5, 0.5] if balancer == "static" else None,
                         **VARIANTS[variant]})


def _dense(g: torch.Tensor) -> torch.Tensor:
    return g.to_dense() if g.is_sparse else g


def _rank_main(rank: int, init_method: str, runs: list[tuple[str, str, str]]) -> None:
    """Every (balancer, variant, out_dir) of ``runs`` in turn, in one pair of processes: a spawn
    (two interpreters importing torch) cost most of a configuration's seconds on 2 cores."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=WORLD)
    try:
        for balancer, variant, out_dir in runs:
            _one_run(rank, balancer, variant, out_dir)
            dist.barrier()  # the next configuration starts on both ranks together
    finally:
        dist.destroy_process_group()


def _one_run(rank: int, balancer: str, variant: str, out_dir: str) -> None:
    """One configuration from the same initial state: 2 epochs, every step's spread across ranks."""
    cfg, task = _cfg(balancer, variant), make_task(seed=3)
    torch.manual_seed(cfg.seed)
    model = ADC.from_config(cfg, task.n_users, task.n_items)
    net = wrap_ddp(model, torch.device("cpu"))
    opt = make_optimizer(model, cfg)
    bal = make_balancer(cfg, task.num_domains)
    sparse = isinstance(opt, TableAdam)
    assert sparse == (cfg.sparse_tables == "true")  # the variants name it: never "auto" here
    table_grads = {}

    def keep_first_table_grads(*_):  # the averaged gradients the first step applies
        if not table_grads:
            params = dict(model.named_parameters())
            table_grads.update({n: params[n].grad.to_dense().clone() for n in TABLES}, w=bal.weights())

    (opt.tables if sparse else opt).register_step_pre_hook(keep_first_table_grads)
    samplers = samplers_for(task)
    spreads, first = [], None
    for epoch in range(STEPS_CHECKED):
        for users, items in epoch_batches(samplers, cfg, epoch, rank, WORLD):
            _, grads = train_step(net, model, bal, opt, users, items, WORLD, loss=cfg.loss, l2=cfg.l2)
            if first is None:
                first = {"users": users, "items": items, "grads": grads}
            state = torch.cat([bal.weights().double(), *[p.detach().double().reshape(-1) for p in model.parameters()]])
            gathered = [torch.empty_like(state) for _ in range(WORLD)]
            dist.all_gather(gathered, state)
            # Bitwise: the balancer's inputs are identical after the all-reduce.
            spreads.append(float((gathered[0] - gathered[1]).abs().max()))
    torch.save({"spreads": spreads, "first": first, "weights": bal.weights(), "table_grads": table_grads},
               f"{out_dir}/rank{rank}.pt")


# Every configuration the tests below read: all run by one spawn, the first time one is asked for.
RUNS = [("gradnorm", "paper"), ("uncertainty", "paper"), ("gradnorm", "gmf"), ("gradnorm", "gmf-sparse")]


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory):
    """(balancer, variant) -> both ranks' records; every configuration of RUNS in one spawn per module."""
    dirs = {run: tmp_path_factory.mktemp("-".join(run)) for run in RUNS}
    rendezvous = file_rendezvous(tmp_path_factory.mktemp("rendezvous"))
    mp.spawn(_rank_main, args=(rendezvous, [(*run, str(d)) for run, d in dirs.items()]), nprocs=WORLD, join=True)
    cache = {run: [torch.load(d / f"rank{r}.pt", weights_only=False) for r in range(WORLD)] for run, d in dirs.items()}

    def get(balancer: str, variant: str = "paper") -> list[dict]:
        return cache[balancer, variant]

    return get


@pytest.mark.parametrize("balancer, variant", RUNS)
def test_two_ranks_hold_bitwise_identical_weights_and_parameters_after_every_step(balancer, variant, two_rank_runs):
    out = two_rank_runs(balancer, variant)
    spreads = out[0]["spreads"]
    assert len(spreads) >= 4
    assert max(spreads) == 0.0
    # The weights did move (otherwise identical weights would prove nothing).
    assert not torch.allclose(out[0]["weights"], torch.ones(2))


@pytest.mark.parametrize("variant", VARIANTS)
def test_all_reduced_domain_gradients_equal_one_process_on_the_union_of_the_batches(variant, two_rank_runs):
    out = two_rank_runs("gradnorm", variant)
    cfg, task = _cfg("gradnorm", variant), make_task(seed=3)
    torch.manual_seed(cfg.seed)
    model = ADC.from_config(cfg, task.n_users, task.n_items)  # the same initial parameters
    firsts = [o["first"] for o in out]
    users = [torch.cat([f["users"][k] for f in firsts]) for k in range(task.num_domains)]
    items = [torch.cat([f["items"][k] for f in firsts]) for k in range(task.num_domains)]
    losses = domain_losses(model(users, items), cfg.loss) + cfg.l2 * model.embedding_sq_norms(users, items)
    union = torch.stack([_dense(torch.autograd.grad(losses[k], model.shared_weight, retain_graph=True)[0]).reshape(-1)
                         for k in range(task.num_domains)])
    for f in firsts:
        grads = _dense(f["grads"]).reshape(len(union), -1)
        torch.testing.assert_close(grads, union, rtol=1e-5, atol=1e-7)
    # The tables' gradients the optimizer applied (DDP's average, or the all_gather's for
    # sparse tables) are those of one process on the union, under the same domain weights.
    tables = dict(model.named_parameters())
    want = torch.autograd.grad((out[0]["table_grads"]["w"] * losses).sum(), [tables[n] for n in TABLES])
    for o in out:
        for n, g in zip(TABLES, want):
            torch.testing.assert_close(o["table_grads"][n], _dense(g), rtol=1e-5, atol=1e-8)
            assert g.abs().sum() > 0
    # Equal-size shards: the mean of the two ranks' means is the mean over the union.
    assert all(len(firsts[0]["users"][k]) == len(firsts[1]["users"][k]) for k in range(task.num_domains))
    assert np.isfinite(union.numpy()).all() and union.abs().sum() > 0
