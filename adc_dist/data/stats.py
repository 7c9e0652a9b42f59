"""Descriptive statistics of a split task (what ``python -m adc_dist.data describe`` prints)."""

from __future__ import annotations

import itertools

import numpy as np

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
