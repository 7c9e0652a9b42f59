"""The canonical interaction table that every reader produces and the splitter consumes.

A pandas DataFrame, one row per positive (user, item) pair of a domain:

    user    int64    dense 0-based, one id space shared by all domains of the table
    item    int64    dense 0-based per domain
    domain  category lower-case short names ("book"); the categories are the table's
                     domains in order, so ``.cat.codes`` is the domain index k
    rating  float32  the observed rating (1.0 for implicit data)

rows sorted by (domain in the table's domain order, user, item), no duplicate
(user, item, domain). Dense re-indexing keeps the order of the raw ids, so restricting a
table to some domains and re-indexing it again preserves the relative order of rows.

The ids the source file used are kept in ``table.attrs[IDS_ATTR]`` (an :class:`IdMap`): the
split cache saves them beside the split, so results in dense ids join back to the user's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from adc_dist.errors import AdcError

COLUMNS = ("user", "item", "domain", "rating")
IDS_ATTR = "adc_dist_ids"


@dataclass(frozen=True, eq=False)
class IdMap:
    """The source's own ids behind the dense ones: ``users[u]`` is dense user u's id in the
    file, ``items[k][i]`` dense item i's id in domain ``domains[k]`` (ints or strings)."""

    users: np.ndarray
    items: tuple[np.ndarray, ...]
    domains: tuple[str, ...]

    def __deepcopy__(self, memo: dict) -> "IdMap":
        # Immutable: pandas deep-copies ``attrs`` on every operation; sharing keeps that free.
        return self

    def item_ids(self, domain: str) -> np.ndarray:
        return self.items[self.domains.index(domain)]


def id_map(table: pd.DataFrame) -> IdMap | None:
    """The :class:`IdMap` of a canonical table (None for a table built some other way)."""
    ids = table.attrs.get(IDS_ATTR)
    return ids if isinstance(ids, IdMap) else None


def raw_frame(users, items, domain, ratings=None) -> pd.DataFrame:
    """A raw (not yet dense) frame in the canonical column layout; ``domain`` a str or array."""
    users = np.asarray(users)
    if ratings is None:
        ratings = np.ones(len(users), dtype=np.float32)
    return pd.DataFrame({"user": users, "item": np.asarray(items), "domain": domain,
                         "rating": np.asarray(ratings, dtype=np.float32)})


def canonical(raw: pd.DataFrame, source: str, domains: Sequence[str] | None = None,
              ids: IdMap | None = None) -> pd.DataFrame:
    """Re-index ``raw`` densely into the canonical table.

    raw: columns user, item (non-negative integers or string tokens: any ids that sort),
    domain (str), rating (float). ``domains`` selects and orders the domains (default: all,
    in order of first appearance); users are re-indexed over the selected domains only, so
    every user of the result has >= 1 interaction. Duplicate (user, item) rows of a domain
    are merged into one with their mean rating. Raises AdcError (naming ``source``) for NaN
    ratings or a selected domain without interactions.

    ``ids``: when ``raw`` is itself a (filtered) canonical table, its IdMap, so that the result's
    IdMap still names the source file's ids; otherwise the raw values are those ids.
    """
    if domains is None:
        domains = list(pd.unique(raw["domain"]))
    present = pd.Categorical(raw["domain"])
    dom = pd.Index(domains).get_indexer(present.categories)[present.codes]  # -1: not selected
    keep = dom >= 0
    dom = dom[keep]
    rating = raw["rating"].to_numpy(dtype=np.float64)[keep]
    if np.isnan(rating).any():
        raise AdcError(f"{source}: {int(np.isnan(rating).sum())} rating(s) are NaN")
    raw_users, user = np.unique(raw["user"].to_numpy()[keep], return_inverse=True)
    items = raw["item"].to_numpy()[keep]
    parts, item_ids = [], []
    for k, d in enumerate(domains):
        m = dom == k
        if not m.any():
            raise AdcError(f"{source}: domain {d!r} has no interactions")
        raw_items, item = np.unique(items[m], return_inverse=True)
        item_ids.append(raw_items if ids is None else ids.item_ids(d)[raw_items])
        u = user[m].astype(np.int64)
        item = item.astype(np.int64)
        key = u * (int(item.max()) + 1) + item
        order = np.argsort(key, kind="stable")
        key, u, item, r = key[order], u[order], item[order], rating[m][order]
        start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        if len(start) < len(key):  # duplicates: one row per pair, mean rating
            r = np.add.reduceat(r, start) / np.diff(np.r_[start, len(key)])
            u, item = u[start], item[start]
        parts.append((u, item, np.full(len(u), k, dtype=np.int8), r.astype(np.float32)))
    u, item, k, r = (np.concatenate(cols) for cols in zip(*parts))
    table = pd.DataFrame({"user": u, "item": item, "domain": pd.Categorical.from_codes(k, categories=domains),
                          "rating": r})
    table.attrs[IDS_ATTR] = IdMap(raw_users if ids is None else ids.users[raw_users], tuple(item_ids),
                                  tuple(domains))
    return table


def domain_codes(table: pd.DataFrame) -> np.ndarray:
    """The domain index k (int8) of every row of a canonical table."""
    return table["domain"].cat.codes.to_numpy()


def check_overlap(table: pd.DataFrame, domains: Sequence[str], source: str) -> None:
    """Raise AdcError unless the domains are connected by shared users.

    Cross-domain transfer needs users in common: with K = 2 the two domains must share a
    user; with K > 2 no group of domains may be cut off from the rest.
    """
    k = domain_codes(table)
    users = {d: np.unique(table["user"].to_numpy()[k == j]) for j, d in enumerate(domains)}
    reached = {domains[0]}
    frontier = [domains[0]]
    while frontier:
        a = frontier.pop()
        for b in domains:
            if b not in reached and np.intersect1d(users[a], users[b], assume_unique=True).size:
                reached.add(b)
                frontier.append(b)
    if len(reached) < len(domains):
        cut = [d for d in domains if d not in reached]
        raise AdcError(f"{source}: no overlapping users between domain(s) {', '.join(sorted(reached))} "
                       f"and {', '.join(cut)}; a cross-domain task needs users with interactions in both")
