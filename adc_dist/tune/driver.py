r"""Sweep ADC's hyper-parameters with Ray Tune: ``python -m adc_dist.tune``.

    python -m adc_dist.tune --space tune_spaces/paper.yaml --tasks six
    python -m adc_dist.tune --space tune_spaces/random.yaml --tasks amazon-book-music \
        --num-samples 32 --scheduler asha --max-concurrent 8 --time-budget-s 7200 --seed 1
    python -m adc_dist.tune --space tune_spaces/smoke.yaml --tasks six --set epochs=1 --dry-run
    python -m adc_dist.tune --name paper-20260101-120000 --resume    # after the driver died
    ray job submit --working-dir . -- python -m adc_dist.tune --space tune_spaces/paper_grid.yaml \
        --tasks six --gpus-per-worker 0.25 --storage s3://bucket/sweeps
    python -m adc_dist.report sweeps/<name>                          # best configs + figures

Every flag has a --dash-case and an --under_score spelling. Everything (space, tasks,
data, resources, storage) is checked before torch and Ray are imported or started, and every
path made absolute (trials run in directories of their own); the default storage is
./sweeps, or ~/adc_dist/sweeps inside a `ray job submit` (whose working directory is a
temporary copy). Progress: one line per finished trial and a bar with an ETA (tqdm, on
stderr); Ray's own logs stay in its session log files (--verbose shows them). A trial that
fails on bad input (an AdcError: bad data, impossible settings) is recorded like any failed
trial; once the sweep is over the command prints its one `error: ...` line, exit status 2. Each
trial trains through ``adc_dist.trial.run_trial`` (the loop of ``adc_dist.train``); the
results land in ``<storage>/<name>/{trials,trial_metrics,history}.parquet`` (docs/tune.md), and
with --per-user each trial's per-user test metrics in ``per_user/<trial_id>.parquet``.
This module is the Ray edge and the command line; the logic lives in plan, search_space,
results, trial and hooks.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from adc_dist.cli.argparser import Parser
from adc_dist.errors import AdcError, find_adc_error
from adc_dist.inputs.paths import FORWARDED_ENV, absolute, absolutize_env
from adc_dist.tune.plan import SPACE_FILE, SWEEP_FILE, SweepPlan, locked, parse_set, plan_sweep, raw_of
from adc_dist.tune.search_space import SearchSpace

# ---------------------------------------------------------------------------- running
def run_sweep(space: str | os.PathLike | SearchSpace | None = None, tasks: str | Sequence[str] | None = None, *,
              quiet: bool = False, ray_init: dict[str, Any] | None = None, flush_every_s: float = 30.0,
              status_every_s: float = 60.0, controller_failure_limit: int | None = None, verbose: bool = False,
              bar: bool | None = None, interrupt_raises: bool = False, **options: Any) -> str:
    """Run (or resume) a sweep and return its results directory (a local path or URI).

    ``bar``: draw the trials' progress bar (default: unless ``quiet``). ``interrupt_raises``: Ctrl-C
    raises KeyboardInterrupt out of the sweep at once (Tune's own handler, which saves its state
    for ``--resume``, is not installed) instead of ending the sweep with a ``--resume`` hint: for a
    caller with its own way to continue, like adc_dist.compare, which reruns its sweeps.
    ``options`` are :func:`plan_sweep`'s keywords (name, storage, resume, extend, num_samples,
    scheduler, max_concurrent, time_budget_s, seed, num_workers,
    cpus_per_worker, gpus_per_worker, set_values, ...). ``ray_init``: extra ``ray.init``
    arguments when this call starts Ray (tests: small object store).
    """
    plan = plan_sweep(space, tasks, **options)
    if not quiet:
        print(plan.describe(), flush=True)
    run_planned(plan, options, quiet=quiet, ray_init=ray_init, flush_every_s=flush_every_s,
                status_every_s=status_every_s, controller_failure_limit=controller_failure_limit, verbose=verbose,
                bar=bar, interrupt_raises=interrupt_raises)
    return plan.results.uri


def run_planned(plan: SweepPlan, options: dict[str, Any], *, quiet: bool = False,
                ray_init: dict[str, Any] | None = None, flush_every_s: float = 30.0, status_every_s: float = 60.0,
                controller_failure_limit: int | None = None, verbose: bool = False, bar: bool | None = None,
                raise_input_errors: bool = False, interrupt_raises: bool = False) -> int:
    """Run a validated plan; return how many of its trials ended (ok, stopped or error).

    Failed trials are recorded (status "error") and the sweep goes on. With
    ``raise_input_errors`` (the command line), a trial that failed on bad input (an AdcError)
    then ends the command as that one ``error: ...`` line, as ``train --local`` would.
    """
    with locked(plan):  # one driver per sweep directory, taken before anything is written
        _write_sweep_file(plan, options)
        return _fit(plan, quiet=quiet, ray_init=ray_init or {}, flush_every_s=flush_every_s,
                    status_every_s=status_every_s, controller_failure_limit=controller_failure_limit,
                    verbose=verbose, bar=not quiet if bar is None else bar, raise_input_errors=raise_input_errors,
                    interrupt_raises=interrupt_raises)


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
                       "checkpoint_every": plan.checkpoint_every, "per_user": plan.per_user})
    raw = raw_of(plan.space)
    for key in ("num_workers", "cpus_per_worker", "use_gpu", *sweep["set"]):
        raw["fixed"].pop(key, None)  # re-applied from args / set on resume
    plan.results.write_bytes(SPACE_FILE, yaml.safe_dump(raw, sort_keys=False).encode())
    plan.results.write_bytes(SWEEP_FILE, json.dumps(sweep, indent=1).encode())


NO_TUNE_SIGINT = "TUNE_DISABLE_SIGINT_HANDLER"  # read by Tune when fit() starts


def _fit(plan: SweepPlan, *, quiet: bool, ray_init: dict[str, Any], flush_every_s: float,
         status_every_s: float, controller_failure_limit: int | None, verbose: bool = False,
         bar: bool = True, raise_input_errors: bool = False, interrupt_raises: bool = False) -> int:
    """Run the Tuner; return how many trials of this sweep the Parquet holds as ended."""
    import ray
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from adc_dist.tune.records import PER_USER_DIR
    from adc_dist.tune.trial import TrialSettings, run_trial
    from adc_dist.tune.hooks import PerTaskScheduler, SweepCallback, finished_trials, make_asha
    from adc_dist.train.run_dir import slug
    from adc_dist.train.ray_output import init_kwargs, start_ray
    from adc_dist.tune.progress import TrialBar

    # Tune warns whenever a checkpoint forces an experiment snapshot; with one checkpoint per
    # epoch that is every few seconds and says nothing the user must act on.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's own tables would interleave with the one-line-per-trial progress of tune_hooks.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not ray.is_initialized():
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        # log_to_driver=False: the driver prints one line per trial (tune_hooks); the trials'
        # own logs stay in Ray's session logs, their errors in the Parquet and Tune's trial dirs.
        kwargs: dict[str, Any] = {"address": os.environ.get("RAY_ADDRESS"), **init_kwargs(verbose),
                                  "runtime_env": {"env_vars": env} if env else None}
        if not os.environ.get("RAY_ADDRESS"):
            kwargs["include_dashboard"] = False
        kwargs.update(ray_init)
        start_ray(**kwargs)

    tune_root = plan.results.child("tune")
    train_storage = plan.results.child("train").uri
    skip = frozenset(finished_trials(plan.results.uri, plan.name)) if plan.resume else frozenset()
    settings = TrialSettings(train_storage=train_storage, checkpoint_every=plan.checkpoint_every,
                             controller_failure_limit=controller_failure_limit, skip_trials=skip,
                             per_user_storage=plan.results.child(PER_USER_DIR).uri if plan.per_user else None)
    trainable = tune.with_resources(tune.with_parameters(run_trial, settings=settings), plan.resources)
    exp_path = tune_root.path(plan.experiment)

    trial_bar = None  # a restored Tuner brings its own callbacks
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
        trial_bar = TrialBar(plan.trials, enabled=bar)
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
                # A file:<path> task holds '/' and ':', which Tune refuses in a directory name.
                trial_dirname_creator=lambda trial: f"{slug(trial.config['task'])}_{trial.trial_id}"),
            run_config=tune.RunConfig(
                name=plan.experiment, storage_path=tune_root.root, storage_filesystem=tune_root.fs,
                callbacks=[callback, trial_bar], verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),  # the newest may be torn by a kill
                failure_config=tune.FailureConfig(max_failures=0)),
        )
    # --extend: the sweep's earlier runs are in the Parquet already; count this run's only.
    before = 0 if plan.resume else sum(sweep_status(plan.results.uri, plan.name).values())
    t0 = time.time()
    try:
        grid = _fit_keeping_sigint(tuner, tune_catches=not interrupt_raises)
    finally:
        if trial_bar is not None:
            trial_bar.close()
    counts = sweep_status(plan.results.uri, plan.name)
    done = sum(counts.values()) - before
    if not quiet:
        what = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no trial finished"
        print(f"done in {time.time() - t0:.0f}s: {what}; python -m adc_dist.report {plan.results.uri}", flush=True)
    if done < plan.trials and not plan.time_budget_s and not interrupt_raises:
        # Tune returns normally after Ctrl-C (it saved its state first): say how to go on.
        # (With interrupt_raises Tune caught nothing, Ctrl-C raised out of fit, and the caller
        # continues its own way.)
        print(f"the sweep stopped with {done} of {plan.trials} trials done; continue it with: python -m "
              f"adc_dist.tune --name {plan.name} --storage '{_parent_uri(plan)}' --resume", file=sys.stderr, flush=True)
    if raise_input_errors:
        _raise_trial_input_error(grid, plan.results.uri)
    return done


def _fit_keeping_sigint(tuner: Any, tune_catches: bool = True) -> Any:
    """``tuner.fit()``, then the SIGINT handler of before. Tune installs its own (Ctrl-C ends
    the run after saving its state) and puts the old one back only when a signal arrives: after
    a sweep that ended normally, the next Ctrl-C in this process would set an event nobody
    waits on any more (adc_dist.compare runs sweeps, then more work). ``tune_catches=False``:
    Tune installs none, so Ctrl-C raises KeyboardInterrupt out of ``fit`` at once (a caller that
    reruns its sweeps from scratch needs no saved Tune state; a Ctrl-C that Tune caught as the
    last trial ended would be lost)."""
    before = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    flag = os.environ.get(NO_TUNE_SIGINT)
    if not tune_catches:
        os.environ[NO_TUNE_SIGINT] = "1"
    try:
        return tuner.fit()
    finally:
        if before is not None:
            signal.signal(signal.SIGINT, before)
        if not tune_catches:
            os.environ.pop(NO_TUNE_SIGINT) if flag is None else os.environ.__setitem__(NO_TUNE_SIGINT, flag)


def _raise_trial_input_error(grid: Any, results_uri: str) -> None:
    """A trial that failed on bad input (an AdcError) ends the command with that one line, as
    ``python -m adc_dist.train --local`` would; other failures stay in the Parquet as errors."""
    failed = [r.error for r in grid if r.error is not None]
    found = [e for e in map(find_adc_error, failed) if e is not None]
    if found:
        more = (f" ({len(found)} of {len(grid)} trials failed this way; the others' results: {results_uri})"
                if len(grid) > 1 else "")
        raise AdcError(f"{found[0]}{more}")


def _parent_uri(plan: SweepPlan) -> str:
    base, q, query = plan.results.uri.partition("?")
    parent = base.rstrip("/").rsplit("/", 1)[0]
    return parent + (f"?{query}" if q else "")


def sweep_status(results_uri: str, sweep: str | None = None) -> dict[str, int]:
    """Trials per status (ok, stopped, error) in a results directory, from its Parquet."""
    from adc_dist.tune.records import TRIALS_FILE, TRIALS_SCHEMA
    from adc_dist.tune.results import open_storage

    table = open_storage(results_uri).read_table(TRIALS_FILE, TRIALS_SCHEMA)
    if table is None:
        return {}
    df = table.select(["sweep", "status"]).to_pandas()
    if sweep is not None:
        df = df[df["sweep"] == sweep]
    return {str(k): int(v) for k, v in df["status"].value_counts().items()}


# ---------------------------------------------------------------------------- CLI
def build_parser() -> Parser:
    p = Parser(prog="python -m adc_dist.tune", description=__doc__.split("\n\n")[0],
               epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--space", help="search space YAML (tune_spaces/*.yaml; format in docs/tune.md)")
    p.add_argument("--tasks", help="'six' (default), 'all', or task names a,b (python -m adc_dist.data list)")
    p.add_argument("--name", help="sweep name (default <space>-<date>-<time>); the results directory")
    p.add_argument("--storage", help="parent of the results directory: a local path or a pyarrow URI, e.g. "
                   "s3://bucket/sweeps?endpoint_override=host:port (default ./sweeps; ~/adc_dist/sweeps in a Ray job)")
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
    p.add_argument("--per-user", action="store_true", dest="per_user",
                   help="also write each trial's per-user test metrics (per_user/<trial_id>.parquet)")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep finished trials' checkpoints")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan; start nothing")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--verbose", action="store_true", help="also show Ray's own log lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    absolutize_env()
    args = build_parser().parse_args(argv)
    options = dict(name=args.name, storage=args.storage, resume=args.resume, extend=args.extend,
                   num_samples=args.num_samples, scheduler=args.scheduler, grace_period=args.grace_period,
                   reduction_factor=args.reduction_factor, max_concurrent=args.max_concurrent,
                   time_budget_s=args.time_budget_s, seed=args.seed, num_workers=args.num_workers,
                   cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
                   set_values=parse_set(args.set_values), checkpoint_every=args.checkpoint_every,
                   keep_checkpoints=args.keep_checkpoints, retry_errored=args.retry_errored, per_user=args.per_user)
    if args.dry_run:
        print(plan_sweep(absolute(args.space), args.tasks, **options).describe())
        return 0
    plan = plan_sweep(absolute(args.space), args.tasks, **options)
    if not args.quiet:
        print(plan.describe(), flush=True)
    done = run_planned(plan, options, quiet=args.quiet, verbose=args.verbose, raise_input_errors=True)
    return 0 if done >= plan.trials or (plan.time_budget_s and done) else 1
