"""amazon4_lscd/amazon_data.mat: 1x5 cell arrays ``train_domain`` / ``test_domain`` of N x 4
uint16 ``[user, item, rating, domain]`` rows (1-based); cell 4 is the union of cells 0-3.

The file does not say which domain is which (see its PROVENANCE.md), so the domains are
named by their codes: d1..d4. Users are shared by all domains; items are local to each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from adc_dist.data.canonical import canonical, raw_frame
from adc_dist.data.readers._mat import loadmat
from adc_dist.errors import AdcError

DOMAINS = ("d1", "d2", "d3", "d4")


def read(paths: Mapping[str, Path]) -> pd.DataFrame:
    """The canonical table of d1..d4 from train + test (the whole data)."""
    (path,) = paths.values()
    m = loadmat(path, ["train_domain", "test_domain"])
    rows = np.concatenate([m[v][0, 4].astype(np.int64) for v in ("train_domain", "test_domain")])
    if rows.ndim != 2 or rows.shape[1] != 4:
        raise AdcError(f"{path}: expected N x 4 [user, item, rating, domain] rows, got shape {rows.shape}")
    codes = rows[:, 3]
    if not np.isin(codes, [1, 2, 3, 4]).all():
        raise AdcError(f"{path}: domain codes must be 1..4, found {sorted(set(codes.tolist()) - {1, 2, 3, 4})}")
    domain = np.array(DOMAINS, dtype=object)[codes - 1]
    return canonical(raw_frame(rows[:, 0], rows[:, 1], domain, rows[:, 2]), str(path), DOMAINS)
