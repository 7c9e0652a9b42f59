"""The run directory of one training run: what lands on disk (or on S3/GCS).

    <storage_path>/<name>/
        config.yaml         the resolved TrainConfig
        history.parquet     one row per epoch (losses, domain weights, validation metrics)
        test_metrics.json   final test metrics of the best validated epoch
        summary.json        final metrics, wall time, world size, nodes, ray version
        per_user_test.parquet  per-user test metrics (only with --per_user)
        checkpoint_*/       Ray Train's checkpoints (model, optimizer, balancer, epoch)
        checkpoints/state.pt  the in-process (--local) checkpoint instead

Local paths and any pyarrow filesystem URI (s3://, gs://) work. Each file is written
to a temporary name and renamed (local) or put in one request (object stores), so a
reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import yaml

from adc_dist.config import TrainConfig


def is_uri(path: str) -> bool:
    return "://" in path


def absolute(storage_path: str) -> str:
    """Ray needs an absolute local path (or a URI)."""
    return storage_path if is_uri(storage_path) else str(Path(storage_path).expanduser().resolve())


def run_dir_of(cfg: TrainConfig) -> str:
    assert cfg.name is not None, "the run name is resolved before the run directory"
    return f"{absolute(cfg.storage_path).rstrip('/')}/{cfg.name}"


def _fs(path: str) -> tuple[pafs.FileSystem, str]:
    if is_uri(path):
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), path


def exists(path: str) -> bool:
    fs, p = _fs(path)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.Directory:
        return bool(fs.get_file_info(pafs.FileSelector(p, recursive=False)))
    return info.type != pafs.FileType.NotFound


def write_bytes(path: str, data: bytes) -> None:
    if not is_uri(path):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return
    fs, p = _fs(path)
    with fs.open_output_stream(p) as f:  # one PUT: atomic on object stores
        f.write(data)


def write_json(path: str, obj: Any) -> None:
    write_bytes(path, json.dumps(obj, indent=2, default=float).encode())


def write_config(path: str, cfg: TrainConfig) -> None:
    write_bytes(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())


def write_parquet(path: str, df: pd.DataFrame) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), sink)
    write_bytes(path, sink.getvalue().to_pybytes())


def read_parquet(path: str) -> pd.DataFrame:
    fs, p = _fs(path)
    return pq.read_table(p, filesystem=fs).to_pandas()


def read_json(path: str) -> Any:
    fs, p = _fs(path)
    with fs.open_input_stream(p) as f:
        return json.loads(f.read())
