"""The sweep's hooks into Ray Tune's driver loop: Parquet results, progress lines, per-task ASHA.

* :class:`SweepCallback` turns Tune's trial events into :class:`adc_dist.results.TrialRecord`
  rows and merges them into the Parquet files on every trial end (and every
  ``flush_every_s`` while trials run), and prints one line per finished trial plus a
  periodic status line.
* :class:`PerTaskScheduler` runs one ASHA per task: tasks have different metric scales
  (NDCG@10 of 0.02 on one pair is good, on another poor), so one ASHA across tasks would
  stop the trials of the harder task first. It reads the validation score from each
  result (``valid_<metric><N>_mean`` of the trial's early_stop_metric), ignores the final
  test result, and never stops a trial at its last epoch (so every finished trial tests).
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import time
from typing import Any, Callable

from ray.tune import Callback
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from adc_dist.tune.records import score_key
from adc_dist.tune.results import ResultsWriter, open_storage
from adc_dist.tune.search_space import config_from_trial, trial_overrides
from adc_dist.tune.trial import FINAL

_DROP = {"config"}  # Tune puts the whole config into every result
CHECKPOINT_GRACE_S = 120.0  # Tune snapshots its experiment state well within this


def error_text(trial: Any, limit: int = 2000) -> str:
    """The failure of a trial: the tail of its last traceback (the full one is in Tune's trial dir).

    Tune writes ``error.txt`` in the driver's staging dir first and uploads it later, so
    read that file before asking the storage (``trial.get_error()``).
    """
    text = ""
    try:
        path = trial.error_file
        if path and os.path.isfile(path):
            with open(path) as f:
                text = f.read()
        if not text.strip():
            text = str(trial.get_error() or "")
    except Exception as e:  # noqa: BLE001 - the error file may be unreadable; say so
        text = f"(error details unavailable: {e})"
    text = re.split(r"^Failure # \d+ \(occurred at [^)]*\)\n", text, flags=re.M)[-1]  # the last failure
    text = re.sub(r"\x1b\[[0-9;]*m", "", text).strip() or "trial failed (no error message)"
    return text if len(text) <= limit else "..." + text[-limit:]


class SweepCallback(Callback):
    def __init__(self, results_uri: str, sweep: str, *, train_storage: str, shown_keys: list[str],
                 flush_every_s: float = 30.0, status_every_s: float = 60.0, quiet: bool = False,
                 delete_checkpoints: bool = True):
        self.results_uri = results_uri
        self.sweep = sweep
        self.train_storage = train_storage
        self.shown_keys = shown_keys
        self.flush_every_s = flush_every_s
        self.status_every_s = status_every_s
        self.quiet = quiet
        self.delete_checkpoints = delete_checkpoints
        self._writer: ResultsWriter | None = None
        self._finished_before: set[str] = set()  # trials this sweep already holds as ok/stopped
        self._to_delete: list[tuple[float, Any]] = []  # (finished at, trial): checkpoints to free
        self._t0 = time.time()
        self._last_status = time.time()
        self._total: int | None = None
        self._counts = {"ok": 0, "stopped": 0, "error": 0}

    # Pickled into Tune's experiment state (tuner.pkl): keep no open handles.
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_writer"] = None
        return state

    @property
    def writer(self) -> ResultsWriter:
        if self._writer is None:
            self._writer = ResultsWriter(open_storage(self.results_uri), self.sweep)
        return self._writer

    def _record(self, trial: Any):
        if trial.trial_id in self._finished_before:
            return None
        rec = self.writer.records.get(trial.trial_id)
        if rec is None:
            cfg = config_from_trial(trial.config).to_dict()
            cfg.update(name=trial.trial_id, storage_path=self.train_storage)
            rec = self.writer.record(trial.trial_id, cfg)
        return rec

    def _print(self, line: str) -> None:
        if not self.quiet:
            print(line, file=sys.stdout, flush=True)

    # ----------------------------------------------------------------------- events
    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        self._total = total_num_samples
        self._t0 = time.time()
        self._finished_before = finished_trials(self.results_uri, self.sweep)

    def on_trial_start(self, iteration, trials, trial, **info):
        rec = self._record(trial)
        if rec is not None and rec.started_at is None:
            rec.started_at = time.time()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        rec = self._record(trial)
        if rec is None:
            return
        if rec.started_at is None:  # a trial restored by --resume
            rec.started_at = time.time()
        if result.get(FINAL):
            rec.final = {k: v for k, v in result.items() if k not in _DROP}
        else:
            if rec.first_result_at is None:
                rec.first_result_at = time.time()
            rec.results.append({k: v for k, v in result.items() if k not in _DROP})
        self.writer.mark_dirty()
        if time.time() - self.writer.last_flush > self.flush_every_s:
            self.writer.flush()

    def on_trial_complete(self, iteration, trials, trial, **info):
        rec = self._record(trial)
        if rec is None:
            return
        rec.finished_at = time.time()
        rec.stopped = rec.final is None
        self._finish(trial, rec)

    def on_trial_error(self, iteration, trials, trial, **info):
        rec = self._record(trial)
        if rec is None:
            return
        rec.finished_at = time.time()
        rec.error = error_text(trial)
        self._finish(trial, rec)

    def on_step_end(self, iteration, trials, **info):
        self._delete_checkpoints(older_than_s=CHECKPOINT_GRACE_S)
        if time.time() - self._last_status > self.status_every_s:
            self._last_status = time.time()
            running = sum(1 for t in trials if t.status == "RUNNING")
            pending = sum(1 for t in trials if t.status == "PENDING")
            done = sum(self._counts.values())
            counts = f" ({self._counts_str()})" if done else ""
            self._print(f"[{self._elapsed()}] {done} done{counts}, {running} running, {pending} pending")
            if self.writer._dirty and time.time() - self.writer.last_flush > self.flush_every_s:
                self.writer.flush()

    def on_experiment_end(self, trials, **info):
        self.writer.mark_dirty()
        self.writer.flush()
        self._delete_checkpoints(older_than_s=0.0)
        self._print(f"[{self._elapsed()}] sweep {self.sweep}: {sum(self._counts.values())} trials ended "
                    f"({self._counts_str()}); results in {self.results_uri}")

    # ------------------------------------------------------------------------ helpers
    def _finish(self, trial: Any, rec) -> None:
        _backfill_history(trial, rec)
        self.writer.mark_dirty()
        self.writer.flush()  # every finished trial reaches the Parquet before the next event
        status = rec.status
        self._counts[status] = self._counts.get(status, 0) + 1
        row = rec.trial_row()
        shown = trial_overrides(trial.config)
        params = " ".join(f"{k}={shown[k]}" for k in self.shown_keys if k in shown) or "(base point)"
        if status == "error":
            what = rec.error.strip().splitlines()[-1][:200]
        else:
            metric = rec.config["early_stop_metric"]
            what = f"valid {metric} {_fmt(row['valid_score'])}"
            if status == "ok":
                what += f", test {_fmt(row['test_score'])}"
            what += f", {row['epochs_run']} epochs"
        done = sum(self._counts.values())
        total = f"/{self._total}" if self._total else ""
        wall = f" in {row['wall_time_s']:.0f}s" if row["wall_time_s"] else ""
        self._print(f"[{self._elapsed()}] {done}{total} {status:<7} {rec.task} {trial.trial_id} {params}: "
                    f"{what}{wall}")
        if self.delete_checkpoints:
            self._to_delete.append((time.time(), trial))

    def _delete_checkpoints(self, older_than_s: float) -> None:
        """Free a finished trial's checkpoints once Tune's experiment state surely knows it finished.

        Deleting at once would break --resume for a trial that finished just before a kill
        (Tune's state, saved every few seconds, would still list it as running and try to
        restore its checkpoint).
        """
        now = time.time()
        keep = []
        for t, trial in self._to_delete:
            if now - t >= older_than_s:
                _delete_trial_checkpoints(trial)
            else:
                keep.append((t, trial))
        self._to_delete = keep

    def _elapsed(self) -> str:
        s = int(time.time() - self._t0)
        return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"

    def _counts_str(self) -> str:
        return ", ".join(f"{v} {k}" for k, v in self._counts.items() if v)


def _backfill_history(trial: Any, rec) -> None:
    """A trial resumed from a checkpoint reported its early epochs to the driver that died.

    Tune keeps every result of a trial in its ``result.json`` (restored with the
    experiment), so take the epochs this driver did not see from there.
    """
    seen = {r.get("epoch") for r in rec.results}
    if 1 in seen or (not rec.results and rec.final is None):
        return
    lines: list[str] = []
    try:
        local = os.path.join(trial.local_path or "", "result.json")
        if os.path.isfile(local):
            with open(local) as f:
                lines = f.read().splitlines()
        else:
            fs, path = trial.storage.storage_filesystem, trial.storage.trial_fs_path + "/result.json"
            with fs.open_input_stream(path) as f:
                lines = f.read().decode().splitlines()
    except Exception:  # noqa: BLE001 - history stays partial; the trial row is still right
        return
    earlier = {}
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if not r.get(FINAL) and r.get("epoch") is not None and r["epoch"] not in seen:
            earlier[r["epoch"]] = {k: v for k, v in r.items() if k not in _DROP}
    rec.results[:0] = [earlier[e] for e in sorted(earlier)]


def finished_trials(results_uri: str, sweep: str) -> set[str]:
    """Ids of the trials the results directory holds as finished (ok or stopped) for ``sweep``.

    A resumed sweep skips them even where Tune's own state, saved a few seconds behind,
    still lists them as running.
    """
    import pyarrow.compute as pc

    from adc_dist.tune.records import ERROR, TRIALS_FILE, TRIALS_SCHEMA

    table = open_storage(results_uri).read_table(TRIALS_FILE, TRIALS_SCHEMA)
    if table is None:
        return set()
    mask = pc.and_(pc.equal(table["sweep"], sweep), pc.not_equal(table["status"], ERROR))
    return set(table.filter(mask)["trial_id"].to_pylist())


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _delete_trial_checkpoints(trial: Any) -> None:
    """A finished trial's checkpoints are not needed (its results are in Parquet): free the disk."""
    try:
        import pyarrow.fs as pafs

        fs, path = trial.storage.storage_filesystem, trial.storage.trial_fs_path
        for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
            if info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_"):
                fs.delete_dir(info.path)
    except Exception:  # noqa: BLE001 - best effort; a left-over checkpoint is harmless
        pass


class PerTaskScheduler(FIFOScheduler):
    """One :class:`AsyncHyperBandScheduler` per task, fed the trial's own validation score."""

    SCORE = "_adc_valid_score"

    def __init__(self, make: Callable[[], AsyncHyperBandScheduler]):
        super().__init__()
        self._make = make
        self._by_task: dict[str, AsyncHyperBandScheduler] = {}

    def _for(self, trial: Any) -> AsyncHyperBandScheduler:
        task = trial.config["task"]
        if task not in self._by_task:
            self._by_task[task] = self._make()
        return self._by_task[task]

    def _score(self, trial: Any, result: dict) -> dict | None:
        if result.get(FINAL):
            return None
        metric = trial_overrides(trial.config).get("early_stop_metric") or config_from_trial(trial.config).early_stop_metric
        value = result.get(score_key("valid", metric))
        if value is None:  # an epoch without validation (eval_every > 1)
            return None
        return {**result, self.SCORE: value}

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # the score is ours, not TuneConfig's

    def on_trial_add(self, tune_controller, trial):
        self._for(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result):
        scored = self._score(trial, result)
        if scored is None:
            return TrialScheduler.CONTINUE
        decision = self._for(trial).on_trial_result(tune_controller, trial, scored)
        if result.get("epoch", 0) >= _epochs_of(trial):
            return TrialScheduler.CONTINUE  # its last epoch: let it test (the rung is recorded)
        return decision

    def on_trial_complete(self, tune_controller, trial, result):
        self._forget(trial)

    def on_trial_error(self, tune_controller, trial):
        self._forget(trial)

    def on_trial_remove(self, tune_controller, trial):
        self._forget(trial)

    def _forget(self, trial: Any) -> None:
        self._for(trial)._trial_info.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        return "Using ASHA per task: " + ", ".join(f"{t}: {s._num_stopped} stopped" for t, s in self._by_task.items())


def _epochs_of(trial: Any) -> int:
    epochs = trial_overrides(trial.config).get("epochs")
    return int(epochs) if epochs is not None else config_from_trial(trial.config).epochs


def make_asha(grace_period: int, reduction_factor: float, max_t: int) -> Callable[[], AsyncHyperBandScheduler]:
    # functools.partial, not a closure: the scheduler is pickled into Tune's experiment state.
    return functools.partial(
        AsyncHyperBandScheduler, time_attr="epoch", metric=PerTaskScheduler.SCORE, mode="max", max_t=max_t,
        grace_period=min(grace_period, max_t), reduction_factor=reduction_factor,
        stop_last_trials=False)  # a trial at its last epoch still has to test
