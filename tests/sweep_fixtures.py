"""Realistic synthetic sweep results (no training): TrialRecords as the driver builds them.

The numbers follow the shapes of the paper's figures (a best number of hidden layers,
a best gamma, recall growing with N, GradNorm weights drifting apart) so the report's
figures and tables can be checked by eye and by value.
"""

from __future__ import annotations

import math

import numpy as np

from adc_dist.config import TrainConfig
from adc_dist.tune.records import TrialRecord

TASKS = {
    "amazon-book-music": ("book", "music"),
    "amazon-book-dvd": ("book", "dvd"),
    "amazon-music-video": ("music", "video"),
}


def true_ndcg(task_i: int, cfg: dict, n: int = 10) -> float:
    base = 0.05 + 0.02 * task_i
    f_layers = 1.0 - 0.04 * (cfg["num_hidden_layers"] - 3) ** 2  # best at 3 layers
    f_gamma = 1.0 - 0.03 * (cfg["gamma"] - 1.5) ** 2  # best at 1.5
    f_d = 1.0 - 0.05 * abs(math.log2(cfg["d"] / 100))
    f_neg = 1.0 - 0.01 * abs(cfg["negatives"] - 5)
    return base * f_layers * f_gamma * f_d * f_neg * (n / 10) ** 0.3


def make_record(sweep: str, trial_id: str, task: str, overrides: dict, *, epochs: int = 8,
                status: str = "ok", seed: int = 0, t0: float = 1.75e9) -> TrialRecord:
    cfg = TrainConfig(task=task, epochs=epochs, topk=[5, 10, 20, 50], **overrides).validate().to_dict()
    domains = TASKS[task]
    task_i = list(TASKS).index(task)
    rng = np.random.default_rng(seed)
    rec = TrialRecord(sweep, trial_id, cfg, started_at=t0, first_result_at=t0 + 3.0)
    stop_at = epochs if status != "stopped" else 2
    w = np.ones(len(domains))
    for e in range(1, (stop_at if status != "error" else 1) + 1):
        r: dict = {"epoch": e, "training_iteration": e, "samples_per_s": 5e4 + 1e3 * rng.standard_normal(),
                   "epoch_time_s": 2.0, "eval_time_s": 0.5, "weight_rank_spread": 0.0, "time_total_s": 2.5 * e,
                   "trial_id": trial_id, "done": False, "hostname": "box"}
        drift = cfg["gamma"] * 0.15 * (1 - math.exp(-e / 3))
        w = np.array([1 + drift, 1 - drift]) if cfg["balancer"] == "gradnorm" else np.ones(2)
        grow = 1 - math.exp(-e / 2.5)
        for k, dom in enumerate(domains):
            r[f"loss_{dom}"] = 0.2 + 0.5 * math.exp(-e / (3 + k))
            r[f"weight_{dom}"] = float(w[k])
            for n in cfg["topk"]:
                nd = true_ndcg(task_i, cfg, n) * grow * (1.1 if k == 0 else 0.9)
                r[f"valid_ndcg{n}_{dom}"] = nd + 0.001 * rng.standard_normal()
                r[f"valid_recall{n}_{dom}"] = min(1.0, nd * 1.6 * (n / 10) ** 0.6)
        for m in ("ndcg", "recall"):
            for n in cfg["topk"]:
                vals = [r[f"valid_{m}{n}_{d}"] for d in domains]
                r[f"valid_{m}{n}_mean"] = float(np.mean(vals))
        r["gradnorm_target_spread"] = 0.01 * e  # an extra diagnostic
        rec.results.append(r)
    rec.finished_at = t0 + 3.0 + 2.5 * len(rec.results) + 0.5
    if status == "error":
        rec.error = "RuntimeError: CUDA out of memory (synthetic)"
        return rec
    if status == "stopped":
        rec.stopped = True
        return rec
    best = max(rec.results, key=lambda r: r["valid_ndcg10_mean"])
    final = {"best_epoch": best["epoch"], "epochs_run": len(rec.results)}
    for key, v in best.items():
        if key.startswith("valid_"):
            final["test" + key[5:]] = v * 0.97
    rec.final = final
    return rec


def paper_sweep(sweep: str = "paper", tasks=tuple(TASKS)) -> list[TrialRecord]:
    """A one_at_a_time sweep like tune_spaces/paper.yaml, plus one stopped and one failed trial."""
    base = {"num_hidden_layers": 2, "d": 100, "gamma": 1.5, "negatives": 5}
    axes = {"num_hidden_layers": [1, 2, 3, 4, 5], "d": [25, 50, 100, 200],
            "gamma": [0.0, 0.5, 1.0, 1.5, 2.0, 3.0], "negatives": [1, 3, 5, 7, 9]}
    points = [{}] + [{k: v} for k, vs in axes.items() for v in vs if v != base[k]]
    recs = []
    i = 0
    for task in tasks:
        for p in points:
            recs.append(make_record(sweep, f"t{i:05d}", task, {**base, **p}, seed=i, t0=1.75e9 + 30 * i))
            i += 1
    recs.append(make_record(sweep, f"t{i:05d}", tasks[0], {**base, "d": 50, "gamma": 3.0}, status="stopped", seed=i))
    recs.append(make_record(sweep, f"t{i + 1:05d}", tasks[0], {**base, "d": 200, "num_hidden_layers": 5},
                            status="error", seed=i + 1))
    return recs
