"""Sweep ADC's hyper-parameters with Ray Tune: ``python -m adc_dist.tune``.

    python -m adc_dist.tune --space tune_spaces/paper.yaml --tasks six
    python -m adc_dist.tune --space tune_spaces/random.yaml --tasks amazon-book-music \
        --num-samples 32 --scheduler asha --max-concurrent 8 --time-budget-s 7200 --seed 1
    python -m adc_dist.tune --space tune_spaces/smoke.yaml --tasks six --set epochs=1 --dry-run
    python -m adc_dist.tune --name paper-20260101-120000 --resume    # after the driver died
    ray job submit --working-dir . -- python -m adc_dist.tune --space tune_spaces/paper_grid.yaml \
        --tasks six --gpus-per-worker 0.25 --storage s3://bucket/sweeps
    python -m adc_dist.report sweeps/<name>                          # best configs + figures

Everything (space, tasks, data, resources, storage) is checked before Ray starts. Each
trial trains through ``adc_dist.trial.run_trial`` (the loop of ``adc_dist.train``); the
results land in ``<storage>/<name>/{trials,trial_metrics,history}.parquet`` (docs/tune.md).
This module is the Ray edge and the command line; the logic lives in search_space,
results, trial and tune_hooks.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from adc_dist.errors import AdcError, run_cli
from adc_dist.results import TRIALS_FILE, Storage, open_storage
from adc_dist.search_space import SearchSpace, load_space, parse_space

SWEEP_FILE = "sweep.json"
SPACE_FILE = "space.yaml"
FORWARDED_ENV = ("ADC_DATA_ROOT", "ADC_CACHE_DIR", "ADC_DATA_MIRROR")


@dataclass
class SweepPlan:
    """Everything a sweep needs, resolved and validated (no Ray yet)."""

    name: str
    space: SearchSpace
    tasks: list[str]
    results: Storage  # <storage>/<name>
    experiment: str  # Tune experiment under <results>/tune/
    resume: bool
    num_samples: int
    scheduler: str
    grace_period: int
    reduction_factor: float
    max_concurrent: int | None
    time_budget_s: float | None
    seed: int
    resources: dict[str, float] = field(default_factory=dict)  # of one trial (the Tune function)
    num_workers: int = 1
    checkpoint_every: int = 1
    keep_checkpoints: bool = False
    retry_errored: bool = False

    @property
    def trials(self) -> int:
        return self.space.trials_per_task(self.num_samples) * len(self.tasks)

    def describe(self) -> str:
        per = self.space.trials_per_task(self.num_samples)
        sched = (f"asha per task (grace {self.grace_period}, reduction {self.reduction_factor:g})"
                 if self.scheduler == "asha" else "fifo (every trial to the end)")
        res = ", ".join(f"{v:g} {k}" for k, v in self.resources.items())
        workers = (f"{self.num_workers} Ray Train workers" if self.num_workers > 1 else "in-process")
        return "\n".join([
            f"sweep {self.name}{' (resumed)' if self.resume else ''}",
            self.space.summary(),
            f"tasks ({len(self.tasks)}): {', '.join(self.tasks)}",
            f"trials: {per} per task x {len(self.tasks)} = {self.trials}; {sched}; seed {self.seed}"
            + (f"; at most {self.max_concurrent} at once" if self.max_concurrent else "")
            + (f"; time budget {self.time_budget_s:g}s" if self.time_budget_s else ""),
            f"each trial: {workers}, {res}",
            f"results: {self.results.uri}",
        ])


# ---------------------------------------------------------------------------- planning
def _parse_set(items: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise AdcError(f"--set expects KEY=VALUE (got {item!r})")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value) if value else None
    return out


def plan_sweep(space: str | os.PathLike | SearchSpace | None = None, tasks: str | Sequence[str] | None = None, *,
               name: str | None = None, storage: str = "sweeps", resume: bool = False, extend: bool = False,
               num_samples: int | None = None, scheduler: str | None = None, grace_period: int | None = None,
               reduction_factor: float | None = None, max_concurrent: int | None = None,
               time_budget_s: float | None = None, seed: int = 0, num_workers: int | None = None,
               cpus_per_worker: float | None = None, gpus_per_worker: float | None = None,
               set_values: dict[str, Any] | None = None, checkpoint_every: int = 1,
               keep_checkpoints: bool = False, retry_errored: bool = False,
               prepare_data: bool = True, check_local_resources: bool = True) -> SweepPlan:
    """Validate a sweep completely before Ray starts; raise AdcError on the first problem."""
    from adc_dist.data import resolve_tasks

    if resume and extend:
        raise AdcError("--resume continues the last run of a sweep, --extend adds a new one: choose one")
    if (resume or extend) and not name:
        raise AdcError(f"--{'resume' if resume else 'extend'} needs the --name of the sweep")
    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise AdcError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
    for flag, v, lo in (("--num-samples", num_samples, 1), ("--max-concurrent", max_concurrent, 1),
                        ("--grace-period", grace_period, 1), ("--num-workers", num_workers, 1)):
        if v is not None and v < lo:
            raise AdcError(f"{flag} must be >= {lo} (got {v})")
    if time_budget_s is not None and time_budget_s <= 0:
        raise AdcError(f"--time-budget-s must be > 0 (got {time_budget_s})")
    if reduction_factor is not None and reduction_factor <= 1:
        raise AdcError(f"--reduction-factor must be > 1 (got {reduction_factor})")
    if checkpoint_every < 0:
        raise AdcError(f"--checkpoint-every must be >= 0 (got {checkpoint_every})")
    if retry_errored and not resume:
        raise AdcError("--retry-errored goes with --resume")

    root = open_storage(storage)
    saved: dict[str, Any] = {}
    if name is None:
        if space is None:
            raise AdcError("give --space FILE (a search space, see tune_spaces/)")
        stem = space.name if isinstance(space, SearchSpace) else Path(space).stem
        name = f"{stem}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    results = root.child(name)
    try:
        exists = results.exists(SWEEP_FILE)
    except OSError as e:
        raise AdcError(f"cannot reach the storage {root.uri}: {e}") from None
    if exists:
        saved = json.loads(results.read_bytes(SWEEP_FILE))
    if resume or extend:
        if not exists:
            raise AdcError(f"--{'resume' if resume else 'extend'}: there is no sweep {name!r} in {root.uri} "
                           f"(no {SWEEP_FILE}); check --name and --storage")
    elif exists:
        raise AdcError(f"sweep {name!r} already exists in {root.uri}: --resume continues it, --extend adds "
                       f"trials to it, or choose another --name")

    overrides = dict(set_values or {})
    if resume:
        # A resumed sweep is the sweep that was started: same space, tasks and settings.
        if overrides:
            raise AdcError("--resume continues the sweep as it was started: --set is not allowed (use --extend)")
        given = {"--space": space, "--tasks": tasks}
        clash = [k for k, v in given.items() if v is not None and not _same(k, v, saved)]
        if clash:
            raise AdcError(f"--resume continues sweep {name!r} as it was started; {', '.join(clash)} differ "
                           f"from it (use --extend to add trials with other settings)")
        overrides = dict(saved["set"])
        sp = parse_space(yaml.safe_load(results.read_bytes(SPACE_FILE)), where=f"{results.uri}/{SPACE_FILE}",
                         overrides=overrides)
        task_list = list(saved["tasks"])
        a = saved["args"]
        num_samples, scheduler, grace_period = a["num_samples"], a["scheduler"], a["grace_period"]
        reduction_factor, seed = a["reduction_factor"], a["seed"]
        for flag, given, kept in (("--max-concurrent", max_concurrent, a["max_concurrent"]),
                                  ("--time-budget-s", time_budget_s, a["time_budget_s"])):
            if given is not None and given != kept:
                raise AdcError(f"--resume keeps the sweep's {flag} ({kept}): Tune restores it with the sweep")
        max_concurrent, time_budget_s = a["max_concurrent"], a["time_budget_s"]
        num_workers, cpus_per_worker, gpus_per_worker = a["num_workers"], a["cpus_per_worker"], a["gpus_per_worker"]
        checkpoint_every = a["checkpoint_every"]
        experiment = saved["experiments"][-1]
    else:
        if space is None:
            raise AdcError("give --space FILE (a search space, see tune_spaces/)")
        if isinstance(space, SearchSpace):
            sp = parse_space(_raw_of(space), where=space.path, overrides=overrides)
        else:
            sp = load_space(space, overrides=overrides)
        task_list = list(tasks) if isinstance(tasks, (list, tuple)) else resolve_tasks(tasks or "six")
        if not task_list:
            raise AdcError("--tasks names no task")
        experiment = f"run-{len(saved.get('experiments', [])) + 1}"

    t = sp.tune
    num_samples = num_samples or t.get("num_samples", 1)
    scheduler = scheduler or t.get("scheduler", "asha")
    if scheduler not in ("asha", "fifo"):
        raise AdcError(f"--scheduler must be asha or fifo (got {scheduler!r})")
    grace_period = grace_period or t.get("grace_period", 1)
    reduction_factor = reduction_factor or t.get("reduction_factor", 3.0)
    max_concurrent = max_concurrent or t.get("max_concurrent")
    time_budget_s = time_budget_s or t.get("time_budget_s")

    # Resources: CLI flag > the space's fixed value > one CPU worker.
    base = sp.base_config()
    nw = num_workers or (base.num_workers if base.num_workers else 1)
    cpw = cpus_per_worker if cpus_per_worker is not None else base.cpus_per_worker
    gpw = gpus_per_worker if gpus_per_worker is not None else (1.0 if base.use_gpu else 0.0)
    if cpw <= 0 or gpw < 0:
        raise AdcError("--cpus-per-worker must be > 0 and --gpus-per-worker >= 0")
    if nw > 1 and gpw not in (0.0, 1.0):
        raise AdcError(f"--gpus-per-worker {gpw:g} with --num-workers {nw}: a Ray Train worker takes a whole "
                       f"GPU; fractional GPUs are for one-worker trials (--num-workers 1)")
    # A one-worker trial trains in the Tune trial's process, which holds the resources; an
    # N-worker trial's process only waits on its TorchTrainer, whose workers hold them.
    resources = {"cpu": cpw, "gpu": gpw} if nw == 1 else {"cpu": 0.01}
    resources = {k: v for k, v in resources.items() if v}
    if check_local_resources and not os.environ.get("RAY_ADDRESS"):
        _check_local_resources(nw, cpw, gpw)
    sp = parse_space(_raw_of(sp), where=sp.path,
                     overrides={"num_workers": nw, "cpus_per_worker": cpw, "use_gpu": gpw > 0})

    if prepare_data:
        _prepare_tasks(sp, task_list)
    return SweepPlan(name=name, space=sp, tasks=task_list, results=results, experiment=experiment, resume=resume,
                     num_samples=int(num_samples), scheduler=scheduler, grace_period=int(grace_period),
                     reduction_factor=float(reduction_factor), max_concurrent=max_concurrent,
                     time_budget_s=time_budget_s, seed=seed, resources=resources, num_workers=nw,
                     checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints,
                     retry_errored=retry_errored)


def _same(flag: str, value: Any, saved: dict[str, Any]) -> bool:
    if flag == "--tasks":
        from adc_dist.data import resolve_tasks

        got = list(value) if isinstance(value, (list, tuple)) else resolve_tasks(value)
        return got == saved["tasks"]
    path = value.path if isinstance(value, SearchSpace) else str(value)
    return Path(path).resolve() == Path(saved["space_file"]).resolve()


def _raw_of(space: SearchSpace) -> dict[str, Any]:
    """The YAML mapping of a parsed space (to re-parse it with more fixed keys)."""
    return {
        "description": space.description, "design": space.design, "fixed": dict(space.fixed),
        "search": {k: {d.kind: list(d.args)} for k, d in space.search.items()}, "tune": dict(space.tune),
    }


def _check_local_resources(nw: int, cpw: float, gpw: float) -> None:
    import torch

    cpus = os.cpu_count() or 1
    own = 0.01 if nw > 1 else 0.0  # an N-worker trial's own process holds 0.01 CPU besides its workers
    need = nw * cpw + own
    if need > cpus + 1e-9:
        fit = (cpus - own) / nw
        raise AdcError(f"one trial asks for {nw} worker(s) x {cpw:g} CPUs{' + 0.01 for the trial' if own else ''}"
                       f" = {need:g} CPUs; this machine has {cpus}: it would wait forever. Use fewer workers or "
                       f"--cpus-per-worker {math.floor(fit * 100) / 100:g}")
    if gpw and not torch.cuda.is_available():
        raise AdcError(f"--gpus-per-worker {gpw:g}: no CUDA GPU is visible here; drop it to run on CPU, or "
                       f"submit to a GPU cluster (RAY_ADDRESS / ray job submit)")
    if gpw and nw * gpw > torch.cuda.device_count():
        raise AdcError(f"one trial asks for {nw * gpw:g} GPUs; this machine has {torch.cuda.device_count()}")


def _prepare_tasks(space: SearchSpace, tasks: list[str]) -> None:
    """Load (and cache) every task's split once here: bad data stops the sweep before Ray starts."""
    from adc_dist.loop import prepare_task

    base = space.base_config()
    seeds = space.search["seed"].values if "seed" in space.search and space.search["seed"].values else [base.seed]
    for task in tasks:
        for seed in seeds:
            try:
                prepare_task(base.replace(task=task, seed=seed, data_root=base.data_root
                                          or os.environ.get("ADC_DATA_ROOT")))
            except AdcError as e:
                raise AdcError(f"task {task}: {e}") from None


# ---------------------------------------------------------------------------- running
def run_sweep(space: str | os.PathLike | SearchSpace | None = None, tasks: str | Sequence[str] | None = None, *,
              quiet: bool = False, ray_init: dict[str, Any] | None = None, flush_every_s: float = 30.0,
              status_every_s: float = 60.0, controller_failure_limit: int | None = None,
              **options: Any) -> str:
    """Run (or resume) a sweep and return its results directory (a local path or URI).

    ``options`` are :func:`plan_sweep`'s keywords (name, storage, resume, extend,
    num_samples, scheduler, max_concurrent, time_budget_s, seed, num_workers,
    cpus_per_worker, gpus_per_worker, set_values, ...). ``ray_init``: extra ``ray.init``
    arguments when this call starts Ray (tests: small object store).
    """
    plan = plan_sweep(space, tasks, **options)
    if not quiet:
        print(plan.describe(), flush=True)
    run_planned(plan, options, quiet=quiet, ray_init=ray_init, flush_every_s=flush_every_s,
                status_every_s=status_every_s, controller_failure_limit=controller_failure_limit)
    return plan.results.uri


def run_planned(plan: SweepPlan, options: dict[str, Any], *, quiet: bool = False,
                ray_init: dict[str, Any] | None = None, flush_every_s: float = 30.0, status_every_s: float = 60.0,
                controller_failure_limit: int | None = None) -> int:
    """Run a validated plan; return how many of its trials ended (ok, stopped or error)."""
    _write_sweep_file(plan, options)
    return _fit(plan, quiet=quiet, ray_init=ray_init or {}, flush_every_s=flush_every_s,
                status_every_s=status_every_s, controller_failure_limit=controller_failure_limit)


def _write_sweep_file(plan: SweepPlan, options: dict[str, Any]) -> None:
    if plan.resume:
        return
    sweep = json.loads(plan.results.read_bytes(SWEEP_FILE)) if plan.results.exists(SWEEP_FILE) else {}
    sweep.setdefault("name", plan.name)
    sweep.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    sweep["experiments"] = [*sweep.get("experiments", []), plan.experiment]
    sweep.update(space_file=str(Path(plan.space.path).resolve()) if Path(plan.space.path).exists() else plan.space.path,
                 tasks=plan.tasks, set=options.get("set_values") or {},
                 args={"num_samples": plan.num_samples, "scheduler": plan.scheduler,
                       "grace_period": plan.grace_period, "reduction_factor": plan.reduction_factor,
                       "max_concurrent": plan.max_concurrent, "time_budget_s": plan.time_budget_s,
                       "seed": plan.seed, "num_workers": plan.num_workers,
                       "cpus_per_worker": plan.space.fixed["cpus_per_worker"],
                       "gpus_per_worker": plan.resources.get("gpu", 1.0 if plan.space.fixed["use_gpu"] else 0.0),
                       "checkpoint_every": plan.checkpoint_every})
    raw = _raw_of(plan.space)
    for key in ("num_workers", "cpus_per_worker", "use_gpu", *sweep["set"]):
        raw["fixed"].pop(key, None)  # re-applied from args / set on resume
    plan.results.write_bytes(SPACE_FILE, yaml.safe_dump(raw, sort_keys=False).encode())
    plan.results.write_bytes(SWEEP_FILE, json.dumps(sweep, indent=1).encode())


def _fit(plan: SweepPlan, *, quiet: bool, ray_init: dict[str, Any], flush_every_s: float,
         status_every_s: float, controller_failure_limit: int | None) -> int:
    """Run the Tuner; return how many trials of this sweep the Parquet holds as ended."""
    import ray
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from adc_dist.trial import TrialSettings, run_trial
    from adc_dist.tune_hooks import PerTaskScheduler, SweepCallback, finished_trials, make_asha

    # Tune warns whenever a checkpoint forces an experiment snapshot; with one checkpoint per
    # epoch that is every few seconds and says nothing the user must act on.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's own tables would interleave with the one-line-per-trial progress of tune_hooks.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not ray.is_initialized():
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        # log_to_driver=False: the driver prints one line per trial (tune_hooks); the trials'
        # own logs stay in Ray's session logs, their errors in the Parquet and Tune's trial dirs.
        kwargs: dict[str, Any] = {"address": os.environ.get("RAY_ADDRESS"), "log_to_driver": False,
                                  "runtime_env": {"env_vars": env} if env else None}
        if not os.environ.get("RAY_ADDRESS"):
            kwargs["include_dashboard"] = False
        kwargs.update(ray_init)
        ray.init(**kwargs)

    tune_root = plan.results.child("tune")
    train_storage = plan.results.child("train").uri
    skip = frozenset(finished_trials(plan.results.uri, plan.name)) if plan.resume else frozenset()
    settings = TrialSettings(train_storage=train_storage, checkpoint_every=plan.checkpoint_every,
                             controller_failure_limit=controller_failure_limit, skip_trials=skip)
    trainable = tune.with_resources(tune.with_parameters(run_trial, settings=settings), plan.resources)
    exp_path = tune_root.path(plan.experiment)

    if plan.resume:
        if not tune.Tuner.can_restore(exp_path, storage_filesystem=tune_root.fs):
            raise AdcError(f"--resume: sweep {plan.name} has no Tune experiment state at {tune_root.uri}/"
                           f"{plan.experiment} yet (the driver died before its first checkpoint); start it "
                           f"again with another --name")
        tuner = tune.Tuner.restore(exp_path, trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=plan.retry_errored, storage_filesystem=tune_root.fs)
    else:
        max_t = max(plan.space.base_config().epochs,
                    *(plan.space.search["epochs"].endpoints if "epochs" in plan.space.search else [0]))
        scheduler = (PerTaskScheduler(make_asha(plan.grace_period, plan.reduction_factor, max_t))
                     if plan.scheduler == "asha" else None)
        callback = SweepCallback(plan.results.uri, plan.name, train_storage=train_storage,
                                 shown_keys=list(plan.space.search), flush_every_s=flush_every_s,
                                 status_every_s=status_every_s, quiet=quiet,
                                 delete_checkpoints=not plan.keep_checkpoints)
        tuner = tune.Tuner(
            trainable,
            param_space=plan.space.param_space(plan.tasks),
            tune_config=tune.TuneConfig(
                # The generator limits concurrency itself (TuneConfig.max_concurrent_trials
                # applies to Searchers only and is ignored with a warning here).
                search_alg=BasicVariantGenerator(random_state=plan.seed, max_concurrent=plan.max_concurrent or 0),
                scheduler=scheduler, num_samples=plan.num_samples, time_budget_s=plan.time_budget_s,
                # One worker per trial: keep the trial processes (torch imported, data cached).
                reuse_actors=plan.num_workers == 1,
                trial_dirname_creator=lambda trial: f"{trial.config['task']}_{trial.trial_id}"),
            run_config=tune.RunConfig(
                name=plan.experiment, storage_path=tune_root.root, storage_filesystem=tune_root.fs,
                callbacks=[callback], verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),  # the newest may be torn by a kill
                failure_config=tune.FailureConfig(max_failures=0)),
        )
    # --extend: the sweep's earlier runs are in the Parquet already; count this run's only.
    before = 0 if plan.resume else sum(sweep_status(plan.results.uri, plan.name).values())
    t0 = time.time()
    tuner.fit()
    counts = sweep_status(plan.results.uri, plan.name)
    done = sum(counts.values()) - before
    if not quiet:
        what = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no trial finished"
        print(f"done in {time.time() - t0:.0f}s: {what}; python -m adc_dist.report {plan.results.uri}", flush=True)
    if done < plan.trials and not plan.time_budget_s:
        # Tune returns normally after Ctrl-C (it saved its state first): say how to go on.
        print(f"the sweep stopped with {done} of {plan.trials} trials done; continue it with: python -m "
              f"adc_dist.tune --name {plan.name} --storage '{_parent_uri(plan)}' --resume", file=sys.stderr, flush=True)
    return done


def _parent_uri(plan: SweepPlan) -> str:
    base, q, query = plan.results.uri.partition("?")
    parent = base.rstrip("/").rsplit("/", 1)[0]
    return parent + (f"?{query}" if q else "")


def sweep_status(results_uri: str, sweep: str | None = None) -> dict[str, int]:
    """Trials per status (ok, stopped, error) in a results directory, from its Parquet."""
    from adc_dist.results import TRIALS_SCHEMA

    table = open_storage(results_uri).read_table(TRIALS_FILE, TRIALS_SCHEMA)
    if table is None:
        return {}
    df = table.select(["sweep", "status"]).to_pandas()
    if sweep is not None:
        df = df[df["sweep"] == sweep]
    return {str(k): int(v) for k, v in df["status"].value_counts().items()}


# ---------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m adc_dist.tune", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1], allow_abbrev=False)
    p.add_argument("--space", help="search space YAML (tune_spaces/*.yaml; format in docs/tune.md)")
    p.add_argument("--tasks", help="'six' (default), 'all', or task names a,b (python -m adc_dist.data list)")
    p.add_argument("--name", help="sweep name (default <space>-<date>-<time>); the results directory")
    p.add_argument("--storage", default="sweeps", help="parent of the results directory: a local path or a "
                   "pyarrow URI, e.g. s3://bucket/sweeps?endpoint_override=host:port (default ./sweeps)")
    p.add_argument("--num-samples", type=int, help="repeat the grid N times, drawing the random keys anew")
    p.add_argument("--scheduler", choices=("asha", "fifo"), help="asha: stop weak trials early (per task, "
                   "on the validation metric); fifo: run every trial to the end")
    p.add_argument("--grace-period", type=int, help="ASHA: epochs before a trial may be stopped")
    p.add_argument("--reduction-factor", type=float, help="ASHA: keep 1/this of the trials at each rung")
    p.add_argument("--max-concurrent", type=int, help="at most this many trials at once")
    p.add_argument("--time-budget-s", type=float, help="stop the sweep after this many seconds")
    p.add_argument("--seed", type=int, default=0, help="seed of the random search (default 0)")
    p.add_argument("--num-workers", type=int, help="workers per trial (default 1: in-process, no trainer "
                   "start-up; >1: a TorchTrainer per trial)")
    p.add_argument("--cpus-per-worker", type=float, help="CPUs per worker (default 1; fractions allowed)")
    p.add_argument("--gpus-per-worker", type=float, help="GPUs per worker (default 0; e.g. 0.25 packs four "
                   "one-worker trials on a GPU)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="set_values",
                   help="fix a config key in every trial, e.g. --set epochs=5 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue sweep --name after an interruption")
    p.add_argument("--retry-errored", action="store_true", help="with --resume: run failed trials again")
    p.add_argument("--extend", action="store_true", help="add trials to sweep --name (new space, tasks or "
                   "samples); results merge into the same Parquet files")
    p.add_argument("--checkpoint-every", type=int, default=1, help="epochs between trial checkpoints "
                   "(what --resume restarts from; 0: never)")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep finished trials' checkpoints")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan; start nothing")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = dict(name=args.name, storage=args.storage, resume=args.resume, extend=args.extend,
                   num_samples=args.num_samples, scheduler=args.scheduler, grace_period=args.grace_period,
                   reduction_factor=args.reduction_factor, max_concurrent=args.max_concurrent,
                   time_budget_s=args.time_budget_s, seed=args.seed, num_workers=args.num_workers,
                   cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
                   set_values=_parse_set(args.set_values), checkpoint_every=args.checkpoint_every,
                   keep_checkpoints=args.keep_checkpoints, retry_errored=args.retry_errored)
    if args.dry_run:
        print(plan_sweep(args.space, args.tasks, **options).describe())
        return 0
    plan = plan_sweep(args.space, args.tasks, **options)
    if not args.quiet:
        print(plan.describe(), flush=True)
    done = run_planned(plan, options, quiet=args.quiet)
    return 0 if done >= plan.trials or (plan.time_budget_s and done) else 1


if __name__ == "__main__":
    run_cli(main)
