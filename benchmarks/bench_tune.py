"""Sweep overhead and memory: per-trial overhead against training time, smoke trials per minute,
peak memory of a 4-concurrent-trial smoke sweep.

    flock /tmp/adc_ray.lock python benchmarks/bench_tune.py                  # 12 smoke trials, 4 at once
    flock /tmp/adc_ray.lock python benchmarks/bench_tune.py --num-workers 2 --trials 2 --concurrent 1
                                                              # a TorchTrainer per trial, for comparison

Per trial (from trials.parquet, measured by the driver):
  startup   trial start -> first epoch result, minus that epoch's train+eval time: Tune's
            scheduling, the trial process (reused after the first trial on it), data load,
            model build -- the overhead this benchmark is about;
  train     sum of epoch_time_s + eval_time_s (validation) reported by the loop;
  tail      the rest of the wall time: the final test evaluation and the last report.
Memory: the driver and all its descendant processes (Ray's GCS, raylet, trial workers),
sampled every 0.25 s: the peak of the summed RSS and of the summed PSS (shared pages
counted once), and the peak of the machine's used memory above its level at the start.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from procs import descendants  # the process-tree walk the tests use (import after the sys.path line)


def _kib(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _used_kib() -> int:
    return _kib("/proc/meminfo", "MemTotal:") - _kib("/proc/meminfo", "MemAvailable:")


class MemorySampler(threading.Thread):
    """Peak summed RSS / PSS of this process and its descendants, from /proc (Linux)."""

    def __init__(self, period: float = 0.25):
        super().__init__(daemon=True)
        self.period = period
        self.peak_rss = self.peak_pss = self.peak_used = 0
        self.base_used = _used_kib()
        self.peak_procs = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            pids = [os.getpid(), *descendants(os.getpid())]
            rss = sum(_kib(f"/proc/{p}/status", "VmRSS:") for p in pids)
            pss = sum(_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.peak_used = max(self.peak_used, _used_kib() - self.base_used)
            self.peak_procs = max(self.peak_procs, len(pids))
            self._stop_event.wait(self.period)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=12, help="number of smoke trials (rounded up to the grid)")
    ap.add_argument("--tasks", default="amazon-dvd-video,amazon-book-music")
    ap.add_argument("--concurrent", type=int, default=4)
    ap.add_argument("--num-workers", type=int, default=1)
    ap.add_argument("--cpus-per-worker", type=float, default=None, help="default: 2 cores / concurrent trials")
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("ADC_DATA_ROOT", str(REPO.parent / "shared" / "data"))

    from adc_dist.tune.results import load_results
    from adc_dist.tune.search_space import load_space
    from adc_dist.tune.driver import run_sweep

    tasks = args.tasks.split(",")
    space = load_space(REPO / "tune_spaces" / "smoke.yaml", overrides={"epochs": args.epochs})
    samples = max(1, -(-args.trials // (space.trials_per_task() * len(tasks))))
    cores = os.cpu_count() or 1
    spare = 0.01 * args.concurrent if args.num_workers > 1 else 0.0  # an N-worker trial's own process
    cpw = args.cpus_per_worker or min(1.0, int(100 * (cores - spare) / (args.concurrent * args.num_workers)) / 100)
    load0 = os.getloadavg()[0]
    sampler = MemorySampler()
    sampler.start()
    t0 = time.time()
    import ray

    ray.init(include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20)
    t_init = time.time() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.time()
        uri = run_sweep(space, tasks, name="bench", storage=tmp, num_samples=samples, scheduler="fifo",
                        max_concurrent=args.concurrent, num_workers=args.num_workers, cpus_per_worker=cpw,
                        quiet=True)
        t_sweep = time.time() - t1
        res = load_results(uri)
    ray.shutdown()
    sampler.stop()

    t = res.trials.sort_values("started_at").reset_index(drop=True)
    t["tail_s"] = t["wall_time_s"] - t["startup_s"] - t["train_time_s"]
    gib = 2**20  # the sampler counts KiB
    print(f"machine: {cores}-core CPU box, {_kib('/proc/meminfo', 'MemTotal:') / gib:.0f} GiB, no GPU; "
          f"load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    print(f"sweep: {len(t)} smoke trials ({args.epochs} epochs, d=8) on {', '.join(tasks)}; "
          f"{args.concurrent} at once, {args.num_workers} worker(s) x {cpw:g} CPU each; "
          f"status {t['status'].value_counts().to_dict()}")
    print(f"ray.init {t_init:.1f}s; sweep (plan + Tune + Parquet) {t_sweep:.1f}s")
    cols = ["wall_time_s", "startup_s", "train_time_s", "tail_s"]
    summary = pd.DataFrame({
        "first wave (new trial processes)": t.loc[t.index < args.concurrent, cols].mean(),
        "later trials (processes reused)": t.loc[t.index >= args.concurrent, cols].mean(),
        "all": t[cols].mean(),
    }).T
    print("per trial, mean seconds:")
    print(summary.to_string(float_format=lambda x: f"{x:8.2f}"))
    over = t["startup_s"].mean()
    print(f"overhead (startup) / training time: {over:.2f}s / {t['train_time_s'].mean():.2f}s "
          f"= {over / t['train_time_s'].mean():.1%} per trial")
    print(f"throughput: {len(t) / t_sweep * 60:.1f} smoke trials per minute")
    print(f"peak memory (driver + Ray + {sampler.peak_procs - 1} processes at most): summed RSS "
          f"{sampler.peak_rss / gib:.2f} GiB, summed PSS {sampler.peak_pss / gib:.2f} GiB; machine used "
          f"+{sampler.peak_used / gib:.2f} GiB over its start")


if __name__ == "__main__":
    main()
