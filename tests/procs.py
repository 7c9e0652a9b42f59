"""Process helpers for tests that start processes: free loopback ports, process trees, the ray CLI."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from contextlib import closing
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def file_rendezvous(folder: str | Path) -> str:
    """A ``torch.distributed`` init method through a file in ``folder`` (new, so empty).

    A free TCP port can be taken between ``free_port()`` and the store binding it (a spawn
    imports torch for seconds; Ray in the other pytest worker opens ports all the while),
    and a rank that reaches another process's port aborts in gloo's C++ (SIGABRT, seen in
    CI under load). A file store has no such window; gloo's own pair sockets are
    ephemeral ports the kernel hands out on bind."""
    path = Path(folder) / "rendezvous"
    if path.exists():
        raise FileExistsError(f"{path} is left from an earlier group: a file store must start empty")
    return f"file://{path}"


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` in the process tree (from /proc)."""
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int(_stat(p)[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _stat(pid_dir: Path) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, session, ..."""
    return (pid_dir / "stat").read_text().rsplit(")", 1)[1].split()


def session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = _stat(p)
            except (OSError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[3]) == sid:
                out.append(int(p.name))
    return out


def kill_session(sid: int, timeout: float = 30.0) -> None:
    """SIGKILL every process of session ``sid`` and wait until none is left.

    A process started with ``start_new_session=True`` leads its own session, and everything it
    starts stays in it. Ray's workers move to process groups of their own, so killing the leader's
    group leaves them alive, still retrying their dead raylet's ports for up to a minute; one
    that reaches a later test's gloo listener on a reused port aborts that test's ranks.
    """
    deadline = time.time() + timeout
    while members := session_members(sid):
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.time() > deadline:
            raise RuntimeError(f"processes {members} of session {sid} survived SIGKILL for {timeout} s")
        time.sleep(0.2)


def ray_cli(*args: str) -> list[str]:
    """argv for the ``ray`` command of this interpreter's environment."""
    return [str(Path(sys.executable).parent / "ray"), *args]


REPO = Path(__file__).resolve().parents[1]


def elsewhere(base: Path, data_root: Path) -> tuple[Path, dict]:
    """A working directory that is not the checkout (``base/work/here``), the data root relative
    to it and an empty download cache (``cache``): the README's commands as typed in another
    directory, where Ray's workers and Tune's trials must still find the data. (cwd, env)."""
    cwd = base / "work" / "here"
    cwd.mkdir(parents=True)
    env = {**os.environ, "ADC_DATA_ROOT": os.path.relpath(data_root, cwd), "ADC_CACHE_DIR": "cache",
           # The child must import this checkout even if it is not installed where it runs.
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    assert not Path(env["ADC_DATA_ROOT"]).is_absolute()
    return cwd, env


def nothing_downloaded(cwd: Path) -> None:
    """The data was read from the data root; the download cache holds split caches only."""
    assert (cwd / "cache" / "splits").is_dir()
    assert not (cwd / "cache" / "data").exists(), "the data was looked for in the download cache"
