"""Opening a run directory safely, before Ray starts; closing it cleanly whatever happens.

``open_run(cfg)`` is the one way a training driver gets its run directory:

1. the name is checked (``run_dir.check_name``: one directory inside --storage_path);
2. the run's lock is taken (``locks.DirLock``) before anything is written: a second
   driver, or a --resume of a live run, is refused with one line; an unwritable,
   read-only or file-blocked storage path fails here, naming it;
3. --name/--resume are checked against what is on disk;
4. on a resume, torn ``checkpoint_*`` directories (a worker killed while writing one, a
   full disk) that Ray's checkpoint manager snapshot does not list are removed, and the
   checkpoint the run will continue from is loaded once, safely (``checkpoint.load``), so
   a crafted or damaged one is refused here, not in a worker;
5. if the run fails before its first checkpoint, its directory is removed (nothing half
   written stays behind, and the same --name works again); with a checkpoint it is kept,
   and --resume continues it. The lock is released either way.
"""

from __future__ import annotations

import errno
import json
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pyarrow.fs as pafs

from adc_dist.config import TrainConfig
from adc_dist.errors import AdcError
from adc_dist.train import checkpoint as ckpt_io
from adc_dist.train import run_dir as rd
from adc_dist.train.locks import DirLock

RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train V2's list of registered checkpoints
RAY_PREFIX = "checkpoint_"
LOCAL_CHECKPOINT = f"checkpoints/{ckpt_io.CHECKPOINT_FILE}"  # LocalReporter's


def _info(fs: pafs.FileSystem, path: str) -> pafs.FileInfo:
    return fs.get_file_info(path)


def _listing(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    try:
        return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except (OSError, FileNotFoundError):
        return []


def ray_snapshot(fs: pafs.FileSystem, p: str) -> dict | None:
    """Ray Train's checkpoint manager snapshot of the run at ``p``, or None if it has none."""
    path = f"{p}/{RAY_SNAPSHOT}"
    if _info(fs, path).type != pafs.FileType.File:
        return None
    try:
        with fs.open_input_stream(path) as f:
            snap = json.loads(f.read())
        if not isinstance(snap, dict):
            raise ValueError("not a JSON object")
        return snap
    except (OSError, ValueError) as e:
        raise AdcError(f"{ckpt_io.short(path)} is damaged ({str(e)[:60]}): Ray cannot resume this run; "
                       f"remove the run directory to start over") from None


def _registered(snap: dict | None) -> tuple[set[str], str | None]:
    """(every checkpoint directory the snapshot lists, the latest one)."""
    if not snap:
        return set(), None
    names = {r.get("checkpoint_dir_name") for key in ("checkpoint_results", "pending_training_results")
             for r in snap.get(key) or [] if isinstance(r, dict)}
    latest = snap.get("latest_checkpoint_result") or {}
    return {n for n in names if isinstance(n, str)}, latest.get("checkpoint_dir_name")


def remove_torn_checkpoints(fs: pafs.FileSystem, p: str,
                            log=lambda line: print(line, file=sys.stderr, flush=True)) -> list[str]:
    """Remove what a killed writer left in the run at ``p``: ``checkpoint_*`` directories
    that Ray's snapshot does not list, ``checkpoints/.tmp-*`` files.

    Only while no driver works on the run (its lock held, or a Tune trial's own run): a
    live writer's checkpoint in progress is unregistered too.
    """
    keep, _ = _registered(ray_snapshot(fs, p))
    gone = []
    for info in _listing(fs, p):
        if info.type == pafs.FileType.Directory and info.base_name.startswith(RAY_PREFIX) \
                and info.base_name not in keep:
            fs.delete_dir(info.path)
            gone.append(info.base_name)
    for info in _listing(fs, f"{p}/checkpoints"):
        if info.type == pafs.FileType.File and info.base_name.startswith(".tmp-"):
            fs.delete_file(info.path)
            gone.append(f"checkpoints/{info.base_name}")
    if gone:
        log(f"note: removed {len(gone)} unfinished checkpoint(s) of an interrupted run: {', '.join(gone)[:200]}")
    return gone


def has_checkpoint(run_dir: str) -> bool:
    fs, p = rd.fs_of(run_dir)
    return (_info(fs, f"{p}/{RAY_SNAPSHOT}").type == pafs.FileType.File
            or _info(fs, f"{p}/{LOCAL_CHECKPOINT}").type == pafs.FileType.File)


def latest_checkpoint(run_dir: str) -> str | None:
    """The checkpoint file a resumed run will load (Ray's latest, else the local one)."""
    fs, p = rd.fs_of(run_dir)
    _, latest = _registered(ray_snapshot(fs, p))
    for path in ([f"{p}/{latest}/{ckpt_io.CHECKPOINT_FILE}"] if latest else []) + [f"{p}/{LOCAL_CHECKPOINT}"]:
        if _info(fs, path).type == pafs.FileType.File:
            return path if not rd.is_uri(run_dir) else None  # an object store's is checked by the worker
    return None


def ray_storage_error(error: BaseException, run_dir: str) -> AdcError | None:
    """A Ray Train failure caused by the storage (a full disk, a read-only or unwritable path) as
    one line naming the run directory; None for any other failure.

    Ray persists checkpoints inside its workers and hands the driver a wrapped error whose
    text carries the worker's OSError ("[Errno 28] No space left on device").
    """
    m = re.search(r"\[Errno (\d+)\] ([^\n'\"]*)", str(error))
    if m is None or int(m.group(1)) not in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT):
        return None
    return rd.storage_error(run_dir, OSError(int(m.group(1)), m.group(2)), what="write a checkpoint to")


@contextmanager
def open_run(cfg: TrainConfig) -> Iterator[str]:
    """Lock and check ``cfg``'s run directory (module doc); yields its path."""
    run_dir = rd.run_dir_of(cfg)  # checks the name
    parent = rd.absolute(cfg.storage_path).rstrip("/")
    fs, parent_path = rd.fs_of(parent)
    # The storage folders this run creates (local disk): removed at the end if left empty.
    new_dirs = [] if rd.is_uri(parent) else _missing_dirs(Path(parent_path))
    try:
        with DirLock(parent_path, cfg.name, what="run", fs=fs):
            there = rd.exists(run_dir)
            if there and not cfg.resume:
                raise AdcError(f"run directory {run_dir} already exists: pass --resume to continue it, "
                               f"or choose another --name")
            if cfg.resume and not there:
                raise AdcError(f"--resume: there is no run directory {run_dir} to continue "
                               f"(check --name and --storage_path)")
            if there:
                remove_torn_checkpoints(*rd.fs_of(run_dir))
                latest = latest_checkpoint(run_dir)
                if latest is not None:
                    ckpt_io.load(latest)  # refuses a crafted or damaged file before any worker starts
            try:
                yield run_dir
            except BaseException:
                if not has_checkpoint(run_dir):
                    _remove(run_dir)
                raise
    finally:
        for d in new_dirs:  # deepest first; rmdir refuses a folder that is not empty
            try:
                d.rmdir()
            except OSError:
                break


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    out = []
    while not path.exists() and path != path.parent:
        out.append(path)
        path = path.parent
    return out


def _remove(path: str) -> None:
    fs, p = rd.fs_of(path)
    try:
        fs.delete_dir(p)
    except (OSError, FileNotFoundError):
        pass
