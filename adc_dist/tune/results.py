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
``per_user/<trial_id>.parquet``  (``--per-user``) a trial's test metrics per user and domain.

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

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from adc_dist.errors import AdcError
from adc_dist.tune.records import (HISTORY_FILE, HISTORY_KEY, HISTORY_SCHEMA, METRICS_FILE, METRICS_KEY,
                                   METRICS_SCHEMA, PER_USER_DIR, TRIALS_FILE, TRIALS_KEY, TRIALS_SCHEMA,
                                   TrialRecord)


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


def load_per_user(uri: str | os.PathLike, trial_id: str) -> "Any":
    """A trial's per-user test metrics (a sweep run with ``--per-user``), as a DataFrame."""
    storage = open_storage(uri).child(PER_USER_DIR)
    name = f"{trial_id}.parquet"
    if not storage.exists(name):
        raise AdcError(f"{storage.uri} has no {name}: was the sweep run with --per-user?")
    return pq.read_table(storage.path(name), filesystem=storage.fs).to_pandas()
