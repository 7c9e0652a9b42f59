"""Users' own interaction tables: CSV (``.csv``), TSV (``.tsv``, ``.txt``) or Parquet
(``.parquet``) with a header naming the columns ``user``, ``item``, ``domain`` and
optionally ``rating`` (other columns are ignored).

``user`` and ``item`` must be non-negative integers (users shared across domains by
equal id, items local to each domain; for string ids use RecBole ``.inter`` files);
``domain`` is a name (lower-cased); ``rating`` must be a finite number (1.0 when absent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from adc_dist.data.canonical import canonical, raw_frame
from adc_dist.data.readers._parse import int_ids, ratings, read_rows, tokens
from adc_dist.errors import AdcError

SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}
SUFFIXES = (*SEPARATORS, ".parquet")
REQUIRED = ("user", "item", "domain")


def _load(path: Path) -> tuple[pd.DataFrame, int]:
    """The file's columns by name, and the file line of row 0 (for messages)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            return pd.read_parquet(path), 1
        except Exception as e:  # pyarrow raises several unrelated types for a bad file
            raise AdcError(f"{path}: not a readable Parquet file ({e})") from None
    if suffix not in SEPARATORS:
        raise AdcError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(SUFFIXES)}")
    sep = SEPARATORS[suffix]
    with open(path, encoding="utf-8", errors="replace") as f:
        names = [n.strip().lower() for n in f.readline().rstrip("\r\n").split(sep)]
    rows = read_rows(path, len(names), sep=sep, skip=1, str_cols=(names.index("domain"),) if "domain" in names else ())
    rows.columns = names
    return rows, 2


def read(paths: Mapping[str, Path]) -> pd.DataFrame:
    """The canonical table of one user file (every domain in it, in sorted order)."""
    (path,) = paths.values()
    frame, line0 = _load(path)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise AdcError(f"{path}: missing column(s) {', '.join(missing)}; expected a header with "
                       f"user, item, domain[, rating], found {list(frame.columns)}")
    domain = np.array([d.strip().lower() for d in tokens(frame["domain"], path, "domain", line0)], dtype=object)
    r = ratings(frame["rating"], path, line0) if "rating" in frame.columns else None
    raw = raw_frame(int_ids(frame["user"], path, "user", line0), int_ids(frame["item"], path, "item", line0), domain, r)
    return canonical(raw, str(path), sorted(set(domain)))
