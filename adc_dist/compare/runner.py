"""The comparison's work: tune every method, retrain the best configurations with seeds,
run the balancing study, and write the outputs (``Comparison``). Each finished unit is
cached, so an interrupted comparison continues where it stopped. The command line is
``adc_dist.compare.driver``.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from adc_dist.compare import methods as cm
from adc_dist.compare import unit_cache
from adc_dist.errors import AdcError

METRIC_COLUMNS = [f"{m}@{n}" for m in ("recall", "ndcg") for n in cm.KS]
# ADC settings fixed in every run of the comparison (--set overrides): training to
# convergence with early stopping. The model and its size (d, layers, batch, variant, loss,
# negatives) are TrainConfig's defaults, or the paper preset's for adc_paper: the comparison
# used to fix d 32 and batch 2048 for a 2-core budget, which halved the default model's
# Book NDCG@10 (0.25 against 0.56 at its own d 128; docs/compare.md). At most 60 epochs, as the
# MF baselines: a cap of 30 stopped ADC GradNorm still rising on four of the six tasks at budget 2
# (docs/compare.md, "Training ADC to convergence"); early stopping ends most runs long before.
ADC_FIXED: dict[str, Any] = {"epochs": 60, "eval_every": 1, "patience": 3,
                             "topk": list(cm.KS), "early_stop_metric": "ndcg@10"}
MF_FIXED: dict[str, Any] = {"epochs": 60, "eval_every": 5, "patience": 2, "batch_size": 4096}
SUBSAMPLE_FRAC = 0.1
# TrainConfig keys that say where a run lives, not what it trains: left out of the cache keys.
PLACE_KEYS = ("name", "storage_path", "data_root")


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
    main_finals: bool = True  # False (--sparse-only): the main study is tuned, not retrained on test
    quiet: bool = False
    command: str = ""
    sources: list[str] = field(default_factory=list)  # a merge's input commands (adc_dist.compare.merge)

    def record(self) -> dict[str, Any]:
        """What ``settings.json`` holds: the protocol of a comparison, enough to merge it later."""
        return {"command": self.command, "tasks": list(self.tasks), "methods": list(self.methods),
                "seeds": list(self.seeds), "budget": self.budget, "adc": self.adc, "mf": self.mf,
                "balancing": self.balancing, "main_finals": self.main_finals, "sources": list(self.sources)}


@dataclass
class Collected:
    rows: list[dict[str, Any]] = field(default_factory=list)
    per_user: list[pd.DataFrame] = field(default_factory=list)
    histories: list[pd.DataFrame] = field(default_factory=list)
    tuning: list[dict[str, Any]] = field(default_factory=list)


def _slug(task_name: str) -> str:
    """A task name as a sweep / run name (``file:x/y.csv`` -> ``file-x-y.csv``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", task_name).strip("-")


def _plain(v: Any) -> Any:
    """A trials.parquet value as the config had it: arrays as lists, NaN as None, numpy scalars as Python."""
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return v.item() if isinstance(v, np.generic) else v


def _call(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """A unit of work in a Ray worker: one thread (the units are small; threads spin on a busy box)."""
    import torch

    torch.set_num_threads(1)
    return fn(**kwargs)


def _digest(key: dict[str, Any]) -> str:
    """A stable hex name for a work unit's key (its cache file, its run directory)."""
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


# Modules that only present finished units (tables, tests, figures, merging): editing them
# changes no unit, so it does not invalidate the cache.
PRESENTATION = ("compare/driver.py", "compare/figures.py", "compare/merge.py", "compare/report.py",
                "compare/significance.py", "compare/table.py", "compare/targets.py")


PACKAGE = Path(__file__).resolve().parents[1]


def _code_only(source: bytes, name: str) -> bytes:
    """A module's syntax tree without its docstrings: what it computes, not how it is written
    up. Comments, docstrings, blank lines and line breaks leave it unchanged, so fixing a typo in
    a comment does not throw away a cache that took a day of CPU; every other edit (string
    constants such as --help texts included) changes it."""
    tree = ast.parse(source, filename=name)
    for node in ast.walk(tree):
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and ast.get_docstring(node, clean=False) is not None):
            node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


@functools.lru_cache(maxsize=None)
def code_fingerprint(root: Path = PACKAGE) -> str:
    """A hash of the adc_dist code that computes units (the package at ``root``). Part of every
    unit's key, so a unit computed by other code (an upgrade, a fix) is computed again rather
    than reported stale."""
    h = hashlib.sha1()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel not in PRESENTATION:
            h.update(rel.encode() + b"\0" + _code_only(path.read_bytes(), rel) + b"\0")
    return h.hexdigest()[:16]


class Comparison:
    def __init__(self, s: Settings):
        self.s = s
        self.t0 = time.time()
        self.out = Collected()
        self.reused = self.computed = 0  # work units read from the cache / computed now
        self.backbone_lr: dict[str, float] = {}  # task -> the stage-1 learning rate of the ADC backbone
        (s.work / "units").mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ helpers
    def log(self, line: str) -> None:
        if not self.s.quiet:
            e = int(time.time() - self.t0)
            print(f"[{e // 3600}:{e // 60 % 60:02d}:{e % 60:02d}] {line}", flush=True)

    def _unit(self, key: dict[str, Any]) -> Path:
        return self.s.work / "units" / _digest({**key, "code": code_fingerprint()})[:20]

    def _load(self, path: Path) -> Any:
        self.reused += 1
        return unit_cache.load(path)  # JSON and Parquet: a cache file cannot run code

    def _store(self, path: Path, value: Any) -> Any:
        self.computed += 1
        unit_cache.store(path, value)  # atomic: an interrupted run leaves no half unit
        return value

    def memo(self, key: dict[str, Any], compute: Callable[[], Any]) -> Any:
        """``compute()`` once per key; the value is kept under <work>/units (resumable runs)."""
        path = self._unit(key)
        return self._load(path) if unit_cache.is_cached(path) else self._store(path, compute())

    def start_ray(self) -> None:
        import ray

        if not ray.is_initialized():
            from adc_dist.inputs.paths import FORWARDED_ENV

            from adc_dist.train.ray_output import init_kwargs, start_ray

            env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
            start_ray(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False,
                     object_store_memory=200 * 2**20, runtime_env={"env_vars": env} if env else None,
                     **init_kwargs(verbose=False))

    def parallel(self, jobs: list[tuple[dict[str, Any], Callable[..., Any], dict[str, Any]]],
                 what: Callable[[dict[str, Any], Any], str] | None = None) -> list[Any]:
        """Run ``fn(**kwargs)`` for each (key, fn, kwargs) as one-CPU Ray tasks; memoised by key."""
        import ray

        from adc_dist.cli.progress import bar

        values: list[Any] = [None] * len(jobs)
        pending = {}
        remote = ray.remote(num_cpus=1, max_retries=0)(_call)
        for i, (key, fn, kwargs) in enumerate(jobs):
            path = self._unit(key)
            if unit_cache.is_cached(path):
                values[i] = self._load(path)
            else:
                self.start_ray()
                pending[remote.remote(fn, kwargs)] = (i, path)
        with bar(len(pending), "units", unit="unit", enabled=not self.s.quiet and bool(pending)) as progress:
            while pending:
                # With a timeout, so that Ctrl-C is handled within a second: a blocking
                # ray.wait holds a pending KeyboardInterrupt until a unit finishes.
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                if not ready:
                    continue
                i, path = pending.pop(ready[0])
                values[i] = self._store(path, ray.get(ready[0]))
                progress.update(1)
                if what:
                    self.log(f"    {what(jobs[i][0], values[i])} ({len(jobs) - len(pending)}/{len(jobs)})")
        return values

    def adc_cfg(self, **changes: Any):
        from adc_dist.config import from_mapping

        return from_mapping({**self.s.adc, **changes}, where="compare")

    def adc_key(self) -> dict[str, Any]:
        """Every ADC setting of this comparison, TrainConfig's defaults included, for the cache keys
        of ADC units: a changed default (zero_init, a learning rate) must not read an old unit."""
        from adc_dist.config import TrainConfig

        every = {**TrainConfig().to_dict(), **self.s.adc}  # not validated: --set alone may be incomplete
        return {k: v for k, v in every.items() if k not in PLACE_KEYS}

    def sweep(self, name: str, task: str, fixed: dict[str, Any], search: dict[str, list[Any]]) -> pd.DataFrame:
        """Run one Ray Tune grid sweep (adc_dist.tune) and return its trials (config + valid_score).
        Every trial is also kept as a tuned run (``tuned_key``), for the final run it repeats."""
        from adc_dist.tune.results import load_per_user, load_results
        from adc_dist.tune.search_space import parse_space
        from adc_dist.tune.driver import run_sweep

        def go() -> pd.DataFrame:
            storage = self.s.work / "sweeps"
            cm.remove_tree(storage / name)
            raw = {"description": f"adc_dist.compare {name}", "design": "grid", "fixed": fixed,
                   "search": {k: {"grid": v} for k, v in search.items()}, "tune": {"scheduler": "fifo"}}
            n = int(np.prod([len(v) for v in search.values()]))
            self.log(f"  tune sweep {name}: {n} trials ({', '.join(f'{k} in {v}' for k, v in search.items())})")
            self.start_ray()
            uri = run_sweep(parse_space(raw, where=f"compare sweep {name}"), [task], name=name,
                            storage=str(storage), scheduler="fifo", quiet=True, seed=0, bar=not self.s.quiet,
                            interrupt_raises=True, per_user=True)  # Tune swallows Ctrl-C; the comparison must stop
            res = load_results(uri)
            trials = res.trials
            bad = trials[trials["status"] != "ok"]
            if len(bad) or len(trials) != n:
                err = bad["error"].iloc[0] if len(bad) else f"{len(trials)} of {n} trials reported"
                raise AdcError(f"tune sweep {name} failed: {err}")
            for _, t in trials.iterrows():
                cfg = self.adc_cfg(**fixed, task=task, **{k: _plain(t[k]) for k in search})
                history = res.history[res.history["trial_id"] == t["trial_id"]].sort_values("epoch")
                self._store(self._unit(self.tuned_key(cfg)), cm.FinalRun(
                    load_per_user(uri, t["trial_id"]), cm.tune_history(history, list(t["task_domains"])),
                    float(t["best_epoch"]), float(t["wall_time_s"]), valid=float(t["valid_score"])))
            return trials[[*search, "valid_score", "best_epoch", "wall_time_s"]].copy()

        return self.memo({"sweep": name, "task": task, "fixed": fixed, "search": search, "adc": self.adc_key()}, go)

    def tuned_key(self, cfg) -> dict[str, Any]:
        """The cache key of the tuning run of ``cfg`` (a TrainConfig): its whole config but the run's
        name and place. A final run of the same config and seed trains exactly that run (same
        code, data, seed, one thread: in the cap-60 balancing run all 18 final runs had their
        tuning run's best validation NDCG@10 to the sixth digit), so ``finals`` takes its test
        metrics from it instead of training it again (with one seed, ~40 % of a task's time)."""
        return {"tuned_run": {k: v for k, v in cfg.to_dict().items() if k not in PLACE_KEYS}}

    def record_tuning(self, study: str, task: str, method: str, config: dict[str, Any], valid: float) -> None:
        self.out.tuning.append({"study": study, "task": task, "method": method, "config": json.dumps(config),
                                "valid_ndcg10": float(valid)})

    # ------------------------------------------------------------------ tuning
    def tune_task(self, task_name: str, task) -> dict[str, dict[str, Any]]:
        """The best configuration (overrides) of every method on ``task``'s seed-0 validation split."""
        from adc_dist.compare.baselines import sample_configs

        s, best = self.s, {}
        baselines = [m for m in s.methods if m in cm.BASELINE_METHODS]
        jobs, owner = [], []
        for m in baselines:
            configs = sample_configs(m, s.budget, seed=0)
            for c in configs:
                params = {**c, **(s.mf if m != "popularity" else {})}
                if len(configs) == 1:  # nothing to choose: no validation run
                    self.record_tuning("main", task_name, m, c, float("nan"))
                    best[m] = params
                    continue
                jobs.append(({"baseline_valid": m, "task": task_name, "params": params}, cm.baseline_valid,
                             {"name": m, "task_name": task_name, "params": params}))
                owner.append((m, c, params))
        shown = lambda key: {k: v for k, v in key["params"].items() if k not in s.mf}  # noqa: E731
        scores = self.parallel(jobs, lambda key, v: f"{key['baseline_valid']} {shown(key)}: valid ndcg@10 {v:.4f}")
        for m in [m for m in baselines if m not in best]:
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
        if len(lrs) == 1:  # one rate: nothing to choose, no sweep
            best_lr = lrs[0]
            self.record_tuning("main", task_name, "adc_equal", {"lr": best_lr}, float("nan"))
            if "mlp_single" in s.methods:
                self.record_tuning("main", task_name, "mlp_single", {"lr": best_lr}, float("nan"))
                best["mlp_single"] = {"lr": best_lr, "balancer": "equal"}
        else:
            doms = [None] + ([[d] for d in task.domains] if "mlp_single" in s.methods else [])
            t = self.sweep(f"{_slug(task_name)}-stage1", task_name, {**s.adc, "balancer": "equal", "seed": 0},
                           {"lr": lrs, "domains": doms})
            full = t[t["domains"].isna()].set_index("lr")["valid_score"]
            for lr, v in full.items():
                self.record_tuning("main", task_name, "adc_equal", {"lr": lr}, v)
            best_lr = float(full.idxmax())
            self.log(f"  adc_equal: best valid ndcg@10 {full.max():.4f} with lr={best_lr:g}")
        self.backbone_lr[task_name] = best_lr
        if "adc_equal" in s.methods:
            best["adc_equal"] = {"lr": best_lr, "balancer": "equal"}
        if "mlp_single" in s.methods and len(lrs) > 1:
            single = t[t["domains"].notna()].groupby("lr")["valid_score"].mean()
            for lr, v in single.items():
                self.record_tuning("main", task_name, "mlp_single", {"lr": lr}, v)
            best["mlp_single"] = {"lr": float(single.idxmax()), "balancer": "equal"}
            self.log(f"  mlp_single: best valid ndcg@10 {single.max():.4f} with lr={single.idxmax():g}")
        paper = {"balancer": "gradnorm", "preset": "paper"}
        if "adc_paper" in s.methods and len(lrs) == 1:
            self.record_tuning("main", task_name, "adc_paper", {"lr": lrs[0]}, float("nan"))
            best["adc_paper"] = {"lr": lrs[0], **paper}
        elif "adc_paper" in s.methods:  # the paper preset: its own learning rate, the same N rates
            t = self.sweep(f"{_slug(task_name)}-adc_paper", task_name,
                           {**s.adc, "preset": "paper", "balancer": "gradnorm", "seed": 0}, {"lr": lrs})
            scores = t.set_index("lr")["valid_score"]
            for lr, v in scores.items():
                self.record_tuning("main", task_name, "adc_paper", {"lr": lr}, v)
            best["adc_paper"] = {"lr": float(scores.idxmax()), **paper}
            self.log(f"  adc_paper: best valid ndcg@10 {scores.max():.4f} with lr={scores.idxmax():g}")
        # Stage 2: each balancer's own knob on that backbone.
        # (Not with --sparse-only: the sparse study re-tunes them on the cut task.)
        for m in [m for m in s.methods if m in ("adc_static", "adc_uncertainty", "adc_gradnorm") and s.main_finals]:
            best[m] = self.tune_knob("main", task_name, task.num_domains, m,
                                     {**s.adc, "lr": best_lr, "balancer": cm.BALANCER[m], "seed": 0})
        return best

    def tune_knob(self, study: str, task_name: str, num_domains: int, method: str,
                  fixed: dict[str, Any]) -> dict[str, Any]:
        key, values = cm.knob_candidates(method, num_domains, self.s.budget)
        suffix = "" if study == "main" else f"-{study}"
        if len(values) == 1:  # nothing to choose: no validation run
            self.record_tuning(study, task_name, method, {key: values[0]}, float("nan"))
            return {"lr": fixed["lr"], "balancer": fixed["balancer"], key: values[0]}
        name = f"{_slug(task_name)}-{method}{suffix}"
        if method == "adc_static":
            # Not through adc_dist.tune: a search space must be a valid TrainConfig with its
            # fixed keys alone, and balancer=static without static_weights is not. Same loop,
            # same metric, run as one-CPU Ray tasks.
            jobs = []
            for i, v in enumerate(values):
                cfg = self.adc_cfg(**fixed, task=task_name, **{key: v}, name=f"{name}-{i}")
                jobs.append((self.tuned_key(cfg), cm.adc_tuning_run,
                             {"cfg": cfg, "run_root": (self.s.work / "runs").resolve()}))
            self.log(f"  tuning {name}: {len(jobs)} runs ({key} in {values})")
            scores = [fr.valid for fr in self.parallel(jobs)]
        else:
            t = self.sweep(name, task_name, fixed, {key: values})
            values = [float(v) for v in t[key]]  # gamma, balancer_lr (static weights: above)
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
        jobs, tuned = [], []
        for m in sorted(best, key=lambda m: m not in cm.ADC_METHODS):
            for seed in self.s.seeds:
                key = {"final": m, "task": task_name, "seed": seed, "config": best[m], "extra": extra,
                       "adc": self.adc_key() if m in cm.ADC_METHODS else None,
                       "mf": self.s.mf if m in cm.BASELINE_METHODS else None}
                if m in cm.BASELINE_METHODS:
                    jobs.append((key, cm.baseline_final, {"name": m, "task_name": task_name, "params": best[m],
                                                          "seed": seed, "subsample": extra or None}))
                else:
                    run_name = f"{_slug(task_name)}-{m}-s{seed}-{_digest(key)[:8]}"
                    cfg = self.adc_cfg(task=task_name, seed=seed, name=run_name, **best[m], **extra)
                    path = self._unit(self.tuned_key(cfg))
                    if m != "mlp_single" and unit_cache.is_cached(path):  # mlp_single: one run per domain
                        tuned.append((key, self._load(path)))
                        continue
                    jobs.append((key, cm.adc_final, {"cfg": cfg, "run_root": (self.s.work / "runs").resolve(),
                                                     "domains": domains, "method": m}))

        def what(key: dict[str, Any], fr: cm.FinalRun) -> str:
            score = fr.per_user.groupby("domain")["ndcg@10"].mean().mean()
            return f"{key['final']} seed {key['seed']}: test ndcg@10 {score:.4f} in {fr.seconds:.0f}s"

        for key, fr in tuned:
            self.log(f"    {what(key, fr)}: its tuning run (same config and seed)")
        for key, fr in [*tuned, *zip([k for k, _, _ in jobs], self.parallel(jobs, what))]:
            self.collect(study, task_name, key["final"], key["seed"], best[key["final"]], fr, extra)

    def collect(self, study: str, task_name: str, method: str, seed: int, config: dict[str, Any],
                fr: cm.FinalRun, subsample: dict[str, Any] | None = None) -> None:
        ids = {"study": study, "task": task_name, "method": method, "seed": seed}
        # train_items: the user's train positives in the evaluated domain (the cold-user slice).
        counts = cm.train_items(task_name, seed, subsample or None)
        pu = fr.per_user.merge(counts, on=["user", "domain"], how="left").assign(**ids)
        pu["train_items"] = pu["train_items"].fillna(0).astype("int64")
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
        for i, task_name in enumerate(s.tasks, 1):
            task = load_task(task_name, seed=0)
            for seed in s.seeds:  # build every split's cache once, here, before the workers read it
                load_task(task_name, seed=seed)
            self.log(f"task {i}/{len(s.tasks)} {task_name} ({', '.join(task.domains)}): tuning "
                     f"{len(s.methods)} methods, budget {s.budget}")
            best = self.tune_task(task_name, task)
            if s.main_finals:
                self.log(f"task {i}/{len(s.tasks)} {task_name}: final runs, seeds {s.seeds}")
                self.finals("main", task_name, task.domains, best)
            if s.balancing:
                self.sparse_study(task_name, best)

    def sparse_study(self, task_name: str, main_best: dict[str, dict[str, Any]]) -> None:
        """The task with its smaller domain's train positives cut to 10 % (study sparse-<domain>-10pct).

        The balancers among the methods, on the default backbone: equal on the main study's
        learning rate, static and GradNorm re-tuned on the cut task's validation split.
        MostPop, BPR-MF, CMF and the paper preset keep their main-study configurations (the
        study asks where transfer pays).
        """
        from adc_dist.data import load_task

        task = load_task(task_name, seed=0)
        small = min(task.domains, key=lambda d: len(task.train[task.domains.index(d)]))
        sub = {"subsample_domain": small, "subsample_frac": SUBSAMPLE_FRAC}
        study = f"sparse-{small}-10pct"
        lr = self.backbone_lr.get(task_name)  # absent without ADC methods: no balancer to run
        self.log(f"sparse study: {task_name} with '{small}' cut to {SUBSAMPLE_FRAC:.0%} of its train positives")
        best = {"adc_equal": {"lr": lr, "balancer": "equal"}} if "adc_equal" in self.s.methods else {}
        for m in [m for m in ("adc_static", "adc_gradnorm") if m in self.s.methods]:
            best[m] = self.tune_knob(study, task_name, task.num_domains, m,
                                     {**self.s.adc, **sub, "lr": lr, "balancer": cm.BALANCER[m], "seed": 0})
        best.update({m: main_best[m] for m in cm.SPARSE_KEEP if m in main_best})
        self.finals(study, task_name, task.domains, best, extra=sub)

    # ------------------------------------------------------------------ outputs
    def write(self) -> None:
        from adc_dist.compare.report import write_outputs

        write_outputs(self.out, self.s, wall_s=time.time() - self.t0, reused=self.reused, computed=self.computed,
                      log=self.log)
