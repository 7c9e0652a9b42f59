"""neucdcf_amazon_music_movie: headerless ``user<TAB>item<TAB>rating<TAB>domain_index`` files.

domain_index 0 is music, 1 is movie. Item ids come from one global index (music
0-4537, movie 4538-9778); the canonical table makes them dense per domain. The whole
data is ``music_movie.trainfull.rating`` (music train + valid + all movie) together with
``music.test.rating``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from adc_dist.data.canonical import canonical, raw_frame
from adc_dist.data.readers._parse import int_ids, ratings, read_rows
from adc_dist.errors import AdcError

DOMAINS = ("music", "movie")


def _read_file(path: Path) -> pd.DataFrame:
    rows = read_rows(path, 4, sep="\t")
    code = int_ids(rows[3], path, "domain_index", 1)
    if (code > 1).any():
        raise AdcError(f"{path}: domain_index must be 0 (music) or 1 (movie), found {int(code.max())}")
    return raw_frame(int_ids(rows[0], path, "user", 1), int_ids(rows[1], path, "item", 1),
                     np.array(DOMAINS, dtype=object)[code], ratings(rows[2], path, 1))


def read(paths: Mapping[str, Path]) -> pd.DataFrame:
    """The canonical table of music and movie from the given files (all rows of all files)."""
    frames = [_read_file(p) for p in paths.values()]
    return canonical(pd.concat(frames, ignore_index=True), ", ".join(map(str, paths.values())), DOMAINS)
