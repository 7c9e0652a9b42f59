"""The comparison's cache of finished work units, in formats that cannot run code.

A unit's value is a number (a validation score), a DataFrame (a sweep's trials) or a
``FinalRun`` (per-user metrics, history, best epoch, seconds; a tuning run's also its
validation score). Each unit is a directory
``<work>/units/<digest>/`` holding ``unit.json`` (its kind and scalars) and Parquet files
for its tables: reading one parses JSON and Parquet, never a pickle, so a cache file from
shared storage cannot run code. The directory is built under a temporary name and renamed
into place, so an interrupted comparison never leaves half a unit under a real name.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from adc_dist.compare.methods import FinalRun
from adc_dist.errors import AdcError

META = "unit.json"
FRAMES = {"frame": ("value",), "final": ("per_user", "history")}


def is_cached(path: Path) -> bool:
    return (path / META).is_file()


def _number(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _parts(value: Any) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """(the JSON part, the tables) of a unit's value."""
    if isinstance(value, FinalRun):
        return ({"kind": "final", "best_epoch": _number(value.best_epoch), "seconds": float(value.seconds),
                 "valid": _number(value.valid)},
                {"per_user": value.per_user, "history": value.history})
    if isinstance(value, pd.DataFrame):
        return {"kind": "frame"}, {"value": value}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"kind": "number", "value": float(value)}, {}
    raise TypeError(f"a work unit's value must be a number, a DataFrame or a FinalRun, not {type(value).__name__}")


def store(path: Path, value: Any) -> None:
    """Write ``value`` as the unit at ``path`` (a directory), atomically."""
    meta, frames = _parts(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".tmp-"))
    try:
        for name, df in frames.items():
            df.to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / META).write_text(json.dumps(meta))
        if path.exists():  # an earlier, unreadable attempt: replaced
            shutil.rmtree(path)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load(path: Path) -> Any:
    """The value stored at ``path``; AdcError (one line) if the unit is damaged."""
    try:
        meta = json.loads((path / META).read_text())
        kind = meta["kind"]
        frames = {name: pd.read_parquet(path / f"{name}.parquet") for name in FRAMES.get(kind, ())}
        if kind == "number":
            return float(meta["value"])
        if kind == "frame":
            return frames["value"]
        if kind == "final":
            return FinalRun(frames["per_user"], frames["history"], meta["best_epoch"], float(meta["seconds"]),
                            meta.get("valid"))
        raise ValueError(f"unknown kind {kind!r}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AdcError(f"cached work unit {path} is damaged ({str(e).splitlines()[0][:80] if str(e) else e!r}): "
                       f"remove it and run again") from None
