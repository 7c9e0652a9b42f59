"""Negative sampling: for users of domain k, items of domain k they have no *train*
interaction with, uniformly at random, exactly (zero false negatives).

Rejection sampling, vectorised: draw every candidate uniformly from the domain's items,
look the (user, item) keys up in the sorted array of train keys ``user * n_items + item``
with ``np.searchsorted``, and redraw only the collisions until none is left. Each round
keeps a candidate with probability 1 - (user's train items / n_items), so a handful of
rounds suffice on sparse data; the accepted draws are exactly uniform over the allowed
items. Negatives are drawn with replacement (a row may repeat an item), like the usual
per-epoch re-sampling in implicit-feedback training.

What sampling cannot serve is refused before training (:func:`check_negatives`, called when a
run prepares its task): ``negatives`` above what a domain can give (its items minus one), and
a user whose *train* items are every item of a domain (no negative exists). The second happens
only on degenerate domains (the split keeps valid/test items out of train for every user with
three or more items), so it is an error naming the domain and the count, not a silent drop.
"""

from __future__ import annotations

import numpy as np

from adc_dist.data.task_data import TaskData
from adc_dist.errors import AdcError


def check_negatives(task: TaskData, negatives: int) -> None:
    """Raise AdcError unless every domain of ``task`` can give ``negatives`` negatives to every
    user with train positives there (see the module docstring)."""
    for k, domain in enumerate(task.domains):
        n = int(task.n_items[k])
        if negatives > n - 1:
            raise AdcError(f"negatives={negatives:,} but domain {domain!r} of task {task.name} has {n:,} item(s): "
                           f"at most {max(n - 1, 0):,} distinct negatives per positive exist there; "
                           f"lower --negatives")
        full = _full_users(task, k)
        if full.size:
            raise AdcError(f"task {task.name}: {full.size:,} user(s) (e.g. dense user {int(full[0])}) have a train "
                           f"interaction with every one of the {n:,} items of domain {domain!r}, so no negative "
                           f"item exists for them; drop the domain (--domains) or add items to it")


def _full_users(task: TaskData, k: int) -> np.ndarray:
    """Dense ids of the users whose train items of domain k are all of its items."""
    counts = np.diff(task.user_items("train", k).indptr)
    return np.flatnonzero(counts >= task.n_items[k])


def rng_for(seed: int, epoch: int, rank: int, k: int) -> np.random.Generator:
    """The generator of (seed, epoch, rank, domain k): independent streams, reproducible runs."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, rank, k]))


class NegativeSampler:
    """Uniform negatives of domain ``k`` of ``task`` against its train split."""

    def __init__(self, task: TaskData, k: int):
        csr = task.user_items("train", k)
        self.n_items = int(task.n_items[k])
        counts = np.diff(csr.indptr)
        # CSR rows are sorted by user and (sort_indices) by item, so the keys are sorted.
        self._keys = np.repeat(np.arange(task.n_users, dtype=np.int64), counts) * self.n_items + csr.indices
        self._full = counts >= self.n_items  # users with no negative to draw from

    def sample(self, users: np.ndarray, rho: int, rng: np.random.Generator) -> np.ndarray:
        """int64 (len(users), rho): negatives for each of ``users`` (int64 [B])."""
        users = np.asarray(users, dtype=np.int64)
        if self._full[users].any():  # check_negatives refuses such a task before training
            bad = int(users[self._full[users]][0])
            raise AdcError(f"user {bad} has a train interaction with every item of the domain; "
                           f"no negative exists")
        out = rng.integers(0, self.n_items, size=(len(users), rho), dtype=np.int64)
        flat_users = np.repeat(users, rho)
        flat = out.reshape(-1)  # a view: redraws land in ``out``
        todo = np.arange(flat.size)
        while todo.size:
            hit = self._is_positive(flat_users[todo], flat[todo])
            todo = todo[hit]
            flat[todo] = rng.integers(0, self.n_items, size=todo.size, dtype=np.int64)
        return out

    def _is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """bool [n]: is (users[i], items[i]) a train interaction?"""
        q = users * self.n_items + items
        if not self._keys.size:
            return np.zeros(q.size, dtype=bool)
        pos = np.minimum(np.searchsorted(self._keys, q), self._keys.size - 1)  # past the end: never equal
        return self._keys[pos] == q
