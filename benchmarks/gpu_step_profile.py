"""Where a step of the in-process loop spends its time on a GPU: kernels, phases, host syncs.

    python benchmarks/gpu_step_profile.py                       # default model, batch 1,024 (on CUDA if present)
    python benchmarks/gpu_step_profile.py --model paper --batch 4096
    python benchmarks/gpu_step_profile.py --sparse-tables true    # the row-sparse tables of large tasks

bench_loop.py measures that the GPU idles most of a small-batch step (the host's share);
this says why. For ``--steps`` steps of ``bench_loop.project_step`` (device batches,
GradNorm, the run's optimizer) after a warm-up, it prints:

* wall ms per step, kernel launches per step, GPU busy ms per step (profiler);
* each phase's host (CPU) and GPU time per step (of eager steps: a replayed graph runs no
  Python): the batches' draw, the forward, the losses and L2 term, GradNorm's per-domain
  row gradients, the balancer's update, the backward and the optimizer (record_function
  ranges around the functions ``loop.train_step`` calls; what is left is the small ops
  between them);
* the ops with the most host time, with their call counts;
* every place the step waits for the GPU (``torch.cuda.set_sync_debug_mode``), by the
  project's source line that made it.

On a CPU-only machine it prints the first three (no kernels, no syncs): the op counts
alone already say how many launches a GPU step would make.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its pool (bench_loop.py says why)

import argparse
import sys
import time
import traceback
import warnings
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_loop import project_step  # noqa: E402

from adc_dist.balancing import gradnorm  # noqa: E402
from adc_dist.config import from_mapping  # noqa: E402
from adc_dist.data import torch_sampler  # noqa: E402
from adc_dist.model import network  # noqa: E402
from adc_dist.train import loop  # noqa: E402

PHASE = "phase: "


def _ranged(owner, name: str, label: str) -> None:
    """Wrap ``owner.name`` in a profiler range named ``label`` (the identity of functions the
    loop compares, ``shared_layer_grads``, is left alone)."""
    fn = getattr(owner, name)

    def wrapped(*args, **kwargs):
        with record_function(PHASE + label):
            return fn(*args, **kwargs)

    setattr(owner, name, wrapped)


def _instrument() -> None:
    _ranged(torch_sampler.EpochBatches, "_draw", "batches: draw (a block of steps)")
    _ranged(network.ADC, "forward", "forward")
    _ranged(network.ADC, "embedding_sq_norms", "L2 term")
    _ranged(loop, "domain_losses", "losses")
    _ranged(loop, "shared_row_grads", "GradNorm: row gradients of P")
    _ranged(gradnorm.GradNorm, "update", "GradNorm: the weights' update")
    _ranged(loop, "rows_as_sparse", "GradNorm: rows as sparse")
    _ranged(torch.Tensor, "backward", "backward")


def _syncs(step, steps: int) -> Counter:
    """The project lines that made the step wait for the GPU, counted over ``steps`` steps."""
    seen: Counter = Counter()

    def record(message, category, filename, lineno, file=None, line=None):
        frames = [f for f in traceback.extract_stack()[:-1] if "adc_dist" in f.filename or "benchmarks" in f.filename]
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames[-3:]))
        seen[(str(message).split("\n")[0][:70], where)] += 1

    with warnings.catch_warnings():  # restores the filters and showwarning on exit
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                step()
            torch.cuda.synchronize()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="amazon-book-music")
    ap.add_argument("--model", choices=("default", "paper"), default="default")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sparse-tables", default=None, help="true/false/auto (default: the model's)")
    ap.add_argument("--eager", action="store_true", help="eager steps (default: CUDA graphs where a run uses them)")
    ap.add_argument("--top", type=int, default=25, help="ops listed by host time")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    cfg = from_mapping({"task": args.task, "patience": 0, **({"preset": "paper"} if args.model == "paper" else {})},
                       where="gpu_step_profile").replace(batch_size=args.batch)
    if args.sparse_tables is not None:
        cfg = cfg.replace(sparse_tables=args.sparse_tables)
    task = loop.prepare_task(cfg)
    _instrument()
    step = project_step(task, cfg, device, nullcontext, graphs=not args.eager)
    for _ in range(10):
        step()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    wall = 1000 * (time.perf_counter() - t0) / args.steps
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        for _ in range(args.steps):
            step()
        sync()
    n = args.steps
    events = prof.key_averages()
    kernels = sum(e.count for e in events if e.device_type == torch.autograd.DeviceType.CUDA) / n if cuda else 0
    busy = sum(e.self_device_time_total for e in events) / n / 1e3 if cuda else 0.0
    aten = sum(e.count for e in events if e.key.startswith("aten::")) / n
    print(f"{args.task}, {args.model} model ({cfg.interaction}, sparse tables {cfg.sparse_tables}), "
          f"batch {args.batch}, {'CUDA graphs' if step.graphed else 'eager steps'}, "
          f"on {torch.cuda.get_device_name(0) if cuda else 'CPU'}; torch {torch.__version__}")
    print(f"wall {wall:.2f} ms/step (profiler off); aten calls {aten:.0f}/step; kernels {kernels:.0f}/step; "
          f"GPU busy {busy:.2f} ms/step")
    print(f"\n{'phase':<40} {'calls':>6} {'host ms':>8} {'GPU ms':>8}   (per step; a range includes those it calls)")
    for e in sorted((e for e in events if e.key.startswith(PHASE) or e.key.startswith("Optimizer.step")),
                    key=lambda e: -e.cpu_time_total):
        print(f"{e.key.removeprefix(PHASE)[:40]:<40} {e.count / n:>6.1f} {e.cpu_time_total / n / 1e3:>8.3f} "
              f"{e.device_time_total / n / 1e3:>8.3f}")
    print(f"\nops by host self time (per step): calls, host ms")
    ops = sorted((e for e in events if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total)
    for e in ops[:args.top]:
        print(f"  {e.count / n:6.1f}  {e.self_cpu_time_total / n / 1e3:7.3f}  {e.key}")
    if cuda:
        seen = _syncs(step, 5)
        print(f"\nhost waits for the GPU over 5 steps: {sum(seen.values())} ({sum(seen.values()) / 5:.1f} per step)")
        for (msg, where), c in seen.most_common(15):
            print(f"  {c / 5:5.1f}/step  {where or '(no project frame)'}  [{msg}]")


if __name__ == "__main__":
    main()
