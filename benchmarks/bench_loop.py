"""The training loop against a bare loop, batch building alone, evaluation against an epoch.

    python benchmarks/bench_loop.py                   # amazon-book-music, CPU, the issue-14 targets
    python benchmarks/bench_loop.py --task synthetic:100000x2 --steps 30
    python benchmarks/bench_loop.py --gpu [--bf16]    # on a GPU machine
    python benchmarks/bench_loop.py --steps 20 --loops-only --batches 1024 --profile 25   # where a step's time goes
    python benchmarks/bench_loop.py --model default --gpu --bf16   # the default model (gmf), no bare loop

Everything is measured side by side in one run (a loaded box slows every column alike):

Training steps of the loops are interleaved (blocks of 5 steps of each in turn), so that a load
that changes during the run does not favour one loop.

* ``loop``: the project's in-process loop, i.e. ``epoch_batches`` (device-side sampling)
  + ``train_step`` (GradNorm, one all-reduce) with the run's optimizer (``make_optimizer``),
  as ``adc_dist.train.loop.fit`` runs them: on a GPU replayed from CUDA graphs where a run
  would replay them (``adc_dist.train.graphed``; "(graphs)"), and then also timed with
  eager steps (``same, eager steps``);
* ``bare``: a hand-written reference loop of the same shape and batch: the same
  embedding tables and MLP (concatenated [p; q], no factorisation), BCE, plain summed
  losses, Adam, batches drawn with ``torch.randint`` (no exclusion, no balancer);
* ``batches``: building the batches alone (permutation, gathers, exact negatives), no
  training, for the torch sampler on the device and, for reference, the numpy sampler
  the loop used before (``adc_dist.data.sampling``, host only);
* ``eval``: full ranking of every validation user of each domain against one epoch.

``--model paper`` (the default here) is the paper's shape, the one the bare loop writes by
hand; ``--model default`` times TrainConfig's defaults (the gmf model users train) with no
bare reference (a bare loop of another shape would say nothing about the loop's overhead).

Throughput is reported as scored pairs/s (positives x (1 + negatives)) and positives/s.
Targets (issue 14): loop >= 1.0x bare at the default batch and at 4,096; torch batch
building >= 2x the numpy one (8-11 M pairs/s before); each domain's full ranking <= 0.5
training epochs.
"""

from __future__ import annotations

import os

# Set before torch starts its OpenMP pool: spinning threads make small ops 20-50x slower
# when the cores are shared (tests/conftest.py says the same for the tests).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import platform
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adc_dist.balancing import make_balancer
from adc_dist.config import TrainConfig, from_mapping
from adc_dist.data.sampling import NegativeSampler, rng_for
from adc_dist.data.sharding import epoch_shard
from adc_dist.data.torch_sampler import samplers_for
from adc_dist.model.network import ADC, hidden_widths
from adc_dist.train.evaluate import evaluate
from adc_dist.train.graphed import GraphedStep
from adc_dist.train.loop import epoch_batches, prepare_task, step_function
from adc_dist.train.optim import make_optimizer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Bare(nn.Module):
    """The reference network: what one would write by hand for the same shape."""

    def __init__(self, n_users: int, n_items: tuple[int, ...], d: int, widths: list[int], sparse: bool = False):
        super().__init__()
        self.user = nn.Embedding(n_users, d, sparse=sparse)
        self.items = nn.ModuleList(nn.Embedding(n, d, sparse=sparse) for n in n_items)
        self.mlp = nn.Sequential(*[m for i, o in zip([2 * d] + widths[:-1], widths) for m in (nn.Linear(i, o), nn.ReLU())])
        self.heads = nn.ModuleList(nn.Linear(widths[-1], 1) for _ in n_items)

    def loss(self, users: list[torch.Tensor], items: list[torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for k, (u, it) in enumerate(zip(users, items)):
            p = self.user(u).unsqueeze(1).expand(-1, it.shape[1], -1)
            logits = self.heads[k](self.mlp(torch.cat([p, self.items[k](it)], dim=-1))).squeeze(-1)
            labels = torch.zeros_like(logits)
            labels[:, 0] = 1.0
            total = total + F.binary_cross_entropy_with_logits(logits, labels)
        return total


def bare_step(task, cfg: TrainConfig, device: torch.device, autocast, sparse: bool = False):
    """One step of the bare loop (batches of the loop's sizes), as a function. ``sparse``:
    sparse embedding gradients and SparseAdam on the tables (only the rows a batch touches
    are updated: the cost of a step no longer grows with the table sizes)."""
    torch.manual_seed(0)
    widths = hidden_widths(cfg.d, cfg.num_hidden_layers, cfg.hidden_shape)
    model = Bare(task.n_users, task.n_items, cfg.d, widths, sparse=sparse).to(device)
    tables = [model.user.weight, *[e.weight for e in model.items]]
    rest = [p for p in model.parameters() if all(p is not t for t in tables)]
    opts = ([torch.optim.SparseAdam(tables, lr=cfg.lr), torch.optim.Adam(rest, lr=cfg.lr)] if sparse
            else [torch.optim.Adam(model.parameters(), lr=cfg.lr)])
    sizes = _domain_batch_sizes(task, cfg)
    gen = torch.Generator(device=device).manual_seed(0)

    def step() -> None:
        users = [torch.randint(0, task.n_users, (b,), generator=gen, device=device) for b in sizes]
        items = [torch.randint(0, n, (b, 1 + cfg.negatives), generator=gen, device=device)
                 for b, n in zip(sizes, task.n_items)]
        with autocast():
            loss = model.loss(users, items)
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in opts:
            opt.step()

    return step


def _domain_batch_sizes(task, cfg: TrainConfig) -> list[int]:
    """Positives per step of each domain, as the loop's epoch plan cuts them (world size 1)."""
    steps = max(1, max(-(-len(tr) // cfg.batch_size) for tr in task.train))
    return [max(1, -(-len(tr) // steps)) for tr in task.train]


def timed_side_by_side(steps_fns: list, steps: int, device: torch.device, warmup: int = 3, block: int = 5
                       ) -> list[float]:
    """Seconds of ``steps`` steps of each function, in interleaved blocks of ``block`` steps
    (a a a a a, b b b b b, a ...): a load that drifts during the run slows every loop alike,
    and a GPU still pipelines the steps of a block (one sync per block)."""
    for fn in steps_fns:
        for _ in range(warmup):
            fn()
    total = [0.0] * len(steps_fns)
    for start in range(0, steps, block):
        for j, fn in enumerate(steps_fns):
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(min(block, steps - start)):
                fn()
            _sync(device)
            total[j] += time.perf_counter() - t0
    return total


def project_step(task, cfg: TrainConfig, device: torch.device, autocast, graphs: bool = True):
    """One step of the project's loop, batches included, as a function: ``fit``'s step
    (``step_function``: replayed from CUDA graphs where a run would, unless ``graphs`` is false)."""
    torch.manual_seed(0)
    model = ADC.from_config(cfg, task.n_users, task.n_items).to(device)
    opt = make_optimizer(model, cfg)  # the run's optimizer (fused Adam on dense tables)
    balancer = make_balancer(cfg, task.num_domains).to(device)
    samplers = samplers_for(task, device)
    train = step_function(model, model, balancer, opt, cfg, 1, autocast(), device, graphs=graphs)
    state = {"it": iter(()), "epoch": 0}

    def step() -> None:
        try:
            users, items = next(state["it"])
        except StopIteration:
            state["it"] = iter(epoch_batches(samplers, cfg, state["epoch"], 0, 1))
            state["epoch"] += 1
            users, items = next(state["it"])
        train(users, items)

    step.graphed = isinstance(train, GraphedStep)
    return step


def op_profile(fns: dict, rows: int, rounds: int = 5, steps: int = 3) -> None:
    """Per-op self time of each step function (torch.profiler, shapes kept), the minimum over
    ``rounds`` rounds of ``steps`` steps (a loaded box inflates single rounds), and the
    process CPU time per step: where the loop spends time that the bare loop does not."""
    from collections import defaultdict

    from torch.profiler import ProfilerActivity, profile

    for name, fn in fns.items():
        best, calls, cpu = defaultdict(lambda: float("inf")), {}, []
        for _ in range(rounds):
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                c0 = time.process_time()
                for _ in range(steps):
                    fn()
                cpu.append((time.process_time() - c0) / steps)
            for e in prof.key_averages(group_by_input_shape=True):
                key = (e.key, str(e.input_shapes))
                best[key] = min(best[key], e.self_cpu_time_total / steps / 1e3)
                calls[key] = e.count // steps
        print(f"\n{name}: CPU {1000 * min(cpu):.1f} ms/step (min of {rounds} rounds; profiler on), "
              f"per-op self time (ms/step, min over rounds), top {rows}:")
        for (op, shapes), ms in sorted(best.items(), key=lambda kv: -kv[1])[:rows]:
            print(f"  {ms:7.2f}  {calls[(op, shapes)]:3d}x  {op[:34]:34s} {shapes[:80]}")


def gpu_profile(step, steps: int, device: torch.device) -> tuple[float, float]:
    """(host share of the step time, peak GPU GiB) over ``steps`` steps on a GPU.

    Host share = 1 - (CUDA kernel time / wall time), kernel time from the profiler: the
    fraction of the time the GPU waits for the host. The profiler's own overhead adds host
    time, so this is an upper bound.
    """
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        wall = time.perf_counter() - t0
    busy = sum(e.self_device_time_total for e in prof.key_averages()) / 1e6
    return max(0.0, 1 - busy / wall), torch.cuda.max_memory_allocated(device) / 2**30


def torch_batches(task, cfg: TrainConfig, device: torch.device, epochs: int) -> tuple[float, int]:
    """(seconds, positives) of building ``epochs`` epochs of batches on ``device``, no training."""
    samplers = samplers_for(task, device)
    list(epoch_batches(samplers, cfg, 99, 0, 1))  # warm-up
    _sync(device)
    t0, n = time.perf_counter(), 0
    for e in range(epochs):
        for users, _ in epoch_batches(samplers, cfg, e, 0, 1):
            n += sum(len(u) for u in users)
    _sync(device)
    return time.perf_counter() - t0, n


def numpy_batches(task, cfg: TrainConfig, epochs: int) -> tuple[float, int]:
    """The same with the numpy sampler and host gathers the loop used before issue 14."""
    samplers = [NegativeSampler(task, k) for k in range(task.num_domains)]
    t0, n = time.perf_counter(), 0
    for e in range(epochs):
        shards = [epoch_shard(len(tr), 0, 1, cfg.seed, e) for tr in task.train]
        steps = max(1, max(-(-len(s) // cfg.batch_size) for s in shards))
        plan = [np.array_split(np.resize(s, max(len(s), steps)), steps) for s in shards]
        rngs = [rng_for(cfg.seed, e, 0, k) for k in range(task.num_domains)]
        for step in range(steps):
            for k, sampler in enumerate(samplers):
                idx = plan[k][step]
                u = task.train[k].users[idx]
                cand = np.concatenate([task.train[k].items[idx][:, None], sampler.sample(u, cfg.negatives, rngs[k])], 1)
                torch.from_numpy(u), torch.from_numpy(cand)
                n += len(u)
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="amazon-book-music")
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes (default: the default and 4096)")
    ap.add_argument("--steps", type=int, default=40, help="timed training steps per configuration")
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--bf16", action="store_true", help="also the bf16 autocast loops (GPU)")
    ap.add_argument("--sparse", action="store_true", help="also the bare loop with sparse rows + SparseAdam")
    ap.add_argument("--model", choices=("paper", "default"), default="paper",
                    help="paper: the paper preset, against the bare loop; default: TrainConfig's defaults, loop alone")
    ap.add_argument("--no-numpy", action="store_true",
                    help="batch building: skip the numpy sampler (slow at 10^6 users)")
    ap.add_argument("--loops-only", action="store_true", help="skip batch building and evaluation")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="also print the N most expensive ops of each loop's step at the default batch")
    args = ap.parse_args()
    device = torch.device("cuda" if args.gpu else "cpu")
    # The paper's shape (MLP over [p; q], BCE) is the shape the bare reference loop writes by hand.
    paper = args.model == "paper"
    base = from_mapping({"task": args.task, "patience": 0, **({"preset": "paper"} if paper else {})},
                        where="bench_loop")
    task = prepare_task(base)
    batches = [int(b) for b in args.batches.split(",")] if args.batches else sorted({base.batch_size, 4096})
    gpu = torch.cuda.get_device_name(0) if args.gpu else "none"
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPU cores, GPU: {gpu}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.2f}")
    print(f"{args.task}: {task.n_users:,} users, items {task.n_items}, train positives "
          f"{[len(t) for t in task.train]}; {args.model} model: {base.interaction}, d={base.d}, "
          + (f"{base.num_hidden_layers} hidden layers, " if "mlp" in base.interaction else "")
          + f"rho={base.negatives}, {base.loss}, "
          f"sparse tables {base.sparse_tables}\n")
    rho1 = 1 + base.negatives
    dtypes = [("fp32", torch.float32)] + ([("bf16", torch.bfloat16)] if args.bf16 else [])
    print(f"{'loop':<34} {'batch':>6} {'pairs/s':>14} {'positives/s':>13} {'ms/step':>8}")
    epoch_s = epoch_batch = None
    for batch in batches:
        cfg = base.replace(batch_size=batch)
        for tag, dtype in dtypes:
            # bf16 as a run's autocast_for makes it: the weight-cast cache off (CUDA graphs)
            ac = ((lambda: torch.autocast(device.type, dtype=dtype, cache_enabled=False)) if dtype != torch.float32
                  else nullcontext)
            loop = project_step(task, cfg, device, ac)
            # A graphed loop (GPU) is timed beside the same loop's eager steps.
            eager = [project_step(task, cfg, device, ac, graphs=False)] if loop.graphed else []
            bares = [bare_step(task, cfg, device, ac)] if paper else []
            if paper and args.sparse:
                bares.append(bare_step(task, cfg, device, ac, True))
            sec, *other_secs = timed_side_by_side([loop] + eager + bares, args.steps, device)
            eager_secs, bare_secs = other_secs[:len(eager)], other_secs[len(eager):]
            # Both loops train the same positives per step (the epoch plan's sizes, +-1).
            pos = bare_pos = sum(_domain_batch_sizes(task, cfg)) * args.steps
            _row(f"in-process loop, {tag}" + (" (graphs)" if loop.graphed else ""), batch, pos, sec, args.steps, rho1)
            if eager:
                _row(f"  same, eager steps, {tag}", batch, pos, eager_secs[0], args.steps, rho1)
            if paper:
                _row(f"bare loop, {tag}", batch, bare_pos, bare_secs[0], args.steps, rho1)
                print(f"{'':<34} loop / bare = {(pos / sec) / (bare_pos / bare_secs[0]):.2f}x (target >= 1.0x)")
            if args.sparse and paper:
                _row(f"bare loop, sparse rows, {tag}", batch, bare_pos, bare_secs[1], args.steps, rho1)
            if device.type == "cuda":
                host, peak = gpu_profile(loop, min(args.steps, 20), device)
                print(f"{'':<34} host share of the step {100 * host:.1f} % (target <= 5 %), "
                      f"peak GPU memory {peak:.2f} GiB")
            if args.profile and batch == base.batch_size and tag == "fp32":
                op_profile({"in-process loop": loop, **({"bare loop": bares[0]} if paper else {})}, args.profile)
            # The epoch that evaluation is set against: at the default batch, else the first measured.
            if tag == "fp32" and (epoch_s is None or batch == base.batch_size):
                steps_per_epoch = max(-(-len(tr) // batch) for tr in task.train)
                epoch_s, epoch_batch = sec / args.steps * steps_per_epoch, batch
    if args.loops_only:
        return
    print()
    cfg = base
    t_t, n_t = torch_batches(task, cfg, device, epochs=2)
    line = (f"batch building alone (batch {cfg.batch_size}, 2 epochs): torch sampler on {device.type} "
            f"{n_t * rho1 / t_t / 1e6:.1f} M pairs/s ({n_t / t_t / 1e6:.2f} M positives/s)")
    if not args.no_numpy:
        t_np, n_np = numpy_batches(task, cfg, epochs=2)
        line += (f", numpy sampler {n_np * rho1 / t_np / 1e6:.1f} M pairs/s -> "
                 f"{(n_t / t_t) / (n_np / t_np):.2f}x (target >= 2x)")
    print(line)
    model = ADC.from_config(base, task.n_users, task.n_items).to(device).eval()
    for k, dom in enumerate(task.domains):
        t0 = time.perf_counter()
        evaluate(lambda u, _k, k=k: model.score_all(u, k), task.select([dom]), "valid", base.topk, device=device)
        sec = time.perf_counter() - t0
        print(f"full ranking of {dom}'s validation users: {sec:.2f} s = {sec / epoch_s:.2f} training epochs "
              f"(epoch {epoch_s:.2f} s at batch {epoch_batch}; target <= 0.5)")
    print(f"\nload average after the run: {os.getloadavg()[0]:.2f}")


def _row(label: str, batch: int, positives: int, sec: float, steps: int, rho1: int) -> None:
    print(f"{label:<34} {batch:>6} {positives * rho1 / sec:>14,.0f} {positives / sec:>13,.0f} "
          f"{1000 * sec / steps:>8.1f}")


if __name__ == "__main__":
    main()
