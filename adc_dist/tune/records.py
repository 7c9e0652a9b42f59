"""The results' Parquet schemas (the contract of docs/tune.md) and the rows of one trial.

``TRIALS_SCHEMA``, ``METRICS_SCHEMA`` and ``HISTORY_SCHEMA`` fix every column; a
``TrialRecord`` collects what the driver learnt about one trial and turns it into rows of
those schemas. Reading and writing the files is ``adc_dist.tune.results``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import UnionType
from typing import Any, Mapping, Union, get_args, get_origin, get_type_hints

import pyarrow as pa

from adc_dist.config import FIELD_NAMES, TrainConfig

SCHEMA_VERSION = "1"
TRIALS_FILE = "trials.parquet"
HISTORY_FILE = "history.parquet"
METRICS_FILE = "trial_metrics.parquet"
PER_USER_DIR = "per_user"  # --per-user: <trial_id>.parquet, the test metrics of every user (evaluate)

# status values of trials.parquet
OK, STOPPED, ERROR = "ok", "stopped", "error"

FLOAT_MAP = pa.map_(pa.string(), pa.float64())
UTC_TS = pa.timestamp("ms", tz="UTC")


# ------------------------------------------------------------------------ schemas
def _arrow_type(hint: Any) -> pa.DataType:
    args = [a for a in get_args(hint) if a is not type(None)]
    if get_origin(hint) in (Union, UnionType):
        hint = args[0]
    if get_origin(hint) is list:
        return pa.list_(_arrow_type(get_args(hint)[0]))
    return {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string()}[hint]


_HINTS = get_type_hints(TrainConfig)
CONFIG_FIELDS = [pa.field(n, _arrow_type(_HINTS[n])) for n in FIELD_NAMES if n != "task"]

TRIALS_SCHEMA = pa.schema(
    [
        pa.field("sweep", pa.string(), nullable=False),  # the sweep's name (--name)
        pa.field("task", pa.string(), nullable=False),
        pa.field("trial_id", pa.string(), nullable=False),  # Ray Tune's id, unique in a sweep
        pa.field("status", pa.string(), nullable=False),  # ok | stopped | error
        pa.field("error", pa.string()),  # the failure, for status == error
        *CONFIG_FIELDS,  # every TrainConfig field, same name and type
        pa.field("task_domains", pa.list_(pa.string())),  # the task's domains, in model order
        pa.field("score_metric", pa.string()),  # e.g. "ndcg@10" (= early_stop_metric)
        pa.field("valid_score", pa.float64()),  # that metric, mean over domains, best epoch, valid
        pa.field("test_score", pa.float64()),  # the same on test (null unless status == ok)
        pa.field("best_epoch", pa.int64()),
        pa.field("epochs_run", pa.int64()),
        pa.field("metrics", FLOAT_MAP),  # valid_*/test_* <metric><N>_<domain|mean> -> value
        pa.field("wall_time_s", pa.float64()),  # trial start to end, as the driver saw it
        pa.field("train_time_s", pa.float64()),  # sum of epoch_time_s + eval_time_s
        pa.field("startup_s", pa.float64()),  # start to first epoch result, minus that epoch
        pa.field("started_at", UTC_TS),
        pa.field("finished_at", UTC_TS),
    ],
    metadata={"adc_dist.schema_version": SCHEMA_VERSION, "adc_dist.table": "trials"},
)

METRICS_SCHEMA = pa.schema(
    [
        pa.field("sweep", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),  # valid (at best epoch) | test
        pa.field("metric", pa.string(), nullable=False),  # recall | ndcg
        pa.field("n", pa.int64(), nullable=False),  # the N of @N
        pa.field("domain", pa.string(), nullable=False),  # a domain, or "mean" over domains
        pa.field("value", pa.float64()),
    ],
    metadata={"adc_dist.schema_version": SCHEMA_VERSION, "adc_dist.table": "trial_metrics"},
)

HISTORY_SCHEMA = pa.schema(
    [
        pa.field("sweep", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("epoch", pa.int64(), nullable=False),
        pa.field("valid_score", pa.float64()),  # early-stop metric, mean over domains (null: no eval)
        pa.field("loss", FLOAT_MAP),  # domain -> training loss L_k
        pa.field("weight", FLOAT_MAP),  # domain -> balancer weight w_k
        pa.field("valid", FLOAT_MAP),  # valid_<metric><N>_<domain|mean> -> value
        pa.field("samples_per_s", pa.float64()),
        pa.field("epoch_time_s", pa.float64()),
        pa.field("eval_time_s", pa.float64()),
        pa.field("weight_rank_spread", pa.float64()),
        pa.field("time_total_s", pa.float64()),  # Tune's clock since the trial (re)started
        pa.field("extra", FLOAT_MAP),  # any other numeric value the loop reported
    ],
    metadata={"adc_dist.schema_version": SCHEMA_VERSION, "adc_dist.table": "history"},
)

TRIALS_KEY = ["sweep", "trial_id"]
HISTORY_KEY = ["sweep", "trial_id", "epoch"]
METRICS_KEY = ["sweep", "trial_id", "split", "metric", "n", "domain"]

_METRIC_KEY = re.compile(r"^(valid|test)_(recall|ndcg)(\d+)_(.+)$")
_HISTORY_SCALARS = ("samples_per_s", "epoch_time_s", "eval_time_s", "weight_rank_spread", "time_total_s")
# Keys Ray Tune adds to every result: not the loop's, not stored.
_TUNE_AUTO = {
    "epoch", "timestamp", "training_iteration", "trial_id", "date", "pid", "hostname", "node_ip",
    "time_this_iter_s", "time_since_restore", "iterations_since_restore", "done", "config",
    "checkpoint_dir_name", "should_checkpoint", "experiment_tag", "experiment_id",
    "timesteps_total", "episodes_total", "timesteps_since_restore", "final",
}


# ------------------------------------------------------------------ rows from results
def parse_metric_key(key: str) -> tuple[str, str, int, str] | None:
    """``"test_ndcg10_book"`` -> ``("test", "ndcg", 10, "book")``; None if not a metric key."""
    m = _METRIC_KEY.match(key)
    return (m[1], m[2], int(m[3]), m[4]) if m else None


def score_key(split: str, early_stop_metric: str) -> str:
    """``("valid", "ndcg@10")`` -> ``"valid_ndcg10_mean"``."""
    metric, _, n = early_stop_metric.partition("@")
    return f"{split}_{metric}{n}_mean"


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        try:  # numpy / torch scalars
            v = float(v)
        except (TypeError, ValueError):
            return None
    v = float(v)
    return v if math.isfinite(v) else None


def history_row(sweep: str, task: str, trial_id: str, result: Mapping[str, Any],
                early_stop_metric: str) -> dict[str, Any]:
    """One history row from one per-epoch result (the loop's keys, see CONTRACTS.md)."""
    loss, weight, valid, extra = {}, {}, {}, {}
    for key, value in result.items():
        if key in _TUNE_AUTO or key in _HISTORY_SCALARS:
            continue
        x = _num(value)
        if x is None:
            continue
        if key.startswith("loss_"):
            loss[key[5:]] = x
        elif key.startswith("weight_"):
            weight[key[7:]] = x
        elif key.startswith("valid_") and parse_metric_key(key):
            valid[key] = x
        else:
            extra[key] = x
    epoch = result.get("epoch", result.get("training_iteration"))
    return {
        "sweep": sweep, "task": task, "trial_id": trial_id, "epoch": int(epoch),
        "valid_score": valid.get(score_key("valid", early_stop_metric)),
        "loss": loss, "weight": weight, "valid": valid,
        **{k: _num(result.get(k)) for k in _HISTORY_SCALARS},
        "extra": extra,
    }


@dataclass
class TrialRecord:
    """What the driver learnt about one trial: config, per-epoch results, final metrics."""

    sweep: str
    trial_id: str
    config: dict[str, Any]  # a full TrainConfig.to_dict()
    results: list[dict[str, Any]] = field(default_factory=list)  # per-epoch results, in order
    final: dict[str, Any] | None = None  # the loop's return value (test_*, best_epoch, epochs_run)
    error: str | None = None
    stopped: bool = False  # ended by the scheduler or the time budget
    started_at: float | None = None  # unix seconds
    finished_at: float | None = None
    first_result_at: float | None = None

    @property
    def task(self) -> str:
        return self.config["task"]

    @property
    def status(self) -> str:
        if self.error is not None:
            return ERROR
        return OK if self.final is not None else STOPPED

    def history_rows(self) -> list[dict[str, Any]]:
        metric = self.config["early_stop_metric"]
        return [history_row(self.sweep, self.task, self.trial_id, r, metric) for r in self.results]

    def trial_row(self) -> dict[str, Any]:
        hist = self.history_rows()
        final = self.final or {}
        metric = self.config["early_stop_metric"]
        scored = [h for h in hist if h["valid_score"] is not None]
        best_epoch = final.get("best_epoch")
        if best_epoch is None and scored:
            best_epoch = max(scored, key=lambda h: h["valid_score"])["epoch"]
        best = next((h for h in reversed(hist) if h["epoch"] == best_epoch), None)
        metrics = dict(best["valid"]) if best else {}
        for k, v in final.items():
            if parse_metric_key(k) and _num(v) is not None:
                metrics[k] = _num(v)
        domains = final.get("domains") or _domains_of(metrics, hist)
        train_time = sum((h["epoch_time_s"] or 0.0) + (h["eval_time_s"] or 0.0) for h in hist) if hist else None
        startup = None
        if self.first_result_at and self.started_at and hist:
            first = hist[0]
            startup = max(0.0, self.first_result_at - self.started_at
                          - (first["epoch_time_s"] or 0.0) - (first["eval_time_s"] or 0.0))
        wall = (self.finished_at - self.started_at) if (self.finished_at and self.started_at) else None
        epochs_run = final.get("epochs_run")
        if epochs_run is None and hist:
            epochs_run = max(h["epoch"] for h in hist)
        row = {
            "sweep": self.sweep, "task": self.task, "trial_id": self.trial_id,
            "status": self.status, "error": self.error,
            **{f.name: self.config.get(f.name) for f in CONFIG_FIELDS},
            "task_domains": list(domains) if domains else None,
            "score_metric": metric,
            "valid_score": metrics.get(score_key("valid", metric)),
            "test_score": metrics.get(score_key("test", metric)),
            "best_epoch": int(best_epoch) if best_epoch is not None else None,
            "epochs_run": int(epochs_run) if epochs_run is not None else None,
            "metrics": metrics,
            "wall_time_s": wall, "train_time_s": train_time, "startup_s": startup,
            "started_at": _ts(self.started_at), "finished_at": _ts(self.finished_at),
        }
        return row

    def metric_rows(self) -> list[dict[str, Any]]:
        return metric_rows(self.sweep, self.task, self.trial_id, self.trial_row()["metrics"])


def metric_rows(sweep: str, task: str, trial_id: str, metrics: Mapping[str, float]) -> list[dict[str, Any]]:
    rows = []
    for key, value in metrics.items():
        parsed = parse_metric_key(key)
        if parsed:
            split, metric, n, domain = parsed
            rows.append({"sweep": sweep, "task": task, "trial_id": trial_id, "split": split,
                         "metric": metric, "n": n, "domain": domain, "value": value})
    return rows


def _domains_of(metrics: Mapping[str, float], hist: list[dict]) -> list[str]:
    out: list[str] = []
    for h in hist[:1]:
        out = list(h["loss"]) or list(h["weight"])
    if not out:
        for key in metrics:
            p = parse_metric_key(key)
            if p and p[3] != "mean" and p[3] not in out:
                out.append(p[3])
    return out


def _ts(t: float | None) -> datetime | None:
    return datetime.fromtimestamp(t, tz=timezone.utc) if t else None
