"""Sweep results as Parquet: a fixed schema, atomic writes, merges without duplicates.

A results directory (a local path or any pyarrow filesystem URI, e.g.
``s3://bucket/sweeps/paper?endpoint_override=127.0.0.1:9000&scheme=http``) holds:

``trials.parquet``         one row per trial: ids, status/error, every TrainConfig field
                           in its own column, headline scores, all final metrics in a
                           ``metrics`` map, timings.
``trial_metrics.parquet``  the same final metrics, long (one row per split x metric x N
                           x domain): the tidy form for pandas / DuckDB / Spark.
``history.parquet``        one row per trial per epoch: losses, domain weights and
                           validation metrics as maps keyed by domain / metric name.

Why maps and a long table instead of ``test_ndcg10_<domain>`` columns: tasks have
different domains, so per-domain columns would change the schema from task to task.
The fixed part is wide (one column per hyper-parameter); the per-domain part is either
a ``map<string, double>`` (one row per trial, DuckDB: ``metrics['test_ndcg10_book']``)
or the long ``trial_metrics`` table. The schemas below are THE contract (docs/tune.md).

Rows are keyed by ``(sweep, trial_id)`` (plus ``epoch`` in history). Writing merges with
what is already there, the newer row winning, so a resumed or extended sweep never
duplicates a trial. Writes are atomic: on a local disk a temporary file is renamed over
the target; on object stores (S3, GCS) a single object upload is atomic already.
Nothing here imports Ray.
"""

from __future__ import annotations

import math
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import UnionType
from typing import Any, Iterable, Mapping, Union, get_args, get_origin, get_type_hints

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from adc_dist.config import FIELD_NAMES, TrainConfig
from adc_dist.errors import AdcError

SCHEMA_VERSION = "1"
TRIALS_FILE = "trials.parquet"
HISTORY_FILE = "history.parquet"
METRICS_FILE = "trial_metrics.parquet"

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


# ------------------------------------------------------------------------- tables
def to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows -> a table of exactly ``schema`` (missing keys are null; extra keys dropped)."""
    names = schema.names
    rows = [{n: r.get(n) for n in names} for r in rows]
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise AdcError(f"cannot store results as {schema.metadata[b'adc_dist.table'].decode()}.parquet: {e}") from None


def conform(table: pa.Table, schema: pa.Schema, where: str = "table") -> pa.Table:
    """Cast a table read back (or from an older version) to ``schema``.

    Missing columns become null (a TrainConfig field added later); columns the schema does
    not know are dropped; a column of an incompatible type is an AdcError.
    """
    cols = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            if col.type != f.type:
                try:
                    col = col.cast(f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                    raise AdcError(f"{where}: column {f.name!r} has type {col.type}, expected {f.type} ({e})") from None
        else:
            col = pa.nulls(table.num_rows, f.type)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=schema)


def merge(old: pa.Table | None, new: pa.Table, key: list[str], *, drop: pa.Table | None = None) -> pa.Table:
    """``old`` + ``new`` without duplicates: for equal ``key`` the row of ``new`` wins.

    ``drop``: a table of TRIALS_KEY values whose old rows are all removed first (the long
    metrics table replaces a trial's rows as a whole, even by no rows).
    """
    schema = new.schema
    if old is not None and old.num_rows:
        old = conform(old, schema)
        if drop is not None and drop.num_rows:
            gone = _compound(drop, TRIALS_KEY)
            old = old.filter(pc.invert(pc.is_in(_compound(old, TRIALS_KEY), value_set=gone)))
        both = pa.concat_tables([old, new])
    else:
        both = new
    if both.num_rows == 0:
        return both
    idx = pa.array(range(both.num_rows), pa.int64())
    keep = both.append_column("__i", idx).group_by(key, use_threads=False).aggregate([("__i", "max")])
    return both.take(keep.column("__i_max")).sort_by([(k, "ascending") for k in key])


def _compound(table: pa.Table, cols: list[str]) -> pa.Array:
    parts = [pc.cast(table.column(c), pa.string()) for c in cols]
    return pc.binary_join_element_wise(*parts, "\x1f").combine_chunks() if len(parts) > 1 else parts[0].combine_chunks()


# ------------------------------------------------------------------------ storage
@dataclass
class Storage:
    """A results directory on a pyarrow filesystem (local disk, S3, GCS, ...)."""

    uri: str  # what the user typed
    fs: pafs.FileSystem
    root: str  # the path inside fs

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def child(self, name: str) -> "Storage":
        uri = self.uri
        if "://" in uri:
            base, q, query = uri.partition("?")
            uri = f"{base.rstrip('/')}/{name}" + (f"?{query}" if q else "")
        else:
            uri = os.path.join(uri, name)
        return Storage(uri, self.fs, self.path(name))

    def exists(self, name: str) -> bool:
        return self.fs.get_file_info(self.path(name)).type != pafs.FileType.NotFound

    def makedirs(self) -> None:
        self.fs.create_dir(self.root, recursive=True)

    def read_table(self, name: str, schema: pa.Schema) -> pa.Table | None:
        if not self.exists(name):
            return None
        try:
            table = pq.read_table(self.path(name), filesystem=self.fs)
        except (OSError, pa.ArrowInvalid) as e:
            raise AdcError(f"cannot read {self.child(name).uri}: {e}") from None
        return conform(table, schema, where=self.child(name).uri)

    def write_table(self, name: str, table: pa.Table) -> None:
        """Atomic: readers see the old file or the new one, never half of one."""
        self.makedirs()
        dst = self.path(name)
        if self.is_local:
            tmp = self.path(f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                pq.write_table(table, tmp, filesystem=self.fs)
                self.fs.move(tmp, dst)  # rename(2): atomic on one POSIX filesystem
            finally:
                if self.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                    self.fs.delete_file(tmp)
        else:
            # An object store publishes an object only when its upload completes.
            pq.write_table(table, dst, filesystem=self.fs)

    def write_bytes(self, name: str, data: bytes) -> None:
        self.makedirs()
        if self.is_local:
            tmp = Path(self.path(f".{name}.{uuid.uuid4().hex[:8]}.tmp"))
            tmp.write_bytes(data)
            os.replace(tmp, self.path(name))
        else:
            with self.fs.open_output_stream(self.path(name)) as f:
                f.write(data)

    def read_bytes(self, name: str) -> bytes:
        with self.fs.open_input_stream(self.path(name)) as f:
            return f.read()


def open_storage(uri: str | os.PathLike) -> Storage:
    """A local path or a pyarrow filesystem URI (``s3://bucket/prefix?endpoint_override=...``)."""
    uri = str(uri)
    if "://" in uri and not uri.startswith("file://"):
        try:
            fs, path = pafs.FileSystem.from_uri(uri)
        except (pa.ArrowInvalid, OSError, ValueError) as e:
            raise AdcError(f"cannot open storage {uri!r}: {e}") from None
        return Storage(uri, fs, path.rstrip("/"))
    local = uri[len("file://"):] if uri.startswith("file://") else uri
    return Storage(os.path.abspath(local), pafs.LocalFileSystem(), os.path.abspath(local))


# ------------------------------------------------------------------------- writer
class ResultsWriter:
    """Collects trial records in the driver and merges them into the Parquet files.

    ``flush()`` rewrites each file as (what is on storage) merged with (the records of
    this process); it is cheap for thousands of trials, and it runs on every trial end so
    that a killed driver loses no finished trial.
    """

    def __init__(self, storage: Storage, sweep: str):
        self.storage = storage
        self.sweep = sweep
        self.records: dict[str, TrialRecord] = {}
        self._dirty = False
        self.last_flush = 0.0

    def record(self, trial_id: str, config: Mapping[str, Any] | None = None) -> TrialRecord:
        rec = self.records.get(trial_id)
        if rec is None:
            rec = self.records[trial_id] = TrialRecord(self.sweep, trial_id, dict(config or {}))
        return rec

    def mark_dirty(self) -> None:
        self._dirty = True

    def flush(self) -> None:
        if not self._dirty or not self.records:
            return
        recs = list(self.records.values())
        hist_rows = [row for r in recs for row in r.history_rows()]
        if hist_rows:
            new = to_table(hist_rows, HISTORY_SCHEMA)
            old = self.storage.read_table(HISTORY_FILE, HISTORY_SCHEMA)
            self.storage.write_table(HISTORY_FILE, merge(old, new, HISTORY_KEY))
        done = [r for r in recs if r.finished_at is not None]
        if done:
            # metrics first, trials last: trials.parquet is what readers look for.
            trials = to_table([r.trial_row() for r in done], TRIALS_SCHEMA)
            metrics = to_table([m for r in done for m in r.metric_rows()], METRICS_SCHEMA)
            old_m = self.storage.read_table(METRICS_FILE, METRICS_SCHEMA)
            self.storage.write_table(METRICS_FILE, merge(old_m, metrics, METRICS_KEY, drop=trials))
            old_t = self.storage.read_table(TRIALS_FILE, TRIALS_SCHEMA)
            self.storage.write_table(TRIALS_FILE, merge(old_t, trials, TRIALS_KEY))
        self._dirty = False
        self.last_flush = time.time()


def write_records(storage: Storage, records: Iterable[TrialRecord]) -> None:
    """Merge records into a results directory (one sweep or several)."""
    by_sweep: dict[str, ResultsWriter] = {}
    for r in records:
        w = by_sweep.setdefault(r.sweep, ResultsWriter(storage, r.sweep))
        w.records[r.trial_id] = r
    for w in by_sweep.values():
        w.mark_dirty()
        w.flush()


# ------------------------------------------------------------------------ reading
@dataclass
class Results:
    trials: "Any"  # pandas DataFrame, one row per trial
    metrics: "Any"  # long final metrics
    history: "Any"  # one row per trial per epoch (map columns as dicts)


def load_results(uri: str | os.PathLike) -> Results:
    """Read a results directory into pandas; map columns become dicts."""
    storage = open_storage(uri)
    if not storage.exists(TRIALS_FILE):
        raise AdcError(f"{storage.uri} holds no {TRIALS_FILE}: is it a sweep's results directory?")
    out = []
    for name, schema in ((TRIALS_FILE, TRIALS_SCHEMA), (METRICS_FILE, METRICS_SCHEMA), (HISTORY_FILE, HISTORY_SCHEMA)):
        table = storage.read_table(name, schema)
        if table is None:
            table = schema.empty_table()
        df = table.to_pandas()
        for f in schema:
            if pa.types.is_map(f.type):
                df[f.name] = [dict(v) if v is not None else {} for v in df[f.name]]
        out.append(df)
    return Results(*out)
