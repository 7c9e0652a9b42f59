"""Generated cross-domain tasks of any size: ``synthetic:<users>x<domains>[:<seed>]``.

For scaling studies (``benchmarks/bench_scale.py``) and for trying train / tune on more
users than any real task here has. The table goes through the same path as real data
(canonical re-indexing, the seeded split, the Parquet cache); the generator is seeded by
``<seed>`` (default 0), the split by the run's seed as for every task.

What is planted (docs/data.md gives the numbers):

* domains of different sizes: domain k has about ``2 * users**0.75 / 2**k`` items and
  is used by a fraction ``0.9 * (2/3)**k`` of the users;
* power-law user activity: a user's positives in a domain follow a Pareto law (minimum 3,
  tail exponent 1.5, mean about 9), capped at half the domain's items and at 1,000;
* power-law item popularity: Zipf weights ``rank**-0.8`` in a random order per domain;
* structure a model can learn, and transfer: every user has one *shared* group (the same
  in every domain) and one *domain-specific* group per domain; every item has a shared
  and a specific label. A positive is drawn from the items of the user's shared group
  with probability 0.5, of their specific group with 0.3, from all items with 0.2,
  each by popularity. What a model learns about a user's shared group in one domain
  therefore helps to rank the user's items in another.
"""

from __future__ import annotations

import re
from typing import Mapping

import numpy as np
import pandas as pd

from adc_dist.errors import AdcError

PREFIX = "synthetic:"
VERSION = "1"  # bump when the generator's output changes: the split cache key includes it
MAX_USERS = 100_000_000
MAX_DOMAINS = 16
SHARED_GROUPS, SPECIFIC_GROUPS = 16, 16
P_SHARED, P_SPECIFIC = 0.5, 0.3  # the rest (0.2): any item, by popularity
MIN_ITEMS_PER_USER, PARETO_ALPHA, MAX_ITEMS_PER_USER = 3, 1.5, 1000
ZIPF_EXPONENT = 0.8

_SPEC = re.compile(r"^synthetic:(\d+)x(\d+)(?::(\d+))?$")


def parse(name: str) -> tuple[int, int, int]:
    """(users, domains, seed) of ``synthetic:<users>x<domains>[:<seed>]``; AdcError if malformed."""
    m = _SPEC.match(name)
    if not m:
        raise AdcError(f"bad synthetic task {name!r}: write {PREFIX}<users>x<domains>[:<seed>], "
                       f"e.g. {PREFIX}100000x2")
    users, domains, seed = int(m[1]), int(m[2]), int(m[3] or 0)
    if not 100 <= users <= MAX_USERS:
        raise AdcError(f"{name}: users must be in [100, {MAX_USERS:,}] (got {users:,})")
    if not 2 <= domains <= MAX_DOMAINS:
        raise AdcError(f"{name}: domains must be in [2, {MAX_DOMAINS}] (got {domains})")
    return users, domains, seed


def domain_items(users: int, k: int) -> int:
    """Items planned for domain k of a task with ``users`` users (before unused items are dropped)."""
    return max(50, round(2 * users**0.75 / 2**k))


def generate(users: int, domains: int, seed: int = 0) -> pd.DataFrame:
    """The raw table (user, item, domain, rating = 1) of the synthetic task; see the module doc."""
    root = np.random.SeedSequence([seed, users, domains])
    rng_users, *rng_domains = (np.random.default_rng(s) for s in root.spawn(1 + domains))
    shared = rng_users.integers(0, SHARED_GROUPS, users)  # the transferable user factor
    names = [f"s{k}" for k in range(domains)]
    frames = []
    for k, rng in enumerate(rng_domains):
        u, i = _domain(rng, shared, domain_items(users, k), 0.9 * (2 / 3) ** k)
        frames.append(pd.DataFrame({"user": u, "item": i, "domain": names[k]}))
    table = pd.concat(frames, ignore_index=True)
    table["domain"] = pd.Categorical(table["domain"], categories=names)
    table["rating"] = np.float32(1.0)
    return table


def _domain(rng: np.random.Generator, shared: np.ndarray, n_items: int, share: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """Unique (user, item) positives of one domain."""
    n_users = len(shared)
    active = np.flatnonzero(rng.random(n_users) < share)
    cap = min(MAX_ITEMS_PER_USER, max(MIN_ITEMS_PER_USER, n_items // 2))
    counts = np.minimum(cap, np.floor(MIN_ITEMS_PER_USER * (1 - rng.random(len(active))) ** (-1 / PARETO_ALPHA)))
    users = np.repeat(active, counts.astype(np.int64))
    specific = rng.integers(0, SPECIFIC_GROUPS, n_users)  # this domain's own user factor
    weight = (1.0 + rng.permutation(n_items)) ** -ZIPF_EXPONENT  # popularity in a random order
    item_shared = rng.integers(0, SHARED_GROUPS, n_items)
    item_specific = rng.integers(0, SPECIFIC_GROUPS, n_items)
    mode = rng.random(len(users))
    r = rng.random(len(users))
    items = np.where(mode < P_SHARED, _draw(item_shared, weight, shared[users], r),
                     np.where(mode < P_SHARED + P_SPECIFIC, _draw(item_specific, weight, specific[users], r),
                              _draw(np.zeros(n_items, np.int64), weight, np.zeros(len(users), np.int64), r)))
    keys = np.unique(users.astype(np.int64) * n_items + items)  # a repeated draw is one positive
    return keys // n_items, keys % n_items


def _draw(labels: np.ndarray, weight: np.ndarray, group: np.ndarray, r: np.ndarray) -> np.ndarray:
    """For each draw j, an item with label ``group[j]`` chosen with probability ∝ ``weight``
    (``r[j]`` uniform in [0, 1)): items sorted by label, one cumulative sum, one search."""
    order = np.argsort(labels, kind="stable")
    cum = np.cumsum(weight[order])
    bounds = np.searchsorted(labels[order], np.arange(labels.max() + 2))  # start of each label's run
    lo = np.where(bounds[:-1] > 0, cum[np.maximum(bounds[:-1] - 1, 0)], 0.0)
    hi = cum[np.maximum(bounds[1:] - 1, 0)]
    empty = bounds[1:] == bounds[:-1]
    g = np.where(empty[group], 0, group)  # a label without items: fall back to label 0's run...
    g = np.where(empty[g], labels[order][0], g)  # ...or to the first label that has items
    pos = np.searchsorted(cum, lo[g] + r * (hi[g] - lo[g]), side="right")
    return order[np.clip(pos, bounds[g], bounds[g + 1] - 1)]


def read(files: Mapping[str, object], *, users: int, domains: int, seed: int) -> pd.DataFrame:
    """The registry's reader signature (no files: the table is generated)."""
    return generate(users, domains, seed)
