"""Descriptive statistics of a split task (what ``python -m adc_dist.data describe`` prints)."""

from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sp

from adc_dist.data.task_data import SPLITS, TaskData


def domain_users(task: TaskData, k: int) -> np.ndarray:
    """Sorted unique users with >= 1 interaction (any split) in domain k."""
    return np.unique(np.concatenate([task.split(s)[k].users for s in SPLITS]))


def domain_stats(task: TaskData) -> list[dict[str, float | int | str]]:
    """Per domain: users, items, interactions, density, and the train / valid / test sizes."""
    rows = []
    for k, d in enumerate(task.domains):
        sizes = {s: len(task.split(s)[k]) for s in SPLITS}
        users = len(domain_users(task, k))
        n = sum(sizes.values())
        rows.append({"domain": d, "users": users, "items": task.n_items[k], "interactions": n,
                     "density": n / (users * task.n_items[k]), **sizes})
    return rows


def overlaps(task: TaskData) -> dict[tuple[str, str], int]:
    """Users with interactions in both domains, for every pair of the task's domains."""
    users = [domain_users(task, k) for k in range(task.num_domains)]
    return {(task.domains[a], task.domains[b]): len(np.intersect1d(users[a], users[b], assume_unique=True))
            for a, b in itertools.combinations(range(task.num_domains), 2)}


def mirror_groups(task: TaskData, k: int, min_users: int = 2) -> np.ndarray:
    """Group id per item of domain k: items with the same set of >= ``min_users`` users (over
    all splits) share one id, every other item has an id of its own.

    Identical user sets are the trace of mirrored products: the Amazon SNAP 2006 crawl shows
    one set of reviews for every edition of a book (or the DVD and VHS of a film), so each
    edition is an item with exactly the same reviewers.
    """
    full = sum(task.user_items(s, k) for s in SPLITS).tocsc()
    full.sort_indices()
    ids: dict[bytes, int] = {}
    groups = np.empty(task.n_items[k], dtype=np.int64)
    for i in range(task.n_items[k]):
        users = full.indices[full.indptr[i]:full.indptr[i + 1]]
        key = users.tobytes() if len(users) >= min_users else b"item:%d" % i
        groups[i] = ids.setdefault(key, len(ids))
    return groups


def mirror_stats(task: TaskData, k: int) -> dict[str, float | int]:
    """How much of domain k is mirrored (see :func:`mirror_groups`).

    ``mirrored_items``: items that share their user set with another item; ``groups``: how
    many such sets; ``largest``: the largest group; ``test_with_train_mirror``: the share of
    test (user, item) pairs for which the user has a mirror of the item among their train
    items (a model that copies an item's embedding to its mirrors finds those easily).
    """
    g = mirror_groups(task, k)
    size = np.bincount(g)
    train, test = task.user_items("train", k).tocoo(), task.user_items("test", k).tocoo()
    has = sp.csr_matrix((np.ones(train.nnz, dtype=np.float32), (train.row, g[train.col])),
                        shape=(task.n_users, len(size)))
    hit = np.asarray(has[test.row, g[test.col]]).ravel() > 0 if test.nnz else np.zeros(0, dtype=bool)
    return {"mirrored_items": int((size[g] > 1).sum()), "groups": int((size > 1).sum()),
            "largest": int(size.max()) if len(size) else 0,
            "test_with_train_mirror": float(hit.mean()) if test.nnz else float("nan")}
