"""One driver per run or sweep directory: an exclusive lock file beside the directory.

``<storage>/.<name>.lock`` holds the host, PID and process start of the driver that owns
``<storage>/<name>/`` (a leading dot cannot clash with a name: names never start with
one). It is taken before anything is written, so a second driver with the same --name,
or a --resume of a live run, is refused with one line before it touches the directory.

A lock whose process is gone (killed with SIGKILL, a crashed machine of the same name) is
stale: the next driver takes it over and says so. A lock of another host cannot be
checked from here; the message names it and how to remove it by hand.

On a local disk the lock is created with O_EXCL (atomic). On an object store (s3://,
gs://) there is no exclusive create: the lock is written after checking that none is
there, which stops a second driver started later but not two started in the same second.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from adc_dist.errors import AdcError
from adc_dist.train.run_dir import storage_error

# An empty lock file (its writer died between create and write) is stale after this long.
EMPTY_LOCK_STALE_S = 30.0


def lock_path(parent: str, name: str) -> str:
    return f"{parent.rstrip('/')}/.{name}.lock"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot): tells a reused PID apart."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _me() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "boot": _boot_id(),
            "start": _start_ticks(os.getpid()), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "argv": " ".join(sys.argv)[:200]}


def _alive(holder: dict[str, Any]) -> bool | None:
    """Whether the lock's process still runs: True, False, or None (another host: unknown)."""
    if holder.get("host") != socket.gethostname():
        return None
    if holder.get("boot") and holder.get("boot") != _boot_id():
        return False  # the machine rebooted since
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    start = holder.get("start")
    return start is None or _start_ticks(pid) in (None, start)


class DirLock:
    """``with DirLock(storage, name, what="run"):`` -- held while the driver works on the directory."""

    def __init__(self, parent: str, name: str, *, what: str = "run", fs: pafs.FileSystem | None = None,
                 log=lambda line: print(line, file=sys.stderr, flush=True)):
        self.fs, self.path = fs, lock_path(parent, name)
        self.local = fs is None or isinstance(fs, pafs.LocalFileSystem)
        self.what, self.name, self.log = what, name, log
        self.held = False

    def __enter__(self) -> "DirLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        for _ in range(3):  # a stale lock is removed, then created anew (another driver may win)
            if self._create():
                self.held = True
                return
            holder = self._read()
            if holder is None:
                continue  # removed meanwhile
            state = _alive(holder) if holder else (False if self._age() > EMPTY_LOCK_STALE_S else True)
            if state is False:
                who = f"PID {holder.get('pid')} on {holder.get('host')}" if holder else "a driver that died at once"
                self.log(f"note: taking over the stale lock of {self.what} {self.name!r} ({who} is not running)")
                self._remove_stale(holder)
                continue
            where = f"PID {holder.get('pid')} on host {holder.get('host')}" if holder else "another driver"
            hint = ("" if state else f"; if that process is gone, remove {self.path}")
            raise AdcError(f"{self.what} {self.name!r} is in use by {where} (since {holder.get('since', '?')}): "
                           f"wait for it to finish or stop it first{hint}"[:290])
        raise AdcError(f"could not take the lock {self.path} of {self.what} {self.name!r}: other drivers keep "
                       f"taking it; start one driver at a time")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            if self.local:
                os.unlink(self.path)
            else:
                self.fs.delete_file(self.path)
        except (OSError, FileNotFoundError):
            pass

    # ---------------------------------------------------------------- file operations
    def _create(self) -> bool:
        """Create the lock holding our identity; False if one is there already."""
        data = json.dumps(_me()).encode()
        try:
            if self.local:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                return True
            if self.fs.get_file_info(self.path).type != pafs.FileType.NotFound:
                return False
            parent = self.path.rsplit("/", 1)[0]
            self.fs.create_dir(parent, recursive=True)
            with self.fs.open_output_stream(self.path) as f:
                f.write(data)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            raise storage_error(self.path.rsplit("/", 1)[0], e, what="write to the storage path") from None

    def _read(self) -> dict[str, Any] | None:
        """The holder ({} if unreadable or empty), or None if the lock is gone."""
        try:
            if self.local:
                raw = Path(self.path).read_bytes()
            else:
                with self.fs.open_input_stream(self.path) as f:
                    raw = f.read()
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            holder = json.loads(raw)
        except ValueError:
            return {}
        return holder if isinstance(holder, dict) else {}

    def _age(self) -> float:
        try:
            if self.local:
                return time.time() - os.stat(self.path).st_mtime
            mtime = self.fs.get_file_info(self.path).mtime
            return time.time() - mtime.timestamp() if mtime else 0.0
        except OSError:
            return 0.0

    def _remove_stale(self, holder: dict[str, Any]) -> None:
        try:
            if self.local:
                # Renamed first: of two drivers taking over at once, only one rename succeeds.
                gone = f"{self.path}.stale-{os.getpid()}"
                os.rename(self.path, gone)
                try:
                    taken = json.loads(Path(gone).read_bytes() or b"{}")
                except ValueError:
                    taken = {}
                if taken != holder:
                    # Another driver took the stale lock over and made a new one meanwhile: put
                    # its lock back (link fails if yet another exists) and let acquire retry.
                    os.link(gone, self.path)
                os.unlink(gone)
            else:
                self.fs.delete_file(self.path)
        except (OSError, FileNotFoundError):
            pass
