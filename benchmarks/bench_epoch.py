"""Training epochs of the default model (TrainConfig defaults: gmf) in-process, no evaluation.

    python benchmarks/bench_epoch.py              # amazon-book-music, 3 epochs
    python benchmarks/bench_epoch.py 5
    python benchmarks/bench_epoch.py 0 --profile 20   # the 20 most expensive ops of a step, no epochs

``train_epoch`` as ``fit`` runs it (the run's optimizer, GradNorm, device-side batches), one
rank on the CPU; prints each epoch's time, scored pairs/s and positives/s, and the losses (the
same code gives the same losses, so a before/after comparison shows whether a change moved
the numbers). The first epoch pays for warm-up. docs/performance.md, "Batches on the device".
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its pool (bench_loop.py says why)

import sys
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
for e in range(int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 3):
    row = train_epoch(model, model, bal, opt, samplers, cfg, e, 0, 1, nullcontext(), torch.device("cpu"), task.domains)
    print(f"epoch {e + 1}: {row['epoch_time_s']:.2f} s, {row['pairs_per_s']:,.0f} pairs/s, "
          f"{row['samples_per_s']:,.0f} positives/s, loss {[round(row[f'loss_{d}'], 5) for d in task.domains]}")
print(f"load after {os.getloadavg()[0]:.2f}")
