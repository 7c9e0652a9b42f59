"""Training batches made on the training device: epoch permutation, shards, exact negatives.

Each domain's train positives and the sorted array of its train keys
``user * n_items + item`` live on the device (:class:`DomainSampler`, built once per
run). An epoch (:class:`EpochBatches`) permutes every domain's positives, takes this
rank's shard, cuts it into the epoch's steps and draws the negatives, all with torch
ops on that device: no numpy and no host-to-device copy per step, so a GPU is not fed
by one host thread.

Negatives are exact and uniform over the items the user has no *train* interaction
with: draw uniformly from the domain's items, look the keys up with
``torch.searchsorted``, redraw only the collisions until none is left (each accepted
draw is uniform over the allowed items). When the domain's users x items grid is small
(at most ``DENSE_LOOKUP_MAX`` cells, e.g. the paper's tasks), the lookup reads a dense
boolean grid instead: one gather, about 8x faster than the binary search on CPU, with
the same answer. They are drawn with replacement, for a block
of steps at a time: one draw, one lookup and one host sync per block instead of per
step (``block_pairs``).

Random streams: the epoch permutation of domain k comes from a generator seeded by
(seed, epoch, k), the same on every rank (the ranks must split one permutation); the
negatives of domain k from one seeded by (seed, epoch, rank, k). A repeated epoch after
a restart therefore draws exactly the batches of the lost one. Streams are per device
type: a GPU run draws other (equally valid) batches than a CPU run.

A user who has a train interaction with every item of a domain has no negative there:
their positives of that domain are left out of training (``dropped_users``,
``dropped_positives`` count them; the loop logs the counts), and a domain left with no
positive at all is an :class:`AdcError`.
"""

from __future__ import annotations

import itertools
import math
from typing import Iterator, Sequence

import torch

from adc_dist.data.task_data import TaskData
from adc_dist.errors import AdcError

_MASK64 = (1 << 64) - 1
_PERM_STREAM = 0x5EED  # tags the permutation stream apart from the rank streams
_CHECK_AFTER_ROUNDS = 16  # redraw rounds before checking for a user without any negative
DENSE_LOOKUP_MAX = 1 << 28  # grid cells (bytes) up to which the lookup is a dense boolean grid


def stream_seed(*parts: int) -> int:
    """A 63-bit seed mixing ``parts`` (splitmix64 over each part): distinct tuples, unrelated streams."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & _MASK64)) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h >> 1


def generator(device: torch.device | str, *parts: int) -> torch.Generator:
    """A torch generator on ``device`` seeded by ``parts``."""
    return torch.Generator(device=torch.device(device)).manual_seed(stream_seed(*parts))


class DomainSampler:
    """One domain's train positives and exclusion keys, resident on ``device``.

    ``users``/``items`` (int64 [P]) are the positives that can be trained on (users with
    at least one negative); ``keys`` (int64, sorted, unique) all train keys of the domain.
    """

    def __init__(self, task: TaskData, k: int, device: torch.device | str = "cpu"):
        device = torch.device(device)
        tr = task.train[k]
        self.domain, self.n_items, self.device = task.domains[k], int(task.n_items[k]), device
        users = torch.as_tensor(tr.users, dtype=torch.int64).to(device)
        items = torch.as_tensor(tr.items, dtype=torch.int64).to(device)
        self.keys = torch.unique(users * self.n_items + items)  # sorted; duplicates counted once
        per_user = torch.bincount(self.keys // self.n_items, minlength=task.n_users)
        full = per_user >= self.n_items
        keep = ~full[users]
        self.dropped_users = int(full.sum())
        self.dropped_positives = int(len(users) - int(keep.sum()))
        self.users, self.items = (users[keep], items[keep]) if self.dropped_positives else (users, items)
        self._full = full
        cells = task.n_users * self.n_items
        self._grid = None
        if cells <= DENSE_LOOKUP_MAX:
            self._grid = torch.zeros(cells, dtype=torch.bool, device=device)
            self._grid[self.keys] = True
        if len(self.users) == 0 and len(users) > 0:
            raise AdcError(f"domain {self.domain!r}: every user with a train positive has rated every one of its "
                           f"{self.n_items} items, so no negative can be sampled")

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """bool, shape of ``users``: is (users[i], items[i]) a train interaction of the domain?"""
        q = users * self.n_items + items
        if self._grid is not None:
            return self._grid.index_select(0, q.reshape(-1)).view(q.shape)
        if self.keys.numel() == 0:
            return torch.zeros_like(q, dtype=torch.bool)
        pos = torch.searchsorted(self.keys, q).clamp_(max=self.keys.numel() - 1)  # past the end: never equal
        return self.keys[pos] == q

    def negatives(self, users: torch.Tensor, rho: int, gen: torch.Generator) -> torch.Tensor:
        """int64 [B, rho]: for each of ``users`` (int64 [B] on the device), rho uniform negatives."""
        out = torch.randint(0, self.n_items, (len(users), rho), generator=gen, device=self.device)
        flat, flat_users = out.view(-1), users.repeat_interleave(rho)
        todo = torch.nonzero(self.is_positive(flat_users, flat)).squeeze(1)
        rounds = 0
        while todo.numel():  # one host sync per round: a handful of rounds on sparse data
            rounds += 1
            if rounds == _CHECK_AFTER_ROUNDS and bool(self._full[flat_users[todo]].any()):
                bad = int(flat_users[todo][self._full[flat_users[todo]]][0])
                raise AdcError(f"domain {self.domain!r}: user {bad} has a train interaction with every item; "
                               f"no negative exists")
            redraw = torch.randint(0, self.n_items, (todo.numel(),), generator=gen, device=self.device)
            flat[todo] = redraw
            todo = todo[self.is_positive(flat_users[todo], redraw)]
        return out


def samplers_for(task: TaskData, device: torch.device | str = "cpu") -> list[DomainSampler]:
    """One :class:`DomainSampler` per domain of ``task`` on ``device``."""
    return [DomainSampler(task, k, device) for k in range(task.num_domains)]


def _shard(n: int, rank: int, world: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """This rank's indices into n positives: one permutation, padded cyclically to
    world * ceil(n / world), every world-th from ``rank`` (DistributedSampler's scheme)."""
    if n == 0:
        return torch.empty(0, dtype=torch.int64, device=device)
    perm = torch.randperm(n, generator=gen, device=device)
    total = world * -(-n // world)
    padded = perm.repeat(-(-total // n))[:total]
    return padded[rank::world]


def _split_sizes(m: int, steps: int) -> list[int]:
    """np.array_split's sizes: ``m`` items into ``steps`` parts, the first m % steps one larger."""
    q, r = divmod(m, steps)
    return [q + 1] * r + [q] * (steps - r)


class EpochBatches:
    """The batches of one epoch on one rank: iterate for ``(users, items)`` per step.

    ``users[k]`` is int64 [B_k], ``items[k]`` int64 [B_k, 1 + rho] (column 0 the positive),
    both on the samplers' device. An epoch is one pass over every domain's positives;
    the largest shard sets the number of steps (ceil(shard / batch_size)), smaller domains
    are cut into as many smaller batches (cycling when a domain has fewer positives than
    steps), so every step sees every domain and all ranks run the same number of steps.
    ``block_pairs`` bounds the candidates drawn at once per domain (memory vs syncs).
    """

    def __init__(self, samplers: Sequence[DomainSampler], *, seed: int, epoch: int, rank: int, world: int,
                 batch_size: int, negatives: int, block_pairs: int = 1 << 20):
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, world) with world >= 1, got rank={rank}, world={world}")
        if batch_size < 1 or negatives < 1:
            raise ValueError(f"batch_size and negatives must be >= 1 (got {batch_size}, {negatives})")
        self.samplers, self.negatives = list(samplers), int(negatives)
        self.shards: list[torch.Tensor] = []
        for k, s in enumerate(self.samplers):
            self.shards.append(_shard(len(s), rank, world, generator(s.device, seed, epoch, k, _PERM_STREAM), s.device))
        self.steps = max(1, max(math.ceil(len(sh) / batch_size) for sh in self.shards))
        self.sizes: list[list[int]] = []
        for k, sh in enumerate(self.shards):
            m = max(len(sh), self.steps)
            if len(sh) and m > len(sh):  # fewer positives than steps: cycle, never an empty batch
                sh = sh.repeat(-(-m // len(sh)))[:m]
                self.shards[k] = sh
            self.sizes.append(_split_sizes(m, self.steps) if len(sh) else [0] * self.steps)
        self.gens = [generator(s.device, seed, epoch, rank, k) for k, s in enumerate(self.samplers)]
        pairs_per_step = max(1, batch_size * (1 + self.negatives))
        self.block_steps = max(1, block_pairs // pairs_per_step)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[list[torch.Tensor], list[torch.Tensor]]]:
        offsets = [[0, *itertools.accumulate(sz)] for sz in self.sizes]
        for b0 in range(0, self.steps, self.block_steps):
            b1 = min(self.steps, b0 + self.block_steps)
            blocks = [self._draw(k, offsets[k][b0], offsets[k][b1]) for k in range(len(self.samplers))]
            for step in range(b0, b1):
                users, items = [], []
                for k, (u, cand) in enumerate(blocks):
                    a, b = offsets[k][step] - offsets[k][b0], offsets[k][step + 1] - offsets[k][b0]
                    users.append(u[a:b])
                    items.append(cand[a:b])
                yield users, items

    def _draw(self, k: int, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Users [n] and candidates [n, 1 + rho] of positives start..stop of domain k's shard."""
        s = self.samplers[k]
        idx = self.shards[k][start:stop]
        users = s.users[idx]
        neg = s.negatives(users, self.negatives, self.gens[k])
        return users, torch.cat([s.items[idx].unsqueeze(1), neg], dim=1)

