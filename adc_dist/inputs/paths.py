"""Paths a user gives, made absolute at the entry point, before Ray starts.

Ray Train V2 runs each worker (and Tune each trial) in a working directory of its own, and
``ray job submit`` runs the driver in Ray's temporary copy of the working directory. A
relative ``ADC_DATA_ROOT=../shared/data`` reaches those processes unchanged and points
nowhere there. So every entry point resolves what the user typed against the directory
the user typed it in, once, and passes absolute paths on (environment and config alike).
No heavy imports here: the command-line entry points call this before parsing.
"""

from __future__ import annotations

import os
from pathlib import Path

# The environment variables that name local folders: made absolute here.
PATH_ENV = ("ADC_DATA_ROOT", "ADC_CACHE_DIR")
# What Ray's workers and trials must see as the driver does (the mirror is a base URL).
FORWARDED_ENV = (*PATH_ENV, "ADC_DATA_MIRROR")
# Ray's copy of a job's --working-dir lives under this folder of its session directory.
_RAY_WORKING_DIR_COPY = os.sep + "runtime_resources" + os.sep


def is_uri(path: str) -> bool:
    return "://" in path


def absolute(path: str | os.PathLike | None) -> str | None:
    """``path`` against the current directory (``~`` expanded); URIs and None unchanged.

    ``os.path.abspath`` rather than ``Path.resolve``: a symlinked data folder keeps the
    name the user gave it (the split cache keys on names, not on link targets).
    """
    if path is None or path == "":
        return None if path is None else path
    text = os.fspath(path)
    if is_uri(text):
        return text
    return os.path.abspath(os.path.expanduser(text))


def absolutize_env(environ: dict[str, str] | None = None) -> None:
    """Rewrite the path variables of ``environ`` (default ``os.environ``) as absolute paths."""
    env = os.environ if environ is None else environ
    for key in PATH_ENV:
        value = env.get(key)
        if value:
            env[key] = absolute(value)  # type: ignore[assignment]


def in_ray_job_copy(cwd: str | os.PathLike | None = None) -> bool:
    """Whether the process runs inside Ray's temporary copy of a job's working directory.

    Ray deletes that copy when the job's runtime environment is garbage-collected, so
    results written under it are lost: the defaults go to the home directory instead.
    """
    here = os.path.abspath(os.fspath(cwd) if cwd is not None else os.getcwd())
    return _RAY_WORKING_DIR_COPY in here and "working_dir_files" in here


def default_storage(kind: str) -> str:
    """The default parent folder of run (``kind="runs"``) or sweep (``"sweeps"``) directories.

    ``./runs`` or ``./sweeps`` from a checkout; ``~/adc_dist/<kind>`` inside a Ray job, whose
    working directory is a temporary copy. Always absolute, so it can be printed at start.
    """
    if in_ray_job_copy():
        return str(Path.home() / "adc_dist" / kind)
    return os.path.abspath(kind)
