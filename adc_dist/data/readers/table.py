"""Users' own interaction tables: CSV (``.csv``), TSV (``.tsv``, ``.txt``) or Parquet
(``.parquet``) with a header naming the columns ``user``, ``item``, ``domain`` and
optionally ``rating`` (other columns are ignored).

``user`` and ``item`` are non-negative integers or, when a column holds any value that is not
a number, string ids ("u17", "B00005JKTY"); users are shared across domains by equal id, items
are local to each domain. Either way they become dense 0-based ids, and the user's own ids are
saved beside the split (``cache.ids_file``) so that results join back to them. ``domain`` is a
name (lower-cased); ``rating`` must be a finite number (1.0 when absent). A UTF-8 byte-order
mark is dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from adc_dist.data.canonical import canonical, raw_frame
from adc_dist.data.readers._parse import ids, ratings, read_rows, tokens
from adc_dist.errors import AdcError
from adc_dist.inputs.files import one_line, open_regular, short

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
            raise AdcError(f"{path}: not a readable Parquet file ({one_line(str(e), 120)})") from None
    if suffix not in SEPARATORS:
        raise AdcError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(SUFFIXES)}")
    sep = SEPARATORS[suffix]
    with open_regular(path, "data file") as f:
        head = f.read(8192)
    nul = head.find(b"\x00")
    if nul >= 0:
        raise AdcError(f"{path}: binary content (a NUL byte at offset {nul}), not a "
                       f"{'CSV' if sep == ',' else 'TSV'} table")
    with open(path, encoding="utf-8-sig", errors="replace") as f:  # -sig: a byte-order mark is dropped
        names = [n.strip().lower() for n in f.readline().rstrip("\r\n").split(sep)]
    twice = sorted({n for n in names if names.count(n) > 1 and n in (*REQUIRED, "rating")})
    if twice:
        raise AdcError(f"{path}: the header names column {twice[0]!r} twice")
    text_cols = tuple(names.index(c) for c in ("user", "item", "domain") if c in names)
    rows = read_rows(path, len(names), sep=sep, skip=1, str_cols=text_cols)
    rows.columns = names
    return rows, 2


def read(paths: Mapping[str, Path]) -> pd.DataFrame:
    """The canonical table of one user file (every domain in it, in sorted order)."""
    (path,) = paths.values()
    frame, line0 = _load(path)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise AdcError(f"{path}: missing column(s) {', '.join(missing)}; expected a header with "
                       f"user, item, domain[, rating], found {short(list(frame.columns))}")
    domain = np.array([d.strip().lower() for d in tokens(frame["domain"], path, "domain", line0)], dtype=object)
    r = ratings(frame["rating"], path, line0) if "rating" in frame.columns else None
    raw = raw_frame(ids(frame["user"], path, "user", line0), ids(frame["item"], path, "item", line0), domain, r)
    return canonical(raw, str(path), sorted(set(domain)))
