"""Training epochs of the default model (TrainConfig defaults: gmf) in-process, no evaluation.

    python benchmarks/bench_epoch.py              # amazon-book-music, 3 epochs
    python benchmarks/bench_epoch.py 5
    python benchmarks/bench_epoch.py 0 --profile 20   # the 20 most expensive ops of a step, no epochs
    OMP_NUM_THREADS=1 python benchmarks/bench_epoch.py  # one thread: CPU s/epoch moves less with the load
    python benchmarks/bench_epoch.py 0 --lookups-ab 8   # one lookup per table vs separate ones, interleaved

``train_epoch`` as ``fit`` runs it (the run's optimizer, GradNorm, device-side batches), one
rank on the CPU; prints each epoch's wall and process CPU time, scored pairs/s and
positives/s, and the losses (the same code gives the same losses, so a before/after
comparison shows whether a change moved the numbers). The first epoch pays for warm-up. docs/performance.md, "Batches on the device".
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its pool (bench_loop.py says why)

import sys
import time
from contextlib import nullcontext

import torch

import adc_dist
from adc_dist.balancing import make_balancer
from adc_dist.config import from_mapping
from adc_dist.data.torch_sampler import samplers_for
from adc_dist.model.network import ADC
from adc_dist.train.loop import epoch_batches, prepare_task, train_epoch, train_step
from adc_dist.train.optim import make_optimizer

cfg = from_mapping({"task": "amazon-book-music", "patience": 0}, where="bench_epoch")
task = prepare_task(cfg)
torch.manual_seed(cfg.seed)
model = ADC.from_config(cfg, task.n_users, task.n_items)
opt, bal = make_optimizer(model, cfg), make_balancer(cfg, task.num_domains)
samplers = samplers_for(task)
print(f"code {adc_dist.__file__}; {cfg.interaction}, d {cfg.d}, batch {cfg.batch_size}, rho {cfg.negatives}, "
      f"{cfg.loss}; optimizer fused={opt.param_groups[0].get('fused')}; load {os.getloadavg()[0]:.2f}")
if "--profile" in sys.argv:  # per-op self time of a step (bench_loop.op_profile); these steps train the model
    from bench_loop import op_profile

    steps = iter(list(epoch_batches(samplers, cfg, 0, 0, 1)) * 2)
    op_profile({"default model step": lambda: train_step(model, model, bal, opt, *next(steps), 1, loss=cfg.loss,
                                                         l2=cfg.l2)}, int(sys.argv[sys.argv.index("--profile") + 1]))
if "--lookups-ab" in sys.argv:  # one lookup per table (the step) against separate ones, interleaved
    import contextlib

    from adc_dist.model import network

    steps = list(epoch_batches(samplers, cfg, 0, 0, 1))[:10]
    shared, per_mode = network.ADC.step_lookups, {"one lookup": [], "separate lookups": []}
    for block in range(1 + int(sys.argv[sys.argv.index("--lookups-ab") + 1])):  # block 0: warm-up
        for mode in per_mode:
            # "separate": the step without ADC.step_lookups, so the forward and the L2 term each
            # look every table up, as before it existed. Blocks of 10 steps alternate: a load
            # that drifts hits both alike. These steps train the model.
            network.ADC.step_lookups = shared if mode == "one lookup" else lambda self: contextlib.nullcontext()
            c0 = time.process_time()
            for users, items in steps:
                train_step(model, model, bal, opt, users, items, 1, loss=cfg.loss, l2=cfg.l2)
            if block:
                per_mode[mode].append(1000 * (time.process_time() - c0) / len(steps))
    network.ADC.step_lookups = shared
    for mode, ms in per_mode.items():
        print(f"{mode}: process CPU ms/step, blocks of {len(steps)} steps: {', '.join(f'{m:.1f}' for m in ms)}; "
              f"median {sorted(ms)[len(ms) // 2]:.1f}, min {min(ms):.1f}")
for e in range(int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 3):
    cpu0 = time.process_time()
    row = train_epoch(model, model, bal, opt, samplers, cfg, e, 0, 1, nullcontext(), torch.device("cpu"), task.domains)
    # The process's CPU time (all its threads) beside the wall time: on a box shared with other
    # jobs it moves less with the load than the wall time (but still +-10 %).
    print(f"epoch {e + 1}: {row['epoch_time_s']:.2f} s (CPU {time.process_time() - cpu0:.2f} s), "
          f"{row['pairs_per_s']:,.0f} pairs/s, {row['samples_per_s']:,.0f} positives/s, "
          f"loss {[round(row[f'loss_{d}'], 5) for d in task.domains]}")
print(f"load after {os.getloadavg()[0]:.2f}")
