"""RecBole atomic ``.inter`` files: tab-separated with a header of ``name:type`` fields
(e.g. ``user_id:token<TAB>item_id:token<TAB>rating:float``; the ``:type`` may be absent).

One file per domain. ``user_id`` and ``item_id`` are tokens (any non-empty strings; the
same user token in two files is the same user); ``rating`` is optional (1.0 when absent);
other fields (``timestamp``, ...) are ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pandas as pd

from adc_dist.data.canonical import canonical, raw_frame
from adc_dist.data.readers._parse import ratings, read_rows, tokens
from adc_dist.errors import AdcError


def _header(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", errors="replace") as f:  # -sig: a byte-order mark is dropped
        line = f.readline().rstrip("\r\n")
    return [field.split(":", 1)[0].strip() for field in line.split("\t")]


def read_file(path: Path, domain: str) -> pd.DataFrame:
    """One .inter file as a raw frame (string token ids) of ``domain``."""
    names = _header(path)
    missing = [f for f in ("user_id", "item_id") if f not in names]
    if missing:
        raise AdcError(f"{path}: the header has no {' or '.join(missing)} field (RecBole atomic .inter "
                       f"files start with e.g. 'user_id:token<TAB>item_id:token<TAB>rating:float'); "
                       f"found {names}")
    u, i = names.index("user_id"), names.index("item_id")
    rows = read_rows(path, len(names), sep="\t", skip=1, str_cols=(u, i))
    r = ratings(rows[names.index("rating")], path, 2) if "rating" in names else None
    return raw_frame(tokens(rows[u], path, "user_id", 2), tokens(rows[i], path, "item_id", 2), domain, r)


def read(paths: Mapping[str, Path], domain_of: Mapping[str, str]) -> pd.DataFrame:
    """The canonical table of the .inter files ``paths`` ({name: path}); ``domain_of[name]``
    is a file's domain and the order of its values the table's domain order."""
    frames = [read_file(p, domain_of[name]) for name, p in paths.items()]
    source = ", ".join(str(p) for p in paths.values())
    return canonical(pd.concat(frames, ignore_index=True), source, list(dict.fromkeys(domain_of.values())))
