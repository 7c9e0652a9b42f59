"""The seeded train / valid / test split of a canonical table, per user and per domain.

Protocol ``PROTOCOL`` (recorded in every cache's metadata):
- each (user, domain) with n >= 3 items holds out n_test = max(1, round(0.2 n)) items for
  test and n_valid = max(1, round(0.1 n)) for valid, chosen uniformly at random; the
  remaining n - n_test - n_valid >= 1 items are train (about 70 / 10 / 20);
- a (user, domain) with 1 or 2 items keeps them all in train (nothing to hold out
  without leaving the user without a train item there).

The random draw of a domain depends only on (seed, domain name) and on the domain's own
rows, so a domain is split identically in every task that contains it (e.g. Book in
amazon-book-music and amazon-book-dvd): single-domain baselines compare across tasks.
"""

from __future__ import annotations

import zlib
import numpy as np
import pandas as pd

from adc_dist.data.canonical import domain_codes

TRAIN, VALID, TEST = 0, 1, 2
PROTOCOL = {"name": "random-per-user-domain", "version": 1, "valid": 0.1, "test": 0.2, "min_items": 3}


def _holdout(n: np.ndarray, fraction: float) -> np.ndarray:
    """Items held out of a (user, domain) with n items (round half up, at least 1)."""
    k = np.maximum(1, np.floor(fraction * n + 0.5)).astype(np.int64)
    return np.where(n >= PROTOCOL["min_items"], k, 0)


def assign(table: pd.DataFrame, seed: int) -> np.ndarray:
    """The split code (TRAIN / VALID / TEST, int8) of every row of the canonical ``table``.

    Vectorised: one random key per row, rows ordered by (user, key) within a domain, the
    first n_test of each user's run go to test, the next n_valid to valid.
    """
    codes = np.empty(len(table), dtype=np.int8)
    dom = domain_codes(table)
    users = table["user"].to_numpy()
    for k, d in enumerate(table["domain"].cat.categories):
        rows = np.flatnonzero(dom == k)
        rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(d.encode())]))
        u = users[rows]
        order = np.lexsort((rng.random(len(rows)), u))
        u = u[order]
        start = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
        size = np.diff(np.r_[start, len(u)])
        pos = np.arange(len(u)) - np.repeat(start, size)
        n = np.repeat(size, size)
        n_test, n_valid = _holdout(n, PROTOCOL["test"]), _holdout(n, PROTOCOL["valid"])
        codes[rows[order]] = np.where(pos < n_test, TEST, np.where(pos < n_test + n_valid, VALID, TRAIN))
    return codes
