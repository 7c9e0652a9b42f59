"""Training throughput benchmark on amazon-book-music (prints numbers; not a test).

    python benchmarks/bench_train.py                  # CPU: in-process, Ray Train 1 and 2 workers
    python benchmarks/bench_train.py --gpu            # on a GPU machine (fp32 and bf16)
    python benchmarks/bench_train.py --quick          # fewer epochs

What it measures (issue 3's targets):
  * samples/s (training positives, each with rho negatives, per second over all workers) of
    the in-process loop and of Ray Train with 1 and 2 workers; the ratio Ray-1 / in-process;
  * the time share of the GradNorm step: epoch time with ``gradnorm`` against ``equal``;
  * full-ranking evaluation of every validation user of both domains against one epoch;
  * peak memory (RSS of rank 0; GPU memory on GPU).

Each configuration trains ``--epochs`` epochs and the numbers come from the last one (the
first pays for warm-up). ``other_s`` is the wall time outside training epochs and
validation (data loading, start-up, the final test evaluation, writing); Ray's fixed
start cost per fit is the difference of that column between Ray and in-process.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import torch

from adc_dist.config import TrainConfig
from adc_dist.train.evaluate import evaluate
from adc_dist.train.loop import prepare_task
from adc_dist.model.network import ADC
from adc_dist.train.launch import run


def _measure(label: str, cfg: TrainConfig, *, local: bool) -> dict:
    t0 = time.perf_counter()
    summary = run(cfg, local=local, quiet=True)
    wall = time.perf_counter() - t0
    last = summary.history.iloc[-1]
    trained = summary.history["epoch_time_s"].sum() + summary.history.get("eval_time_s", 0).sum()
    row = {"label": label, "samples_per_s": last["samples_per_s"], "epoch_s": last["epoch_time_s"],
           "eval_s": last.get("eval_time_s", float("nan")), "peak_rss_mb": last["peak_rss_mb"],
           "peak_gpu_mb": last.get("peak_gpu_mb", float("nan")), "wall_s": wall,
           "other_s": wall - trained, "ndcg10": summary.final.get("test_ndcg10_mean", float("nan"))}
    print(f"{label:<34} {row['samples_per_s']:>12,.0f} {row['epoch_s']:>9.2f} {row['eval_s']:>8.2f} "
          f"{row['peak_rss_mb']:>9.0f} {row['peak_gpu_mb']:>9.0f} {row['other_s']:>10.1f} {row['ndcg10']:>8.4f}",
          flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--no-ray", action="store_true", help="only the in-process measurements")
    args = ap.parse_args()
    epochs = args.epochs or (2 if args.quick else 3)
    storage = tempfile.mkdtemp(prefix="adc_bench_")
    base = TrainConfig(task="amazon-book-music", epochs=epochs, patience=0, storage_path=storage,
                       use_gpu=args.gpu, num_workers=1, cpus_per_worker=float(os.cpu_count() or 1))
    gpu = torch.cuda.get_device_name(0) if args.gpu else "none"
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, GPU: {gpu}; torch {torch.__version__}")
    print(f"amazon-book-music, d={base.d}, {base.num_hidden_layers} hidden layers, rho={base.negatives}, "
          f"batch {base.batch_size} positives/step (largest domain), {epochs} epochs, numbers of the last epoch\n")
    print(f"{'configuration':<34} {'samples/s':>12} {'epoch_s':>9} {'eval_s':>8} {'rss_MB':>9} {'gpu_MB':>9} "
          f"{'other_s':>10} {'ndcg@10':>8}")

    rows = {}
    n = 0

    def name() -> str:
        nonlocal n
        n += 1
        return f"bench{n}"

    rows["local_gradnorm"] = _measure("in-process, gradnorm", base.replace(name=name()), local=True)
    rows["local_equal"] = _measure("in-process, equal", base.replace(name=name(), balancer="equal"), local=True)
    if args.gpu:
        rows["local_bf16"] = _measure("in-process, gradnorm, bf16", base.replace(name=name(), bf16=True), local=True)
    if not args.no_ray:
        import ray

        ray.init(include_dashboard=False, log_to_driver=False)
        rows["ray1"] = _measure("Ray Train, 1 worker", base.replace(name=name()), local=False)
        cpus = float(os.cpu_count() or 2) / 2
        n_workers = 2 if not args.gpu else max(1, min(2, torch.cuda.device_count()))
        rows["ray2"] = _measure(f"Ray Train, {n_workers} workers",
                                base.replace(name=name(), num_workers=n_workers, cpus_per_worker=cpus), local=False)
        ray.shutdown()

    g, e = rows["local_gradnorm"], rows["local_equal"]
    # Evaluation cost does not depend on the trained values: time each domain's full
    # ranking of its validation users with a fresh model of the same shape.
    task = prepare_task(base)
    model = ADC.from_config(base, task.n_users, task.n_items).eval()
    device = torch.device("cuda" if args.gpu else "cpu")
    model.to(device)
    per_domain = {}
    for k, dom in enumerate(task.domains):
        t0 = time.perf_counter()
        evaluate(lambda u, _k, k=k: model.score_all(u, k), task.select([dom]), "valid", base.topk, device=device)
        per_domain[dom] = time.perf_counter() - t0
    print()
    print(f"GradNorm step share: epoch {g['epoch_s']:.2f} s vs equal {e['epoch_s']:.2f} s "
          f"-> +{100 * (g['epoch_s'] / e['epoch_s'] - 1):.1f} % (target <= 10 %)")
    print(f"evaluation vs epoch: full ranking of all validation users of both domains {g['eval_s']:.2f} s vs "
          f"one epoch {g['epoch_s']:.2f} s -> {g['eval_s'] / g['epoch_s']:.2f}x (target: one domain <= 1x)")
    for dom, sec in per_domain.items():
        print(f"  {dom}: full ranking of its validation users {sec:.2f} s = {sec / g['epoch_s']:.2f} epochs")
    if "ray1" in rows:
        print(f"Ray Train 1 worker vs in-process: {rows['ray1']['samples_per_s'] / g['samples_per_s'] * 100:.0f} % "
              f"of the samples/s (target >= 90 %); Ray costs {rows['ray1']['other_s'] - g['other_s']:.1f} s "
              "more per fit (start-up, teardown)")


if __name__ == "__main__":
    main()
