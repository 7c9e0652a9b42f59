"""Where a training step's time goes, per rank: wall and CPU time of each phase.

    python benchmarks/profile_step.py --users 1000000 --workers 2 --steps 10
    python benchmarks/profile_step.py --users 1000000 --workers 1 --steps 10
    python benchmarks/profile_step.py --users 1000000 --workers 2 --steps 10 --embedding-sharding row_wise
    python benchmarks/profile_step.py --gloo-wait 0.5     # does a rank burn CPU while gloo waits?
    python benchmarks/profile_step.py --gather-rows 45300 # CPU of a bare gloo all_gather of that many rows
    python benchmarks/profile_step.py --fused-adagrad     # CPU per row of fbgemm's fused table update

The setup is bench_scale.py's (``synthetic:<users>x2``, the default model, sparse tables,
batch 4,096 per worker, DDP over gloo with one thread per worker, 3 warm-up steps). The
loop's phases are timed by wrapping the functions ``loop.train_step`` calls (the
rank-local forward and the small ops between them are the step minus the phases):
GradNorm's row gradients of P and their exchange, the losses' all_reduce, the backward,
the tables' exchange (``all_reduce_sparse_grads``, and every ``dist.all_gather`` inside
it and inside GradNorm's exchange) and the optimizer. CPU time is ``time.process_time``
(every thread of the process, gloo's included); user and system time and minor page
faults come from ``getrusage``. Also printed: each table's rows touched by this rank
and the union over the ranks that every rank's LazyAdam updates after the exchange.

``--embedding-sharding row_wise``: bench_scale.py's row-wise setup (the sharded loop's
TorchRec tables). Its phases: the tables' lookup (TorchRec's input distribution and the
all-to-all that brings the batch's rows), GradNorm's norms at the rows of P (their
all-to-all to the owners and an all_reduce of K numbers), the losses' all_reduce, the
backward (which carries the rows' gradients back and runs the owners' fused Adagrad) and
the dense part's Adam.

``--gloo-wait S``: rank 1 sleeps S seconds before an all_reduce that rank 0 has entered;
rank 0's CPU time over that wait says whether gloo polls (a busy wait would count the
wait as CPU time in bench_scale's "CPU ns per scored pair").

``--gather-rows N``: CPU time per rank of a bare all_gather of N x 128 fp32 rows (a rank's
table rows at 10^6 users), with ``all_gather`` into a list (what sum_rows_across_ranks
calls) and ``all_gather_into_tensor`` into one buffer, interleaved, three rounds of five.

``--fused-adagrad``: CPU time of the sharded tables' update alone, one process, one thread:
an fbgemm table (``SplitTableBatchedEmbeddingBagsCodegen``, host memory, no pooling, exact
Adagrad: what TorchRec's ``EmbeddingCollection`` runs on a CPU shard) of R rows x 128,
forward and backward of N distinct sorted ids; the backward is the fused update. Beside
it the same with one-id bags (SUM pooling: what an ``EmbeddingBagCollection`` would run),
with exact and with row-wise Adagrad, and the replicated path's update of the same rows:
one ``LazyAdam`` step (adc_dist/train/optim.py) on a row-sparse gradient of those N rows.
Median of 5 after one warm-up, for several (R, N): what each costs per row, and whether it
follows the rows a step touches or the table's size.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_scale.py: before torch starts its pool

import argparse
import resource
import socket
import sys
import time
from collections import defaultdict

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _init(rank: int, port: int) -> None:
    """Two one-thread gloo ranks, as bench_scale.py's 2-worker points."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)


def gloo_wait(rank: int, port: int, delay: float) -> None:
    _init(rank, port)
    x = torch.ones(1000)
    dist.all_reduce(x)
    for _ in range(3):
        dist.barrier()
        if rank == 1:
            time.sleep(delay)
        w0, c0 = time.perf_counter(), time.process_time()
        dist.all_reduce(x)  # rank 0 waits here for rank 1's sleep
        if rank == 0:
            print(f"rank 0 in all_reduce: wall {1e3 * (time.perf_counter() - w0):.0f} ms, CPU "
                  f"{1e3 * (time.process_time() - c0):.1f} ms (load {os.getloadavg()[0]:.1f})", flush=True)
    dist.destroy_process_group()


def gather_cost(rank: int, port: int, rows: int) -> None:
    _init(rank, port)
    buf = torch.randn(rows * 128)
    cpu: dict[str, list[float]] = defaultdict(list)
    for _ in range(3):
        for name in ("all_gather", "all_gather_into_tensor"):
            dist.barrier()
            c0 = time.process_time()
            for _ in range(5):
                if name == "all_gather":
                    dist.all_gather([torch.empty_like(buf) for _ in range(2)], buf)
                else:
                    dist.all_gather_into_tensor(torch.empty(2 * buf.numel()), buf)
            cpu[name].append(1e3 * (time.process_time() - c0) / 5)
    if rank == 0:
        print(f"{rows:,} x 128 fp32 rows ({buf.numel() * 4 / 1e6:.0f} MB) per rank, CPU ms per call on rank 0, "
              f"three rounds: " + "; ".join(f"{k} " + " ".join(f"{x:.1f}" for x in v) for k, v in cpu.items())
              + f" (load {os.getloadavg()[0]:.1f})", flush=True)
    dist.destroy_process_group()


def _median_cpu(step, idx_of, reps: int = 6) -> float:
    """Median CPU seconds of ``step(idx)`` over ``reps - 1`` draws of ids, after one warm-up."""
    g, cpu = torch.Generator().manual_seed(0), []
    for _ in range(reps):
        cpu.append(step(idx_of(g)))
    return sorted(cpu[1:])[len(cpu[1:]) // 2]


def fused_adagrad() -> None:
    from fbgemm_gpu.split_embedding_configs import EmbOptimType
    from fbgemm_gpu.split_table_batched_embeddings_ops_common import PoolingMode
    from fbgemm_gpu.split_table_batched_embeddings_ops_training import (
        ComputeDevice, EmbeddingLocation, SplitTableBatchedEmbeddingBagsCodegen)

    from adc_dist.train.optim import LazyAdam

    torch.set_num_threads(1)
    # (name, optimizer, pooling): the sharded tables' kernel (EmbeddingCollection: no pooling),
    # then what one-id bags of an EmbeddingBagCollection would run (SUM pooling; row-wise
    # Adagrad has fbgemm's own fast path there)
    kinds = [("fused Adagrad, no pooling (ours)", EmbOptimType.EXACT_ADAGRAD, PoolingMode.NONE),
             ("fused Adagrad, one-id bags", EmbOptimType.EXACT_ADAGRAD, PoolingMode.SUM),
             ("fused row-wise Adagrad, one-id bags", EmbOptimType.EXACT_ROWWISE_ADAGRAD, PoolingMode.SUM)]
    for rows, ids in [(100_000, 22_000), (1_000_000, 22_000), (3_000_000, 22_000), (1_000_000, 5_000),
                      (1_000_000, 45_000)]:
        def idx_of(g):
            return torch.randperm(rows, generator=g)[:ids].sort().values

        per_row = {}
        for name, optimizer, pooling in kinds:
            tbe = SplitTableBatchedEmbeddingBagsCodegen(
                [(rows, 128, EmbeddingLocation.HOST, ComputeDevice.CPU)], optimizer=optimizer,
                learning_rate=0.01, eps=1e-10, pooling_mode=pooling)

            def fused(idx):
                out = tbe(idx, torch.arange(ids + 1))  # one id per bag
                c0 = time.process_time()
                out.backward(torch.ones_like(out))  # the update runs inside the backward
                return time.process_time() - c0

            per_row[name] = _median_cpu(fused, idx_of) / ids
            del tbe
        table = torch.nn.Parameter(torch.zeros(rows, 128))
        lazy = LazyAdam([table], lr=0.01)

        def lazy_step(idx):
            table.grad = torch.sparse_coo_tensor(idx[None], torch.ones(ids, 128), table.shape,
                                                 check_invariants=False).coalesce()
            c0 = time.process_time()
            lazy.step()
            return time.process_time() - c0

        per_row["LazyAdam (update)"] = _median_cpu(lazy_step, idx_of) / ids
        del table, lazy
        print(f"table {rows:>9,} rows, {ids:>6,} ids, CPU us per row: "
              + ", ".join(f"{name} {1e6 * c:.2f}" for name, c in per_row.items())
              + f" (load {os.getloadavg()[0]:.1f})", flush=True)


def profile(rank: int, port: int, users: int, world: int, steps: int, sharding: str = "none") -> None:
    import adc_dist.train.loop as loop
    import adc_dist.train.sparse_rows as sparse_rows

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_scale import setup

    run = setup(users, world, rank, port, sharding=sharding)
    cfg, model, net, opt, balancer, samplers = run.cfg, run.model, run.net, run.opt, run.balancer, run.samplers
    batches = (b for epoch in range(10**6) for b in loop.epoch_batches(samplers, cfg, epoch, rank, world))

    acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    timing = [False]
    tables: list[tuple[list[int], list[int]]] = []

    def timed(name, f):
        def wrapped(*a, **k):
            if not timing[0]:
                return f(*a, **k)
            w, c = time.perf_counter(), time.process_time()
            out = f(*a, **k)
            acc[name][0] += time.perf_counter() - w
            acc[name][1] += time.process_time() - c
            return out
        return wrapped

    sum_rows = sparse_rows.sum_rows_across_ranks

    def sum_rows_counted(parts, w):  # the tables' exchange (all_reduce_sparse_grads calls it)
        out = sum_rows(parts, w)
        tables.append(([len(i) for i, _ in parts], [len(i) for i, _ in out]))
        return out

    sparse_rows.sum_rows_across_ranks = sum_rows_counted
    step_kw = dict(run.step_kw)
    if run.tables is not None:  # the sharded loop's own phases (the replicated ones below stay empty)
        run.tables.lookup = timed("sharded tables: lookup (ids and rows all-to-all)", run.tables.lookup)
        step_kw["shared_grads"] = timed("GradNorm: norms at P's rows (all-to-all)", step_kw["shared_grads"])
    loop.shared_row_grads = timed("GradNorm: rows of P (autograd.grad)", loop.shared_row_grads)
    loop.sum_rows_across_ranks = timed("GradNorm: exchange of P's rows", sum_rows)
    loop._all_reduce_mean = timed("losses all_reduce", loop._all_reduce_mean)
    torch.Tensor.backward = timed("backward (DDP: dense layers' all_reduce)" if run.tables is None else
                                  "backward (rows' all-to-all back, fused table update, DDP)", torch.Tensor.backward)
    loop.all_reduce_sparse_grads = timed("tables' exchange (all_reduce_sparse_grads)", loop.all_reduce_sparse_grads)
    dist.all_gather = timed("  of which dist.all_gather (all 6 calls)", dist.all_gather)
    opt.step = timed("optimizer (LazyAdam on the union + Adam)" if run.tables is None
                     else "dense optimizer (Adam; tables: fused, in backward)", opt.step)

    for i in range(3 + steps):
        if i == 3:
            timing[0], tables[:] = True, []
            ru0, w0, c0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), time.process_time()
        users_b, items_b = next(batches)
        loop.train_step(net, model, balancer, opt, users_b, items_b, world, loss=cfg.loss, l2=cfg.l2, **step_kw)
    wall, cpu = (time.perf_counter() - w0) / steps, (time.process_time() - c0) / steps
    ru = resource.getrusage(resource.RUSAGE_SELF)
    lines = [f"rank {rank} of {world}, {users:,} users: step wall {1e3 * wall:.0f} ms, CPU {1e3 * cpu:.0f} ms "
             f"(user {1e3 * (ru.ru_utime - ru0.ru_utime) / steps:.0f}, system {1e3 * (ru.ru_stime - ru0.ru_stime) / steps:.0f}, "
             f"{(ru.ru_minflt - ru0.ru_minflt) / steps:,.0f} minor page faults per step), load {os.getloadavg()[0]:.1f}"]
    for name, (w, c) in acc.items():
        lines.append(f"  {name:44s} wall {1e3 * w / steps:7.1f} ms   CPU {1e3 * c / steps:7.1f} ms")
    if tables:
        local, union = (sum(x) / len(tables) for x in zip(*[(sum(a), sum(b)) for a, b in tables]))
        lines.append(f"  table rows per step (P, S_1, S_2, I_1, I_2), last step: this rank {tables[-1][0]}, "
                     f"union {tables[-1][1]}; mean total {local:,.0f} -> {union:,.0f} ({union / local:.2f}x)")
    print("\n".join(lines), flush=True)
    if dist.is_initialized():
        dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--gloo-wait", type=float, default=None, help="only the gloo busy-wait check (seconds)")
    ap.add_argument("--gather-rows", type=int, default=None, help="only time a bare gloo all_gather of N rows")
    ap.add_argument("--fused-adagrad", action="store_true", help="only time fbgemm's fused table update per row")
    ap.add_argument("--embedding-sharding", default="none", choices=("none", "row_wise"),
                    help="row_wise: TorchRec row-wise sharded tables (bench_scale.py's option)")
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if args.gloo_wait is not None:
        mp.spawn(gloo_wait, args=(port, args.gloo_wait), nprocs=2)
    elif args.fused_adagrad:
        fused_adagrad()
    elif args.gather_rows is not None:
        mp.spawn(gather_cost, args=(port, args.gather_rows), nprocs=2)
    elif args.workers == 1:
        profile(0, port, args.users, 1, args.steps, args.embedding_sharding)
    else:
        mp.spawn(profile, args=(port, args.users, args.workers, args.steps, args.embedding_sharding),
                 nprocs=args.workers)


if __name__ == "__main__":
    main()
