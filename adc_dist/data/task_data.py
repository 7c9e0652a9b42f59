"""The one in-memory view of a split cross-domain task that everything downstream reads.

Nothing past this module knows the source format: readers produce the canonical
interaction table, the splitter produces a :class:`TaskData`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping

import numpy as np
import scipy.sparse as sp

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Interactions:
    """Positive (user, item) pairs of one domain and one split; int64 arrays of equal length."""

    users: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass(frozen=True, eq=False)
class TaskData:
    """A task (dataset + K >= 2 domains) split into train / valid / test.

    Users share one dense 0-based id space across all domains (``n_users``); items are
    dense 0-based per domain (``n_items[k]``). ``train[k]``, ``valid[k]``, ``test[k]``
    are the positives of domain k. ``meta`` records the provenance of the split (source
    sha256, seed, protocol, counts) exactly as stored in the Parquet cache.
    """

    name: str
    domains: tuple[str, ...]
    n_users: int
    n_items: tuple[int, ...]
    train: tuple[Interactions, ...]
    valid: tuple[Interactions, ...]
    test: tuple[Interactions, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def num_domains(self) -> int:
        return len(self.domains)

    def split(self, name: str) -> tuple[Interactions, ...]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)

    def select(self, domains: "list[str] | tuple[str, ...]") -> "TaskData":
        """The same split restricted to some domains (users keep their ids)."""
        unknown = [d for d in domains if d not in self.domains]
        if unknown:
            from adc_dist.errors import AdcError

            raise AdcError(f"task {self.name!r} has no domain {unknown[0]!r}; its domains are {', '.join(self.domains)}")
        idx = [self.domains.index(d) for d in domains]
        pick = lambda xs: tuple(xs[i] for i in idx)  # noqa: E731
        return TaskData(self.name, pick(self.domains), self.n_users, pick(self.n_items),
                        pick(self.train), pick(self.valid), pick(self.test), self.meta)

    def user_items(self, split: str, k: int) -> sp.csr_matrix:
        """Binary CSR (n_users x n_items[k]) of the users' items of domain k in ``split``.

        Cached: evaluation and negative sampling ask for it repeatedly.
        """
        return self._csr[(split, k)]

    @cached_property
    def _csr(self) -> dict[tuple[str, int], sp.csr_matrix]:
        out = {}
        for s in SPLITS:
            for k, inter in enumerate(self.split(s)):
                m = sp.csr_matrix(
                    (np.ones(len(inter), dtype=np.float32), (inter.users, inter.items)),
                    shape=(self.n_users, self.n_items[k]),
                )
                m.sum_duplicates()
                m.data[:] = 1.0
                m.sort_indices()
                out[(s, k)] = m
        return out
