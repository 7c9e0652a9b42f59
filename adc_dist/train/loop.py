"""The per-worker training loop of ADC: plain PyTorch + torch.distributed.

The same ``fit`` runs in-process (world size 1), under ``torchrun`` and under Ray
Train's ``TorchTrainer`` (which sets up the process group before calling it). One step:

  1. take one batch from every domain: this rank's share of the positives plus rho
     sampled negatives each (``adc_dist.data``);
  2. forward all K domains through the DDP-wrapped model, per-domain losses L_k (the L2
     term reads the forward's rows: one lookup per table and ids tensor, ADC.step_lookups);
  3. for GradNorm, the per-domain gradients g_k = dL_k/dW of the last shared weight,
     taken on the *unwrapped* parameter so that DDP's reducer hooks do not fire;
  4. ONE all_reduce of [g_1 .. g_K, L_1 .. L_K] and a division by the world size: every
     rank now holds the global means, so the balancer's update is identical everywhere
     (for ``gmf`` W is the user table P and g_k is the batch's rows of it: those are
     summed across ranks by an all_gather instead, adc_dist.train.sparse_rows);
  5. the ordinary DDP backward of sum_k w_k L_k (DDP averages the network gradients;
     with ``sparse_tables`` the tables' row gradients are averaged by one all_gather);
     with an MLP, W_L's gradient sum_k w_k g_k is handed to the backward from step 3's
     g_k instead of being formed again (adc_dist.model.given_grad).

Single process:  python -m adc_dist.train --local (or from adc_dist.train.loop import fit)
Many processes:  torchrun --nproc-per-node=2 -m adc_dist.train -- --local  (see adc_dist.train)
"""

from __future__ import annotations

import math
import resource
import time
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from adc_dist.balancing import make_balancer
from adc_dist.config import TrainConfig
from adc_dist.data import Interactions, TaskData, load_task
from adc_dist.data.sampling import check_negatives
from adc_dist.data.torch_sampler import DomainSampler, EpochBatches, samplers_for
from adc_dist.errors import AdcError
from adc_dist.train.evaluate import evaluate
from adc_dist.train.memory import check_fits
from adc_dist.model.network import ADC, domain_losses
from adc_dist.model.row_tables import step_rows
from adc_dist.model.shared_grads import coalesce_rows, shared_layer_grads, shared_row_grads, summed_row_norm
from adc_dist.train.graphed import GraphedStep, why_eager
from adc_dist.train.optim import make_optimizer, sparse_table_params, wrap_ddp
from adc_dist.train.sparse_rows import all_reduce_sparse_grads, rows_as_sparse, sum_rows_across_ranks
from adc_dist.train.reporting import Reporter


def prepare_task(cfg: TrainConfig) -> TaskData:
    """The task as this run sees it: the cached split, a domain subset, a subsampled domain."""
    task = load_task(cfg.task, data_root=cfg.data_root, seed=cfg.seed, min_rating=cfg.min_rating)
    if cfg.domains:
        task = task.select(cfg.domains)
    if cfg.subsample_domain is not None:
        task = subsample_train(task, cfg.subsample_domain, cfg.subsample_frac, cfg.seed)
    check_negatives(task, cfg.negatives)  # before any worker starts: one line, not a mid-epoch crash
    return task


def subsample_train(task: TaskData, domain: str, frac: float, seed: int) -> TaskData:
    """Keep a seeded ``frac`` of one domain's train positives (valid/test unchanged)."""
    if domain not in task.domains:
        raise AdcError(f"subsample_domain {domain!r} is not a domain of task {task.name!r} ({', '.join(task.domains)})")
    k = task.domains.index(domain)
    tr = task.train[k]
    keep = np.sort(np.random.default_rng([seed, 1009]).permutation(len(tr))[: max(1, round(frac * len(tr)))])
    train = list(task.train)
    train[k] = Interactions(tr.users[keep], tr.items[keep])
    return TaskData(task.name, task.domains, task.n_users, task.n_items, tuple(train), task.valid, task.test,
                    {**task.meta, "subsample": {"domain": domain, "frac": frac}})


def _all_reduce_mean(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(t)
        t /= world
    return t


def _rank_spread(values: torch.Tensor, world: int) -> float:
    """max over entries of (max over ranks - min over ranks): 0.0 iff every rank agrees."""
    if world == 1:
        return 0.0
    hi, lo = values.detach().clone().double(), values.detach().clone().double()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    return float((hi - lo).max())


def epoch_batches(samplers: list[DomainSampler], cfg: TrainConfig, epoch: int, rank: int, world: int,
                  ) -> EpochBatches:
    """This rank's batches of ``epoch``, made on the samplers' device (adc_dist.data.torch_sampler).

    An epoch is one pass over every domain's positives. The largest domain sets the number
    of steps (ceil(shard / batch_size)); smaller domains are split into as many (smaller)
    batches, so each step sees every domain once and no positive is repeated.
    """
    return EpochBatches(samplers, seed=cfg.seed, epoch=epoch, rank=rank, world=world,
                        batch_size=cfg.batch_size, negatives=cfg.negatives)


def autocast_for(cfg: TrainConfig, device: torch.device):
    """bf16 autocast for a GPU run with ``bf16``, else a context that does nothing. Its cache of
    bf16 weight copies is off: a CUDA graph must not replay casts cached outside it (each
    weight is cast once per step anyway)."""
    if cfg.bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    return nullcontext()


def step_function(net: torch.nn.Module, model: ADC, balancer: torch.nn.Module, opt: Any, cfg: TrainConfig,
                  world: int, autocast, device: torch.device, shared_grads=shared_layer_grads, reporter=None,
                  graphs: bool = True):
    """``step(users, items) -> (mean losses [K], gradients or None)``: ``train_step`` with this
    run's arguments, replayed from CUDA graphs where the run allows it (train/graphed.py) and
    ``graphs`` is true. ``reporter``: told on a GPU whether the steps replay or why they run eagerly."""
    def eager(users, items):
        return train_step(net, model, balancer, opt, users, items, world, autocast, cfg.loss, cfg.l2,
                          shared_grads=shared_grads)

    if shared_grads is not shared_layer_grads:
        why = "sharded tables"
    elif not graphs:
        why = "eager steps asked for"
    else:
        why = why_eager(cfg, model, opt, device, world)
    if reporter is not None and device.type == "cuda":
        reporter.log("training steps replay from CUDA graphs" if why is None else f"training steps run eagerly: {why}")
    return eager if why else GraphedStep(eager, opt, device)


def train_step(net: torch.nn.Module, model: ADC, balancer: torch.nn.Module, opt: torch.optim.Optimizer,
               users: list[torch.Tensor], items: list[torch.Tensor], world: int, autocast=nullcontext(),
               loss: str = "bce", l2: float = 0.0, shared_grads=shared_layer_grads,
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One optimisation step (module doc, steps 2-5). Returns the rank-averaged losses [K] and
    the rank-averaged per-domain gradients of the shared weight [K, |W|] (None unless the
    balancer needs them; for ``gmf``, whose W is the user table P, a sparse COO tensor
    [K, n_users, d] holding the batch's rows). L_k is the domain's ``loss`` plus ``l2``
    times its batch's embedding L2 term (ADC.embedding_sq_norms). ``shared_grads`` computes
    the per-domain gradients (sharded tables pass their own: adc_dist.train.sharded_loop)."""
    K = len(users)
    tap = balancer.needs_grads and (not model.has_mlp or len(model.layers) >= 2)
    # Every table is looked up once per ids tensor: the L2 term reads the forward's rows
    # (ADC.step_lookups). Sparse tables: every lookup of the step reads one gather of each
    # table's unique rows, whose gradient the backward hands to the table's .grad
    # (model/row_tables.py).
    with step_rows(model, users, items), model.step_lookups():
        with autocast:
            out = net(users, items, last_layer_io=True) if tap else net(users, items)
        logits, io = out if tap else (out, None)
        losses = domain_losses([x.float() for x in logits], loss)  # [K]
        if l2:
            losses = losses + l2 * model.embedding_sq_norms(users, items)
    rows = grads = None
    if balancer.needs_grads and tap and not model.has_mlp and shared_grads is shared_layer_grads:
        # gmf: g_k lives on the batch's rows of P; O(batch), never an [n_users, d] table.
        rows = shared_row_grads(model, losses, io, l2)
        if world > 1:  # the exchange sums each rank's distinct rows (train/sparse_rows.py)
            rows = [coalesce_rows(u, g) for u, g in rows]
        packed = losses.detach().clone()
    elif balancer.needs_grads:
        grads = shared_grads(model, losses, io, [it.numel() for it in items], l2)
        packed = torch.cat([grads.reshape(-1), losses.detach()])
        assert not packed.requires_grad
    else:
        packed = losses.detach().clone()
    # One collective for everything the balancer needs: global means on every rank.
    packed = _all_reduce_mean(packed, world)
    mean_losses = packed[-K:]
    if rows is not None:
        # GradNorm reads only ||g_k||: a one-element "gradient" per domain carries it (as the
        # sharded path's shared_row_grad_norms does), never a padded [K, B, d] copy.
        if world > 1:
            rows = [(i, v / world) for i, v in sum_rows_across_ranks(rows, world)]
            norms = torch.stack([torch.linalg.vector_norm(v) for _, v in rows])
        else:  # one rank: the rows of a user seen twice are summed without a GPU sync
            norms = torch.stack([summed_row_norm(u, v) for u, v in rows])
        balancer.update(mean_losses, norms.reshape(K, 1))
        mean_grads = rows_as_sparse(rows, model.shared_weight.shape, coalesced=world > 1)
    else:
        mean_grads = packed[:-K].view(K, -1) if balancer.needs_grads else None
        balancer.update(mean_losses, mean_grads)

    w = balancer.weights().to(losses.dtype)
    if grads is not None and tap and model.has_mlp:
        # The backward's gradient of W_L is sum_k w_k g_k: hand over this rank's (DDP
        # averages it like any gradient) instead of forming it again (model/given_grad.py).
        model.given_weight_grad = (w[:, None] * grads).sum(0).view_as(model.shared_weight)
    opt.zero_grad(set_to_none=True)
    try:
        (w * losses).sum().backward()  # through DDP: averages the network gradients
    finally:
        model.given_weight_grad = None
    if world > 1:
        all_reduce_sparse_grads(sparse_table_params(model), world)  # the tables DDP leaves alone
    opt.step()
    return mean_losses, mean_grads


def fit(cfg: TrainConfig, reporter: Reporter, *, per_user: bool = False, task: TaskData | None = None,
        ) -> dict[str, Any]:
    """Train, validate every ``eval_every`` epochs, early-stop, test the best epoch.

    Returns (on every rank) ``{"final": flat test metrics + best_epoch + epochs_run,
    "history": [per-epoch metric rows], "per_user": DataFrame | None}``. ``task`` overrides
    the one ``cfg`` names (tests and studies on generated or transformed data).
    """
    rank, world = reporter.rank, reporter.world
    device = reporter.device(cfg.use_gpu)
    task = task if task is not None else prepare_task(cfg)
    K = task.num_domains
    if cfg.embedding_sharding != "none":  # TorchRec-sharded tables: a loop of their own
        from adc_dist.train.sharded_loop import fit_sharded

        return fit_sharded(cfg, reporter, task, per_user=per_user)

    # Refuse a model the device cannot hold before allocating it (a worker on a cluster
    # checks its own device; the driver checked this machine already).
    check_fits(cfg, task.n_users, task.n_items, device=device)
    torch.manual_seed(cfg.seed)  # the same initial parameters on every rank (DDP checks)
    model = ADC.from_config(cfg, task.n_users, task.n_items).to(device)
    net = wrap_ddp(model, device) if world > 1 else model
    opt = make_optimizer(model, cfg)  # LazyAdam on the tables with sparse_tables (train/optim.py)
    balancer = make_balancer(cfg, K).to(device)
    samplers = samplers_for(task, device)  # positives and exclusion keys live on the device
    for s in samplers:
        if s.dropped_positives:
            reporter.log(f"{s.domain}: {s.dropped_users} users have rated every item (no negative exists); "
                         f"their {s.dropped_positives} train positives are not trained on")

    start_epoch, history = 0, []
    best = {"metric": -math.inf, "epoch": -1, "model": None, "bad_epochs": 0}
    state = reporter.load_checkpoint()
    if state is not None:
        saved = "tables" in state["optimizer"]  # TableAdam's state (train/optim.py)
        if saved != bool(sparse_table_params(model)):
            raise AdcError(f"this run's checkpoint was written with {'sparse' if saved else 'dense'} tables: resume "
                           f"it with --sparse_tables {str(saved).lower()}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        balancer.load_state_dict(state["balancer"])
        start_epoch, history, best = state["epoch"], state["history"], state["best"]
        reporter.log(f"resumed from the checkpoint of epoch {start_epoch}")

    autocast = autocast_for(cfg, device)
    metric, n = cfg.early_stop_key
    stop_key = f"valid_{metric}{n}_mean"
    stopped_early = False

    step = step_function(net, model, balancer, opt, cfg, world, autocast, device, reporter=reporter)
    for epoch in range(start_epoch, cfg.epochs):
        row = train_epoch(net, model, balancer, opt, samplers, cfg, epoch, rank, world, autocast, device,
                          task.domains, step=step)
        last = epoch + 1 == cfg.epochs
        if (epoch + 1) % cfg.eval_every == 0 or last:
            t1 = time.perf_counter()
            model.eval()
            res = evaluate(model.score_all, task, "valid", cfg.topk, rank=rank, world=world, device=device,
                           **_eval_sample(cfg))
            row.update(res.flat("valid"))
            row["eval_time_s"] = time.perf_counter() - t1
            best = track_best(best, row[stop_key], epoch,
                              lambda: {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
            # The metric is all-reduced, so every rank takes the same decision.
            stopped_early = cfg.patience > 0 and best["bad_epochs"] >= cfg.patience and not last
        history.append(row)
        reporter.log(_epoch_line(row, task.domains, cfg))
        ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "balancer": balancer.state_dict(),
                "epoch": epoch + 1, "history": history, "best": best, "config": cfg.to_dict()}
        reporter.report(row, ckpt)
        if stopped_early:
            reporter.log(f"early stop: no {stop_key} improvement for {cfg.patience} evaluations")
            break

    # Test with the best validated parameters (DESIGN.md section 4).
    if best["model"] is not None:
        model.load_state_dict(best["model"])
    model.eval()
    res = evaluate(model.score_all, task, "test", cfg.topk, rank=rank, world=world, device=device, per_user=per_user,
                   **_eval_sample(cfg))
    final = {**res.flat("test"), "best_epoch": best["epoch"], "epochs_run": len(history),
             f"best_{stop_key}": best["metric"], "stopped_early": stopped_early}
    return {"final": final, "history": history, "per_user": res.per_user}


def train_epoch(net: torch.nn.Module, model: ADC, balancer: torch.nn.Module, opt: Any, samplers: list[DomainSampler],
                cfg: TrainConfig, epoch: int, rank: int, world: int, autocast, device: torch.device,
                domains: tuple[str, ...], shared_grads=shared_layer_grads, step=None) -> dict[str, Any]:
    """Train one epoch; returns the history row without the validation metrics: mean losses
    and weights per domain, the balancer's stats, rates, memory and the rank spreads.
    ``step``: the run's :func:`step_function` (made once per run: it holds the CUDA graphs);
    None makes an eager one."""
    if step is None:
        step = step_function(net, model, balancer, opt, cfg, world, autocast, device, shared_grads, graphs=False)
    model.train()
    # Dropout masks and negatives depend only on (seed, epoch, rank): a repeated epoch
    # after a restart draws exactly what the lost one drew.
    torch.manual_seed((cfg.seed * 1_000_003 + epoch * 1_009 + rank) % 2**31)
    batches = epoch_batches(samplers, cfg, epoch, rank, world)
    loss_sum = torch.zeros(len(domains), dtype=torch.float64, device=device)  # no per-step host sync
    positives, t0 = 0, time.perf_counter()
    for users, items in batches:
        positives += sum(len(u) for u in users)
        mean_losses, _ = step(users, items)
        loss_sum += mean_losses.double()
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # honest timing: wait for queued kernels
    train_time = time.perf_counter() - t0
    steps = len(batches)
    loss_sum = loss_sum.cpu()

    row: dict[str, Any] = {"epoch": epoch + 1}
    weights = balancer.weights().detach()
    for k, dom in enumerate(domains):
        row[f"loss_{dom}"] = float(loss_sum[k] / steps)
        row[f"weight_{dom}"] = float(weights[k])
    row.update({f"balancer_{key}": v for key, v in balancer.stats().items()})
    row["samples_per_s"] = positives * world / train_time
    row["pairs_per_s"] = positives * (1 + cfg.negatives) * world / train_time  # scored (user, item) pairs
    row["epoch_time_s"] = train_time
    # Peak memory of this (rank 0's) process: ru_maxrss is in KiB on Linux.
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        row["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    row["weight_rank_spread"] = _rank_spread(weights, world)
    # (a sharded gmf model without item bias has no dense parameter at all)
    sums = [p.detach().double().sum() for p in model.parameters()]
    row["param_rank_spread"] = _rank_spread(
        torch.stack(sums) if sums else torch.zeros(1, dtype=torch.float64, device=device), world)
    return row


def track_best(best: dict[str, Any], metric: float, epoch: int, snapshot) -> dict[str, Any]:
    """The early-stopping record after a validation of ``epoch`` (0-based): a new best takes
    ``snapshot()`` of the parameters, anything else counts one more bad evaluation."""
    if metric > best["metric"]:
        return {"metric": metric, "epoch": epoch + 1, "bad_epochs": 0, "model": snapshot()}
    best["bad_epochs"] += 1
    return best


def _eval_sample(cfg: TrainConfig) -> dict[str, Any]:
    """evaluate()'s user sampling from the config: every user unless ``eval_users`` > 0."""
    return {"user_sample": cfg.eval_users or None, "sample_seed": cfg.seed}


def _epoch_line(row: dict[str, Any], domains: tuple[str, ...], cfg: TrainConfig) -> str:
    metric, n = cfg.early_stop_key
    parts = [f"epoch {row['epoch']:>3}/{cfg.epochs}"]
    parts.append("loss " + " ".join(f"{d}={row[f'loss_{d}']:.4f}" for d in domains))
    parts.append("w " + " ".join(f"{d}={row[f'weight_{d}']:.3f}" for d in domains))
    if f"valid_{metric}{n}_mean" in row:
        parts.append(f"valid {metric}@{n} " + " ".join(f"{d}={row[f'valid_{metric}{n}_{d}']:.4f}" for d in domains))
    parts.append(f"{row['samples_per_s']:,.0f} samples/s")
    return " | ".join(parts)
