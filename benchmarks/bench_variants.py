"""Training throughput of the paper preset against the default model, at equal load.

    ADC_DATA_ROOT=../shared/data OMP_NUM_THREADS=1 python benchmarks/bench_variants.py [--steps 12] [--reps 2]

Alternates the two configurations (``--reps`` times each) on amazon-book-music, in this
process with one torch thread: ``--steps`` training steps of adc_dist.train.loop.train_step
(batching included), then a full ranking of every user in both domains (ADC.score_all).
Prints positives/s, scored pairs/s (positives x (1 + negatives)) and the ranking time.
On a shared machine only the ratio between lines printed close together means much.
"""

from __future__ import annotations

import argparse
import time

import torch

from adc_dist.balancing import make_balancer
from adc_dist.config import from_mapping
from adc_dist.data.sampling import NegativeSampler, rng_for
from adc_dist.model.network import ADC
from adc_dist.train.loop import _epoch_plan, make_batch, prepare_task, train_step

CONFIGS = {"paper": {"preset": "paper"}, "default": {}}


def bench(name: str, steps: int) -> str:
    cfg = from_mapping(CONFIGS[name])
    task = prepare_task(cfg)
    torch.manual_seed(0)
    model = ADC.from_config(cfg, task.n_users, task.n_items)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    balancer = make_balancer(cfg, task.num_domains)
    samplers = [NegativeSampler(task, k) for k in range(task.num_domains)]
    plan = _epoch_plan(task, cfg, 0, 0, 1)
    rngs = [rng_for(cfg.seed, 0, 0, k) for k in range(task.num_domains)]
    t0, n = time.perf_counter(), 0
    for step in range(min(steps, len(plan[0]))):
        users, items = make_batch(task, samplers, plan, step, rngs, cfg.negatives, torch.device("cpu"))
        train_step(model, model, balancer, opt, users, items, 1, loss=cfg.loss, l2=cfg.l2)
        n += sum(len(u) for u in users)
    dt = time.perf_counter() - t0
    model.eval()
    t1 = time.perf_counter()
    for k in range(task.num_domains):
        model.score_all(torch.arange(task.n_users), k)
    rank_s = time.perf_counter() - t1
    return (f"{name:8s} {n / dt:9,.0f} positives/s {n * (1 + cfg.negatives) / dt:9,.0f} scored pairs/s | "
            f"ranking all {task.n_users:,} users x {task.num_domains} domains {rank_s:6.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    for _ in range(args.reps):
        for name in CONFIGS:
            print(bench(name, args.steps), flush=True)


if __name__ == "__main__":
    main()
