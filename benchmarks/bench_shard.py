"""Per-rank table memory and step time: replicated tables (DDP + Adam) against row-wise sharded ones.

    python benchmarks/bench_shard.py                                  # synthetic:1000000x2 and synthetic:10000000x2
    python benchmarks/bench_shard.py --tasks synthetic:1000000x2 --d 32 --steps 20
    python benchmarks/bench_shard.py --scale                          # docs/scale.md's table (formulas only)

Two CPU ranks (gloo, torch.multiprocessing: the process group Ray Train sets up, without
Ray's start-up). The table sizes are those of the ``synthetic:<users>x<domains>`` task
(``adc_dist.data.synthetic.domain_items``); the batches are drawn uniformly from them
(``batch`` positives per domain and rank, ``negatives`` each) instead of generating the
task's interactions, which takes longer than the benchmark at 10^7 users. The model is
the default gmf with ``--user_repr`` (default: shared, one user table, so that the
replicated run fits beside other jobs at 10^7 users) and balancer ``equal``: GradNorm at
P would add K x |P| of per-domain gradients to the replicated run (docs/scale.md).

Per mode and rank it prints the table state held (measured from the tensors and checked
against ``adc_dist.model.sharded_cost``), the peak RSS, and the median step time.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads on shared cores

import argparse
import resource
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from adc_dist.model.sharded_cost import Tables, scale_table, sent_bytes_per_step, table_bytes_per_rank

WORLD = 2


def _batch(g: torch.Generator, n_users: int, n_items: list[int], batch: int, negatives: int):
    users = [torch.randint(0, n_users, (batch,), generator=g) for _ in n_items]
    items = [torch.randint(0, n, (batch, 1 + negatives), generator=g) for n in n_items]
    return users, items


def _formula_sent(t: Tables, mode: str, users, items, specific: bool) -> float:
    """sharded_cost's bytes sent for this batch (its unique ids per table)."""
    uniq = [len(torch.unique(torch.cat(users)))] + [len(torch.unique(u)) for u in users if specific]
    uniq += [len(torch.unique(it)) for it in items]
    return sent_bytes_per_step(t, "replicated" if mode == "replicated" else "adagrad", WORLD, uniq)


def _replicated(cfg, n_users: int, n_items: list[int]):
    from torch.nn.parallel import DistributedDataParallel as DDP

    from adc_dist.model.network import ADC

    torch.manual_seed(cfg.seed)
    # the replicated baseline with dense Adam (sparse_tables' auto would pick LazyAdam here)
    model = ADC.from_config(cfg.replace(sparse_tables="false"), n_users, n_items)
    return model, DDP(model), torch.optim.Adam(model.parameters(), lr=cfg.lr)


def _held_bytes(mode: str, model, opt, tables) -> int:
    """Table state this rank holds: parameters, gradients and optimizer state of the tables."""
    if mode == "row_wise":
        return tables.local_state_bytes()
    params = [model.user_emb.weight, *[m.weight for m in model.user_specific or []],
              *[m.weight for m in model.item_embs]]
    total = 0
    for p in params:
        total += p.numel() * p.element_size() * 2  # the parameter and its dense gradient
        total += sum(v.numel() * v.element_size() for v in opt.state[p].values() if torch.is_tensor(v) and v.dim())
    return total


class _SentBytes:
    """Counts what this rank's ``all_to_all_single`` calls send to other ranks (TorchRec's
    lookups and their backward go through it; DDP's all-reduce does not, it is C++)."""

    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world, self.total = rank, world, 0
        self._orig = dist.all_to_all_single
        dist.all_to_all_single = self._count

    def _count(self, output, input, output_split_sizes=None, input_split_sizes=None, *a, **kw):
        row = input[0].numel() * input.element_size() if input.dim() and input.shape[0] else 0
        splits = input_split_sizes or [input.shape[0] // self.world] * self.world if input.dim() else []
        self.total += sum(n for r, n in enumerate(splits) if r != self.rank) * row
        return self._orig(output, input, output_split_sizes, input_split_sizes, *a, **kw)


def _rank(rank: int, task: str, mode: str, args, out: str) -> None:
    torch.set_num_threads(1)
    # A file rendezvous in the run's temporary directory: no port to find.
    dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=WORLD)
    try:
        from adc_dist.balancing import make_balancer
        from adc_dist.config import from_mapping
        from adc_dist.data import synthetic
        from adc_dist.train.loop import train_step

        n_users, K, _ = synthetic.parse(task)
        n_items = [synthetic.domain_items(n_users, k) for k in range(K)]
        cfg = from_mapping({"d": args.d, "user_repr": args.user_repr, "balancer": "equal",
                            "embedding_sharding": mode if mode != "replicated" else "none"})
        tables, kw = None, {}
        if mode == "replicated":
            model, net, opt = _replicated(cfg, n_users, n_items)
        else:
            from adc_dist.train.sharded_loop import build_sharded, sharded_grads_fn

            model, net, opt, tables = build_sharded(cfg, n_users, n_items, torch.device("cpu"))
            kw = {"shared_grads": sharded_grads_fn(WORLD)}
        bal = make_balancer(cfg, K)
        g = torch.Generator().manual_seed(1000 + rank)
        times, sent, formula = [], _SentBytes(rank, WORLD), []
        t = Tables.of(n_users, n_items, cfg.d, cfg.user_repr == "shared+specific")
        for step in range(args.warmup + args.steps):
            users, items = _batch(g, n_users, n_items, args.batch, args.negatives)
            if step == args.warmup:
                sent.total = 0
            if step >= args.warmup:
                formula.append(_formula_sent(t, mode, users, items, cfg.user_repr == "shared+specific"))
            dist.barrier()
            t0 = time.perf_counter()
            train_step(net, model, bal, opt, users, items, WORLD, loss=cfg.loss, l2=cfg.l2, **kw)
            if step >= args.warmup:
                times.append(time.perf_counter() - t0)
        held = _held_bytes(mode, model, opt, tables)
        expect = table_bytes_per_rank(t, "replicated" if mode == "replicated" else tables.optimizer, WORLD, rank)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        torch.save({"held": held, "expect": expect, "rss_mb": rss, "step_s": statistics.median(times),
                    "sent": sent.total / args.steps if mode != "replicated" else None,
                    "sent_formula": statistics.mean(formula)}, f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="synthetic:1000000x2,synthetic:10000000x2")
    ap.add_argument("--modes", default="replicated,row_wise")
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--user_repr", default="shared")
    ap.add_argument("--batch", type=int, default=4096, help="positives per domain, rank and step")
    ap.add_argument("--negatives", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--scale", action="store_true", help="print docs/scale.md's table and exit")
    args = ap.parse_args()
    if args.scale:
        _print_scale()
        return
    print(f"{WORLD} CPU ranks (gloo), d={args.d}, user_repr={args.user_repr}, batch {args.batch} x "
          f"(1 + {args.negatives}) per domain and rank; load average {os.getloadavg()[0]:.2f}")
    print(f"{'task':<24} {'mode':<13} {'table MB/rank':>14} {'formula MB':>11} {'peak RSS MB':>12} {'step ms':>8} "
          f"{'sent MB/step':>13} {'formula MB':>11}")
    for task in args.tasks.split(","):
        for mode in args.modes.split(","):
            with tempfile.TemporaryDirectory() as out:
                mp.spawn(_rank, args=(task, mode, args, out), nprocs=WORLD, join=True)
                recs = [torch.load(f"{out}/{r}.pt") for r in range(WORLD)]
            for r, rec in enumerate(recs):
                ok = "" if rec["held"] == rec["expect"] else "  <- differs from the formula"
                sent = "-" if rec["sent"] is None else f"{rec['sent'] / 2**20:,.2f}"  # DDP's all-reduce is not counted
                print(f"{task:<24} {mode + f'/r{r}':<13} {rec['held'] / 2**20:>14,.1f} {rec['expect'] / 2**20:>11,.1f} "
                      f"{rec['rss_mb']:>12,.0f} {rec['step_s'] * 1e3:>8,.1f} {sent:>13} "
                      f"{rec['sent_formula'] / 2**20:>11,.2f}{ok}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def _print_scale() -> None:
    """10^8 users x 4 domains, d = 128, the default model (shared + specific user tables)."""
    from adc_dist.data import synthetic

    n_users, K = 10**8, 4
    n_items = [synthetic.domain_items(n_users, k) for k in range(K)]
    rows = scale_table(n_users, n_items, 128, True, [8, 64], batch=4096, negatives=5)
    print(f"10^8 users x {K} domains (items {', '.join(f'{n:,}' for n in n_items)}), d=128, shared+specific users, "
          f"batch 4096 x (1 + 5) per domain and rank")
    print(f"{'GPUs':>5} {'replicated GB/rank':>19} {'row-wise Adam GB':>17} {'row-wise Adagrad GB':>20} "
          f"{'replicated sent GB/step':>24} {'row-wise sent GB/step':>22}")
    for r in rows:
        print(f"{r['world']:>5} {r['replicated_gb']:>19,.1f} {r['row_wise_adam_gb']:>17,.2f} "
              f"{r['row_wise_adagrad_gb']:>20,.2f} {r['replicated_sent_gb']:>24,.1f} {r['row_wise_sent_gb']:>22,.3f}")


if __name__ == "__main__":
    sys.exit(main())
