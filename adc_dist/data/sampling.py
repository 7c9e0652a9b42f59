"""Negative sampling: for users of domain k, items of domain k they have no *train*
interaction with, uniformly at random, exactly (zero false negatives).

Rejection sampling, vectorised: draw every candidate uniformly from the domain's items,
look the (user, item) keys up in the sorted array of train keys ``user * n_items + item``
with ``np.searchsorted``, and redraw only the collisions until none is left. Each round
keeps a candidate with probability 1 - (user's train items / n_items), so a handful of
rounds suffice on sparse data; the accepted draws are exactly uniform over the allowed
items. Negatives are drawn with replacement (a row may repeat an item), like the usual
per-epoch re-sampling in implicit-feedback training.
"""

from __future__ import annotations

import numpy as np

from adc_dist.data.task_data import TaskData


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
        if self._full[users].any():
            bad = int(users[self._full[users]][0])
            raise ValueError(f"user {bad} has a train interaction with every item of the domain; "
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
