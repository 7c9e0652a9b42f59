"""Plan a sweep: the space, tasks, resources, storage and resume state, all resolved and
checked before Ray starts. ``plan_sweep`` returns the ``SweepPlan`` that the driver
(``adc_dist.tune.driver``) runs.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import yaml

from adc_dist.errors import AdcError
from adc_dist.inputs.files import decode_text, load_yaml_text
from adc_dist.inputs.paths import absolute, absolutize_env, default_storage
from adc_dist.tune.search_space import SearchSpace, load_space, parse_space

if TYPE_CHECKING:  # pyarrow and pandas load only once the flags and the space are checked
    from adc_dist.tune.results import Storage

SWEEP_FILE = "sweep.json"
SPACE_FILE = "space.yaml"


@dataclass
class SweepPlan:
    """Everything a sweep needs, resolved and validated (no Ray yet)."""

    name: str
    space: SearchSpace
    tasks: list[str]
    results: "Storage"  # <storage>/<name>
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
    per_user: bool = False  # each trial also writes per_user/<trial_id>.parquet (test, per user)

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
def parse_set(items: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise AdcError(f"--set expects KEY=VALUE (got {item!r})")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value) if value else None
    return out


def plan_sweep(space: str | os.PathLike | SearchSpace | None = None, tasks: str | Sequence[str] | None = None, *,
               name: str | None = None, storage: str | None = None, resume: bool = False, extend: bool = False,
               num_samples: int | None = None, scheduler: str | None = None, grace_period: int | None = None,
               reduction_factor: float | None = None, max_concurrent: int | None = None,
               time_budget_s: float | None = None, seed: int = 0, num_workers: int | None = None,
               cpus_per_worker: float | None = None, gpus_per_worker: float | None = None,
               set_values: dict[str, Any] | None = None, checkpoint_every: int = 1,
               keep_checkpoints: bool = False, retry_errored: bool = False, per_user: bool = False,
               prepare_data: bool = True, check_local_resources: bool = True) -> SweepPlan:
    """Validate a sweep completely before Ray starts; raise AdcError on the first problem.

    Paths (storage, space, data root, the environment's) are made absolute here: the trials
    run in directories of their own. ``storage`` None: ./sweeps (~/adc_dist/sweeps in a Ray job).
    """
    absolutize_env()
    storage = absolute(storage) if storage else default_storage("sweeps")
    if isinstance(space, (str, os.PathLike)):
        space = absolute(space)

    if resume and extend:
        raise AdcError("--resume continues the last run of a sweep, --extend adds a new one: choose one")
    if (resume or extend) and not name:
        raise AdcError(f"--{'resume' if resume else 'extend'} needs the --name of the sweep")
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
    # The space (and --set) first: its errors come before pandas, pyarrow and the data load.
    early = None
    if not resume and space is not None:
        early = (parse_space(raw_of(space), where=space.path, overrides=set_values) if isinstance(space, SearchSpace)
                 else load_space(space, overrides=set_values))

    from adc_dist.data import resolve_tasks
    from adc_dist.train.run_dir import check_name, slug
    from adc_dist.tune.results import open_storage

    if name is not None:
        check_name(name)
    root = open_storage(storage)
    saved: dict[str, Any] = {}
    if name is None:
        if space is None:
            raise AdcError("give --space FILE (a search space, see tune_spaces/)")
        stem = space.name if isinstance(space, SearchSpace) else Path(space).stem
        name = f"{slug(stem)}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
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
        where = f"{results.uri}/{SPACE_FILE}"
        sp = parse_space(load_yaml_text(decode_text(results.read_bytes(SPACE_FILE), where), where), where=where,
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
        per_user = per_user or a.get("per_user", False)  # a resumed sweep's trials write what the first ones did
        experiment = saved["experiments"][-1]
    else:
        if space is None:
            raise AdcError("give --space FILE (a search space, see tune_spaces/)")
        assert early is not None
        sp = early
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
    placed = {"num_workers": nw, "cpus_per_worker": cpw, "use_gpu": gpw > 0}
    # Trials run in directories of their own (and on other nodes, whose environment may
    # differ): the data root travels in the config, absolute against the user's directory.
    root = base.data_root or os.environ.get("ADC_DATA_ROOT")
    if root:
        placed["data_root"] = absolute(root)
    sp = parse_space(raw_of(sp), where=sp.path, overrides=placed, override_source="flag")

    if prepare_data:
        _prepare_tasks(sp, task_list)
    return SweepPlan(name=name, space=sp, tasks=task_list, results=results, experiment=experiment, resume=resume,
                     num_samples=int(num_samples), scheduler=scheduler, grace_period=int(grace_period),
                     reduction_factor=float(reduction_factor), max_concurrent=max_concurrent,
                     time_budget_s=time_budget_s, seed=seed, resources=resources, num_workers=nw,
                     checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints,
                     retry_errored=retry_errored, per_user=per_user)


@contextmanager
def locked(plan: SweepPlan) -> Iterator[SweepPlan]:
    """Hold the sweep's lock (``<storage>/.<name>.lock``) while a driver writes into it.

    Taken before anything is written; what ``plan_sweep`` saw is checked again under the
    lock, since another driver may have started the same sweep since it was planned.
    """
    from adc_dist.train.locks import DirLock

    parent = plan.results.root.rstrip("/").rsplit("/", 1)[0]
    with DirLock(parent, plan.name, what="sweep", fs=plan.results.fs):
        saved = json.loads(plan.results.read_bytes(SWEEP_FILE)) if plan.results.exists(SWEEP_FILE) else {}
        if not plan.resume and plan.experiment in saved.get("experiments", []):
            raise AdcError(f"sweep {plan.name!r} was started by another driver meanwhile: --resume continues "
                           f"it, or choose another --name")
        if plan.resume:
            from ray.tune import Tuner  # reads the storage only; Ray is not started

            exp = plan.results.child("tune")
            if not Tuner.can_restore(exp.path(plan.experiment), storage_filesystem=exp.fs):
                raise AdcError(f"--resume: sweep {plan.name} has no Tune experiment state at {exp.uri}/"
                               f"{plan.experiment} (its driver stopped before the first trial started); "
                               f"start it again with another --name")
        yield plan


def _same(flag: str, value: Any, saved: dict[str, Any]) -> bool:
    if flag == "--tasks":
        from adc_dist.data import resolve_tasks

        got = list(value) if isinstance(value, (list, tuple)) else resolve_tasks(value)
        return got == saved["tasks"]
    path = value.path if isinstance(value, SearchSpace) else str(value)
    return Path(path).resolve() == Path(saved["space_file"]).resolve()


def raw_of(space: SearchSpace) -> dict[str, Any]:
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
    from adc_dist.train.loop import prepare_task

    from adc_dist.cli.progress import bar

    base = space.base_config()
    seeds = space.search["seed"].values if "seed" in space.search and space.search["seed"].values else [base.seed]
    with bar(len(tasks) * len(seeds), "prepare", unit="split", enabled=len(tasks) * len(seeds) > 1) as progress:
        for task in tasks:
            for seed in seeds:
                try:
                    prepare_task(base.replace(task=task, seed=seed, data_root=base.data_root
                                              or os.environ.get("ADC_DATA_ROOT")))
                except AdcError as e:
                    raise AdcError(f"task {task}: {e}") from None
                progress.update(1)
