"""One Ray Tune trial: train one configuration with the same per-worker code as ``adc_dist.train``.

A trial is a Tune *function* trial (Ray 2.60's Train V2 cannot hand a TorchTrainer to a
Tuner, see RAY_NOTES.md):

* one worker per trial: ``adc_dist.loop.fit`` runs in the trial's own process with a
  :class:`TuneReporter` -- no second actor, no trainer start-up (the cheap path for the
  small trials of a sweep; a fractional GPU is fine);
* N workers: the trial builds ``adc_dist.train.launch.build_trainer(cfg)`` (the TorchTrainer of
  ``python -m adc_dist.train``, per-worker function ``adc_dist.train.launch._ray_worker``) with a
  ``TuneReportCallback`` that forwards each epoch's metrics to Tune.

Either way the trial reports one result per epoch (the loop's keys, CONTRACTS.md) and,
at the end, one more with the test metrics and ``final: 1``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adc_dist.train.reporting import load_reported_checkpoint, save_checkpoint_file
from adc_dist.tune.search_space import config_from_trial

FINAL = "final"  # key of the last result of a trial (test metrics)


@dataclass(frozen=True)
class TrialSettings:
    """Sweep-wide settings every trial needs (not hyper-parameters, not in the Parquet)."""

    train_storage: str  # where N-worker trials keep their Ray Train runs (local path or URI)
    checkpoint_every: int = 1  # epochs between checkpoints; 0: never (a resumed trial restarts)
    controller_failure_limit: int | None = None  # tests: 0, so a broken trial fails fast
    skip_trials: frozenset[str] = frozenset()  # --resume: trials the Parquet holds as finished
    # --per-user: where each trial writes its per-user test metrics, <trial_id>.parquet (the
    # paired tests of adc_dist.compare need them; the Parquet tables hold means only)
    per_user_storage: str | None = None


class TuneReporter:
    """The loop's Reporter inside a one-worker Tune trial: ``ray.tune.report`` per epoch."""

    rank, world = 0, 1

    def __init__(self, checkpoint_every: int = 1):
        import ray.tune

        self._tune = ray.tune
        self.checkpoint_every = checkpoint_every
        self._n = 0

    def device(self, use_gpu: bool) -> torch.device:
        # Ray sets CUDA_VISIBLE_DEVICES to the trial's (possibly shared) GPU.
        return torch.device("cuda", 0) if use_gpu else torch.device("cpu")

    def report(self, metrics: dict[str, Any], checkpoint: dict[str, Any] | None) -> None:
        self._n += 1
        if checkpoint is not None and self.checkpoint_every and self._n % self.checkpoint_every == 0:
            with tempfile.TemporaryDirectory() as tmp:
                save_checkpoint_file(checkpoint, Path(tmp))
                self._tune.report(dict(metrics), checkpoint=self._tune.Checkpoint.from_directory(tmp))
        else:
            self._tune.report(dict(metrics))

    def load_checkpoint(self) -> dict[str, Any] | None:
        return load_reported_checkpoint(self._tune.get_checkpoint())

    def log(self, line: str) -> None:
        pass  # the driver prints progress; per-epoch lines of many trials would drown it


def run_trial(config: dict[str, Any], settings: TrialSettings) -> None:
    """The Tune trainable (bound with ``tune.with_parameters``)."""
    import ray.tune

    trial_id = ray.tune.get_context().get_trial_id()
    if trial_id in settings.skip_trials:
        return  # finished before the driver died; its row is in trials.parquet already
    cfg = config_from_trial(config)
    if cfg.data_root is None and os.environ.get("ADC_DATA_ROOT"):
        cfg = cfg.replace(data_root=os.environ["ADC_DATA_ROOT"])
    # The trial's Ray Train run is named after the trial: a resumed sweep re-attaches to it.
    cfg = cfg.replace(name=trial_id, storage_path=settings.train_storage)
    want_per_user = settings.per_user_storage is not None

    if cfg.num_workers <= 1:
        from adc_dist.train.loop import fit

        out = fit(cfg.replace(num_workers=1), TuneReporter(settings.checkpoint_every), task=_task_for(cfg),
                  per_user=want_per_user)
    else:
        from ray.tune.integration.ray_train import TuneReportCallback

        from adc_dist.train.launch import build_trainer
        from adc_dist.train.run_guard import remove_torn_checkpoints
        from adc_dist.tune.results import open_storage

        run = open_storage(settings.train_storage).child(trial_id)
        remove_torn_checkpoints(run.fs, run.root)  # a resumed trial: what a killed worker left half-written
        trainer = build_trainer(cfg, callbacks=[TuneReportCallback()], quiet=True, per_user=want_per_user,
                                controller_failure_limit=settings.controller_failure_limit)
        result = trainer.fit()
        if result.error is not None:
            raise result.error
        out = result.return_value
        _remove_train_run(settings.train_storage, trial_id)
    if want_per_user:
        write_per_user(settings.per_user_storage, trial_id, out["per_user"])
    final = dict(out["final"])
    last_epoch = out["history"][-1]["epoch"] if out.get("history") else final.get("epochs_run", 0)
    ray.tune.report({**{k: v for k, v in final.items() if _scalar(v)}, "epoch": last_epoch, FINAL: 1})


def write_per_user(storage: str, trial_id: str, per_user: Any) -> None:
    """``<storage>/<trial_id>.parquet``, atomically, before the trial reports its end: a trial the
    Parquet holds as finished has its file."""
    import pyarrow as pa

    from adc_dist.tune.results import open_storage

    open_storage(storage).write_table(f"{trial_id}.parquet", pa.Table.from_pandas(per_user, preserve_index=False))


# Tune reuses a one-worker trial's process for the next trial: keep the splits it loaded.
_TASKS: dict[tuple, Any] = {}
_TASKS_KEPT = 8


def _task_for(cfg):
    from adc_dist.train.loop import prepare_task

    key = (cfg.task, cfg.data_root, cfg.seed, cfg.min_rating, tuple(cfg.domains or ()), cfg.subsample_domain,
           cfg.subsample_frac)
    if key not in _TASKS:
        if len(_TASKS) >= _TASKS_KEPT:
            _TASKS.pop(next(iter(_TASKS)))
        _TASKS[key] = prepare_task(cfg)
    return _TASKS[key]


def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool)) or v is None


def _remove_train_run(storage: str, name: str) -> None:
    """A finished trial's Ray Train checkpoints are not needed: the results are in Parquet."""
    from adc_dist.tune.results import open_storage

    try:
        st = open_storage(storage)
        st.fs.delete_dir(st.path(name))
    except (OSError, FileNotFoundError):
        pass
