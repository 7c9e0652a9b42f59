"""amazon4_cdtf/demo_amazon.mat: four sparse 2505 x n_items rating matrices (MATLAB v5).

Row r is the same Amazon customer in every matrix (the shared user index); columns are
items local to the domain; stored values are 1-5 star ratings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pandas as pd
import scipy.sparse as sp

from adc_dist.data.canonical import canonical, raw_frame
from adc_dist.data.readers._mat import loadmat

VARIABLES = {"Book_Matrix": "book", "Music_Matrix": "music", "DVD_Matrix": "dvd", "Video_Matrix": "video"}


def read(paths: Mapping[str, Path]) -> pd.DataFrame:
    """The canonical table of all four domains (book, music, dvd, video)."""
    (path,) = paths.values()
    m = loadmat(path, list(VARIABLES))
    frames = []
    for var, domain in VARIABLES.items():
        ratings = sp.csr_matrix(m[var])
        ratings.eliminate_zeros()  # an explicitly stored zero still means "unobserved"
        coo = ratings.tocoo()
        frames.append(raw_frame(coo.row.astype("int64"), coo.col.astype("int64"), domain, coo.data))
    return canonical(pd.concat(frames, ignore_index=True), str(path), list(VARIABLES.values()))
