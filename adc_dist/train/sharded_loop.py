"""The training loop with TorchRec-sharded embedding tables (``--embedding_sharding``).

``adc_dist.train.loop.fit`` hands over to :func:`fit_sharded` when the config asks for
sharded tables. The step is the same ``train_step`` (GradNorm after the all-reduce,
then the DDP backward); what differs:

- the tables live in :class:`~adc_dist.model.sharded_tables.ShardedTables`: every step
  first fetches the batch's rows (TorchRec's all-to-all), the backward updates the
  owners' rows with the fused table optimizer (Adagrad on CPU, Adam on GPU);
- only the dense part (MLP, heads, item biases) is an ``ADC`` under DDP with fused Adam
  (``optim.dense_adam``, as the replicated path);
- GradNorm of the ``gmf`` model balances the norms of the per-domain gradients at the
  batch's shared rows (adc_dist.model.sharded_grads); with an MLP it balances the last
  shared layer exactly as the replicated path does;
- evaluation first fetches the rows of the users this rank ranks and every item table;
- checkpoints hold the whole tables and their optimizer state, gathered on rank 0 as
  plain tensors (loadable with ``weights_only=True``, at any world size); each rank
  takes its own rows back on resume.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from adc_dist.balancing import make_balancer
from adc_dist.config import TrainConfig
from adc_dist.data import TaskData
from adc_dist.data.torch_sampler import samplers_for
from adc_dist.model.network import ADC
from adc_dist.model.shared_grads import shared_layer_grads
from adc_dist.model.sharded_grads import shared_row_grad_norms
from adc_dist.model.sharded_tables import ShardedTables
from adc_dist.train.evaluate import evaluate, excluded_items, sample_users, target_items
from adc_dist.train.optim import dense_adam
from adc_dist.train.reporting import Reporter


class ShardedNet(nn.Module):
    """What ``train_step`` calls as ``net``: fetch the batch's rows, then the dense model."""

    def __init__(self, dense: nn.Module, tables: ShardedTables) -> None:
        super().__init__()
        self.dense = dense
        self.tables = tables  # not a module: DMP owns the tables' parameters

    def forward(self, users: list[torch.Tensor], items: list[torch.Tensor], **kw: Any) -> Any:
        self.tables.lookup(users, items)
        return self.dense(users, items, **kw)


class _NoDenseOptimizer:
    """A model without dense parameters (gmf, no item bias): nothing to step."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        pass

    def step(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def build_sharded(cfg: TrainConfig, n_users: int, n_items: list[int], device: torch.device,
                  ) -> tuple[ADC, ShardedNet, Any, ShardedTables]:
    """(dense model with row caches, the net ``train_step`` calls, the dense optimizer, the tables)."""
    torch.manual_seed(cfg.seed)  # the same dense parameters on every rank (DDP checks)
    # One user row: the ADC's own user tables are replaced by row caches right away.
    model = ADC.from_config(cfg, 1, n_items).to(device)
    tables = ShardedTables(model, n_users, n_items, cfg.embedding_sharding, device, lr=cfg.lr,
                           init_std=cfg.init_std, seed=cfg.seed, zero_init=cfg.zero_init)
    dense = list(model.parameters())
    net: nn.Module = model
    if dense:
        # As in loop.fit: never static_graph=True (it de-synchronises with autograd.grad).
        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    # The replicated path's optimizer (fused Adam, one pass: train/optim.py). A checkpoint of
    # the for-loop Adam used here before loads into it and keeps its own setting (unfused).
    opt = dense_adam(dense, cfg.lr) if dense else _NoDenseOptimizer()
    return model, ShardedNet(net, tables), opt, tables


def sharded_grads_fn(world: int):
    """``train_step``'s ``shared_grads`` for sharded tables (module doc)."""
    def grads(model: ADC, losses: torch.Tensor, io: tuple | None, sizes: list[int], l2: float) -> torch.Tensor:
        if model.has_mlp:  # W_L is a dense parameter: the replicated path's gradients
            return shared_layer_grads(model, losses, io, sizes, l2)
        return shared_row_grad_norms(model, losses, io, world, l2)
    return grads


def eval_users(task: TaskData, split: str, cfg: TrainConfig, rank: int, world: int) -> torch.Tensor:
    """The users ``evaluate`` ranks on this rank, over all domains (sorted, unique)."""
    parts = []
    for k in range(task.num_domains):
        targets = target_items(task, split, k, excluded_items(task, split, k))
        users = sample_users(np.flatnonzero(np.diff(targets.indptr)), cfg.eval_users or None, cfg.seed, k)
        parts.append(users[rank::world])
    return torch.from_numpy(np.unique(np.concatenate(parts)).astype(np.int64))


def evaluate_sharded(model: ADC, tables: ShardedTables, task: TaskData, split: str, cfg: TrainConfig,
                     rank: int, world: int, device: torch.device, per_user: bool = False):
    """``evaluate`` of ``model.score_all`` after fetching every row it will read (a collective)."""
    model.eval()
    with torch.no_grad():
        tables.lookup_for_eval(eval_users(task, split, cfg, rank, world).to(device))
    return evaluate(model.score_all, task, split, cfg.topk, rank=rank, world=world, device=device,
                    per_user=per_user, user_sample=cfg.eval_users or None, sample_seed=cfg.seed)


def _snapshot(model: ADC, tables: ShardedTables) -> dict[str, Any]:
    """This rank's copy of the current parameters: the dense state and its own table rows."""
    return {"dense": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "tables": tables.local_copy()}


def _checkpoint(model: ADC, opt: Any, tables: ShardedTables, balancer: nn.Module, best: dict[str, Any],
                epoch: int, history: list, cfg: TrainConfig, rank: int) -> dict[str, Any] | None:
    """The checkpoint dict on rank 0 (None elsewhere): whole tables, gathered (a collective)."""
    full = tables.gather_full()
    best_tables = tables.gather_full(local=best["model"]["tables"]) if best["model"] is not None else None
    if rank != 0:
        return None
    weights = full.pop("weights")
    best_model = None if best_tables is None else {"dense": best["model"]["dense"], "tables": best_tables["weights"]}
    return {"model": {"dense": model.state_dict(), "tables": weights},
            "optimizer": {"dense": opt.state_dict(), "tables": full},
            "balancer": balancer.state_dict(), "epoch": epoch, "history": history,
            "best": {**best, "model": best_model}, "config": cfg.to_dict()}


def _resume(state: dict[str, Any], model: ADC, opt: Any, tables: ShardedTables, balancer: nn.Module
            ) -> tuple[int, list, dict[str, Any]]:
    model.load_state_dict(state["model"]["dense"])
    opt.load_state_dict(state["optimizer"]["dense"])
    tables.load_full({"weights": state["model"]["tables"], **state["optimizer"]["tables"]})
    balancer.load_state_dict(state["balancer"])
    best = state["best"]
    if best.get("model") is not None:
        best = {**best, "model": {"dense": best["model"]["dense"],
                                  "tables": tables.local_copy({"weights": best["model"]["tables"]})}}
    return state["epoch"], state["history"], best


def fit_sharded(cfg: TrainConfig, reporter: Reporter, task: TaskData, *, per_user: bool = False) -> dict[str, Any]:
    """``loop.fit`` with sharded tables: the same returns, rows and checkpoint cadence."""
    from adc_dist.train.loop import _epoch_line, autocast_for, track_best, train_epoch

    rank, world = reporter.rank, reporter.world
    device = reporter.device(cfg.use_gpu)
    K = task.num_domains
    model, net, opt, tables = build_sharded(cfg, task.n_users, list(task.n_items), device)
    balancer = make_balancer(cfg, K).to(device)
    samplers = samplers_for(task, device)
    grads_fn = sharded_grads_fn(world)
    reporter.log(f"embedding tables sharded {cfg.embedding_sharding} over {world} workers "
                 f"({tables.local_table_bytes() / 2**20:,.1f} MiB of rows on rank {rank}); "
                 f"table optimizer: fused {tables.optimizer}")

    metric, n = cfg.early_stop_key
    stop_key, stopped_early, autocast = f"valid_{metric}{n}_mean", False, autocast_for(cfg, device)
    start_epoch, history = 0, []
    best: dict[str, Any] = {"metric": -math.inf, "epoch": -1, "model": None, "bad_epochs": 0}
    state = reporter.load_checkpoint()
    if state is not None:
        start_epoch, history, best = _resume(state, model, opt, tables, balancer)
        reporter.log(f"resumed from the checkpoint of epoch {start_epoch}")

    for epoch in range(start_epoch, cfg.epochs):
        row = train_epoch(net, model, balancer, opt, samplers, cfg, epoch, rank, world, autocast, device,
                          task.domains, shared_grads=grads_fn)
        row["table_mb_per_rank"] = tables.local_table_bytes() / 2**20
        last = epoch + 1 == cfg.epochs
        if (epoch + 1) % cfg.eval_every == 0 or last:
            t1 = time.perf_counter()
            row.update(evaluate_sharded(model, tables, task, "valid", cfg, rank, world, device).flat("valid"))
            row["eval_time_s"] = time.perf_counter() - t1
            best = track_best(best, row[stop_key], epoch, lambda: _snapshot(model, tables))
            stopped_early = cfg.patience > 0 and best["bad_epochs"] >= cfg.patience and not last
        history.append(row)
        reporter.log(_epoch_line(row, task.domains, cfg))
        reporter.report(row, _checkpoint(model, opt, tables, balancer, best, epoch + 1, history, cfg, rank))
        if stopped_early:
            reporter.log(f"early stop: no {stop_key} improvement for {cfg.patience} evaluations")
            break

    if best["model"] is not None:  # test the best validated parameters (DESIGN.md section 4)
        model.load_state_dict(best["model"]["dense"])
        tables.load_local(best["model"]["tables"])
    res = evaluate_sharded(model, tables, task, "test", cfg, rank, world, device, per_user=per_user)
    final = {**res.flat("test"), "best_epoch": best["epoch"], "epochs_run": len(history),
             f"best_{stop_key}": best["metric"], "stopped_early": stopped_early}
    return {"final": final, "history": history, "per_user": res.per_user}
