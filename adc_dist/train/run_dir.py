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

import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import yaml

from adc_dist.config import TrainConfig
from adc_dist.errors import AdcError


NAME_MAX = 128
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_name(name: str, what: str = "--name") -> str:
    """The one rule for run and sweep names: a single directory name inside the storage.

    Letters, digits, '.', '_' and '-', starting with a letter or digit (so no leading dot,
    no path separator), no '..', at most NAME_MAX characters.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name or len(name) > NAME_MAX:
        shown = repr(name) if len(str(name)) <= 60 else repr(str(name)[:60]) + "..."
        raise AdcError(f"{what} {shown}: a name is 1-{NAME_MAX} letters, digits, '.', '_' or '-', starting with "
                       f"a letter or digit, without '..' (it is one directory inside the storage path)")
    return name


def slug(text: str) -> str:
    """Any text (a task name such as ``file:x/y.csv``) as part of a valid name."""
    return re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", text)).strip("-.")[:NAME_MAX // 2] or "run"


def is_uri(path: str) -> bool:
    return "://" in path


def absolute(storage_path: str) -> str:
    """Ray needs an absolute local path (or a URI)."""
    return storage_path if is_uri(storage_path) else str(Path(storage_path).expanduser().resolve())


def run_dir_of(cfg: TrainConfig) -> str:
    assert cfg.name is not None, "the run name is resolved before the run directory"
    check_name(cfg.name)
    return f"{absolute(cfg.storage_path).rstrip('/')}/{cfg.name}"


def fs_of(path: str) -> tuple[pafs.FileSystem, str]:
    if is_uri(path):
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), path


def exists(path: str) -> bool:
    fs, p = fs_of(path)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.Directory:
        return bool(fs.get_file_info(pafs.FileSelector(p, recursive=False)))
    return info.type != pafs.FileType.NotFound


def storage_error(path: str, e: OSError, what: str = "write to") -> AdcError:
    """An unwritable, read-only, full or file-blocked storage path as one line naming it."""
    reasons = {errno.EROFS: "it is on a read-only file system", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied", errno.ENOSPC: "the disk is full",
               errno.EDQUOT: "the disk quota is exceeded", errno.ENOTDIR: "a part of the path is a file",
               errno.EEXIST: "a file is in the way"}
    why = reasons.get(e.errno) or (str(e).strip().splitlines() or [type(e).__name__])[0][:80]
    shown = path if len(path) <= 100 else "..." + path[-100:]
    return AdcError(f"cannot {what} {shown}: {why}; fix it (or use another --storage_path) and run again; "
                    f"a run with a checkpoint continues with --resume")


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; a storage failure is one AdcError line naming the path."""
    try:
        _write_bytes(path, data)
    except OSError as e:
        raise storage_error(path, e) from None


def write_local(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """``write(f)`` into a temporary file beside ``path``, then renamed: never half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_bytes(path: str, data: bytes) -> None:
    if not is_uri(path):
        write_local(path, lambda f: f.write(data))
        return
    fs, p = fs_of(path)
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
    fs, p = fs_of(path)
    return pq.read_table(p, filesystem=fs).to_pandas()


def read_json(path: str) -> Any:
    fs, p = fs_of(path)
    with fs.open_input_stream(p) as f:
        return json.loads(f.read())
