"""The methods of the comparison, their candidate configurations, and how one run is made.

Eleven methods, all scored by ``adc_dist.evaluate.evaluate`` on the same seeded splits:

    popularity, bpr_mf, cmf,          adc_dist.baselines (plain PyTorch, no Ray Train)
    neumf, dtcdr
    mlp_single                        ADC on one domain (TrainConfig.domains=[d]), per domain
    adc_equal, adc_static,            ADC (TrainConfig's default model) with that balancer
    adc_uncertainty, adc_gradnorm
    adc_paper                         the paper preset (DESIGN.md section 2) with GradNorm

Candidate configurations for a validation budget of N (the same N for every method):

- baselines: the method's default (``adc_dist.compare.baselines.DEFAULTS``) and N - 1
  distinct configurations drawn from ``SPACES`` (d, lr, L2, for BPR-MF and CMF the number of
  negatives, for CMF the loss); popularity has nothing to tune;
- the ADC backbone (stage 1): the first N learning rates of ``LR_GRID``, trained with
  ``equal`` weights; ``adc_equal`` is its best, and ``mlp_single`` gets the same N rates;
  ``adc_paper`` gets the same N rates in a sweep of its own;
- each other balancer (stage 2) on the stage-1 backbone: the first N values of its own
  knob (``KNOBS``): static weights, GradNorm's gamma, uncertainty's learning rate.

Final runs (every seed) of ADC variants go through ``adc_dist.train.launch.run`` in-process
(one worker: the sensible world size on a 2-core machine), with per-user test metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

BASELINE_METHODS = ("popularity", "bpr_mf", "cmf", "neumf", "dtcdr")
ADC_METHODS = ("mlp_single", "adc_equal", "adc_static", "adc_uncertainty", "adc_gradnorm", "adc_paper")
METHODS = BASELINE_METHODS + ADC_METHODS
BALANCER = {"mlp_single": "equal", "adc_equal": "equal", "adc_static": "static",
            "adc_uncertainty": "uncertainty", "adc_gradnorm": "gradnorm", "adc_paper": "gradnorm"}
# The ADC balancers the sparse-domain study runs (those among the chosen methods).
SPARSE_BALANCERS = ("adc_equal", "adc_static", "adc_gradnorm")
# The other methods the study runs, each on its main-study configuration; they need no ADC
# backbone, so a baseline run alone (e.g. --methods bpr_mf) has its sparse rows too.
SPARSE_KEEP = ("popularity", "bpr_mf", "cmf", "adc_paper")
SPARSE_METHODS = SPARSE_BALANCERS + SPARSE_KEEP
COLD_MAX_TRAIN_ITEMS = 3  # the cold-user slice: at most this many train items in the evaluated domain

KS = (10, 20)
METRIC = ("ndcg", 10)  # the validation metric every method is tuned on (mean over domains)

# Stage 1: learning rates of the ADC backbone, most promising first (budget N takes N).
LR_GRID = (1e-2, 3e-3, 3e-2, 1e-3, 5e-3, 2e-2, 5e-4, 2e-3)
GAMMAS = (1.5, 0.5, 3.0, 0.0, 1.0, 2.0, 0.25, 5.0)  # GradNorm's asymmetry; 1.5 is the paper's
UNCERTAINTY_LRS = (0.025, 0.01, 0.1, 0.0025, 0.05, 0.005, 0.25, 0.001)


def static_candidates(k: int) -> list[list[float]]:
    """Static weights for K domains: one domain up-weighted by 2, 4, 8, 16 (all-equal is adc_equal)."""
    out = []
    for factor in (2.0, 4.0, 8.0, 16.0):
        for j in range(k):
            out.append([factor if i == j else 1.0 for i in range(k)])
    return out


def knob_candidates(method: str, num_domains: int, n: int) -> tuple[str, list[Any]]:
    """(TrainConfig key, its first ``n`` values) that stage 2 searches for ``method``."""
    if method == "adc_static":
        return "static_weights", static_candidates(num_domains)[:n]
    if method == "adc_gradnorm":
        return "gamma", list(GAMMAS[:n])
    if method == "adc_uncertainty":
        return "balancer_lr", list(UNCERTAINTY_LRS[:n])
    raise ValueError(f"{method} has no stage-2 knob")


@dataclass
class FinalRun:
    """One method x seed on the test split: per-user metrics and (ADC) the per-epoch history."""

    per_user: pd.DataFrame  # user, domain, recall@10, recall@20, ndcg@10, ndcg@20
    history: pd.DataFrame  # long: epoch, domain, loss, weight, valid_ndcg10 (empty for baselines)
    best_epoch: float | None
    seconds: float
    # A tuning run (ADC): its validation NDCG@10, mean over domains at the best epoch -- what
    # the tuning chose on. The comparison reuses a tuning run as the final run of the same
    # config and seed (Comparison.tuned_key).
    valid: float | None = None


# ----------------------------------------------------------------------------- baselines
def load_study_task(task_name: str, seed: int, subsample: dict[str, Any] | None = None):
    """The split ``seed`` of a task, with a domain's train positives cut as the sparse study does
    (``subsample``: TrainConfig's subsample_domain / subsample_frac; the same cut as ADC's)."""
    from adc_dist.data import load_task
    from adc_dist.train.loop import subsample_train

    task = load_task(task_name, seed=seed)
    if subsample:
        task = subsample_train(task, subsample["subsample_domain"], subsample["subsample_frac"], seed)
    return task


def train_items(task_name: str, seed: int, subsample: dict[str, Any] | None = None) -> pd.DataFrame:
    """user, domain, train_items: each user's number of train positives per domain (the cold slice)."""
    import numpy as np

    task = load_study_task(task_name, seed, subsample)
    parts = []
    for dom, tr in zip(task.domains, task.train):
        users, counts = np.unique(tr.users, return_counts=True)
        parts.append(pd.DataFrame({"user": users, "domain": dom, "train_items": counts}))
    return pd.concat(parts, ignore_index=True)


def baseline_valid(name: str, task_name: str, params: dict[str, Any], seed: int = 0) -> float:
    """Validation NDCG@10 (mean over domains) of baseline ``name`` with ``params`` on split ``seed``."""
    from adc_dist.compare.baselines import fit_baseline
    from adc_dist.train.evaluate import evaluate

    task = load_study_task(task_name, seed)
    scorer = fit_baseline(name, task, params, seed=seed)
    return evaluate(scorer.score_fn, task, "valid", list(KS)).flat("valid")[_valid_key("mean")]


def baseline_final(name: str, task_name: str, params: dict[str, Any], seed: int,
                   subsample: dict[str, Any] | None = None) -> FinalRun:
    from adc_dist.compare.baselines import fit_baseline
    from adc_dist.train.evaluate import evaluate

    t0 = time.perf_counter()
    task = load_study_task(task_name, seed, subsample)
    scorer = fit_baseline(name, task, params, seed=seed)
    per_user = evaluate(scorer.score_fn, task, "test", list(KS), per_user=True).per_user
    return FinalRun(per_user, pd.DataFrame(), None, time.perf_counter() - t0)


# ----------------------------------------------------------------------------- ADC
def adc_final(cfg, run_root: Path, domains: tuple[str, ...], method: str) -> FinalRun:
    """Train ``cfg`` (a TrainConfig) in-process and test its best validated epoch.

    ``mlp_single`` trains one run per domain (``domains=[d]``) and joins their results.
    """
    t0 = time.perf_counter()
    runs = [_adc_run(cfg, run_root, doms) for doms in ([[d] for d in domains] if method == "mlp_single" else [None])]
    return FinalRun(pd.concat([r.per_user for r in runs], ignore_index=True),
                    pd.concat([long_history(r.history) for r in runs], ignore_index=True),
                    float(sum(r.final["best_epoch"] for r in runs)) / len(runs), time.perf_counter() - t0)


def adc_tuning_run(cfg, run_root: Path) -> FinalRun:
    """One ADC tuning run, in-process: its validation score (``valid``, what the tuning chooses
    on) and, exactly as a final run of the same config would give them, its per-user test
    metrics and history."""
    t0 = time.perf_counter()
    r = _adc_run(cfg, run_root, None)
    return FinalRun(r.per_user, long_history(r.history), float(r.final["best_epoch"]), time.perf_counter() - t0,
                    valid=float(r.final[f"best_{_valid_key('mean')}"]))


def _adc_run(cfg, run_root: Path, domains: list[str] | None):
    from adc_dist.train.launch import run

    c = cfg.replace(domains=domains, name=f"{cfg.name}{'-' + domains[0] if domains else ''}",
                    storage_path=str(run_root), num_workers=1)
    remove_tree(run_root / c.name)  # a run interrupted earlier starts afresh
    return run(c, local=True, quiet=True, per_user=True)


def long_history(history: pd.DataFrame) -> pd.DataFrame:
    """A run's per-epoch history (loss_<d>, weight_<d>, valid_ndcg10_<d> columns) in long form."""
    domains = [c[len("loss_"):] for c in history.columns if c.startswith("loss_")]
    key = _valid_key
    rows = []
    for d in domains:
        part = pd.DataFrame({"epoch": history["epoch"], "domain": d, "loss": history[f"loss_{d}"],
                             "weight": history[f"weight_{d}"]})
        part["valid_ndcg10"] = history[key(d)] if key(d) in history else float("nan")
        rows.append(part)
    return pd.concat(rows, ignore_index=True)


def tune_history(history: pd.DataFrame, domains: list[str]) -> pd.DataFrame:
    """A Tune trial's history (history.parquet rows, maps as dicts) in ``long_history``'s form."""
    def column(maps: pd.Series, key: str) -> list[float]:
        return [m.get(key, float("nan")) for m in maps]

    wide = {"epoch": history["epoch"].to_numpy()}
    for d in domains:  # a local run's wide columns, from the trial's per-domain maps
        wide |= {f"loss_{d}": column(history["loss"], d), f"weight_{d}": column(history["weight"], d),
                 _valid_key(d): column(history["valid"], _valid_key(d))}
    return long_history(pd.DataFrame(wide))


def _valid_key(domain: str) -> str:
    return f"valid_{METRIC[0]}{METRIC[1]}_{domain}"


def remove_tree(path: Path) -> None:
    """Delete a run or sweep directory left by an interrupted earlier attempt."""
    import shutil

    if path.exists():
        shutil.rmtree(path)
