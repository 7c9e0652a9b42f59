"""Per-epoch data-parallel shards of a domain's training positives.

Like ``torch.utils.data.DistributedSampler``: one seeded permutation of 0..n-1 per epoch,
padded cyclically with its first indices up to world * ceil(n / world), and rank r takes
every world-th index starting at r. Every rank gets the same number of indices, so all
ranks run the same number of steps (no rank waits in an all-reduce that others never
reach); only the padding indices are seen twice.
"""

from __future__ import annotations

import numpy as np


def epoch_shard(n: int, rank: int, world: int, seed: int, epoch: int) -> np.ndarray:
    """int64 [ceil(n / world)]: this rank's indices into the n training positives this epoch."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, world) with world >= 1, got rank={rank}, world={world}")
    if n == 0:
        return np.empty(0, dtype=np.int64)
    perm = np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(n)
    padded = np.resize(perm, world * -(-n // world))  # np.resize repeats from the start
    return padded[rank::world].astype(np.int64)
