"""The Parquet cache of split tasks: one file per (task, sources, seed, min_rating, protocol).

Layout: ``<cache>/splits/<task>/seed<seed>[-min<r>]-<key>.parquet``, where ``key`` hashes
everything the split depends on. Columns (rows sorted by domain, split, user, item):

    user int64, item int64, domain str (dictionary), rating float32, split str (dictionary)

The metadata (JSON under the schema key ``adc_dist``) records the task, its domains,
n_users, n_items, the seed, min_rating, the protocol, the sha256 of every source file and
the counts per domain. Files are written to a temporary name in the same folder and
``os.replace``d into place, so concurrent preparers never expose a partial file.

Beside each split, ``ids-<split file name>`` maps the dense ids back to the ids of the source
file (``read_ids``): columns ``kind`` ("user" / "item"), ``domain`` (null for users),
``index`` (int64, the dense id) and ``id`` (string, as in the file). It is written before the
split, so a split in the cache always has its ids beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from adc_dist.data.canonical import IdMap, domain_codes
from adc_dist.data.task_data import SPLITS, Interactions, TaskData
from adc_dist.errors import AdcError

META_KEY = b"adc_dist"


def split_key(identity: dict[str, Any]) -> str:
    """A stable hash of what a split depends on (JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def cache_file(cache_dir: Path, task: str, seed: int, min_rating: float | None, key: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", task).strip("_")
    minr = "" if min_rating is None else f"-min{min_rating:g}"
    return cache_dir / "splits" / slug / f"seed{seed}{minr}-{key[:16]}.parquet"


def ids_file(split: Path) -> Path:
    """Where the ids of the split file ``split`` live: ``seed0-<key>.parquet`` -> ``ids-seed0-<key>.parquet``
    (a prefix, so that globs for the splits, ``seed0-*.parquet``, do not match it)."""
    return split.with_name(f"ids-{split.name}")


def _ids_table(ids: IdMap) -> pa.Table:
    """One row per dense user, then per dense item of each domain: (kind, domain, index, id)."""
    parts = [("user", None, ids.users)] + [("item", d, items) for d, items in zip(ids.domains, ids.items)]
    return pa.table({
        "kind": pa.array([kind for kind, _, arr in parts for _ in range(len(arr))]).dictionary_encode(),
        "domain": pa.array([d for _, d, arr in parts for _ in range(len(arr))], pa.string()),
        "index": pa.array(np.concatenate([np.arange(len(arr)) for _, _, arr in parts]), pa.int64()),
        "id": pa.array([str(x) for _, _, arr in parts for x in arr], pa.string()),
    })


def read_ids(split: Path) -> pd.DataFrame:
    """The ids table beside the split file ``split`` (columns kind, domain, index, id).

    Join results back to the source's ids, e.g. per-user metrics:
    ``per_user.merge(ids[ids.kind == "user"][["index", "id"]], left_on="user", right_on="index")``.
    """
    path = ids_file(split)
    if not path.is_file():
        raise AdcError(f"{path}: no ids file beside the split; prepare the task again "
                       f"(python -m adc_dist.data prepare <task>)")
    return pq.read_table(path).to_pandas()


def _atomic_parquet(frame: pa.Table, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(frame, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write(path: Path, table: pd.DataFrame, codes: np.ndarray, meta: dict[str, Any], ids: IdMap | None = None) -> None:
    """Write ``table`` (canonical) with split ``codes`` and ``meta`` atomically to ``path``, and
    its ``ids`` (if given) beside it first."""
    k = domain_codes(table)
    order = np.lexsort((table["item"].to_numpy(), table["user"].to_numpy(), codes, k))
    frame = pa.table({
        "user": pa.array(table["user"].to_numpy()[order], pa.int64()),
        "item": pa.array(table["item"].to_numpy()[order], pa.int64()),
        "domain": pa.DictionaryArray.from_arrays(pa.array(k[order], pa.int8()), pa.array(meta["domains"])),
        "rating": pa.array(table["rating"].to_numpy()[order], pa.float32()),
        "split": pa.DictionaryArray.from_arrays(pa.array(codes[order], pa.int8()), pa.array(SPLITS)),
    }).replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    if ids is not None:
        _atomic_parquet(_ids_table(ids), ids_file(path))
    try:
        _atomic_parquet(frame, path)
    except BaseException:
        if ids is not None and not path.exists():  # nothing half-written: no ids without their split
            ids_file(path).unlink(missing_ok=True)
        raise


def read_valid(path: Path, key: str) -> TaskData | None:
    """The cached task at ``path``, or None if there is none, it is unreadable (e.g. a disk
    error damaged it) or it was written for another key: the caller then rebuilds it."""
    if not path.is_file():
        return None
    try:
        task = read(path)
    except (pa.ArrowException, OSError, ValueError, KeyError, TypeError):
        return None
    return task if task.meta.get("key") == key else None


def read(path: Path) -> TaskData:
    """The :class:`TaskData` stored at ``path`` (its ``meta`` is the stored metadata)."""
    frame = pq.read_table(path)
    meta = json.loads(frame.schema.metadata[META_KEY])
    cols = {name: frame.column(name).combine_chunks() for name in ("user", "item", "domain", "split")}
    # Map the stored dictionaries back to our order (a writer always uses it, but be exact).
    k = _codes(cols["domain"], meta["domains"])
    s = _codes(cols["split"], list(SPLITS))
    users, items = cols["user"].to_numpy(), cols["item"].to_numpy()
    parts = {name: tuple(_pairs(users, items, (k == j) & (s == i)) for j in range(len(meta["domains"])))
             for i, name in enumerate(SPLITS)}
    return TaskData(meta["task"], tuple(meta["domains"]), meta["n_users"], tuple(meta["n_items"]),
                    parts["train"], parts["valid"], parts["test"], meta)


def _codes(column: pa.DictionaryArray, names: list[str]) -> np.ndarray:
    remap = np.array([names.index(v) for v in column.dictionary.to_pylist()], dtype=np.int8)
    return remap[column.indices.to_numpy()]


def _pairs(users: np.ndarray, items: np.ndarray, mask: np.ndarray) -> Interactions:
    return Interactions(users[mask].astype(np.int64), items[mask].astype(np.int64))
