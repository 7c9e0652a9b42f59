"""load_task: task name -> verified source files -> canonical table -> seeded split -> cache.

The cached split is the single source of truth: every worker, trial and baseline that
asks for (task, seed, min_rating) with the same source files reads the same Parquet file.
"""

from __future__ import annotations

import datetime as dt
import functools
import numbers
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

import adc_dist
from adc_dist.data import cache, sources, split
from adc_dist.data.canonical import canonical, check_overlap, domain_codes, id_map
from adc_dist.data.registry import TaskSpec, get_task
from adc_dist.data.sources import Dataset
from adc_dist.data.task_data import TaskData
from adc_dist.errors import AdcError
from adc_dist.inputs.files import short

MAX_DOMAINS = 64  # each domain is an item table and a head; thousands mean the wrong column was named
FORMAT = 2  # bump when the cached layout or meaning changes: old caches are then ignored (2: ids file)


@dataclass(frozen=True)
class Prepared:
    """A loaded task and where its cache lives; ``built`` is False when the cache was reused."""

    task: TaskData
    path: Path
    built: bool
    seconds: float

    @property
    def ids_path(self) -> Path:
        """The source's own user and item ids beside the split (:func:`adc_dist.data.cache.read_ids`)."""
        return cache.ids_file(self.path)


def load_task(name: str, *, data_root: str | os.PathLike | None = None, seed: int = 0,
              min_rating: float | None = None, cache_dir: str | os.PathLike | None = None) -> TaskData:
    """The seeded split of task ``name`` (built and cached on first use).

    data_root: folder laid out like ../shared/data (default ``$ADC_DATA_ROOT``, else the
    download cache); cache_dir: default ``$ADC_CACHE_DIR``, else ``~/.cache/adc_dist``;
    min_rating: keep only ratings >= it as positives (None: every observed rating).
    Raises :class:`AdcError` on bad input; nothing is written then.
    """
    return prepare(name, data_root=data_root, seed=seed, min_rating=min_rating, cache_dir=cache_dir).task


def prepare(name: str, *, data_root: str | os.PathLike | None = None, seed: int = 0,
            min_rating: float | None = None, cache_dir: str | os.PathLike | None = None) -> Prepared:
    """Like :func:`load_task`, also saying where the cache is and whether it was built now."""
    t0 = time.perf_counter()
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise AdcError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)  # numpy integers from a sweep are fine, but JSON metadata wants an int
    cache_dir = sources.cache_root(cache_dir)
    root = sources.data_root(data_root, cache_dir)
    spec = get_task(name, root)
    files = _local_files(spec, root, cache_dir)
    identity = {"format": FORMAT, "task": spec.name, "domains": spec.domains, "seed": seed,
                "min_rating": min_rating, "protocol": split.PROTOCOL,
                "sources": {rel: sha for rel, (_, sha) in files.items()}}
    if spec.version is not None:  # a generated task: its generator's version, not files, decides
        identity["generator"] = spec.version
    key = cache.split_key(identity)
    path = cache.cache_file(cache_dir, spec.name, seed, min_rating, key)
    cached = cache.read_valid(path, key)
    if cached is not None:
        return Prepared(cached, path, False, time.perf_counter() - t0)
    table = _task_table(spec, files, min_rating)
    domains = list(table["domain"].cat.categories)
    codes = split.assign(table, seed)
    counts = _counts(table, codes)
    meta = {**identity, "key": key, "domains": domains, "dataset": _dataset_label(spec),
            "n_users": int(table["user"].max()) + 1,
            "n_items": [int(c["items"]) for c in counts.values()], "counts": counts,
            "ids_file": cache.ids_file(path).name,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "adc_dist_version": adc_dist.__version__}
    cache.write(path, table, codes, meta, id_map(table))
    return Prepared(cache.read(path), path, True, time.perf_counter() - t0)


def _local_files(spec: TaskSpec, root: Path, cache_dir: Path) -> dict[str, tuple[Path, str]]:
    """{file inside the dataset folder: (verified local path, sha256)}, downloading if needed."""
    if isinstance(spec.source, Dataset):
        return {rel: sources.fetch(spec.source.folder, rel, root=root, cache_dir=cache_dir) for rel in spec.files}
    return {rel: (spec.source / rel, sources.sha256_file(spec.source / rel)) for rel in spec.files}


def _dataset_label(spec: TaskSpec) -> str:
    return spec.source.folder if isinstance(spec.source, Dataset) else str(spec.source)


@functools.lru_cache(maxsize=2)
def _read_dataset(read: Callable[[Mapping[str, Path]], pd.DataFrame], files: tuple[tuple[str, str, str], ...]
                  ) -> pd.DataFrame:
    """The reader's canonical table, memoised by (reader, files, sha256s): preparing the six
    Amazon tasks parses demo_amazon.mat once. Callers must not modify the result."""
    return read({rel: Path(p) for rel, p, _ in files})


def _task_table(spec: TaskSpec, files: dict[str, tuple[Path, str]], min_rating: float | None) -> pd.DataFrame:
    """The task's canonical table: its domains, ratings >= min_rating, users and items re-indexed."""
    source = ", ".join(str(p) for p, _ in files.values())
    full = _read_dataset(spec.read, tuple((rel, str(p), sha) for rel, (p, sha) in files.items()))
    ids = id_map(full)  # the file's own ids, carried through the re-indexing below
    domains = list(spec.domains) if spec.domains is not None else list(full["domain"].cat.categories)
    if len(domains) < 2:
        raise AdcError(f"{source}: a cross-domain task needs at least two domains, found {short(domains)}")
    if len(domains) > MAX_DOMAINS:
        raise AdcError(f"{source}: {len(domains):,} domains; the limit is {MAX_DOMAINS} "
                       f"(is 'domain' the right column?)")
    if min_rating is not None:
        full = full[full["rating"].to_numpy() >= min_rating]
    present = set(full["domain"].cat.categories[np.unique(domain_codes(full))])
    for d in domains:
        if d not in present:
            why = f" with rating >= {min_rating:g}" if min_rating is not None else ""
            raise AdcError(f"{source}: domain {d!r} is empty: no interactions{why}")
    table = canonical(full, source, domains, ids=ids)
    check_overlap(table, domains, source)
    return table


def _counts(table: pd.DataFrame, codes: np.ndarray) -> dict[str, dict[str, int]]:
    """Per domain: users, items (dense, so n_items), interactions and split sizes."""
    dom = domain_codes(table)
    users, items = table["user"].to_numpy(), table["item"].to_numpy()
    out = {}
    for k, d in enumerate(table["domain"].cat.categories):
        m = dom == k
        out[d] = {"users": len(np.unique(users[m])), "items": int(items[m].max()) + 1,
                  "interactions": int(m.sum()),
                  **{s: int((codes[m] == c).sum()) for s, c in
                     (("train", split.TRAIN), ("valid", split.VALID), ("test", split.TEST))}}
    return out
