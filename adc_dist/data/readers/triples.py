"""Headerless tab-separated ``user<TAB>item<TAB>rating`` files, one domain per file.

The format of douban_gadtcdr (1-5 ratings), disencdr_amazon and cdrib_amazon (rating
always 1). Equal user ids in different files are the same user; item ids are local to
each domain. Several files may hold one domain (DisenCDR's train + test_original).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pandas as pd

from adc_dist.data.canonical import canonical, raw_frame
from adc_dist.data.readers._parse import int_ids, ratings, read_rows


def read_file(path: Path, domain: str) -> pd.DataFrame:
    """One file as a raw frame (ids as in the file) of ``domain``."""
    rows = read_rows(path, 3, sep="\t")
    return raw_frame(int_ids(rows[0], path, "user", 1), int_ids(rows[1], path, "item", 1), domain,
                     ratings(rows[2], path, 1))


def read(paths: Mapping[str, Path], domain_of: Mapping[str, str]) -> pd.DataFrame:
    """The canonical table of the files ``paths`` ({name: path}); ``domain_of[name]`` is a
    file's domain, and the order of ``domain_of``'s values is the table's domain order."""
    frames = [read_file(p, domain_of[name]) for name, p in paths.items()]
    source = ", ".join(str(p) for p in paths.values())
    return canonical(pd.concat(frames, ignore_index=True), source, list(dict.fromkeys(domain_of.values())))
