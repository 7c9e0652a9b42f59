r"""Train ADC data-parallel with Ray Train: ``python -m adc_dist.train``.

    python -m adc_dist.train                                   # amazon-book-music, local Ray, CPU
    python -m adc_dist.train --task amazon-dvd-video --epochs 30 --gamma 1.0
    python -m adc_dist.train --config my.yaml --num_workers 4 --use_gpu
    ray job submit --working-dir . -- python -m adc_dist.train --num_workers 8 --use_gpu \
        --storage_path s3://bucket/adc-runs
    python -m adc_dist.train --local                           # no Ray: in-process, world size 1
    torchrun --nproc-per-node=2 -m adc_dist.train -- --local   # no Ray: 2 processes (gloo)
    python -m adc_dist.train --name my-run --resume            # continue a stopped run

Every config field is a flag (``--gamma 1.0`` or ``--gamma=1.0``; dashes or underscores).
The flags are parsed and the config validated before torch and Ray are imported; the
resources checked, the run directory opened (lock, --name/--resume) and only then the data
split prepared, all before Ray starts: a bad flag costs well under two seconds and a refused
run directory no data load, not a cluster start. Paths are made absolute against the current
directory first (adc_dist.inputs.paths): Ray's workers run in directories of their own. Ray's own
log lines go to its session log files (``/tmp/ray/session_latest/logs``); ``--verbose``
shows them. This module is the Ray edge: the per-worker loop (``adc_dist.train.loop.fit``)
is plain PyTorch.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

# Only light imports at module level: `--help` and flag errors must not wait for torch/Ray.
from adc_dist.cli.argparser import Parser
from adc_dist.cli.field_help import field_comments
from adc_dist.config import FIELD_NAMES, TrainConfig, from_mapping, load_yaml
from adc_dist.errors import AdcError, raise_user_error
from adc_dist.inputs.paths import FORWARDED_ENV, absolute, absolutize_env, default_storage

if TYPE_CHECKING:
    import pandas as pd



@dataclass
class RunSummary:
    run_dir: str
    final: dict[str, Any]
    history: "pd.DataFrame"
    per_user: "pd.DataFrame | None" = None


# --- command line ------------------------------------------------------------------------
def build_parser() -> Parser:
    p = Parser(prog="python -m adc_dist.train", description=__doc__.split("\n\n")[0],
               epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--config", help="YAML file of config fields; flags override it")
    p.add_argument("--local", action="store_true",
                   help="run the loop in this process (torchrun sets the world size) instead of Ray Train")
    p.add_argument("--smoke-test", action="store_true", dest="smoke_test",
                   help="tiny model, 2 epochs: checks the installation in about a minute")
    p.add_argument("--per-user", action="store_true", dest="per_user",
                   help="also write per-user test metrics (per_user_test.parquet)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.add_argument("--verbose", action="store_true",
                   help="also show Ray's own log lines (by default they go to Ray's session log files)")
    cfg = p.add_argument_group("config fields (see adc_dist/config.py)")
    defaults, meaning = TrainConfig(), field_comments()
    for name in FIELD_NAMES:
        flags = [f"--{name}"]  # the Parser adds the --dash-case spelling
        default = getattr(defaults, name)
        text = f"{meaning[name]} (default: {default})" if name in meaning else f"default: {default}"
        kw: dict[str, Any] = {"dest": f"cfg_{name}", "default": None, "metavar": "V",
                              "help": text.replace("%", "%%")}  # argparse formats help with %
        if isinstance(default, bool):
            kw.update(nargs="?", const="true")  # --use_gpu alone means true
        cfg.add_argument(*flags, **kw)
    return p


SMOKE = {"d": 16, "epochs": 2, "batch_size": 4096, "topk": [10, 20], "early_stop_metric": "ndcg@10"}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """File, then --smoke-test, then flags; a bad value's error names which of them gave it."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if args.config:
        loaded = load_yaml(absolute(args.config))
        values.update(loaded)
        sources.update({k: f"config file {args.config}" for k in loaded})
    if args.smoke_test:
        values.update(SMOKE)
        sources.update({k: "--smoke-test" for k in SMOKE})
    for name in FIELD_NAMES:
        v = getattr(args, f"cfg_{name}")
        if v is not None:
            values[name] = v
            sources[name] = f"flag --{name}"
    return from_mapping(values, where=args.config or "command line", sources=sources)


# --- resolution and checks (all before Ray starts) -----------------------------------------
def resolve(cfg: TrainConfig, *, local: bool = False) -> TrainConfig:
    """Name, absolute paths and worker count, all before Ray starts (workers run elsewhere)."""
    import torch

    from adc_dist.train import run_dir as rd

    absolutize_env()
    changes: dict[str, Any] = {}
    if cfg.resume and cfg.name is None:
        raise AdcError("--resume needs the --name of the run to continue")
    if cfg.name is None:
        changes["name"] = f"{rd.slug(cfg.task)}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    else:
        rd.check_name(cfg.name)
    data_root = absolute(cfg.data_root or os.environ.get("ADC_DATA_ROOT"))
    if data_root != cfg.data_root:
        changes["data_root"] = data_root
    # The default ./runs is ~/adc_dist/runs inside a Ray job (its working dir is a temporary copy).
    storage = default_storage("runs") if cfg.storage_path == TrainConfig.storage_path else absolute(cfg.storage_path)
    if storage != cfg.storage_path:
        changes["storage_path"] = storage
    if cfg.num_workers == 0 and (local or not os.environ.get("RAY_ADDRESS")):
        # On a cluster (RAY_ADDRESS) the default is taken from its resources once connected.
        changes["num_workers"] = 1 if local else default_num_workers(cfg, torch.cuda.device_count(), os.cpu_count() or 1)
    return cfg.replace(**changes) if changes else cfg


def default_num_workers(cfg: TrainConfig, gpus: float, cpus: float) -> int:
    """One worker per GPU; on CPU one worker per 2 cores (a worker's matmuls use 2 threads well)."""
    if cfg.use_gpu:
        return max(1, int(gpus))
    return max(1, int(cpus // 2))


def check_resources(cfg: TrainConfig, *, local: bool) -> None:
    """Refuse what this machine cannot run; a remote cluster is checked after connecting."""
    import torch

    if cfg.use_gpu and not os.environ.get("RAY_ADDRESS") and not torch.cuda.is_available():
        raise AdcError("--use_gpu was given but no CUDA GPU is visible here (torch.cuda.is_available() is "
                       "False); drop --use_gpu to train on CPU, or submit to a GPU cluster with ray job submit")
    if local or os.environ.get("RAY_ADDRESS"):
        return
    if cfg.use_gpu and cfg.num_workers > torch.cuda.device_count():
        raise AdcError(f"--num_workers {cfg.num_workers} with --use_gpu needs {cfg.num_workers} GPUs; "
                       f"this machine has {torch.cuda.device_count()}")
    cpus = os.cpu_count() or 1
    if cfg.num_workers * cfg.cpus_per_worker > cpus:
        raise AdcError(f"--num_workers {cfg.num_workers} x --cpus_per_worker {cfg.cpus_per_worker} needs "
                       f"{cfg.num_workers * cfg.cpus_per_worker:g} CPUs; this machine has {cpus}. Use fewer "
                       f"workers or a fractional --cpus_per_worker (e.g. {cpus / cfg.num_workers:g})")


# --- the Ray Train edge -----------------------------------------------------------------------
def _ray_worker(config: dict[str, Any]) -> dict[str, Any]:
    """train_loop_per_worker: rebuild the config, run the plain loop, gather node ids."""
    import ray
    import torch.distributed as dist

    from adc_dist.train.loop import fit
    from adc_dist.train.ray_output import worker_reporter

    cfg = from_mapping(config["cfg"])
    _quiet_ray_report_log()
    reporter = worker_reporter(quiet=config.get("quiet", False), lines=config.get("lines"))
    out = fit(cfg, reporter, per_user=config.get("per_user", False))
    node = ray.get_runtime_context().get_node_id()
    nodes: list[Any] = [None] * reporter.world
    if reporter.world > 1:
        dist.all_gather_object(nodes, node)
    else:
        nodes = [node]
    out["nodes"] = nodes
    return out


def _quiet_ray_report_log() -> None:
    """Train V2 logs every report (all metrics) at INFO: our epoch line already says it."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # a Ray without that module: nothing to quiet
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def build_trainer(cfg: TrainConfig, *, callbacks: Sequence[Any] | None = None, quiet: bool = False,
                  per_user: bool = False, controller_failure_limit: int | None = None, lines: Any = None):
    """A TorchTrainer for ``cfg`` (name, paths and num_workers resolved). Ray must be importable.

    ``lines``: a ``ray.util.queue.Queue`` that rank 0 puts its progress lines into (the
    driver prints them); without it rank 0 prints them itself.
    """
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from adc_dist.train import run_dir as rd

    failure = FailureConfig(max_failures=cfg.max_failures)
    if controller_failure_limit is not None:
        failure = FailureConfig(max_failures=cfg.max_failures, controller_failure_limit=controller_failure_limit)
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    # Train V2 re-routes print() through its logger, which showed every epoch line twice;
    # plain prints reach the driver once through Ray's log forwarding.
    env["RAY_TRAIN_ENABLE_PRINT_PATCH"] = "0"
    return TorchTrainer(
        _ray_worker,
        train_loop_config={"cfg": cfg.to_dict(), "quiet": quiet, "per_user": per_user, "lines": lines},
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cfg.cpus_per_worker}),
        run_config=RunConfig(
            name=cfg.name, storage_path=rd.absolute(cfg.storage_path),
            failure_config=failure,
            # The newest two: the one being written when a worker dies may be lost.
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=list(callbacks or []),
            # Our epoch line says what Ray's per-report INFO lines would, in one line.
            logging_config=LoggingConfig(log_level="WARNING"),
            worker_runtime_env={"env_vars": env}),
    )


def _connect_ray(cfg: TrainConfig, *, verbose: bool) -> TrainConfig:
    """Start or join Ray; on a cluster, pick the default worker count from its resources."""
    import ray

    from adc_dist.train.ray_output import init_kwargs, start_ray

    if not ray.is_initialized():
        if not os.environ.get("RAY_ADDRESS"):
            # A local Ray is not on spot instances: its preemption watcher only logs noise.
            os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        # RAY_ADDRESS (set by `ray job submit`) connects to the cluster; else a local one.
        # The dashboard stays on: it serves the State API that Train V2's placement-group
        # cleaner polls (without it, a warning every second).
        start_ray(address=os.environ.get("RAY_ADDRESS"), **init_kwargs(verbose))
    res = ray.cluster_resources()
    if cfg.num_workers == 0:
        cfg = cfg.replace(num_workers=default_num_workers(cfg, res.get("GPU", 0), res.get("CPU", 1)))
    if cfg.use_gpu and res.get("GPU", 0) < cfg.num_workers:
        print(f"warning: the cluster has {res.get('GPU', 0):g} GPUs now and the run asks for {cfg.num_workers}; "
              "it waits for the autoscaler (pass --num_workers to choose the count)", file=sys.stderr)
    return cfg


def _fit_with_ray(cfg: TrainConfig, *, quiet: bool, per_user: bool) -> dict[str, Any]:
    """Fit under Ray Train; a worker's AdcError comes back as that AdcError (one line)."""
    from adc_dist.train import run_dir as rd
    from adc_dist.train.ray_output import LinePrinter
    from adc_dist.train.run_guard import ray_storage_error

    with LinePrinter(enabled=not quiet) as printer:
        try:
            result = build_trainer(cfg, quiet=quiet, per_user=per_user, lines=printer.queue).fit()
        except Exception as e:  # noqa: BLE001 - Train V2 raises what its workers raised, wrapped
            raise_user_error(ray_storage_error(e, rd.run_dir_of(cfg)) or e)
    if result.error is not None:
        raise_user_error(ray_storage_error(result.error, rd.run_dir_of(cfg)) or result.error)
    return result.return_value


def _fit_local(cfg: TrainConfig, run_dir: str, *, quiet: bool, per_user: bool) -> dict[str, Any]:
    import torch.distributed as dist

    from adc_dist.train import run_dir as rd
    from adc_dist.train.loop import fit
    from adc_dist.train.reporting import LocalReporter

    started_pg = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        # Under torchrun: env:// rendezvous, gloo on CPU (NCCL for GPU runs).
        dist.init_process_group("nccl" if cfg.use_gpu else "gloo")
        started_pg = True
    try:
        if rd.is_uri(run_dir):
            raise AdcError("--local keeps its checkpoint on local disk: use a local --storage_path")
        out = fit(cfg, LocalReporter(run_dir, quiet=quiet), per_user=per_user)
        out["nodes"] = ["local"]
        return out
    finally:
        if started_pg:
            dist.destroy_process_group()


def run(cfg: TrainConfig, *, local: bool = False, quiet: bool = False, per_user: bool = False,
        verbose: bool = False) -> RunSummary:
    """Validate, open the run directory, prepare the data, train, and write the run directory.
    See the module doc."""
    from adc_dist.train import run_dir as rd
    from adc_dist.train.loop import prepare_task
    from adc_dist.train.memory import check_fits, local_workers
    from adc_dist.train.run_guard import open_run

    cfg = resolve(cfg, local=local)
    check_resources(cfg, local=local)
    if cfg.embedding_sharding != "none":  # one line now, not a traceback from every worker
        from adc_dist.model.sharded_tables import require_torchrec

        require_torchrec(cfg.embedding_sharding)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    # The run directory first: a second driver, an existing --name without --resume, a bad
    # storage path are refused before the data load (seconds) is spent on a refused command.
    # Locked and checked before Ray starts; removed again if the run fails before a checkpoint
    # (a data error included: nothing is left behind and the same --name works again).
    with (open_run(cfg) if rank0 else nullcontext(rd.run_dir_of(cfg))) as run_dir:
        # Load (and cache) the split once here: bad data stops before any worker starts, and
        # the workers on this machine find the cache ready.
        task = prepare_task(cfg)
        if cfg.embedding_sharding == "none":  # the estimate is of replicated tables (docs/scale.md: sharded)
            check_fits(cfg, task.n_users, task.n_items, workers_here=local_workers(cfg, local))
        return _train(cfg, task, run_dir, local=local, quiet=quiet, per_user=per_user, verbose=verbose)


def _train(cfg: TrainConfig, task: Any, run_dir: str, *, local: bool, quiet: bool, per_user: bool,
           verbose: bool = False) -> RunSummary:
    """In the locked run directory: start or join Ray (unless local), train, write the results."""
    import pandas as pd
    import torch

    from adc_dist.train import run_dir as rd

    rank0 = int(os.environ.get("RANK", "0")) == 0
    if not local:
        cfg = _connect_ray(cfg, verbose=verbose)
    if rank0:
        rd.write_config(f"{run_dir}/config.yaml", cfg)
        if not quiet:
            # --local under torchrun: the processes torchrun started, not num_workers.
            world = int(os.environ.get("WORLD_SIZE", "1")) if local else cfg.num_workers
            where = (" under torchrun" if world > 1 else " in-process") if local else " under Ray Train"
            print(f"adc_dist: task {task.name} ({', '.join(task.domains)}), {task.n_users:,} users; "
                  f"{world} worker(s) on {'GPU' if cfg.use_gpu else 'CPU'}{where}; run dir {run_dir}", flush=True)
    t0 = time.time()
    out = (_fit_local(cfg, run_dir, quiet=quiet, per_user=per_user) if local
           else _fit_with_ray(cfg, quiet=quiet, per_user=per_user))
    wall = time.time() - t0
    history = pd.DataFrame(out["history"])
    summary = RunSummary(run_dir, out["final"], history, out.get("per_user"))
    if rank0:
        rd.write_parquet(f"{run_dir}/history.parquet", history)
        rd.write_json(f"{run_dir}/test_metrics.json", out["final"])
        rd.write_json(f"{run_dir}/summary.json", {
            **out["final"], "task": cfg.task, "domains": list(task.domains), "wall_time_s": wall,
            "world_size": cfg.num_workers, "nodes": sorted(set(map(str, out["nodes"]))),
            "num_nodes": len(set(out["nodes"])), "backend": "local" if local else "ray-train",
            "torch": torch.__version__})
        if per_user and summary.per_user is not None:
            rd.write_parquet(f"{run_dir}/per_user_test.parquet", summary.per_user)
    return summary


def summary_table(final: dict[str, Any], domains: Sequence[str], topk: Sequence[int]) -> str:
    """The end-of-run table: one row per domain (and the mean), Recall@N and NDCG@N columns."""
    cols = [f"{m}@{n}" for m in ("recall", "ndcg") for n in topk]
    width = max(len(d) for d in [*domains, "mean"]) + 2
    lines = ["test".ljust(width) + "".join(c.rjust(11) for c in cols)]
    for d in [*domains, "mean"]:
        cells = [final.get(f"test_{m}{n}_{d}") for m in ("recall", "ndcg") for n in topk]
        lines.append(d.ljust(width) + "".join(("-" if v is None else f"{v:.4f}").rjust(11) for v in cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    absolutize_env()
    t0 = time.time()
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)  # parsed and validated before torch and Ray are imported
    summary = run(cfg, local=args.local, quiet=args.quiet, per_user=args.per_user, verbose=args.verbose)
    if int(os.environ.get("RANK", "0")) == 0:
        domains = cfg.domains or [c[len("loss_"):] for c in summary.history.columns if c.startswith("loss_")]
        print(f"\nbest epoch {summary.final['best_epoch']} of {summary.final['epochs_run']}")
        print(summary_table(summary.final, domains, cfg.topk))
        print(f"\nrun directory: {summary.run_dir}")
        if args.smoke_test:
            print(f"smoke test passed in {time.time() - t0:.0f} s: the installation trains, evaluates and "
                  "writes its run directory")
    return 0
