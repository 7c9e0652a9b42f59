"""Check a job command against the cluster it is meant for: flags, storage, GPUs, files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from adc_dist.cluster.entrypoints import (Invocation, NotCheckable, check_invocation, check_submit,
                                          find_invocations, train_config)
from adc_dist.cluster.problems import Report

REPO = Path(__file__).resolve().parents[2]  # a job's --working-dir is a checkout of this repo


@dataclass
class ClusterShape:
    """What a job can count on from the cluster it is submitted to."""

    max_gpus: int  # GPUs with every worker group at its maximum
    max_gpus_per_node: int  # the most GPUs one node has (a trial's worker cannot span nodes)
    multi_node: bool  # more than one Ray node: storage must be shared
    storage_schemes: tuple[str, ...]  # URI schemes that this cloud's instance identity can write
    storage_root: str | None = None  # the shared storage the file declares, if any
    working_dir: bool = True  # the job's cwd is a checkout of this repo (tune_spaces/ is there)


def _storage_problem(flag: str, value: str | None, shape: ClusterShape, report: Report,
                     path: Sequence[Any]) -> None:
    if value is None:
        if shape.multi_node:
            report.error(path, f"no {flag}: results would go to a local directory of whichever node "
                               "runs the driver, and checkpoints of other nodes nowhere shared",
                         f"add {flag} {shape.storage_schemes[0]}://<bucket>/<prefix>")
        return
    scheme = value.split("://", 1)[0] if "://" in value else None
    if scheme is None:
        if shape.multi_node:
            report.error(path, f"{flag} {value} is a local path: on a multi-node cluster each node "
                               "sees its own disk, so checkpoints and results scatter",
                         f"use shared storage, e.g. {flag} {shape.storage_schemes[0]}://<bucket>/<prefix>")
    elif scheme not in shape.storage_schemes:
        report.error(path, f"{flag} {value}: {scheme}:// is not storage this cluster's nodes can reach "
                           f"with their instance identity",
                     f"use {' or '.join(s + '://' for s in shape.storage_schemes)}")
    elif shape.storage_root and not value.startswith(shape.storage_root.rstrip("/")):
        report.warning(path, f"{flag} {value} is outside the storage this file declares "
                             f"({shape.storage_root})", "keep results under the declared storage")


def _check_train(inv: Invocation, shape: ClusterShape, report: Report, path: Sequence[Any]) -> None:
    cfg = train_config(inv)
    if cfg is None:
        return  # --config FILE (not checkable here) or values already reported
    _storage_problem("--storage_path", cfg.storage_path if inv.get("cfg_storage_path") else None,
                     shape, report, path)
    if cfg.use_gpu:
        if cfg.num_workers == 0:
            report.warning(path, "--use_gpu without --num_workers: the worker count is taken from the "
                                 "GPUs of the node running the driver (often the CPU-only head)",
                           "give --num_workers N (one worker per GPU)")
        elif cfg.num_workers > shape.max_gpus:
            report.error(path, f"--num_workers {cfg.num_workers} with --use_gpu needs {cfg.num_workers} GPUs, "
                               f"but the cluster has at most {shape.max_gpus}",
                         "lower --num_workers or raise the GPU workers' max")
    elif shape.max_gpus > 0:
        report.warning(path, "the cluster has GPUs but this run trains on CPU",
                       "add --use_gpu (one whole GPU per worker)")


def _set_values(items: Sequence[str] | None, report: Report, path: Sequence[Any]) -> dict[str, Any] | None:
    """``--set KEY=VALUE`` pairs as config values; None (reported) when one is bad."""
    from adc_dist.config import FIELD_NAMES, coerce, unknown_key_error
    from adc_dist.errors import AdcError
    from adc_dist.inputs.files import load_yaml_text

    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        try:
            if not eq or not key:
                raise AdcError(f"--set expects KEY=VALUE (got {item!r})")
            if key not in FIELD_NAMES:
                raise unknown_key_error(key, "--set")
            out[key] = coerce(key, load_yaml_text(value, f"--set {key}") if value else None)
        except AdcError as e:
            report.error(path, str(e), "--set takes a TrainConfig field, e.g. --set epochs=5")
            return None
    return out


def _check_tune(inv: Invocation, shape: ClusterShape, report: Report, path: Sequence[Any]) -> None:
    from adc_dist.errors import AdcError

    storage = inv.get("storage", inv.get("storage_path"))
    given = storage if "--storage" in " ".join(inv.argv) else None
    _storage_problem("--storage", given, shape, report, path)
    overrides = _set_values(inv.get("set_values"), report, path)
    tasks = inv.get("tasks", "six")
    try:
        from adc_dist.data import resolve_tasks
        resolve_tasks(tasks)
    except AdcError as e:
        report.error(path, f"--tasks {tasks}: {e}")
    space = inv.get("space")
    base = None
    if space is None and not inv.get("resume"):
        report.error(path, "no --space: the sweep has nothing to search", "--space tune_spaces/paper.yaml")
    elif isinstance(space, str) and "://" not in space and not space.startswith("/"):
        if not shape.working_dir:
            report.error(path, f"--space {space} is relative, but the job has no working directory "
                               "holding this repo", "give the job a working_dir (a checkout or archive of the repo)")
        elif not (REPO / space).is_file():
            report.error(path, f"--space {space}: no such file in this repo", "name a file under tune_spaces/")
        elif overrides is not None:
            from adc_dist.tune.search_space import load_space
            try:
                base = load_space(REPO / space, overrides=overrides).base_config()
            except AdcError as e:
                report.error(path, f"--space {space}: {e}")
    workers = inv.get("num_workers") or (base.num_workers if base and base.num_workers else 1)
    gpw = inv.get("gpus_per_worker")
    gpw = gpw if gpw is not None else (1.0 if base is not None and base.use_gpu else 0.0)
    if gpw > 0 and shape.max_gpus == 0:
        report.error(path, f"--gpus-per-worker {gpw:g} on a cluster without GPUs: no trial would ever start",
                     "drop --gpus-per-worker, or use a GPU cluster")
    elif gpw > shape.max_gpus_per_node > 0:
        report.error(path, f"--gpus-per-worker {gpw:g}: no node has that many GPUs "
                           f"(at most {shape.max_gpus_per_node})", "ask for at most one node's GPUs per worker")
    elif workers > 1 and gpw not in (0.0, 1.0):
        report.error(path, f"--gpus-per-worker {gpw:g} with --num-workers {workers}: a data-parallel worker "
                           "takes a whole GPU", "use --gpus-per-worker 1, or one-worker trials for fractions")
    elif gpw == 0 and shape.max_gpus > 0:
        report.warning(path, "the cluster has GPUs but the trials run on CPU",
                       "add --gpus-per-worker 0.25 (four one-worker trials share a GPU)")


def check_command(command: str, shape: ClusterShape, report: Report, path: Sequence[Any],
                  *, expect: str | None = None) -> list[Invocation]:
    """All checks of one command string; ``expect`` names the CLI it must run (or None: either)."""
    invs = find_invocations(command)
    if not invs:
        report.error(path, "runs neither `python -m adc_dist.train` nor `python -m adc_dist.tune`",
                     "the entrypoint is e.g. `python -m adc_dist.train --task amazon-book-music ...`")
        return []
    for inv in invs:
        if expect and inv.module != expect:
            report.warning(path, f"runs {inv.module}, expected {expect}")
        if inv.submit_argv is not None:
            for msg, fix in check_submit(inv.submit_argv):
                report.error(path, msg, fix)
            if inv.module == "adc_dist.tune" and "--working-dir" not in " ".join(inv.submit_argv):
                shape = ClusterShape(**{**shape.__dict__, "working_dir": False})
        try:
            problems = check_invocation(inv)
        except NotCheckable as e:
            report.warning(path, str(e), "run the check where adc_dist (with its tune module) is installed")
            continue
        for msg, fix in problems:
            report.error(path, msg, fix)
        if problems:
            continue
        if inv.module == "adc_dist.train":
            _check_train(inv, shape, report, path)
        else:
            _check_tune(inv, shape, report, path)
    return invs
