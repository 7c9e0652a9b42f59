"""How training and evaluation cost grow with the number of users (synthetic tasks).

    python benchmarks/bench_scale.py                                  # quick: 10^4 and 10^5 users, 1 and 2 workers
    python benchmarks/bench_scale.py --sizes 10000,100000,1000000 --out docs/figures/scale.json
    python benchmarks/bench_scale.py --plot docs/figures/scale.json   # the plot and the fitted exponents
    python benchmarks/bench_scale.py --sparse-tables false ...        # the dense-Adam tables, for comparison
    python benchmarks/bench_scale.py --workers 2 --embedding-sharding row_wise ...   # TorchRec row-wise tables

Each (users, workers) point runs in a fresh process (so that its peak RSS is its own) on
``synthetic:<users>x2``: ``--steps`` timed training steps of the project's loop (device
batches, GradNorm, DDP over gloo for 2 workers) after 3 warm-up steps, then the
validation full ranking of a seeded sample of ``--eval-users`` users per domain (every
item ranked). Printed per point: s/step, scored pairs/s (positives x (1 + rho)) over all
workers, ns per scored pair and worker, the epoch time extrapolated from s/step (an
epoch of 10^6 users is ~10^4 steps: too long to run on a shared box), the sampled
evaluation time and its extrapolation to every validation user, peak RSS per worker, and
the replicated tables' bytes: parameters and Adam's two moments in fp32, 12 d (U + sum_k I_k)
with sparse tables (``--sparse-tables true``, the benchmark's default at every size: the
gradient holds the batch's rows only), 16 d (...) with dense tables (plus a dense
gradient), held by every worker. U counts every user table
(the default model has P and one S_k per domain).

``--embedding-sharding row_wise``: the tables are TorchRec row-wise shards built by the
train CLI's own sharded loop (``adc_dist.train.sharded_loop``: the same ``train_step``,
GradNorm's norms at the batch's rows of P, each rank updating only the rows it owns with
fbgemm's fused optimizer, Adagrad on CPU where fbgemm has no Adam) and evaluated by its
``evaluate_sharded``; "tables" is then the bytes of table rows and optimizer state each
worker holds, measured (the largest rank's). Rows are tagged ``embedding_sharding`` and
``table_optimizer``; the report and the plot keep each layout's points apart. Their
evaluation time includes one fetch of every item table, which the extrapolation to all
validation users scales with the users as if it were per user (an overestimate).
"""

from __future__ import annotations

import os

# Set before torch starts its OpenMP pool: spinning threads make small ops 20-50x slower
# when the cores are shared (tests/conftest.py says the same for the tests).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from typing import Any, NamedTuple

import torch
import torch.distributed as dist

def table_bytes(n_users: int, n_items: list[int], d: int, sparse: bool = True, user_tables: int = 1) -> int:
    """Bytes of the replicated embedding tables with their Adam state (and dense gradient)."""
    per_entry = 12 if sparse else 16  # fp32 parameter + Adam exp_avg + exp_avg_sq (+ dense gradient)
    return per_entry * d * (user_tables * n_users + sum(n_items))


class Run(NamedTuple):
    """One measured point's parts on this rank (also profile_step.py's)."""

    cfg: Any
    task: Any
    model: Any  # the ADC train_step reads (sharded: its dense part, tables swapped for row caches)
    net: Any  # what train_step calls: DDP(model), model, or the sharded loop's ShardedNet
    opt: Any
    balancer: Any
    samplers: Any
    load_s: float  # seconds to prepare the task
    tables: Any  # the sharded loop's ShardedTables; None for replicated tables
    step_kw: dict  # train_step's extra arguments (the sharded loop's GradNorm gradients)


def setup(users: int, world: int, rank: int, port: int, sparse: bool = True, batch: int = 4096,
          sharding: str = "none") -> Run:
    """The measured run's parts on this rank: the process group for 2+ workers (gloo, the
    cores split between the workers; sharded tables need one even for 1 worker), then the
    model of ``synthetic:<users>x2``: replicated tables (``sharding`` none: DDP, sparse or
    dense tables) or TorchRec-sharded ones built by the train CLI's own sharded loop
    (adc_dist/train/sharded_loop.py: fused Adagrad on the tables on CPU, Adam on the rest)."""
    from adc_dist.balancing import make_balancer
    from adc_dist.config import TrainConfig
    from adc_dist.data.torch_sampler import samplers_for
    from adc_dist.model.network import ADC
    from adc_dist.train.loop import prepare_task
    from adc_dist.train.optim import make_optimizer, wrap_ddp

    if world > 1 or sharding != "none":
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // world))
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    # Sharded tables bring their own optimizer: the config refuses sparse_tables true with them.
    tables_kind = "auto" if sharding != "none" else sparse
    # rho 5 and L2 1e-3, not TrainConfig's 20 and 3e-3 since issue 11's six-task search: every
    # scaling row in docs/performance.md was measured at this shape, and a rerun must match it.
    cfg = TrainConfig(task=f"synthetic:{users}x2", patience=0, sparse_tables=tables_kind, batch_size=batch,
                      embedding_sharding=sharding, negatives=5, l2=1e-3).validate()
    t0 = time.perf_counter()
    task = prepare_task(cfg)
    load_s = time.perf_counter() - t0
    if sharding != "none":
        from adc_dist.train.sharded_loop import build_sharded, sharded_grads_fn

        model, net, opt, tables = build_sharded(cfg, task.n_users, list(task.n_items), torch.device("cpu"))
        return Run(cfg, task, model, net, opt, make_balancer(cfg, task.num_domains), samplers_for(task), load_s,
                   tables, {"shared_grads": sharded_grads_fn(world)})
    torch.manual_seed(0)
    model = ADC.from_config(cfg, task.n_users, task.n_items)
    net = wrap_ddp(model, torch.device("cpu")) if world > 1 else model
    return Run(cfg, task, model, net, make_optimizer(model, cfg), make_balancer(cfg, task.num_domains),
               samplers_for(task), load_s, None, {})


def _point(users: int, world: int, rank: int, steps: int, eval_users: int, port: int, out: str,
           sparse: bool = True, batch: int = 4096, sharding: str = "none") -> None:
    """One (users, workers) measurement on one rank; rank 0 writes a JSON line to ``out``."""
    from adc_dist.train.evaluate import evaluate
    from adc_dist.train.loop import epoch_batches, train_step

    run = setup(users, world, rank, port, sparse, batch, sharding)
    cfg, task, model, net, opt, balancer = run.cfg, run.task, run.model, run.net, run.opt, run.balancer
    samplers = run.samplers
    batches = epoch_batches(samplers, cfg, 0, rank, world)
    # Small tasks have fewer steps per epoch than the benchmark takes: go on into the next epochs.
    it = (b for epoch in range(10**6) for b in epoch_batches(samplers, cfg, epoch, rank, world))
    positives = 0
    for i in range(3 + steps):
        if i == 3:
            t1, c1, positives = time.perf_counter(), time.process_time(), 0
        users_b, items_b = next(it)
        positives += sum(len(u) for u in users_b)
        train_step(net, model, balancer, opt, users_b, items_b, world, loss=cfg.loss, l2=cfg.l2, **run.step_kw)
    step_s = (time.perf_counter() - t1) / steps
    # CPU seconds of this process (all its threads): unlike wall time, nearly blind to the
    # other programs sharing the cores, whose load changes between the points of a run.
    cpu_step = torch.tensor([(time.process_time() - c1) / steps], dtype=torch.float64)
    # Table rows a step touches (this rank; untimed): what a sparse step's cost follows. It
    # grows with the users while batches stop repeating rows, up to the batch's own size.
    rows = []
    for _ in range(3):
        users_b, items_b = next(it)
        user_tables = torch.unique(torch.cat(users_b)).numel() + (
            sum(torch.unique(u).numel() for u in users_b) if cfg.user_repr != "shared" else 0)
        rows.append(user_tables + sum(torch.unique(i).numel() for i in items_b))
    t2 = time.perf_counter()
    if run.tables is None:
        model.eval()
        res = evaluate(model.score_all, task, "valid", cfg.topk, rank=rank, world=world, user_sample=eval_users)
        held = table_bytes(task.n_users, list(task.n_items), cfg.d, sparse,
                           1 + (task.num_domains if cfg.user_repr != "shared" else 0))
    else:  # the sharded loop's evaluation: first fetch the rows it ranks with (a collective)
        from adc_dist.train.sharded_loop import evaluate_sharded

        res = evaluate_sharded(model, run.tables, task, "valid", cfg.replace(eval_users=eval_users), rank, world,
                               torch.device("cpu"))
        # This rank's rows and their fused optimizer state, as held (bench_shard.py counts the same).
        held = run.tables.local_state_bytes()
    eval_s = time.perf_counter() - t2
    rss = torch.tensor([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20])  # GiB
    held_gib = torch.tensor([held / 2**30])
    if dist.is_initialized():
        dist.all_reduce(rss, op=dist.ReduceOp.MAX)
        dist.all_reduce(held_gib, op=dist.ReduceOp.MAX)
        dist.all_reduce(cpu_step)  # CPU seconds per step of all workers together
        dist.destroy_process_group()
    if rank != 0:
        return
    valid_users = sum(int((task.user_items("valid", k).indptr[1:] > task.user_items("valid", k).indptr[:-1]).sum())
                      for k in range(task.num_domains))
    pairs_step = positives / steps * (1 + cfg.negatives)
    row = {"users": users, "workers": world, "sparse_tables": sparse if sharding == "none" else None,
           "embedding_sharding": sharding,
           "table_optimizer": run.tables.optimizer if run.tables is not None else ("lazy_adam" if sparse else "adam"),
           "batch_size": batch, "n_users": task.n_users,
           "n_items": list(task.n_items),
           "train_positives": [len(t) for t in task.train], "steps_per_epoch": len(batches),
           "s_per_step": step_s, "pairs_per_s": pairs_step * world / step_s,
           "positives_per_s": positives / steps * world / step_s, "ns_per_pair": 1e9 * step_s / pairs_step,
           "cpu_s_per_step": float(cpu_step), "cpu_ns_per_pair": 1e9 * float(cpu_step) / (pairs_step * world),
           "rows_per_step": sum(rows) / len(rows), "ns_per_row": 1e9 * step_s * len(rows) / sum(rows),
           "cpu_ns_per_row": 1e9 * float(cpu_step) * len(rows) / sum(rows),
           "epoch_s": step_s * len(batches), "load_s": run.load_s,
           "eval_users": sum(res.counts.values()), "valid_users": valid_users, "eval_s": eval_s,
           "eval_full_s": eval_s * valid_users / max(1, sum(res.counts.values())),
           "peak_rss_gib": float(rss),
           "tables_gib": float(held_gib),
           "load_average": os.getloadavg()[0]}
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")


def _run_point(users: int, world: int, steps: int, eval_users: int, out: str, sparse: bool, batch: int,
               sharding: str = "none") -> None:
    """Prepare the task once (the split cache), then measure in a fresh process per point."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    here = os.path.dirname(os.path.abspath(__file__))
    call = (f"mp.spawn(b._spawned, args=({users}, {world}, {steps}, {eval_users}, {port}, {out!r}, {sparse}, "
            f"{batch}, {sharding!r}), nprocs={world})" if world > 1 else
            f"b._point({users}, 1, 0, {steps}, {eval_users}, {port}, {out!r}, {sparse}, {batch}, {sharding!r})")
    code = f"import sys, torch.multiprocessing as mp; sys.path.insert(0, {here!r}); import bench_scale as b; {call}"
    subprocess.run([sys.executable, "-c", code], check=True)


def _spawned(rank: int, users: int, world: int, steps: int, eval_users: int, port: int, out: str,
             sparse: bool, batch: int, sharding: str) -> None:
    _point(users, world, rank, steps, eval_users, port, out, sparse, batch, sharding)


def adam_seconds(n_users: int, n_items: list[int], d: int, reps: int = 3) -> float:
    """Seconds of one dense Adam step over the embedding tables of this size (the part of a
    training step that grows with the users: every step updates every row, touched or not)."""
    rows = n_users + sum(n_items)
    table = torch.nn.Parameter(torch.zeros(rows, d))
    table.grad = torch.zeros_like(table)
    opt = torch.optim.Adam([table], lr=1e-3)
    opt.step()  # allocates the moments
    t0 = time.perf_counter()
    for _ in range(reps):
        opt.step()
    return (time.perf_counter() - t0) / reps


def fit_exponent(xs: list[float], ys: list[float]) -> float:
    """b of y = a x^b, least squares in log-log."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(a, b) of y = a + b x, least squares: a step's fixed cost and its cost per touched row."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def _key(r: dict) -> tuple[str, int]:
    """(the tables' layout, workers): replicated sparse or dense tables (rows written before
    the option had dense tables), or TorchRec-sharded ones (``row_wise``)."""
    if r.get("embedding_sharding", "none") != "none":
        return r["embedding_sharding"], r["workers"]
    return ("sparse" if r.get("sparse_tables", False) else "dense"), r["workers"]


def _groups(rows: list[dict]) -> list[tuple[str, int]]:
    return sorted({_key(r) for r in rows})


def report(rows: list[dict]) -> None:
    print(f"{'users':>10} {'tables':>8} {'wk':>3} {'s/step':>7} {'pairs/s':>11} {'ns/pair':>8} {'epoch_s':>9} "
          f"{'cpu_ns/pair':>11} {'rows/step':>9} {'eval_s':>7} "
          f"{'eval_all_s':>10} {'rss_GiB':>8} {'tables':>7} {'load':>5}")
    for r in rows:
        print(f"{r['users']:>10,} {_key(r)[0]:>8} {r['workers']:>3} {r['s_per_step']:>7.3f} {r['pairs_per_s']:>11,.0f} "
              f"{r['ns_per_pair']:>8.0f} {r['epoch_s']:>9.1f} {r.get('cpu_ns_per_pair', float('nan')):>11,.0f} "
              f"{r.get('rows_per_step', float('nan')):>9,.0f} "
              f"{r['eval_s']:>7.1f} {r['eval_full_s']:>10.1f} "
              f"{r['peak_rss_gib']:>8.2f} {r['tables_gib']:>7.2f} {r['load_average']:>5.1f}")
    for tables, w in _groups(rows):
        sub = [r for r in rows if _key(r) == (tables, w)]
        if len(sub) >= 2:
            xs = [r["users"] for r in sub]
            print(f"{tables} tables, {w} worker(s): epoch time ~ users^"
                  f"{fit_exponent(xs, [r['epoch_s'] for r in sub]):.2f}, "
                  f"time per scored pair ~ users^{fit_exponent(xs, [r['ns_per_pair'] for r in sub]):.2f} "
                  f"(max/min {max(r['ns_per_pair'] for r in sub) / min(r['ns_per_pair'] for r in sub):.2f}x, "
                  f"target <= 1.5x), full evaluation ~ users^"
                  f"{fit_exponent(xs, [r['eval_full_s'] for r in sub]):.2f}")
            if all("cpu_ns_per_pair" in r for r in sub):
                cpu = [r["cpu_ns_per_pair"] for r in sub]
                print(f"  CPU time per scored pair ~ users^{fit_exponent(xs, cpu):.2f} "
                      f"(max/min {max(cpu) / min(cpu):.2f}x)")
                a, b = fit_line([r["rows_per_step"] for r in sub], [r["cpu_s_per_step"] for r in sub])
                print(f"  CPU seconds per step (all workers) ~ {a:.3f} s + {1e6 * b:.2f} us x touched rows")


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for tables, w in _groups(rows):
        sub = sorted((r for r in rows if _key(r) == (tables, w)), key=lambda r: r["users"])
        xs, name = [r["users"] for r in sub], f"{tables}, {w} wk"
        axes[0].loglog(xs, [r["epoch_s"] for r in sub], "o-", label=f"{name}: epoch")
        axes[0].loglog(xs, [r["eval_full_s"] for r in sub], "s--", label=f"{name}: full validation")
        # CPU time where the rows have it (wall time moves with the shared box's load)
        axes[1].loglog(xs, [r.get("cpu_ns_per_pair", r["ns_per_pair"]) for r in sub], "o-", label=name)
        axes[2].loglog(xs, [r["peak_rss_gib"] for r in sub], "o-", label=f"{name}: peak RSS")
        # Replicated tables are the same at any worker count: one line per kind; sharded: each worker's share.
        if w == 1 or tables not in ("sparse", "dense") or (tables, 1) not in _groups(rows):
            axes[2].loglog(xs, [r["tables_gib"] for r in sub], ":", label=f"{name}: tables + optimizer state")
    for ax, title in zip(axes, ["seconds (extrapolated epoch; full validation)", "CPU ns per scored pair (all workers)",
                                "GiB per worker"]):
        ax.set_xlabel("users")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eval-users", type=int, default=500, help="validation users ranked per domain")
    ap.add_argument("--out", default=None, help="append the JSON rows here (default: a temporary file)")
    ap.add_argument("--plot", default=None, help="only report and plot the rows of this JSON-lines file")
    ap.add_argument("--adam", action="store_true", help="only time a dense Adam step over each size's tables")
    ap.add_argument("--sparse-tables", default="true", help="true (the default) or false: dense Adam on the tables")
    ap.add_argument("--embedding-sharding", default="none", choices=("none", "row_wise"),
                    help="none (replicated tables, the default) or row_wise: TorchRec row-wise sharded tables "
                         "through the train CLI's sharded loop (fused Adagrad on the tables on CPU)")
    # 4,096, not the config's default 1,024: the documented scaling runs use it (a larger
    # batch touches more rows per step, which is what this curve is about).
    ap.add_argument("--batch-size", type=int, default=4096, help="positives of the largest domain per step")
    args = ap.parse_args()
    if args.adam:
        from adc_dist.data.synthetic import domain_items

        for users in (int(s) for s in args.sizes.split(",")):
            items = [domain_items(users, k) for k in range(2)]
            print(f"{users:>10,} users: dense Adam step over {users + sum(items):,} x 100 table rows "
                  f"{adam_seconds(users, items, 100):.3f} s (load average {os.getloadavg()[0]:.1f})", flush=True)
        return
    if args.plot:
        rows = [json.loads(line) for line in open(args.plot)]
        report(rows)
        plot(rows, os.path.splitext(args.plot)[0] + ".png")
        return
    out = args.out or os.path.join(os.environ.get("TMPDIR", "/tmp"), f"bench_scale_{os.getpid()}.json")
    print(f"{os.cpu_count()} CPU cores, torch {torch.__version__}; load average {os.getloadavg()[0]:.2f}; rows -> {out}")
    start = sum(1 for _ in open(out)) if os.path.exists(out) else 0
    for users in (int(s) for s in args.sizes.split(",")):
        for world in (int(w) for w in args.workers.split(",")):
            _run_point(users, world, args.steps, args.eval_users, out,
                       args.sparse_tables.lower() in ("1", "true", "yes", "on"), args.batch_size,
                       args.embedding_sharding)
    report([json.loads(line) for line in list(open(out))[start:]])


if __name__ == "__main__":
    main()
