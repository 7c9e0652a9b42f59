"""ADC against baselines on the six tasks, with one command: ``python -m adc_dist.compare``.

    python -m adc_dist.compare --tasks six --seeds 3 --budget 4 --out results/
    python -m adc_dist.compare --quick                     # one task end to end in minutes (CI)
    python -m adc_dist.compare --tasks amazon-dvd-video --methods cmf,adc_equal,adc_gradnorm
    python -m adc_dist.compare ... --set d=100 --set batch_size=1024   # other ADC settings

Protocol (docs/compare.md):
1. Tune every method with the same validation budget N (``--budget``) on split seed 0:
   baselines in this process, the ADC variants through ``adc_dist.tune.run_sweep`` (Ray
   Tune, one in-process worker per trial). Candidates: ``adc_dist.comparison_methods``.
   Every method is selected on validation NDCG@10, mean over the task's domains.
2. Retrain each method's best configuration with seeds 0..S-1 (``--seeds``): seed s is
   both the split seed (``load_task(seed=s)``) and the model / sampling seed, identical
   for every method; test the best validated epoch, keep per-user metrics.
3. The balancing study: the first task with its last domain cut to 10 % of its train
   positives (TrainConfig.subsample_domain / subsample_frac); equal vs tuned static vs
   tuned GradNorm, tuned and retrained the same way.
4. Write under ``--out``: results.parquet (task x method x seed x domain, Recall/NDCG@10/20),
   per_user.parquet, tuning.parquet, histories.parquet, significance.parquet, results.md
   (tables, significance, tuned configurations) and the figures.

Everything finished is cached under ``<out>/tmp-work`` (ignored by git): a command that was
interrupted continues where it stopped when run again with the same arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import platform
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from adc_dist import comparison_methods as cm
from adc_dist.errors import AdcError, run_cli
from adc_dist.run_dir import write_bytes

METRIC_COLUMNS = [f"{m}@{n}" for m in ("recall", "ndcg") for n in cm.KS]
# ADC settings fixed in every run of the comparison (a 2-core CPU budget; --set overrides).
ADC_FIXED: dict[str, Any] = {"d": 32, "num_hidden_layers": 2, "hidden_shape": "halving", "negatives": 5,
                             "batch_size": 2048, "epochs": 15, "eval_every": 3, "patience": 2,
                             "topk": list(cm.KS), "early_stop_metric": "ndcg@10"}
MF_FIXED: dict[str, Any] = {"epochs": 60, "eval_every": 5, "patience": 2, "batch_size": 4096}
QUICK = {"tasks": "amazon-music-video", "budget": 2, "seeds": 2,
         "adc": {"d": 16, "epochs": 2, "eval_every": 1, "batch_size": 4096}, "mf": {"epochs": 4, "eval_every": 2}}
# TrainConfig keys the comparison itself sets per run: --set may not fix them.
NOT_SETTABLE = ("task", "seed", "lr", "balancer", "gamma", "balancer_lr", "static_weights", "domains",
                "subsample_domain", "subsample_frac", "name", "storage_path", "resume", "num_workers")
SUBSAMPLE_FRAC = 0.1


@dataclass
class Settings:
    tasks: list[str]
    methods: list[str]
    seeds: list[int]
    budget: int
    out: Path
    work: Path
    adc: dict[str, Any]
    mf: dict[str, Any]
    balancing: bool = True
    quiet: bool = False
    command: str = ""


@dataclass
class Collected:
    rows: list[dict[str, Any]] = field(default_factory=list)
    per_user: list[pd.DataFrame] = field(default_factory=list)
    histories: list[pd.DataFrame] = field(default_factory=list)
    tuning: list[dict[str, Any]] = field(default_factory=list)


def _slug(task_name: str) -> str:
    """A task name as a sweep / run name (``file:x/y.csv`` -> ``file-x-y.csv``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", task_name).strip("-")


def _call(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """A unit of work in a Ray worker: one thread (the units are small; threads spin on a busy box)."""
    import torch

    torch.set_num_threads(1)
    return fn(**kwargs)


def _digest(key: dict[str, Any]) -> str:
    """A stable hex name for a work unit's key (its cache file, its run directory)."""
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


class Comparison:
    def __init__(self, s: Settings):
        self.s = s
        self.t0 = time.time()
        self.out = Collected()
        self.reused = self.computed = 0  # work units read from the cache / computed now
        (s.work / "units").mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ helpers
    def log(self, line: str) -> None:
        if not self.s.quiet:
            e = int(time.time() - self.t0)
            print(f"[{e // 3600}:{e // 60 % 60:02d}:{e % 60:02d}] {line}", flush=True)

    def _unit(self, key: dict[str, Any]) -> Path:
        return self.s.work / "units" / f"{_digest(key)[:20]}.pkl"

    def _load(self, path: Path) -> Any:
        self.reused += 1
        return pickle.loads(path.read_bytes())

    def _store(self, path: Path, value: Any) -> Any:
        self.computed += 1
        write_bytes(str(path), pickle.dumps(value))  # atomic: an interrupted run leaves no half unit
        return value

    def memo(self, key: dict[str, Any], compute: Callable[[], Any]) -> Any:
        """``compute()`` once per key; the value is kept under <work>/units (resumable runs)."""
        path = self._unit(key)
        return self._load(path) if path.is_file() else self._store(path, compute())

    def start_ray(self) -> None:
        import ray

        if not ray.is_initialized():
            from adc_dist.tune import FORWARDED_ENV

            env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
            ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False,
                     object_store_memory=200 * 2**20, runtime_env={"env_vars": env} if env else None)

    def parallel(self, jobs: list[tuple[dict[str, Any], Callable[..., Any], dict[str, Any]]],
                 what: Callable[[dict[str, Any], Any], str] | None = None) -> list[Any]:
        """Run ``fn(**kwargs)`` for each (key, fn, kwargs) as one-CPU Ray tasks; memoised by key."""
        import ray

        values: list[Any] = [None] * len(jobs)
        pending = {}
        remote = ray.remote(num_cpus=1, max_retries=0)(_call)
        for i, (key, fn, kwargs) in enumerate(jobs):
            path = self._unit(key)
            if path.is_file():
                values[i] = self._load(path)
            else:
                self.start_ray()
                pending[remote.remote(fn, kwargs)] = (i, path)
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            i, path = pending.pop(ref)
            values[i] = self._store(path, ray.get(ref))
            if what:
                self.log(f"    {what(jobs[i][0], values[i])} ({len(jobs) - len(pending)}/{len(jobs)})")
        return values

    def adc_cfg(self, **changes: Any):
        from adc_dist.config import from_mapping

        return from_mapping({**self.s.adc, **changes}, where="compare")

    def sweep(self, name: str, task: str, fixed: dict[str, Any], search: dict[str, list[Any]]) -> pd.DataFrame:
        """Run one Ray Tune grid sweep (adc_dist.tune) and return its trials (config + valid_score)."""
        from adc_dist.results import load_results
        from adc_dist.search_space import parse_space
        from adc_dist.tune import run_sweep

        def go() -> pd.DataFrame:
            storage = self.s.work / "sweeps"
            cm.remove_tree(storage / name)
            raw = {"description": f"adc_dist.compare {name}", "design": "grid", "fixed": fixed,
                   "search": {k: {"grid": v} for k, v in search.items()}, "tune": {"scheduler": "fifo"}}
            n = int(np.prod([len(v) for v in search.values()]))
            self.log(f"  tune sweep {name}: {n} trials ({', '.join(f'{k} in {v}' for k, v in search.items())})")
            self.start_ray()
            uri = run_sweep(parse_space(raw, where=f"compare sweep {name}"), [task], name=name,
                            storage=str(storage), scheduler="fifo", quiet=True, seed=0)
            trials = load_results(uri).trials
            bad = trials[trials["status"] != "ok"]
            if len(bad) or len(trials) != n:
                err = bad["error"].iloc[0] if len(bad) else f"{len(trials)} of {n} trials reported"
                raise AdcError(f"tune sweep {name} failed: {err}")
            return trials[[*search, "valid_score", "best_epoch", "wall_time_s"]].copy()

        return self.memo({"sweep": name, "task": task, "fixed": fixed, "search": search}, go)

    def record_tuning(self, study: str, task: str, method: str, config: dict[str, Any], valid: float) -> None:
        self.out.tuning.append({"study": study, "task": task, "method": method, "config": json.dumps(config),
                                "valid_ndcg10": float(valid)})

    # ------------------------------------------------------------------ tuning
    def tune_task(self, task_name: str, task) -> dict[str, dict[str, Any]]:
        """The best configuration (overrides) of every method on ``task``'s seed-0 validation split."""
        from adc_dist.baselines import sample_configs

        s, best = self.s, {}
        baselines = [m for m in s.methods if m in cm.BASELINE_METHODS]
        jobs, owner = [], []
        for m in baselines:
            for c in sample_configs(m, s.budget, seed=0):
                params = {**c, **(s.mf if m != "popularity" else {})}
                jobs.append(({"baseline_valid": m, "task": task_name, "params": params}, cm.baseline_valid,
                             {"name": m, "task_name": task_name, "params": params}))
                owner.append((m, c, params))
        shown = lambda key: {k: v for k, v in key["params"].items() if k not in s.mf}  # noqa: E731
        scores = self.parallel(jobs, lambda key, v: f"{key['baseline_valid']} {shown(key)}: valid ndcg@10 {v:.4f}")
        for m in baselines:
            scored = [(v, c, params) for v, (mm, c, params) in zip(scores, owner) if mm == m]
            for v, c, _ in scored:
                self.record_tuning("main", task_name, m, c, v)
            v, c, best[m] = max(scored, key=lambda x: x[0])
            self.log(f"  {m}: best valid ndcg@10 {v:.4f} with {c}")

        if not any(m in cm.ADC_METHODS for m in s.methods):
            return best
        # Stage 1: the backbone's learning rate with equal weights (full task) and, on the same
        # rates, the single-domain MLP (one run per domain).
        lrs = list(cm.LR_GRID[: s.budget])
        doms = [None] + ([[d] for d in task.domains] if "mlp_single" in s.methods else [])
        t = self.sweep(f"{_slug(task_name)}-stage1", task_name, {**s.adc, "balancer": "equal", "seed": 0},
                       {"lr": lrs, "domains": doms})
        full = t[t["domains"].isna()].set_index("lr")["valid_score"]
        for lr, v in full.items():
            self.record_tuning("main", task_name, "adc_equal", {"lr": lr}, v)
        best_lr = float(full.idxmax())
        best["adc_equal"] = {"lr": best_lr, "balancer": "equal"}
        self.log(f"  adc_equal: best valid ndcg@10 {full.max():.4f} with lr={best_lr:g}")
        if "mlp_single" in s.methods:
            single = t[t["domains"].notna()].groupby("lr")["valid_score"].mean()
            for lr, v in single.items():
                self.record_tuning("main", task_name, "mlp_single", {"lr": lr}, v)
            best["mlp_single"] = {"lr": float(single.idxmax()), "balancer": "equal"}
            self.log(f"  mlp_single: best valid ndcg@10 {single.max():.4f} with lr={single.idxmax():g}")
        # Stage 2: each balancer's own knob on that backbone.
        for m in [m for m in s.methods if m in ("adc_static", "adc_uncertainty", "adc_gradnorm")]:
            best[m] = self.tune_knob("main", task_name, task.num_domains, m,
                                     {**s.adc, "lr": best_lr, "balancer": cm.BALANCER[m], "seed": 0})
        return best

    def tune_knob(self, study: str, task_name: str, num_domains: int, method: str,
                  fixed: dict[str, Any]) -> dict[str, Any]:
        key, values = cm.knob_candidates(method, num_domains, self.s.budget)
        suffix = "" if study == "main" else f"-{study}"
        name = f"{_slug(task_name)}-{method}{suffix}"
        if method == "adc_static":
            # Not through adc_dist.tune: a search space must be a valid TrainConfig with its
            # fixed keys alone, and balancer=static without static_weights is not. Same loop,
            # same metric, run as one-CPU Ray tasks.
            jobs = []
            for i, v in enumerate(values):
                cfg = self.adc_cfg(**fixed, task=task_name, **{key: v}, name=f"{name}-{i}")
                jobs.append(({"static": name, "cfg": cfg.to_dict()}, cm.adc_valid,
                             {"cfg": cfg, "run_root": (self.s.work / "runs").resolve()}))
            self.log(f"  tuning {name}: {len(jobs)} runs ({key} in {values})")
            scores = self.parallel(jobs)
        else:
            t = self.sweep(name, task_name, fixed, {key: values})
            values = [[float(x) for x in v] if key == "static_weights" else float(v) for v in t[key]]
            scores = list(t["valid_score"])
        for v, value in zip(scores, values):
            self.record_tuning(study, task_name, method, {key: value}, v)
        v, value = max(zip(scores, values), key=lambda x: x[0])
        self.log(f"  {method}{suffix}: best valid ndcg@10 {v:.4f} with {key}={value}")
        return {"lr": fixed["lr"], "balancer": fixed["balancer"], key: value}

    # ------------------------------------------------------------------ final runs
    def finals(self, study: str, task_name: str, domains: tuple[str, ...], best: dict[str, dict[str, Any]],
               extra: dict[str, Any] | None = None) -> None:
        """Every method's tuned config with every seed, tested; ADC runs first (the longest)."""
        extra = extra or {}
        jobs = []
        for m in sorted(best, key=lambda m: m not in cm.ADC_METHODS):
            for seed in self.s.seeds:
                key = {"final": m, "task": task_name, "seed": seed, "config": best[m], "extra": extra,
                       "adc": self.s.adc if m in cm.ADC_METHODS else None,
                       "mf": self.s.mf if m in cm.BASELINE_METHODS else None}
                if m in cm.BASELINE_METHODS:
                    jobs.append((key, cm.baseline_final,
                                 {"name": m, "task_name": task_name, "params": best[m], "seed": seed}))
                else:
                    run_name = f"{_slug(task_name)}-{m}-s{seed}-{_digest(key)[:8]}"
                    cfg = self.adc_cfg(task=task_name, seed=seed, name=run_name, **best[m], **extra)
                    jobs.append((key, cm.adc_final, {"cfg": cfg, "run_root": (self.s.work / "runs").resolve(),
                                                     "domains": domains, "method": m}))

        def what(key: dict[str, Any], fr: cm.FinalRun) -> str:
            score = fr.per_user.groupby("domain")["ndcg@10"].mean().mean()
            return f"{key['final']} seed {key['seed']}: test ndcg@10 {score:.4f} in {fr.seconds:.0f}s"

        for (key, _, _), fr in zip(jobs, self.parallel(jobs, what)):
            self.collect(study, task_name, key["final"], key["seed"], best[key["final"]], fr)

    def collect(self, study: str, task_name: str, method: str, seed: int, config: dict[str, Any],
                fr: cm.FinalRun) -> None:
        ids = {"study": study, "task": task_name, "method": method, "seed": seed}
        pu = fr.per_user.assign(**ids)
        self.out.per_user.append(pu)
        if len(fr.history):
            self.out.histories.append(fr.history.assign(**ids))
        g = pu.groupby("domain", sort=False)
        for dom, means in g[METRIC_COLUMNS].mean().iterrows():
            self.out.rows.append({**ids, "domain": dom, **means.to_dict(), "n_users": int(g.size()[dom]),
                                  "config": json.dumps(config), "best_epoch": fr.best_epoch,
                                  "seconds": fr.seconds})

    # ------------------------------------------------------------------ the whole thing
    def run(self) -> None:
        from adc_dist.data import load_task

        s = self.s
        best_lr: dict[str, float] = {}
        for i, task_name in enumerate(s.tasks, 1):
            task = load_task(task_name, seed=0)
            for seed in s.seeds:  # build every split's cache once, here, before the workers read it
                load_task(task_name, seed=seed)
            self.log(f"task {i}/{len(s.tasks)} {task_name} ({', '.join(task.domains)}): tuning "
                     f"{len(s.methods)} methods, budget {s.budget}")
            best = self.tune_task(task_name, task)
            if "adc_equal" in best:
                best_lr[task_name] = best["adc_equal"]["lr"]
            self.log(f"task {i}/{len(s.tasks)} {task_name}: final runs, seeds {s.seeds}")
            self.finals("main", task_name, task.domains, best)
        if s.balancing and s.tasks[0] in best_lr:
            self.balancing_study(s.tasks[0], best_lr[s.tasks[0]])

    def balancing_study(self, task_name: str, lr: float) -> None:
        from adc_dist.data import load_task

        task = load_task(task_name, seed=0)
        small = task.domains[-1]
        sub = {"subsample_domain": small, "subsample_frac": SUBSAMPLE_FRAC}
        study = f"{small}-10pct"
        self.log(f"balancing study: {task_name} with '{small}' cut to {SUBSAMPLE_FRAC:.0%} of its train positives")
        best = {"adc_equal": {"lr": lr, "balancer": "equal"}}
        for m in ("adc_static", "adc_gradnorm"):
            best[m] = self.tune_knob(study, task_name, task.num_domains, m,
                                     {**self.s.adc, **sub, "lr": lr, "balancer": cm.BALANCER[m], "seed": 0})
        self.finals(study, task_name, task.domains, best, extra=sub)

    # ------------------------------------------------------------------ outputs
    def write(self) -> None:
        from adc_dist.comparison_report import write_outputs

        write_outputs(self.out, self.s, wall_s=time.time() - self.t0, reused=self.reused, computed=self.computed,
                      log=self.log)


# ---------------------------------------------------------------------------- CLI
class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # bad flags: one AdcError line (exit 2), not argparse's usage dump
        raise AdcError(f"{message} (see python -m adc_dist.compare --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m adc_dist.compare", description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1],
                allow_abbrev=False)
    p.add_argument("--tasks", help="'six' (default), 'all' or task names a,b")
    p.add_argument("--seeds", type=int, help="final runs per method: seeds 0..S-1 (default 3)")
    p.add_argument("--budget", type=int, help="configurations tried per method on validation (default 4)")
    p.add_argument("--out", default="results", help="output folder (default results/)")
    p.add_argument("--quick", action="store_true",
                   help=f"CI mode: one task ({QUICK['tasks']} unless --tasks), budget {QUICK['budget']}, "
                        f"{QUICK['seeds']} seeds, tiny models")
    p.add_argument("--methods", default="all", help=f"comma list of {', '.join(cm.METHODS)} (default all)")
    p.add_argument("--epochs", type=int, help=f"ADC's maximum epochs (default {ADC_FIXED['epochs']})")
    p.add_argument("--no-balancing-study", action="store_true", help="skip the subsampled-domain study")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="set_values", default=[],
                   help="fix another ADC TrainConfig field in every run, e.g. --set d=100 (repeatable)")
    p.add_argument("--work", help="cache of finished units (default <out>/tmp-work)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def settings_from_args(args: argparse.Namespace, argv: Sequence[str]) -> Settings:
    from adc_dist.config import FIELD_NAMES, coerce, from_mapping, unknown_key_error
    from adc_dist.data import resolve_tasks

    tasks = resolve_tasks(args.tasks or (QUICK["tasks"] if args.quick else "six"))
    if args.quick:
        tasks = tasks[:1]
    seeds = args.seeds if args.seeds is not None else (QUICK["seeds"] if args.quick else 3)
    budget = args.budget if args.budget is not None else (QUICK["budget"] if args.quick else 4)
    if seeds < 1:
        raise AdcError(f"--seeds must be >= 1 (got {seeds})")
    if not 1 <= budget <= len(cm.LR_GRID):
        raise AdcError(f"--budget must be between 1 and {len(cm.LR_GRID)} (got {budget})")
    methods = list(cm.METHODS) if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in cm.METHODS]
    if unknown or not methods:
        raise AdcError(f"--methods: unknown method {unknown[0] if unknown else '(none)'!r}; "
                       f"choose from {', '.join(cm.METHODS)}")
    adc = {**ADC_FIXED, **(QUICK["adc"] if args.quick else {})}
    if args.epochs is not None:
        adc["epochs"] = args.epochs
    for item in args.set_values:
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq:
            raise AdcError(f"--set expects KEY=VALUE (got {item!r})")
        if key not in FIELD_NAMES:
            raise unknown_key_error(key, "--set")
        if key in NOT_SETTABLE:
            raise AdcError(f"--set {key}: the comparison sets {key!r} itself")
        adc[key] = coerce(key, value)
    from_mapping(adc, where="compare settings")  # validate now, before any work
    out = Path(args.out)
    return Settings(tasks=tasks, methods=[m for m in cm.METHODS if m in methods], seeds=list(range(seeds)),
                    budget=budget, out=out, work=Path(args.work) if args.work else out / "tmp-work", adc=adc,
                    mf={**MF_FIXED, **(QUICK["mf"] if args.quick else {})},
                    balancing=not args.no_balancing_study and all(
                        m in methods for m in ("adc_equal", "adc_static", "adc_gradnorm")),
                    quiet=args.quiet, command=" ".join(["python -m adc_dist.compare", *map(shlex.quote, argv)]))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    s = settings_from_args(build_parser().parse_args(argv), argv)
    c = Comparison(s)
    c.log(f"compare: {len(s.tasks)} task(s), methods {', '.join(s.methods)}, budget {s.budget}, seeds {s.seeds}; "
          f"{platform.node()} ({os.cpu_count()} CPUs); cache {s.work}")
    try:
        c.run()
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    c.write()
    return 0


if __name__ == "__main__":
    run_cli(main)
